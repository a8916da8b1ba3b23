//! Deterministic synthetic latents and attributes, shaped like the music case (four heavily
//! tied attributes, a few regularized codes, a collapsed constant code), for fixtures,
//! checks against scikit-learn and benchmarks.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Matrix, MetricsData};
use crate::random::standard_normal;

/// Attribute names of the synthetic data (the music attributes).
pub const SYNTHETIC_NAMES: [&str; 4] = ["rhy_complexity", "pitch_range", "note_density", "contour"];

/// N samples of D ≥ 5 latent codes and the 4 attributes:
/// - `rhy_complexity` ∈ {0, 1/12, …, 1} (13 levels), `pitch_range` ∈ {0..24} (integers),
///   `note_density` ∈ {1..16} (integers), `contour` continuous in [−1, 1] with 20% exactly 0;
/// - z0 ≈ linear in rhy_complexity (regularized, dim 0); z1 ≈ atan of pitch_range
///   (monotone non-linear, dim 1); z2 mixes note_density and contour (dim 2); z3 weakly
///   follows contour (not regularized); z4 is a noisy copy of z0 (MIG runner-up);
///   z_{D−1} is constant 0 (a collapsed code); the rest is N(0, 1).
///
/// `z_mean` is the noiseless mean, `z = z_mean + 0.1·N(0,1)` (0 stays 0 in the collapsed
/// code); both are rounded to f32 so that an f32 file holds exactly these values.
pub fn synthetic(n: usize, d: usize, seed: u64) -> MetricsData {
    assert!(d >= 5, "synthetic data needs D >= 5");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let k = SYNTHETIC_NAMES.len();
    let mut a = vec![0.0; n * k];
    let mut zm = vec![0.0; n * d];
    let mut z = vec![0.0; n * d];
    let f32r = |v: f64| v as f32 as f64;
    for i in 0..n {
        let rc = rng.gen_range(0..=12) as f64 / 12.0;
        let pr = (12.0 + 5.0 * standard_normal(&mut rng))
            .round()
            .clamp(0.0, 24.0);
        let nd = rng.gen_range(1..=16) as f64;
        let ct = if rng.gen_bool(0.2) {
            0.0
        } else {
            (0.5 * standard_normal(&mut rng)).tanh()
        };
        a[i * k..(i + 1) * k].copy_from_slice(&[rc, pr, nd, ct]);
        let row = &mut zm[i * d..(i + 1) * d];
        row[0] = 3.0 * (rc - 0.5) + 0.3 * standard_normal(&mut rng);
        row[1] = ((pr - 12.0) / 4.0).atan() + 0.15 * standard_normal(&mut rng);
        row[2] = 0.15 * (nd - 8.5) + 0.8 * ct + 0.3 * standard_normal(&mut rng);
        row[3] = 0.4 * ct + standard_normal(&mut rng);
        row[4] = 0.6 * row[0] + 0.8 * standard_normal(&mut rng);
        for v in row.iter_mut().take(d - 1).skip(5) {
            *v = standard_normal(&mut rng);
        }
        row[d - 1] = 0.0;
        for j in 0..d {
            let m = f32r(zm[i * d + j]);
            zm[i * d + j] = m;
            z[i * d + j] = if j == d - 1 {
                0.0
            } else {
                f32r(m + 0.1 * standard_normal(&mut rng))
            };
        }
    }
    MetricsData {
        z: Matrix::new(n, d, z).expect("shape"),
        z_mean: Some(Matrix::new(n, d, zm).expect("shape")),
        attributes: Matrix::new(n, k, a).expect("shape"),
        names: SYNTHETIC_NAMES.iter().map(|s| s.to_string()).collect(),
        regularized: vec![Some(0), Some(1), Some(2), None],
    }
}
