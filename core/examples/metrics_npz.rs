//! Disentanglement metrics of a latents/attributes `.npz`, or a synthetic `.npz` for tests.
//!
//! ```text
//! metrics_npz IN.npz [--json OUT.json] [--seed S] [--repeat R]
//! metrics_npz --write-synthetic OUT.npz [--n N] [--d D] [--seed S] [--f64]
//! ```
//! The first form prints a table, the time taken, and writes the report as JSON.
//! `--repeat` runs the computation R times and reports the best time (for benchmarks).
//! The input holds `z` (N x D), optionally `z_mean`, `attributes` (N x K), optionally
//! `attribute_names` and `regularized_dims` (see `arvae_core::metrics::MetricsData`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use arvae_core::metrics::{synthetic::synthetic, MetricsConfig, MetricsData};

fn usage() -> ExitCode {
    eprintln!(
        "usage: metrics_npz IN.npz [--json OUT.json] [--seed S] [--repeat R]\n       \
         metrics_npz --write-synthetic OUT.npz [--n N] [--d D] [--seed S] [--f64]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut input: Option<PathBuf> = None;
    let mut json: Option<PathBuf> = None;
    let mut synth: Option<PathBuf> = None;
    let (mut n, mut d, mut seed, mut repeat, mut f64_latents) =
        (20_000usize, 32usize, 0u64, 1usize, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| -> Option<String> {
            let v = it.next().cloned();
            if v.is_none() {
                eprintln!("{name} needs a value");
            }
            v
        };
        let ok = match a.as_str() {
            "--json" => val("--json").map(|v| json = Some(v.into())).is_some(),
            "--write-synthetic" => val("--write-synthetic")
                .map(|v| synth = Some(v.into()))
                .is_some(),
            "--n" => val("--n")
                .and_then(|v| v.parse().ok())
                .map(|v| n = v)
                .is_some(),
            "--d" => val("--d")
                .and_then(|v| v.parse().ok())
                .map(|v| d = v)
                .is_some(),
            "--seed" => val("--seed")
                .and_then(|v| v.parse().ok())
                .map(|v| seed = v)
                .is_some(),
            "--repeat" => val("--repeat")
                .and_then(|v| v.parse().ok())
                .map(|v| repeat = v)
                .is_some(),
            "--f64" => {
                f64_latents = true;
                true
            }
            "-h" | "--help" => return usage(),
            s if !s.starts_with("--") && input.is_none() => {
                input = Some(s.into());
                true
            }
            _ => false,
        };
        if !ok {
            eprintln!("bad argument: {a}");
            return usage();
        }
    }

    if let Some(out) = synth {
        if d < 5 {
            eprintln!("--d must be at least 5");
            return ExitCode::from(2);
        }
        let data = synthetic(n, d, seed);
        if let Err(e) = data.write_npz(&out, !f64_latents) {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
        println!(
            "wrote {} (N = {n}, D = {d}, K = {}, seed {seed})",
            out.display(),
            data.names.len()
        );
        return ExitCode::SUCCESS;
    }

    let Some(input) = input else { return usage() };
    let t0 = Instant::now();
    let data = match MetricsData::read_npz(&input) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let t_read = t0.elapsed().as_secs_f64();
    let cfg = MetricsConfig {
        seed,
        ..MetricsConfig::default()
    };
    let mut best = f64::INFINITY;
    let mut report = None;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        match data.compute(&cfg) {
            Ok(r) => report = Some(r),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let report = report.expect("at least one run");
    print!("{}", report.to_table());
    println!(
        "time: read {t_read:.3} s, metrics {best:.3} s (best of {}, {} threads)",
        repeat.max(1),
        rayon::current_num_threads()
    );
    if let Some(out) = json {
        let text = serde_json::to_string_pretty(&report).expect("report serializes");
        if let Err(e) = std::fs::write(&out, text) {
            eprintln!("{}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", out.display());
    }
    ExitCode::SUCCESS
}
