//! How well each regularized dimension steers its attribute through the decoder, the way the
//! plugin uses it: 9 positions along the dimension (calibrated 5..95 % range), 8 bars each,
//! other regularized dimensions at their median, the free dimensions drawn from (a) the prior,
//! (b) encoded training measures, or (c) the prior with target matching
//! ([`arvae_core::infer::steer`], `PASSES` passes, default 2). Prints the pooled Spearman rho of
//! position against the decoded bar's attribute, and the mean over bars of the per-bar rho.
//! `WIDE=1` sweeps the latent value over -4..4 instead of the calibrated targets.
//!
//! `cargo run --release -p arvae-core --example knob_probe -- CHECKPOINT DATASET`

use arvae_core::checkpoint::Checkpoint;
use arvae_core::data::dataset::{Dataset, Split};
use arvae_core::infer::steer::{steer, SteerTarget};
use arvae_core::infer::InferModel;
use arvae_core::metrics::stats::spearman;
use arvae_core::music::attributes::attributes;
use arvae_core::music::token::Measure;
use arvae_core::music::Attribute;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ck = Checkpoint::load(&args[1]).expect("checkpoint");
    let ds = Dataset::load(args[2].as_ref()).expect("dataset");
    let mut m = InferModel::from_checkpoint(&ck).expect("model");
    let d = m.latent();
    let train = ds.indices(Split::Train);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut bank = Vec::new();
    let (mut mu, mut ls) = (vec![0f32; d], vec![0f32; d]);
    for _ in 0..256 {
        let i = train[rng.gen_range(0..train.len())];
        m.encode(&ds.measures[i], &mut mu, &mut ls).unwrap();
        bank.push(mu.clone());
    }
    let cal = &ck.meta.calibration;
    let n = cal[0].points.len();
    let wide = std::env::var("WIDE").is_ok();
    let passes: usize = std::env::var("PASSES").map_or(2, |p| p.parse().unwrap());
    for mode in ["prior", "bank", "steer"] {
        print!("{mode:>6}:");
        for (a, c) in cal.iter().enumerate() {
            let (t0, t1) = (c.points[1].1, c.points[n - 2].1);
            let mut per_bar = vec![(Vec::new(), Vec::new()); 8];
            let (mut xs, mut ys) = (Vec::new(), Vec::new());
            for j in 0..9 {
                let tv = t0 + (t1 - t0) * j as f32 / 8.0;
                let v = if wide {
                    -4.0 + j as f32
                } else {
                    arvae_core::compose::knobs::LatentMap::from_calibration(c)
                        .map_or(0.0, |m| m.latent(tv))
                };
                for bar in 0..8u64 {
                    let mut r = ChaCha8Rng::seed_from_u64(1000 + bar);

                    let mut z: Vec<f32> = if mode != "bank" {
                        (0..d)
                            .map(|_| {
                                let u1: f32 = r.gen_range(1e-7..1.0);
                                let u2: f32 = r.gen();
                                (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                            })
                            .collect()
                    } else {
                        bank[r.gen_range(0..bank.len())].clone()
                    };
                    for o in cal {
                        z[o.latent_dim] = o.points[n / 2].0;
                    }
                    z[c.latent_dim] = v;
                    let mut out = Measure::rest();
                    if mode == "steer" {
                        // Targets: the swept attribute at the calibration value of v, the others at their median.
                        let ts: Vec<SteerTarget> = cal
                            .iter()
                            .enumerate()
                            .map(|(k, o)| {
                                let target = if k == a { tv } else { o.points[n / 2].1 };
                                SteerTarget {
                                    attribute: Attribute::ALL[k],
                                    dim: o.latent_dim,
                                    target,
                                    scale: o.points[n - 2].1 - o.points[1].1,
                                    step: o.points[n - 1].0 - o.points[0].0,
                                }
                            })
                            .collect();
                        steer(&mut m, &mut z, &ts, passes, &mut out).unwrap();
                    } else {
                        m.decode(&z, &mut out).unwrap();
                    }
                    xs.push(j as f64);
                    ys.push(attributes(&out)[a] as f64);
                    per_bar[bar as usize].0.push(j as f64);
                    per_bar[bar as usize].1.push(attributes(&out)[a] as f64);
                }
            }
            let pb: f64 = per_bar
                .iter()
                .map(|(x, y)| spearman(x, y).map_or(0.0, |r| r.0))
                .sum::<f64>()
                / 8.0;
            print!(
                " {} {:.3} (per bar {:.3})",
                &c.attribute[..5],
                spearman(&xs, &ys).map_or(f64::NAN, |r| r.0),
                pb
            );
        }
        println!();
    }
}
