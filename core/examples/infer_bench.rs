//! Latency of the allocation-free MeasureVAE decoder and encoder at batch 1 on one thread.
//!
//! `cargo run --release -p arvae-core --no-default-features --example infer_bench [-- runs [checkpoint]]`
//!
//! Without a checkpoint path it uses random weights of the default sizes. The speed of the
//! plain decoder and the encoder does not depend on the values; the lockstep decoder's does
//! (random weights rarely end a beat in a hold, so nearly every guess is wrong: its worst
//! case), so pass a trained model (`core/models/bach.safetensors`) for the figure users get.
//! Every kernel variant this CPU supports runs with f32 and f16 weights
//! (except the portable kernel with f16, whose software conversion is only a fallback), among
//! them `avx2+fma auto-vectorized` with f32: the implementation before the hand-written
//! kernels. The variants take turns in rounds of 50 calls (the first 5 of each round, with
//! caches still holding the previous variant's weights, are not counted), so a busy machine
//! slows all of them alike. Prints median, p10 and p90 in microseconds and each median's
//! ratio to the old one (to the first variant if the old one is filtered out).

use std::hint::black_box;
use std::time::Instant;

use arvae_core::checkpoint::Checkpoint;
use arvae_core::infer::steer::{steer, SteerTarget, MATCH_UNITS};
use arvae_core::infer::{InferModel, Kernel, Weights};
use arvae_core::music::token::HOLD;
use arvae_core::music::{Attribute, Measure};
use arvae_core::music_model::MeasureVaeConfig;

const ROUND: usize = 50;
const WARM: usize = 5;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

struct Variant {
    model: InferModel,
    measures: Vec<Measure>,
    dec: Vec<f64>,
    plain: Vec<f64>,
    enc: Vec<f64>,
    mean: Vec<f64>,
    /// Beats 1-3 of the measures decoded whose predecessor does not end in a hold (the
    /// lockstep decoder's first guess was wrong, so it decoded them again), of all.
    reruns: (usize, usize),
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let ck = match args.next() {
        Some(path) => Checkpoint::load(path)?,
        None => Checkpoint::untrained(&MeasureVaeConfig::default(), 1),
    };
    let zs: Vec<Vec<f32>> = (0..64)
        .map(|i| {
            (0..32)
                .map(|j| ((i * 32 + j) as f32 * 0.731).sin() * 1.5)
                .collect()
        })
        .collect();
    // `INFER_BENCH_ONLY=avx512/f16` (for profiling) keeps the variants whose "kernel/weights"
    // contains that text.
    let only = std::env::var("INFER_BENCH_ONLY").unwrap_or_default();
    let mut variants = Vec::new();
    for kernel in Kernel::ALL.into_iter().filter(|k| k.is_supported()) {
        for weights in [Weights::F32, Weights::F16] {
            if matches!(kernel, Kernel::Portable | Kernel::Avx2FmaAuto) && weights == Weights::F16
                || !format!("{}/{}", kernel.name(), weights.name()).contains(&only)
            {
                continue;
            }
            let mut model = InferModel::with_options(&ck, kernel, weights)?;
            let latent = model.latent();
            let mut out = Measure::rest();
            let mut measures = Vec::with_capacity(zs.len());
            for z in &zs {
                model.decode(&z[..latent], &mut out)?;
                measures.push(out);
            }
            variants.push(Variant {
                model,
                measures,
                dec: Vec::with_capacity(runs),
                plain: Vec::with_capacity(runs),
                mean: Vec::with_capacity(runs),
                reruns: (0, 0),
                enc: Vec::with_capacity(runs),
            });
        }
    }
    let mut done = 0;
    while done < runs {
        // Decode and encode in separate loops, so each keeps its weights in the core's caches.
        for v in &mut variants {
            let latent = v.model.latent();
            let mut out = Measure::rest();
            for i in 0..ROUND + WARM {
                let z = &zs[(done + i) % zs.len()][..latent];
                let t = Instant::now();
                v.model.decode(black_box(z), &mut out)?;
                let us = t.elapsed().as_secs_f64() * 1e6;
                black_box(&out);
                if i >= WARM {
                    v.dec.push(us);
                    v.reruns.0 += (1..4).filter(|b| out.0[b * 6 - 1] != HOLD).count();
                    v.reruns.1 += 3;
                }
            }
            for i in 0..ROUND + WARM {
                let z = &zs[(done + i) % zs.len()][..latent];
                let t = Instant::now();
                v.model.decode_plain(black_box(z), &mut out, None)?;
                let us = t.elapsed().as_secs_f64() * 1e6;
                black_box(&out);
                if i >= WARM {
                    v.plain.push(us);
                }
            }
            let (mut mean, mut log_std) = (vec![0.0; latent], vec![0.0; latent]);
            for i in 0..ROUND + WARM {
                let m = &v.measures[(done + i) % v.measures.len()];
                let t = Instant::now();
                v.model.encode(black_box(m), &mut mean, &mut log_std)?;
                let us = t.elapsed().as_secs_f64() * 1e6;
                black_box(&mean);
                if i >= WARM {
                    v.enc.push(us);
                }
            }
            for i in 0..ROUND + WARM {
                let m = &v.measures[(done + i) % v.measures.len()];
                let t = Instant::now();
                v.model.encode_mean(black_box(m), &mut mean)?;
                let us = t.elapsed().as_secs_f64() * 1e6;
                black_box(&mean);
                if i >= WARM {
                    v.mean.push(us);
                }
            }
        }
        done += ROUND;
    }
    let old =
        |v: &Variant| v.model.kernel() == Kernel::Avx2FmaAuto && v.model.weights() == Weights::F32;
    if variants.is_empty() {
        return Err(format!("no variant matches INFER_BENCH_ONLY={only}").into());
    }
    let base = variants.iter().position(old).unwrap_or(0);
    for v in &mut variants {
        for us in [&mut v.dec, &mut v.plain, &mut v.enc, &mut v.mean] {
            us.sort_by(|a, b| a.total_cmp(b));
        }
    }
    // Every decode figure is against the old default's plain (one beat after the other)
    // decode; encode against its encode.
    let base_dec = percentile(&variants[base].plain, 0.5);
    let base_enc = percentile(&variants[base].enc, 0.5);
    println!(
        "{:<7} {:<26} {:<4} {:>8} {:>8} {:>8} {:>9}  ({} runs each; x = old median / median)\n\
         (plain: beats one after the other; decode: beats side by side, the default; \
         mean: encode_mean, transform mode; x against the old plain decode and the old encode)",
        "what", "kernel", "w", "median", "p10", "p90", "x old", runs
    );
    for (i, what) in ["plain", "decode", "encode", "mean"]
        .into_iter()
        .enumerate()
    {
        for v in &variants {
            let us = [&v.plain, &v.dec, &v.enc, &v.mean][i];
            let base = if i >= 2 { base_enc } else { base_dec };
            let med = percentile(us, 0.5);
            println!(
                "{what:<7} {:<26} {:<4} {med:>8.1} {:>8.1} {:>8.1} {:>8.2}x{}",
                v.model.kernel().name(),
                v.model.weights().name(),
                percentile(us, 0.1),
                percentile(us, 0.9),
                base / med,
                if v.model.kernel() == Kernel::detect() && v.model.weights() == Weights::F32 {
                    "  <- default"
                } else if old(v) {
                    "  <- old default"
                } else {
                    ""
                }
            );
        }
    }

    if let Some(v) = variants
        .iter()
        .find(|v| v.model.kernel() == Kernel::detect())
    {
        println!(
            "lockstep decoder: {} of {} beats after the first of a measure follow a beat that does \
             not end in a hold (decoded again)",
            v.reruns.0, v.reruns.1
        );
    }

    // Target matching as the plugin's worker runs it for every bar (default kernel, f32): the
    // targets are what a random code decodes to, moved by one step each, so the search works.
    let mut model = InferModel::from_checkpoint(&ck)?;
    let latent = model.latent();
    let mut times = Vec::new();
    let mut out = Measure::rest();
    for i in 0..(runs / 20).max(20) {
        let z0 = &zs[i % zs.len()][..latent];
        model.decode(z0, &mut out)?;
        let now = arvae_core::music::attributes::attributes(&out);
        let targets: Vec<SteerTarget> = Attribute::ALL
            .iter()
            .map(|&a| SteerTarget {
                attribute: a,
                dim: a.index(),
                target: now[a.index()]
                    + MATCH_UNITS[a.index()] * if i % 2 == 0 { 1.5 } else { -1.5 },
                scale: MATCH_UNITS[a.index()],
                step: 3.0,
            })
            .collect();
        let mut z = z0.to_vec();
        let t = Instant::now();
        steer(&mut model, black_box(&mut z), &targets, 3, &mut out)?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "match   {:<26} {:<4} {:>8.1} {:>8.1} {:>8.1}   (3 passes, <= 121 decodes; one bar at 300 BPM is 800000 us; max {:.1})",
        Kernel::detect().name(),
        "f32",
        percentile(&times, 0.5),
        percentile(&times, 0.1),
        percentile(&times, 0.9),
        times[times.len() - 1]
    );
    Ok(())
}
