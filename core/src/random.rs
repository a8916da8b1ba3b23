//! Random numbers: the one standard-normal sampler (Box-Muller) of training, metrics and
//! figures, and the seeded streams of the generation path.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A standard normal deviate: Box-Muller on two uniforms, the first in (0, 1], cosine branch.
/// Both training engines draw their noise with it, so one seed gives them the same samples.
pub fn standard_normal(rng: &mut dyn RngCore) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A seeded stream of standard normal values (Box-Muller on ChaCha8): the one sampler of the
/// generation path, so the plugin and the CLI draw the same values.
pub fn normals(seed: u64, out: &mut [f32]) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for pair in out.chunks_mut(2) {
        let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.gen();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        pair[0] = (r * t.cos()) as f32;
        if pair.len() > 1 {
            pair[1] = (r * t.sin()) as f32;
        }
    }
}

/// Mixes a seed and two indices into one RNG seed (SplitMix64 finalizer over each).
pub fn mix(seed: u64, a: i64, b: i64) -> u64 {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    for v in [a as u64, b as u64] {
        x = x.wrapping_add(v).wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
    }
    x
}
