//! MeasureVAE can memorize 64 real Bach measures: greedy decoding (no teacher forcing) reaches
//! 95% token accuracy in a bounded number of steps. Needs the music21 wheel (CI fetches it).

use arvae_core::data::build::{build, BuildOptions, Collection, Silent};
use arvae_core::data::corpus::wheel_for_tests;
use arvae_core::data::Split;
use arvae_core::model::{eval_step, train_step, Adam, AdamConfig, Batch, LossConfig, MeasureVae};
use arvae_core::music::Measure;
use arvae_core::music_model::MeasureVaeConfig;
use candle_core::Device;
use rand::SeedableRng;
use std::collections::HashSet;

#[test]
fn overfits_64_real_bach_measures() {
    let Some(wheel) = wheel_for_tests() else {
        return;
    };
    let opts = BuildOptions {
        collection: Collection::Bach,
        corpus: Some(wheel),
        transpose: false,
        ..Default::default()
    };
    let ds = build(&opts, &Silent).unwrap();
    // 64 distinct measures with at least two notes, from the training split, spread over pieces.
    let mut seen = HashSet::new();
    let measures: Vec<Measure> = ds
        .indices(Split::Train)
        .into_iter()
        .step_by(7)
        .map(|i| ds.measures[i])
        .filter(|m| m.onsets().count() >= 2 && seen.insert(*m))
        .take(64)
        .collect();
    assert_eq!(measures.len(), 64);
    let device = Device::Cpu;
    let model = MeasureVae::new(&MeasureVaeConfig::default(), 0, &device).unwrap();
    let mut adam = Adam::new(
        model.named_vars(),
        AdamConfig {
            lr: 3e-3,
            ..AdamConfig::default()
        },
    )
    .unwrap();
    let batch = Batch::from_measures(&measures, &device).unwrap();
    let loss = LossConfig::ar_vae_music();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut best = 0.0f32;
    for step in 1..=400 {
        // Teacher forcing on alternate steps, like the reference's coin on average.
        train_step(&model, &mut adam, &batch, &loss, step % 2 == 0, &mut rng).unwrap();
        if step % 25 == 0 {
            best = best.max(eval_step(&model, &batch, &loss, &mut rng).unwrap().accuracy);
            if best >= 0.95 {
                eprintln!("reached {best:.3} greedy accuracy after {step} steps");
                return;
            }
        }
    }
    panic!("greedy accuracy only reached {best:.3} in 400 steps");
}
