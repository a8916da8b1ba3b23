//! Latency of the allocation-free MeasureVAE decoder and encoder at batch 1 on one thread.
//!
//! `cargo run --release -p arvae-core --no-default-features --example infer_bench [-- runs [checkpoint]]`
//!
//! Without a checkpoint path it uses random weights of the default sizes (the speed does not
//! depend on the values). Prints one line per figure: median, p10 and p90 in microseconds,
//! for every kernel variant this CPU supports (the first is the one the plugin uses).

use std::hint::black_box;
use std::time::Instant;

use arvae_core::checkpoint::{Checkpoint, MeasureVaeConfig};
use arvae_core::infer::{random_checkpoint, InferModel, Kernel};
use arvae_core::music::Measure;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn report(what: &str, kernel: Kernel, mut us: Vec<f64>) {
    us.sort_by(|a, b| a.total_cmp(b));
    let n = us.len();
    println!(
        "{what} [{}] median {:.1} us ({n} runs)",
        kernel.name(),
        percentile(&us, 0.5)
    );
    println!(
        "{what} [{}] p10 {:.1} us",
        kernel.name(),
        percentile(&us, 0.1)
    );
    println!(
        "{what} [{}] p90 {:.1} us",
        kernel.name(),
        percentile(&us, 0.9)
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let ck = match args.next() {
        Some(path) => Checkpoint::load(path)?,
        None => random_checkpoint(&MeasureVaeConfig::default(), 1),
    };
    let mut kernels = vec![Kernel::detect()];
    kernels.extend(
        Kernel::ALL
            .into_iter()
            .filter(|k| k.is_supported() && *k != Kernel::detect()),
    );
    let zs: Vec<Vec<f32>> = (0..64)
        .map(|i| {
            (0..32)
                .map(|j| ((i * 32 + j) as f32 * 0.731).sin() * 1.5)
                .collect()
        })
        .collect();
    for kernel in kernels {
        let mut model = InferModel::with_kernel(&ck, kernel)?;
        let latent = model.latent();
        let mut out = Measure::rest();
        let (mut mean, mut log_std) = (vec![0.0; latent], vec![0.0; latent]);
        let mut measures = Vec::with_capacity(zs.len());
        for z in &zs {
            model.decode(&z[..latent], &mut out)?;
            measures.push(out);
        }
        for _ in 0..100 {
            model.decode(&zs[0][..latent], &mut out)?;
            model.encode(&measures[0], &mut mean, &mut log_std)?;
        }
        // Decode and encode in separate loops, so each keeps its weights in the core's caches.
        let mut dec = Vec::with_capacity(runs);
        for i in 0..runs {
            let z = &zs[i % zs.len()][..latent];
            let t = Instant::now();
            model.decode(black_box(z), &mut out)?;
            dec.push(t.elapsed().as_secs_f64() * 1e6);
            black_box(&out);
        }
        let mut enc = Vec::with_capacity(runs);
        for i in 0..runs {
            let m = &measures[i % measures.len()];
            let t = Instant::now();
            model.encode(black_box(m), &mut mean, &mut log_std)?;
            enc.push(t.elapsed().as_secs_f64() * 1e6);
            black_box(&mean);
        }
        report("decode", kernel, dec);
        report("encode", kernel, enc);
    }
    Ok(())
}
