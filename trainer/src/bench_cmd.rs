//! `arvae-trainer bench`: training throughput of both engines on the same batches, latency of
//! the real-time decoder and encoder, peak memory; optionally exports the batches for
//! `scripts/bench_torch.py`.

use anyhow::{Context, Result};
use arvae_core::checkpoint::{Checkpoint, NamedTensors};
use arvae_core::data::build::{build, BuildOptions, Silent};
use arvae_core::data::npz::{write_npz, NpyArray, NpyData};
use arvae_core::data::{Dataset, Split};
use arvae_core::infer::InferModel;
use arvae_core::model::{
    teacher_forcing_coin, train_step, Adam, AdamConfig, Batch, LossConfig, MeasureVae,
};
use arvae_core::music::Measure;
use arvae_core::music_model::MeasureVaeConfig;
use arvae_core::native::{dataset_batch, NativeEngine, NativeLoss};
use candle_core::{Device, Tensor};
use clap::Args;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    /// Dataset file (e.g. data/bach.arvae); without it, the synthetic set built in memory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Training batch size.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Timed training steps per engine.
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// Untimed warm-up steps per engine before them.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Engines to time, comma-separated (native, candle).
    #[arg(long, value_delimiter = ',', default_value = "native,candle")]
    engines: Vec<String>,
    /// Decoder/encoder calls timed (0: skip).
    #[arg(long, default_value_t = 300)]
    infer_runs: usize,
    /// Write the training batches (tokens, attributes, teacher-forcing coins) to this .npz
    /// for scripts/bench_torch.py.
    #[arg(long)]
    export: Option<PathBuf>,
    /// Seed of the model, the batches and the randomness.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// CPU time (user + system) of this process in seconds, from /proc (0 elsewhere): on a shared
/// machine it measures the work independently of other processes.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

fn vm_hwm_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (q(0.5), q(0.1), q(0.9))
}

/// One training step of an engine on the dataset rows given, with a teacher-forcing coin.
type StepFn<'a> = Box<dyn FnMut(&[usize], bool, &mut ChaCha8Rng) -> Result<f32> + 'a>;

pub fn bench(a: BenchArgs) -> Result<()> {
    let (ds, what) = load_bench_data(&a)?;
    let mut idx = ds.indices(Split::Train);
    anyhow::ensure!(!idx.is_empty(), "the dataset has no training measures");
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(a.seed));
    let batches = training_batches(&a, &idx);
    let cfg = MeasureVaeConfig::default();
    let loss = LossConfig::ar_vae_music();
    let init = MeasureVae::new(&cfg, a.seed, &Device::Cpu)?.to_tensors()?;
    println!(
        "bench: {what}, batch {}, {} warm-up + {} timed steps, rayon threads {}, load average {}",
        a.batch,
        a.warmup,
        a.steps,
        rayon::current_num_threads(),
        load_average()
    );
    let mut coins = Vec::new();
    for engine in &a.engines {
        let mut run = engine_step(engine, &cfg, &init, &loss, &ds)?;
        coins = time_engine(&a, engine, &mut run, &batches)?;
    }
    if let Some(path) = &a.export {
        export_batches(&a, path, &ds, &batches, coins)?;
    }
    if a.infer_runs > 0 {
        // The shipped Bach model: the lockstep decoder's speed depends on how often a beat
        // ends in a hold, which random weights almost never do (its worst case, also shown).
        let trained = arvae_core::builtin::load_checkpoint(std::path::Path::new("bach"))?;
        for (name, ck) in [
            ("bach model", trained),
            ("random weights", Checkpoint::untrained(&cfg, a.seed)),
        ] {
            bench_infer(&a, &ds, &idx, name, &ck)?;
        }
    }
    match vm_hwm_kib() {
        Some(k) => println!("peak memory (VmHWM): {:.0} MiB", k as f64 / 1024.0),
        None => println!("peak memory (VmHWM): unavailable"),
    }
    Ok(())
}

/// The dataset of `--data`, or the synthetic set built in memory, with a name to print.
fn load_bench_data(a: &BenchArgs) -> Result<(Dataset, String)> {
    Ok(match &a.data {
        Some(p) => (Dataset::load(p)?, p.display().to_string()),
        None => (
            build(&BuildOptions::default(), &Silent).context("building the synthetic set")?,
            "synthetic (built in memory)".to_string(),
        ),
    })
}

/// The warm-up and timed batches: consecutive runs of `idx`, wrapping around.
fn training_batches(a: &BenchArgs, idx: &[usize]) -> Vec<Vec<usize>> {
    (0..a.warmup + a.steps)
        .map(|i| {
            (0..a.batch)
                .map(|j| idx[(i * a.batch + j) % idx.len()])
                .collect()
        })
        .collect()
}

/// The training step of `engine` (native or candle), starting from the weights `init`.
fn engine_step<'a>(
    engine: &str,
    cfg: &MeasureVaeConfig,
    init: &NamedTensors,
    loss: &'a LossConfig,
    ds: &'a Dataset,
) -> Result<StepFn<'a>> {
    Ok(match engine {
        "native" => {
            let mut e = NativeEngine::new(cfg, init, 1e-4).map_err(anyhow::Error::msg)?;
            let nl = NativeLoss::from(loss);
            Box::new(move |b, tf, rng| {
                let (t, at) = dataset_batch(ds, b);
                Ok(e.train_step(&t, &at, &nl, tf, rng).total)
            })
        }
        "candle" => {
            let model = MeasureVae::from_tensors(cfg, init, &Device::Cpu)?;
            let mut adam = Adam::new(model.named_vars(), AdamConfig::default())?;
            Box::new(move |b, tf, rng| {
                let (t, at) = dataset_batch(ds, b);
                let batch = Batch {
                    tokens: Tensor::from_vec(t, (b.len(), 24), &Device::Cpu)?,
                    attributes: Tensor::from_vec(at, (b.len(), 4), &Device::Cpu)?,
                };
                Ok(train_step(&model, &mut adam, &batch, loss, tf, rng)?.total)
            })
        }
        other => anyhow::bail!("unknown engine '{other}' (native, candle)"),
    })
}

/// Runs `run` on all batches, timing those after the warm-up, prints the throughput line and
/// returns the teacher-forcing coins used.
fn time_engine(
    a: &BenchArgs,
    engine: &str,
    run: &mut StepFn,
    batches: &[Vec<usize>],
) -> Result<Vec<i64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed ^ 0x5eed);
    let mut coins = Vec::new();
    let mut last = 0.0;
    let (mut t0, mut c0) = (Instant::now(), cpu_seconds());
    for (i, b) in batches.iter().enumerate() {
        if i == a.warmup {
            (t0, c0) = (Instant::now(), cpu_seconds());
        }
        let tf = teacher_forcing_coin(&mut rng);
        coins.push(tf as i64);
        last = run(b, tf, &mut rng)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    println!(
        "train {engine}: {:.1} measures/s ({:.3} s/step, {:.3} CPU s/step, batch {}, last loss {last:.4}, load average {})",
        (a.steps * a.batch) as f64 / secs,
        secs / a.steps.max(1) as f64,
        cpu / a.steps.max(1) as f64,
        a.batch,
        load_average()
    );
    Ok(coins)
}

/// Writes the batches (tokens, attributes, teacher-forcing coins, config) to `path` for
/// scripts/bench_torch.py; without timed engines the coins are drawn here.
fn export_batches(
    a: &BenchArgs,
    path: &Path,
    ds: &Dataset,
    batches: &[Vec<usize>],
    mut coins: Vec<i64>,
) -> Result<()> {
    let n_batches = batches.len();
    let flat: Vec<usize> = batches.iter().flatten().copied().collect();
    let (tokens, attrs) = dataset_batch(ds, &flat);
    if coins.is_empty() {
        let mut rng = ChaCha8Rng::seed_from_u64(a.seed ^ 0x5eed);
        coins = (0..n_batches).map(|_| rng.gen_bool(0.5) as i64).collect();
    }
    let n = flat.len();
    let arr = |shape: Vec<usize>, d: NpyData| NpyArray::new(shape, d).map_err(anyhow::Error::msg);
    write_npz(
        path,
        &[
            (
                "tokens",
                &arr(
                    vec![n, 24],
                    NpyData::I64(tokens.iter().map(|&x| x as i64).collect()),
                )?,
            ),
            ("attributes", &NpyArray::f32_2d(n, 4, attrs)),
            ("teacher_forcing", &NpyArray::i64_1d(coins)),
            (
                "config",
                &NpyArray::i64_1d(vec![a.batch as i64, a.warmup as i64, a.steps as i64]),
            ),
        ],
    )?;
    println!("exported {n_batches} batches to {}", path.display());
    Ok(())
}

/// Decode (lockstep and plain, alternating, so both see the same machine) and encode (full
/// and mean only) latency at batch 1 on this thread, one line per figure.
fn bench_infer(
    a: &BenchArgs,
    ds: &Dataset,
    idx: &[usize],
    name: &str,
    ck: &arvae_core::checkpoint::Checkpoint,
) -> Result<()> {
    let mut m = InferModel::from_checkpoint(ck)?;
    let latent = m.latent();
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let mut out = Measure([129; 24]);
    let (mut lock, mut plain) = (Vec::new(), Vec::new());
    for i in 0..a.infer_runs + 10 {
        let z: Vec<f32> = (0..latent).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let t = Instant::now();
        m.decode(&z, &mut out)?;
        let t_lock = t.elapsed().as_secs_f64() * 1e6;
        let t = Instant::now();
        m.decode_plain(&z, &mut out, None)?;
        let t_plain = t.elapsed().as_secs_f64() * 1e6;
        if i >= 10 {
            lock.push(t_lock);
            plain.push(t_plain);
        }
    }
    let runs = a.infer_runs;
    let (med, p10, p90) = percentiles(lock);
    let (pmed, pp10, pp90) = percentiles(plain);
    println!(
        "decode ({name}, infer, batch 1, {:?}, beats side by side): median {med:.0} us, p10 {p10:.0} us, p90 {p90:.0} us ({runs} runs; {:.2}x the plain decoder)",
        m.kernel(),
        pmed / med
    );
    println!(
        "decode ({name}, infer, batch 1, plain: one beat after the other): median {pmed:.0} us, p10 {pp10:.0} us, p90 {pp90:.0} us ({runs} runs)"
    );
    let (mut mean, mut log_std) = (vec![0.0; latent], vec![0.0; latent]);
    let (mut full, mut only) = (Vec::new(), Vec::new());
    for i in 0..a.infer_runs + 10 {
        let meas = ds.measures[idx[i % idx.len()]];
        let t = Instant::now();
        m.encode(&meas, &mut mean, &mut log_std)?;
        let t_full = t.elapsed().as_secs_f64() * 1e6;
        let t = Instant::now();
        m.encode_mean(&meas, &mut mean)?;
        let t_mean = t.elapsed().as_secs_f64() * 1e6;
        if i >= 10 {
            full.push(t_full);
            only.push(t_mean);
        }
    }
    let (med, p10, p90) = percentiles(full);
    println!(
        "encode ({name}, infer, batch 1, mean and log-std): median {med:.0} us, p10 {p10:.0} us, p90 {p90:.0} us ({runs} runs)"
    );
    let (med, p10, p90) = percentiles(only);
    println!(
        "encode ({name}, infer, batch 1, mean only: transform mode): median {med:.0} us, p10 {p10:.0} us, p90 {p90:.0} us ({runs} runs)"
    );
    Ok(())
}
