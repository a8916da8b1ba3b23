//! The candle engine on a CUDA GPU against the native CPU engine: one training step's forward
//! and backward pass on the same batch, from the same weights and with the same randomness
//! (dropout masks, the reparameterisation noise), give the same loss parts and the same gradient
//! of every parameter. The setup is the CPU parity test's (core/src/native/tests.rs).
//!
//! Only in a `--features cuda` build, and only where a GPU is usable (`arvae_core::cuda::probe`):
//! elsewhere it prints a line starting with `SKIPPED` and passes. Run it with
//! `scripts/build-cuda.sh -- test --release -p arvae-core --features cuda --test cuda_parity -- --nocapture`.
//!
//! Tolerances: loss parts within 1e-4 relative, every gradient within 1e-3 of its tensor's
//! largest entry (max |cuda - native| / max |native|); the CPU test asks 1e-5 and 1e-4, the GPU
//! sums in other orders (parallel reductions, cuBLAS) in f32. TF32 matmuls are switched off.
#![cfg(feature = "cuda")]

use arvae_core::checkpoint::NamedTensors;
use arvae_core::model::{LossConfig, LossTerms, LossValues, MeasureVae};
use arvae_core::music_model::MeasureVaeConfig;
use arvae_core::native::{NativeEngine, NativeLoss, StepNoise};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const LOSS_TOLERANCE: f64 = 1e-4;
const GRADIENT_TOLERANCE: f64 = 1e-3;

#[path = "support/parity_data.rs"]
mod parity_data;
use parity_data::batch;

/// Freshly initialised weights with every tensor perturbed ([`parity_data::perturbed`]).
fn weights(cfg: &MeasureVaeConfig, seed: u64) -> NamedTensors {
    let fresh = MeasureVae::new(cfg, seed, &Device::Cpu).unwrap();
    parity_data::perturbed(fresh.to_tensors().unwrap(), seed)
}

/// Loss parts and every parameter's gradient of candle's forward and backward on `dev`.
fn candle_step(
    model: &MeasureVae,
    tokens: &[u32],
    attrs: &[f32],
    teacher: bool,
    seed: u64,
    loss: &LossConfig,
) -> (LossValues, NamedTensors) {
    let dev = model.device();
    let b = tokens.len() / 24;
    let tt = Tensor::from_vec(tokens.to_vec(), (b, 24), dev).unwrap();
    let at = Tensor::from_vec(attrs.to_vec(), (b, 4), dev).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let out = model.forward(&tt, teacher, true, &mut rng).unwrap();
    let terms = LossTerms::new(&out, &tt, &at, loss).unwrap();
    let grads = terms.total.backward().unwrap();
    let mut g = NamedTensors::new();
    for (name, var) in model.named_vars() {
        let t = grads
            .get(var.as_tensor())
            .expect("a gradient per parameter");
        let v = t.flatten_all().unwrap().to_device(&Device::Cpu).unwrap();
        g.insert(name, (t.dims().to_vec(), v.to_vec1::<f32>().unwrap()));
    }
    (terms.values().unwrap(), g)
}

#[test]
fn one_training_step_on_cuda_matches_the_native_engine() {
    let info = match arvae_core::cuda::probe() {
        Ok(info) => info,
        Err(why) => {
            println!("SKIPPED cuda_parity: no usable CUDA GPU ({why})");
            return;
        }
    };
    let gpu = Device::new_cuda(0).expect("CUDA device 0 (the probe found it)");
    candle_core::cuda::set_gemm_reduced_precision_f32(false);
    println!("cuda_parity on {info}");
    let loss = LossConfig::ar_vae_music();
    let cfg = MeasureVaeConfig::default();
    let b = 37;
    let w = weights(&cfg, 3);
    let model = MeasureVae::from_tensors(&cfg, &w, &gpu).unwrap();
    let mut engine = NativeEngine::new(&cfg, &w, 1e-3).unwrap();
    let (tokens, attrs) = batch(b, 5);
    for teacher in [true, false] {
        let seed = 11 + teacher as u64;
        let (cv, cg) = candle_step(&model, &tokens, &attrs, teacher, seed, &loss);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let noise = StepNoise::draw(&cfg, b, true, &mut rng);
        let nv = engine.forward_backward(
            &tokens,
            &attrs,
            teacher,
            &noise,
            &NativeLoss::from(&loss),
            true,
        );
        let ng = engine.grad_tensors();
        let rel = |a: f32, c: f32| ((a - c).abs() / c.abs().max(1e-6)) as f64;
        let mut loss_err = rel(cv.total, nv.total)
            .max(rel(cv.reconstruction, nv.reconstruction))
            .max(rel(cv.kl, nv.kl));
        for (c, n) in cv.ar.iter().zip(&nv.ar) {
            loss_err = loss_err.max(rel(*c, *n));
        }
        let (mut worst, mut worst_name) = (0.0f64, String::new());
        for (name, (_, n)) in &ng {
            let c = &cg[name].1;
            assert_eq!(c.len(), n.len(), "{name}");
            let scale = n.iter().fold(0.0f64, |m, x| m.max(x.abs() as f64));
            assert!(scale > 0.0, "native gradient of {name} is all zero");
            let diff = c
                .iter()
                .zip(n)
                .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
            if diff / scale > worst {
                worst = diff / scale;
                worst_name = name.clone();
            }
        }
        println!(
            "B {b}, teacher forcing {teacher}: loss cuda {:.6} native {:.6}, loss parts rel. error {loss_err:.2e} \
             (tolerance {LOSS_TOLERANCE:.0e}); worst gradient max|diff|/max|grad| {worst:.2e} ({worst_name}; tolerance {GRADIENT_TOLERANCE:.0e})",
            cv.total, nv.total
        );
        assert_eq!(cg.len(), ng.len(), "the same parameters");
        assert!(
            (cv.accuracy - nv.accuracy).abs() <= 1.0 / (b * 24) as f32,
            "token accuracy {} against {}",
            cv.accuracy,
            nv.accuracy
        );
        assert!(loss_err < LOSS_TOLERANCE, "loss parts differ by {loss_err}");
        assert!(
            worst < GRADIENT_TOLERANCE,
            "gradient of {worst_name} differs by {worst}"
        );
    }
}
