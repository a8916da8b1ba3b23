//! The native engine against the candle model (the reference implementation): same weights,
//! same batch, same randomness; loss parts, every parameter gradient and one Adam step agree.

use super::*;
use crate::checkpoint::NamedTensors;
use crate::data::{Dataset, Split};
use crate::model::{Adam, AdamConfig, LossConfig, LossTerms, MeasureVae};
use crate::music_model::MeasureVaeConfig;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

fn loss_config() -> LossConfig {
    LossConfig::ar_vae_music()
}

#[path = "../../tests/support/parity_data.rs"]
mod parity_data;
use parity_data::batch;

/// Freshly initialised weights with every tensor perturbed ([`parity_data::perturbed`]).
fn weights(cfg: &MeasureVaeConfig, seed: u64) -> NamedTensors {
    let fresh = MeasureVae::new(cfg, seed, &Device::Cpu).unwrap();
    parity_data::perturbed(fresh.to_tensors().unwrap(), seed)
}

struct Compared {
    worst_name: String,
    worst: f64,
}

/// Worst over tensors of max |a - b| / max |b| (b = candle).
fn compare(native: &NamedTensors, candle: &NamedTensors) -> Compared {
    let mut out = Compared {
        worst_name: String::new(),
        worst: 0.0,
    };
    for (name, (_, b)) in candle {
        let a = &native[name].1;
        let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs() as f64));
        let diff = a
            .iter()
            .zip(b)
            .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
        assert!(scale > 0.0, "candle gradient of {name} is all zero");
        let rel = diff / scale;
        if rel > out.worst {
            out.worst = rel;
            out.worst_name = name.clone();
        }
    }
    out
}

fn candle_grads(
    model: &MeasureVae,
    tokens: &[u32],
    attrs: &[f32],
    teacher: bool,
    seed: u64,
) -> (crate::model::LossValues, NamedTensors) {
    let b = tokens.len() / 24;
    let tt = Tensor::from_vec(tokens.to_vec(), (b, 24), &Device::Cpu).unwrap();
    let at = Tensor::from_vec(attrs.to_vec(), (b, 4), &Device::Cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let out = model.forward(&tt, teacher, true, &mut rng).unwrap();
    let terms = LossTerms::new(&out, &tt, &at, &loss_config()).unwrap();
    let grads = terms.total.backward().unwrap();
    let mut g = NamedTensors::new();
    for (name, var) in model.named_vars() {
        let t = grads
            .get(var.as_tensor())
            .expect("every parameter has a gradient");
        g.insert(
            name,
            (
                t.dims().to_vec(),
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            ),
        );
    }
    (terms.values().unwrap(), g)
}

fn check_against_candle(cfg: &MeasureVaeConfig, b: usize, threads: usize) {
    let w = weights(cfg, 3);
    let model = MeasureVae::from_tensors(cfg, &w, &Device::Cpu).unwrap();
    let mut engine = NativeEngine::new(cfg, &w, 1e-3).unwrap();
    engine.set_threads(threads);
    let (tokens, attrs) = batch(b, 5);
    for teacher in [true, false] {
        let seed = 11 + teacher as u64;
        let (cv, cg) = candle_grads(&model, &tokens, &attrs, teacher, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let noise = StepNoise::draw(cfg, b, true, &mut rng);
        let nv = engine.forward_backward(
            &tokens,
            &attrs,
            teacher,
            &noise,
            &NativeLoss::from(&loss_config()),
            true,
        );
        let ng = engine.grad_tensors();
        let rel = |a: f32, b: f32| ((a - b).abs() / b.abs().max(1e-6)) as f64;
        let mut loss_err = rel(nv.total, cv.total)
            .max(rel(nv.reconstruction, cv.reconstruction))
            .max(rel(nv.kl, cv.kl));
        for (a, c) in nv.ar.iter().zip(&cv.ar) {
            loss_err = loss_err.max(rel(*a, *c));
        }
        assert_eq!(nv.accuracy, cv.accuracy, "token accuracy");
        let c = compare(&ng, &cg);
        println!(
            "B {b}, threads {threads}, teacher forcing {teacher}, logit_relu {}: loss parts rel. error {loss_err:.2e} \
             (native {:.6} candle {:.6}); worst gradient max|diff|/max|grad| {:.2e} ({})",
            cfg.logit_relu, nv.total, cv.total, c.worst, c.worst_name
        );
        assert!(loss_err < 1e-5, "loss parts differ by {loss_err}");
        assert!(
            c.worst < 1e-4,
            "gradient of {} differs by {}",
            c.worst_name,
            c.worst
        );
    }
}

#[test]
fn loss_and_every_gradient_match_candle() {
    check_against_candle(&MeasureVaeConfig::default(), 6, 1);
}

#[test]
fn two_threads_and_odd_batch_match_candle() {
    // 37 rows: split 19 + 18 over two threads.
    check_against_candle(&MeasureVaeConfig::default(), 37, 2);
}

#[test]
fn other_sizes_and_logit_relu_match_candle() {
    let cfg = MeasureVaeConfig {
        hidden: 24,
        layers: 3,
        latent: 6,
        head_hidden: 20,
        embedding: 7,
        logit_relu: true,
        ..Default::default()
    };
    check_against_candle(&cfg, 20, 2);
}

#[test]
fn adam_step_is_bitwise_candle_adam() {
    let cfg = MeasureVaeConfig {
        hidden: 16,
        latent: 4,
        head_hidden: 8,
        ..Default::default()
    };
    let w = weights(&cfg, 1);
    let model = MeasureVae::from_tensors(&cfg, &w, &Device::Cpu).unwrap();
    let (tokens, attrs) = batch(5, 2);
    let mut adam = Adam::new(
        model.named_vars(),
        AdamConfig {
            lr: 1e-3,
            ..Default::default()
        },
    )
    .unwrap();
    let mut engine = NativeEngine::new(&cfg, &w, 1e-3).unwrap();
    for step in 0..3 {
        let tt = Tensor::from_vec(tokens.clone(), (5, 24), &Device::Cpu).unwrap();
        let at = Tensor::from_vec(attrs.clone(), (5, 4), &Device::Cpu).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(step);
        let out = model.forward(&tt, true, true, &mut rng).unwrap();
        let terms = LossTerms::new(&out, &tt, &at, &loss_config()).unwrap();
        let grads = terms.total.backward().unwrap();
        // The same gradients through both optimizers.
        let mut flat = Vec::new();
        for (_, var) in model.named_vars() {
            flat.extend(
                grads
                    .get(var.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            );
        }
        adam.step(&grads).unwrap();
        engine.adam_step_with(&flat);
        assert_eq!(
            engine.to_tensors(),
            model.to_tensors().unwrap(),
            "parameters after step {step}"
        );
        let ns = engine.adam_state_tensors();
        let cs = adam.state_tensors().unwrap();
        assert_eq!(ns, cs, "Adam moments after step {step}");
        assert_eq!(engine.adam_step_count(), adam.step_count());
    }
    // State round trip from candle's names.
    let mut e2 = NativeEngine::new(&cfg, &model.to_tensors().unwrap(), 1e-3).unwrap();
    e2.load_adam_state(adam.step_count(), &adam.state_tensors().unwrap())
        .unwrap();
    assert_eq!(e2.adam_state_tensors(), adam.state_tensors().unwrap());
    assert!(e2.load_adam_state(1, &NamedTensors::new()).is_err());
}

/// 64 distinct measures with at least two notes: the real Bach measures of
/// tests/bach_overfit.rs (the candle version of this check) when the music21 wheel is there,
/// else the built-in synthetic melodies.
fn overfit_measures() -> (Vec<u32>, Vec<f32>, &'static str) {
    use crate::data::build::{build, BuildOptions, Collection, Silent};
    let (opts, what) = match crate::data::corpus::wheel_for_tests() {
        Some(wheel) => (
            BuildOptions {
                collection: Collection::Bach,
                corpus: Some(wheel),
                transpose: false,
                ..Default::default()
            },
            "Bach",
        ),
        None => (
            BuildOptions {
                synthetic_pieces: 200,
                transpose: false,
                ..Default::default()
            },
            "synthetic",
        ),
    };
    let ds: Dataset = build(&opts, &Silent).unwrap();
    let mut seen = HashSet::new();
    let idx: Vec<usize> = ds
        .indices(Split::Train)
        .into_iter()
        .step_by(7)
        .filter(|&i| ds.measures[i].onsets().count() >= 2 && seen.insert(ds.measures[i]))
        .take(64)
        .collect();
    assert_eq!(idx.len(), 64);
    let tokens = idx
        .iter()
        .flat_map(|&i| ds.measures[i].0.map(u32::from))
        .collect();
    let attrs = idx.iter().flat_map(|&i| ds.attributes[i]).collect();
    (tokens, attrs, what)
}

/// The full-size model memorises 64 measures through the native engine: greedy accuracy (no
/// teacher forcing, dropout off, sampled z) reaches 95% within 400 steps (lr 3e-3), as the
/// candle model does in tests/bach_overfit.rs.
#[test]
fn native_overfits_64_measures() {
    let cfg = MeasureVaeConfig::default();
    let model = MeasureVae::new(&cfg, 0, &Device::Cpu).unwrap();
    let mut engine = NativeEngine::new(&cfg, &model.to_tensors().unwrap(), 3e-3).unwrap();
    let (tokens, attrs, what) = overfit_measures();
    let loss = NativeLoss::from(&loss_config());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let start = std::time::Instant::now();
    let mut best = 0.0f32;
    for step in 1..=400 {
        let v = engine.train_step(&tokens, &attrs, &loss, step % 2 == 0, &mut rng);
        assert!(v.total.is_finite());
        if step % 25 == 0 {
            let e = engine.eval_step(&tokens, &attrs, &loss, &mut rng);
            best = best.max(e.accuracy);
            if best >= 0.95 {
                println!(
                    "{what}: greedy accuracy {best:.3} after {step} steps, {:.1} s",
                    start.elapsed().as_secs_f64()
                );
                return;
            }
        }
    }
    panic!("{what}: greedy accuracy only reached {best:.3} in 400 steps");
}

/// `training::train` with the native engine writes checkpoints the candle engine resumes (and
/// the other way round), and both engines follow the same run from one seed.
#[test]
fn training_resumes_across_engines() {
    use crate::training::{train, Engine, ModelKind, Quiet, Start, TrainConfig};
    let opts = crate::data::build::BuildOptions {
        synthetic_pieces: 60,
        ..Default::default()
    };
    let ds = crate::data::build::build(&opts, &crate::data::build::Silent).unwrap();
    let cfg = |engine, epochs| TrainConfig {
        epochs,
        batch: 32,
        lr: 1e-3,
        max_train_measures: Some(64),
        max_val_measures: Some(64),
        engine,
        ..TrainConfig::music(ModelKind::ArVae)
    };
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, first: Engine, second: Engine| {
        let out = dir.path().join(name);
        train(
            &ds,
            &cfg(first, 1),
            &out,
            Start::Fresh,
            &Device::Cpu,
            &Quiet,
        )
        .unwrap();
        let o = train(
            &ds,
            &cfg(second, 2),
            &out,
            Start::Resume,
            &Device::Cpu,
            &Quiet,
        )
        .unwrap();
        assert_eq!(o.history.len(), 2);
        o.model.to_tensors().unwrap()
    };
    let a = run("native-candle", Engine::Native, Engine::Candle);
    let b = run("candle-native", Engine::Candle, Engine::Native);
    let c = run("native-native", Engine::Native, Engine::Native);
    // Same seed, same batches, same masks: the runs differ by float rounding only.
    for other in [&b, &c] {
        for (name, (_, x)) in &a {
            let y = &other[name].1;
            let d = x
                .iter()
                .zip(y)
                .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(d < 1e-3, "{name} differs by {d} between engine orders");
        }
    }
}
