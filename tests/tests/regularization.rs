//! AR-VAE orders its attributes on their own dimensions; the β-VAE trained the same way orders
//! them less, even when every one of its dimensions may compete (docs/architecture.md §6).
//!
//! Both models train with the demo's settings on the built-in synthetic melodies, then Spearman
//! rho between each regularized dimension and its attribute is measured on the validation split
//! on the posterior means. For the β-VAE every dimension may compete: its best |rho| per attribute.

use arvae_core::data::build::{build, BuildOptions, Silent};
use arvae_core::music::attributes::Attribute;
use arvae_core::training::{attribute_order, train, ModelKind, Quiet, Start, TrainConfig};
use candle_core::Device;

/// The demo's length (`arvae-trainer demo` defaults): 12 epochs of 2,500 synthetic pieces.
const EPOCHS: usize = 12;
/// Synthetic pieces (4 bars each), as the demo.
const PIECES: usize = 2500;

#[test]
fn ar_vae_orders_attributes_and_beta_vae_does_not() {
    let ds = build(
        &BuildOptions {
            synthetic_pieces: PIECES,
            ..Default::default()
        },
        &Silent,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The two models train side by side, one core each, instead of one after the other on both
    // cores: the same runs and assertions, and the wall time is about the longer run's.
    let kinds = [ModelKind::ArVae, ModelKind::BetaVae];
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let jobs: Vec<_> = kinds
            .iter()
            .map(|&kind| {
                let (ds, dir) = (&ds, dir.path());
                s.spawn(move || {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .build()
                        .unwrap();
                    pool.install(|| {
                        let cfg = TrainConfig::demo(kind, EPOCHS);
                        let t0 = std::time::Instant::now();
                        let out = train(
                            ds,
                            &cfg,
                            &dir.join(format!("{kind:?}")),
                            Start::Fresh,
                            &Device::Cpu,
                            &Quiet,
                        )
                        .unwrap();
                        eprintln!(
                            "{kind:?}: {EPOCHS} epochs in {:.0} s",
                            t0.elapsed().as_secs_f64()
                        );
                        out
                    })
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    let mut mean_abs = Vec::new();
    for (kind, out) in kinds.into_iter().zip(&outcomes) {
        let reg = if kind == ModelKind::ArVae {
            Attribute::ALL.to_vec()
        } else {
            Vec::new()
        };
        let order = attribute_order(&out.model, &ds, &reg).unwrap();
        for (a, dim, rho) in &order {
            eprintln!("{kind:?} {:<20} dim {dim:>2} rho {rho:+.3}", a.name());
        }
        if kind == ModelKind::ArVae {
            // The training issue's target: rho >= 0.9 for every attribute on its own dimension.
            for (a, dim, rho) in &order {
                assert_eq!(*dim, a.index());
                assert!(*rho >= 0.9, "AR-VAE: rho of {} is {rho:.3} < 0.9", a.name());
            }
        }
        mean_abs.push(order.iter().map(|x| x.2.abs()).sum::<f64>() / 4.0);
    }
    assert!(
        mean_abs[1] < mean_abs[0],
        "β-VAE mean |rho| {:.3} is not below AR-VAE's {:.3}",
        mean_abs[1],
        mean_abs[0]
    );
}
