//! `arvae-trainer train`, `generate` and the demo's training part.

use anyhow::{bail, Context, Result};
use arvae_core::checkpoint::{Calibration, Checkpoint};
use arvae_core::data::{Dataset, Split};
use arvae_core::infer::steer::{match_unit, steer, SteerTarget};
use arvae_core::infer::InferModel;
use arvae_core::model::{LossValues, MeasureVae};
use arvae_core::music::attributes::{attributes, Attribute};
use arvae_core::music::midi_export::{tracks_to_smf_bytes, write_file, ExportOptions};
use arvae_core::music::midi_import::{self, MidiImportOptions};
use arvae_core::music::tokenize;
use arvae_core::training::{
    self, latent_for, Engine, EpochSummary, ModelKind, TrainConfig, TrainObserver,
};
use candle_core::Device;
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ModelArg {
    /// Attribute-regularized VAE (gamma 1, delta 10 by default).
    ArVae,
    /// β-VAE baseline: the same model without the attribute loss.
    BetaVae,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DeviceArg {
    /// The CPU (all cores).
    Cpu,
    /// The first CUDA GPU (build with `--features cuda`).
    Cuda,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum EngineArg {
    /// The hand-written CPU engine (the fastest on the CPU).
    Native,
    /// candle autograd (CPU or CUDA).
    Candle,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Dataset file from `data build`.
    #[arg(long)]
    data: PathBuf,
    /// Model to train.
    #[arg(long, value_enum, default_value = "ar-vae")]
    model: ModelArg,
    /// Run folder: model.safetensors, best.safetensors, log.csv.
    #[arg(long)]
    out: PathBuf,
    /// Epochs in total (a resumed run continues up to this number).
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// KL weight beta.
    #[arg(long, default_value_t = 0.001)]
    beta: f64,
    /// AR loss weight gamma (AR-VAE only).
    #[arg(long, default_value_t = 1.0)]
    gamma: f64,
    /// AR loss sharpness delta.
    #[arg(long, default_value_t = 10.0)]
    delta: f64,
    /// Seed of initialisation, shuffling, sampling and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Latent size.
    #[arg(long, default_value_t = 32)]
    latent: usize,
    /// Attributes to regularize, comma-separated (default: all four). Attribute l stays on
    /// latent dimension l: rhythmic_complexity 0, pitch_range 1, note_density 2, contour 3.
    #[arg(long, value_delimiter = ',', value_parser = parse_attribute)]
    attributes: Vec<Attribute>,
    /// Train on at most this many measures (images, for an image dataset) per epoch (a fresh
    /// random subset each epoch).
    #[arg(long)]
    max_measures: Option<usize>,
    /// Device.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Training implementation [default: native with --device cpu, candle with --device cuda].
    #[arg(long, value_enum)]
    engine: Option<EngineArg>,
    /// Continue the run in --out from its last complete epoch (same settings and data).
    #[arg(long)]
    resume: bool,
    /// Measures (images) of the test split evaluated at the end (stored in the checkpoint's
    /// metadata).
    #[arg(long, default_value_t = 8192)]
    eval_measures: usize,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Checkpoint (model.safetensors or best.safetensors of a run), or the name of a shipped
    /// model: `bach` (AR-VAE on the Bach chorales) or `folk` (AR-VAE on the folk tunes).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Target rhythmic complexity (0..1; weighted share of off-beat onsets).
    #[arg(long)]
    rhythmic_complexity: Option<f32>,
    /// Target pitch range (semitones / 26).
    #[arg(long)]
    pitch_range: Option<f32>,
    /// Target note density (onsets / 24).
    #[arg(long)]
    note_density: Option<f32>,
    /// Target contour ((last - first pitch) / 26).
    #[arg(long)]
    contour: Option<f32>,
    /// Number of bars (ignored with --encode: every bar of the input).
    #[arg(long, default_value_t = 8)]
    bars: usize,
    /// Seed of the latent values not set by a target.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Take the bars of this MIDI file and change only the attributes given.
    #[arg(long)]
    encode: Option<PathBuf>,
    /// Output MIDI file.
    #[arg(long)]
    out: PathBuf,
    /// Tempo of the MIDI file.
    #[arg(long, default_value_t = 120.0)]
    bpm: f64,
    /// Target matching, as the plugin does: search the regularized dimensions of each bar's
    /// code for the bar whose measured attributes are nearest the targets given (3 passes,
    /// up to 121 decodes a bar). Off: the paper's manipulation (dimensions set from the
    /// calibration only).
    #[arg(long)]
    match_targets: bool,
}

/// A checkpoint file, or a shipped model by name when no file of that name exists.
pub fn load_checkpoint_or_builtin(path: &Path) -> Result<Checkpoint> {
    if !path.exists() {
        if let Some(b) = path.to_str().and_then(arvae_core::builtin::builtin) {
            return Ok(Checkpoint::from_bytes(b.bytes, b.name)?);
        }
    }
    Checkpoint::load(path).with_context(|| {
        format!(
            "{} is neither a checkpoint nor a shipped model ({})",
            path.display(),
            arvae_core::builtin::names()
        )
    })
}

fn parse_attribute(s: &str) -> Result<Attribute, String> {
    Attribute::from_name(s).ok_or_else(|| {
        format!("unknown attribute '{s}' (rhythmic_complexity, pitch_range, note_density, contour)")
    })
}

pub fn device(d: DeviceArg) -> Result<Device> {
    match d {
        DeviceArg::Cpu => Ok(Device::Cpu),
        DeviceArg::Cuda => {
            if !cfg!(feature = "cuda") {
                bail!(
                    "this build has no CUDA support: rebuild with `--features cuda` (needs nvcc)"
                );
            }
            Device::new_cuda(0).context("cannot open CUDA device 0")
        }
    }
}

/// A progress bar per epoch with the loss parts.
struct BarObserver {
    bar: RefCell<Option<ProgressBar>>,
    attrs: Vec<Attribute>,
}

fn loss_line(v: &LossValues, attrs: &[Attribute]) -> String {
    let mut s = format!(
        "loss {:.3} rec {:.3} kl {:.2} acc {:.1}%",
        v.total,
        v.reconstruction,
        v.kl,
        100.0 * v.accuracy
    );
    for (a, x) in attrs.iter().zip(&v.ar) {
        let short: String = a.name().split('_').map(|w| &w[..1]).collect();
        s += &format!(" ar_{short} {x:.3}");
    }
    s
}

impl TrainObserver for BarObserver {
    fn epoch_start(&self, epoch: usize, batches: usize) {
        let b = ProgressBar::new(batches as u64)
            .with_style(
                indicatif::ProgressStyle::with_template(
                    "epoch {prefix:>3} [{bar:25}] {pos}/{len} {msg} eta {eta}",
                )
                .expect("template")
                .progress_chars("=> "),
            )
            .with_prefix(epoch.to_string());
        *self.bar.borrow_mut() = Some(b);
    }
    fn batch_done(&self, running: &LossValues, mps: f64) {
        if let Some(b) = self.bar.borrow().as_ref() {
            b.set_message(format!(
                "{} | {mps:.0} measures/s",
                loss_line(running, &self.attrs)
            ));
            b.inc(1);
        }
    }
    fn epoch_end(&self, s: &EpochSummary) {
        if let Some(b) = self.bar.borrow_mut().take() {
            b.finish_and_clear();
        }
        println!(
            "epoch {:>3}  train {}  |  val loss {:.3} acc {:.1}%{}  |  {:.0} measures/s, {:.0} s",
            s.epoch,
            loss_line(&s.train, &self.attrs),
            s.val.total,
            100.0 * s.val.accuracy,
            if s.best { " (best)" } else { "" },
            s.measures_per_s,
            s.seconds
        );
    }
}

pub fn train(a: TrainArgs) -> Result<()> {
    if arvae_core::data::images::is_image_dataset(&a.data) {
        if !a.attributes.is_empty() {
            bail!("--attributes names musical attributes; image models regularize every attribute of the dataset");
        }
        return crate::image_cmd::train(crate::image_cmd::TrainRequest {
            data: a.data,
            ar_vae: a.model == ModelArg::ArVae,
            out: a.out,
            epochs: a.epochs,
            batch: a.batch,
            lr: a.lr,
            beta: a.beta,
            gamma: a.gamma,
            delta: a.delta,
            seed: a.seed,
            latent: a.latent,
            max_images: a.max_measures,
            device: device(a.device)?,
            resume: a.resume,
            eval_images: a.eval_measures,
        });
    }
    let ds = Dataset::load(&a.data)?;
    let kind = if a.model == ModelArg::ArVae {
        ModelKind::ArVae
    } else {
        ModelKind::BetaVae
    };
    let mut cfg = TrainConfig::music(kind);
    cfg.epochs = a.epochs;
    cfg.batch = a.batch;
    cfg.lr = a.lr;
    cfg.beta = a.beta;
    cfg.gamma = if kind == ModelKind::ArVae {
        a.gamma
    } else {
        0.0
    };
    cfg.delta = a.delta;
    cfg.seed = a.seed;
    cfg.latent = a.latent;
    cfg.max_train_measures = a.max_measures;
    cfg.engine = match (a.engine, a.device) {
        (Some(EngineArg::Native), DeviceArg::Cuda) => {
            bail!("--engine native trains on the CPU only; use --engine candle with --device cuda")
        }
        (Some(EngineArg::Native), _) | (None, DeviceArg::Cpu) => Engine::Native,
        (Some(EngineArg::Candle), _) | (None, DeviceArg::Cuda) => Engine::Candle,
    };
    if kind == ModelKind::ArVae && !a.attributes.is_empty() {
        cfg.attributes = a.attributes.clone();
    } else if kind == ModelKind::BetaVae && !a.attributes.is_empty() {
        bail!("--attributes only applies to --model ar-vae (a β-VAE regularizes nothing)");
    }
    let dev = device(a.device)?;
    println!(
        "training {} on {} ({} train / {} val measures), {} epochs, batch {}, beta {}, gamma {}, delta {}, seed {}",
        if kind == ModelKind::ArVae { "AR-VAE" } else { "β-VAE" },
        a.data.display(),
        ds.count(Split::Train),
        ds.count(Split::Val),
        cfg.epochs,
        cfg.batch,
        cfg.beta,
        cfg.gamma,
        cfg.delta,
        cfg.seed
    );
    let obs = BarObserver {
        bar: RefCell::new(None),
        attrs: cfg
            .loss()
            .regularized
            .iter()
            .map(|r| Attribute::ALL[r.attribute])
            .collect(),
    };
    let out = training::train(&ds, &cfg, &a.out, a.resume, &dev, &obs)?;
    println!("evaluating on the test split ...");
    let e = crate::eval_cmd::record_evaluation(&a.out, &ds, a.eval_measures)?;
    crate::eval_cmd::print_evaluation(&e);
    println!(
        "wrote {} and {} (log: {})",
        out.paths.model.display(),
        out.paths.best.display(),
        out.paths.log.display()
    );
    Ok(())
}

/// Targets given on the command line, by attribute.
fn targets(a: &GenerateArgs) -> Vec<(Attribute, f32)> {
    [
        (Attribute::RhythmicComplexity, a.rhythmic_complexity),
        (Attribute::PitchRange, a.pitch_range),
        (Attribute::NoteDensity, a.note_density),
        (Attribute::Contour, a.contour),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect()
}

fn calibration_for<'a>(ck: &'a Checkpoint, path: &Path, a: Attribute) -> Result<&'a Calibration> {
    ck.meta
        .calibration
        .iter()
        .find(|c| c.attribute == a.name())
        .with_context(|| {
            format!(
                "{}: this model does not regularize {} (regularized: {}), so it has no knob for it",
                path.display(),
                a.name(),
                if ck.meta.calibration.is_empty() {
                    "none".to_string()
                } else {
                    ck.meta
                        .calibration
                        .iter()
                        .map(|c| c.attribute.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )
        })
}

fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    use rand::Rng;
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

pub fn generate(a: GenerateArgs) -> Result<()> {
    let ck = load_checkpoint_or_builtin(&a.checkpoint)?;
    let model = MeasureVae::from_checkpoint(&ck, &Device::Cpu)
        .with_context(|| format!("{}: cannot build the model", a.checkpoint.display()))?;
    let d = model.config().latent;
    let tg = targets(&a);
    let mut set = Vec::new();
    for &(attr, value) in &tg {
        let (lo, hi) = attr.bounds();
        if !(lo..=hi).contains(&value) {
            bail!(
                "--{} {value} is outside {lo}..{hi}",
                attr.name().replace('_', "-")
            );
        }
        let cal = calibration_for(&ck, &a.checkpoint, attr)?;
        set.push((cal.latent_dim, latent_for(cal, value), attr, value));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let mut z: Vec<f32> = if let Some(input) = &a.encode {
        let (melody, _) = midi_import::read_file(input, &MidiImportOptions { track: None })?;
        let ms = tokenize::measures(&melody)?;
        let (means, _) = training::latents(&model, &ms, 256, a.seed)?;
        means
    } else {
        (0..a.bars * d).map(|_| standard_normal(&mut rng)).collect()
    };
    for row in z.chunks_mut(d) {
        for &(dim, v, _, _) in &set {
            row[dim] = v;
        }
    }
    let mut measures = training::decode(&model, &z)?;
    if a.match_targets && !set.is_empty() {
        let mut infer = InferModel::from_checkpoint(&ck)?;
        let targets: Vec<SteerTarget> = set
            .iter()
            .map(|&(dim, _, attr, value)| {
                let cal = calibration_for(&ck, &a.checkpoint, attr).expect("checked above");
                let spread = |f: fn(&(f32, f32)) -> f32| {
                    let v = cal.points.iter().map(f);
                    v.clone().fold(f32::MIN, f32::max) - v.fold(f32::MAX, f32::min)
                };
                SteerTarget {
                    attribute: attr,
                    dim,
                    target: value,
                    scale: match_unit(attr, spread(|p| p.1)),
                    step: spread(|p| p.0).abs().max(0.5),
                }
            })
            .collect();
        for (row, m) in z.chunks_mut(d).zip(measures.iter_mut()) {
            steer(&mut infer, row, &targets, 3, m)?;
        }
    }
    write_file(
        &a.out,
        &measures,
        &ExportOptions {
            bpm: a.bpm,
            ..Default::default()
        },
    )
    .with_context(|| format!("cannot write {}", a.out.display()))?;
    println!("bar  rhythmic_complexity  pitch_range  note_density  contour");
    for (i, m) in measures.iter().enumerate() {
        let v = attributes(m);
        println!(
            "{:>3}  {:>19.3}  {:>11.3}  {:>12.3}  {:>7.3}",
            i + 1,
            v[0],
            v[1],
            v[2],
            v[3]
        );
    }
    if !tg.is_empty() {
        let t: Vec<String> = tg
            .iter()
            .map(|(k, v)| format!("{} {v}", k.name()))
            .collect();
        println!("targets: {}", t.join(", "));
    }
    println!("wrote {} bars to {}", measures.len(), a.out.display());
    Ok(())
}

/// The demo's training part: AR-VAE on the synthetic set, attribute order, MIDI sweeps.
pub fn demo_train(ds: &Dataset, out: &Path, epochs: usize) -> Result<()> {
    let cfg = TrainConfig::demo(ModelKind::ArVae, epochs);
    let run = out.join("ar-vae");
    let resume = run.join("model.safetensors").is_file();
    println!(
        "\ntraining AR-VAE on {} synthetic training measures: {} epochs, batch {}, lr {} (a short demo run)",
        ds.count(Split::Train),
        cfg.epochs,
        cfg.batch,
        cfg.lr
    );
    let obs = BarObserver {
        bar: RefCell::new(None),
        attrs: Attribute::ALL.to_vec(),
    };
    let trained = training::train(ds, &cfg, &run, resume, &Device::Cpu, &obs)?;
    println!(
        "\nSpearman rho between each regularized dimension and its attribute (validation split):"
    );
    for (a, dim, rho) in training::attribute_order(&trained.model, ds, &Attribute::ALL)? {
        println!("  {:<20} dim {dim}  rho {rho:+.3}", a.name());
    }
    let ck = Checkpoint::load(&trained.paths.model)?;
    let d = trained.model.config().latent;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let base: Vec<f32> = (0..d).map(|_| standard_normal(&mut rng)).collect();
    let mut tracks = Vec::new();
    println!("\nsweeps (8 bars each, target -> measured):");
    for a in Attribute::ALL {
        let cal = calibration_for(&ck, &trained.paths.model, a)?;
        let (lo, hi) = (cal.points[1].1, cal.points[cal.points.len() - 2].1);
        let targets: Vec<f32> = (0..8).map(|i| lo + (hi - lo) * i as f32 / 7.0).collect();
        let z: Vec<f32> = targets
            .iter()
            .flat_map(|&t| {
                let mut row = base.clone();
                row[cal.latent_dim] = latent_for(cal, t);
                row
            })
            .collect();
        let ms = training::decode(&trained.model, &z)?;
        let got: Vec<String> = targets
            .iter()
            .zip(&ms)
            .map(|(t, m)| format!("{t:.2}->{:.2}", a.of(m)))
            .collect();
        println!("  {:<20} {}", a.name(), got.join(" "));
        let path = out.join(format!("sweep_{}.mid", a.name()));
        write_file(&path, &ms, &ExportOptions::default())
            .with_context(|| format!("cannot write {}", path.display()))?;
        tracks.push((a.name().to_string(), ms));
    }
    let all = out.join("sweeps.mid");
    std::fs::write(
        &all,
        tracks_to_smf_bytes(&tracks, &ExportOptions::default()),
    )
    .with_context(|| format!("cannot write {}", all.display()))?;
    println!(
        "\nwrote {}/sweep_<attribute>.mid and {} (one track per attribute)",
        out.display(),
        all.display()
    );
    println!("checkpoint: {}  (try: arvae-trainer generate --checkpoint {} --note-density 0.3 --out melody.mid)", trained.paths.model.display(), trained.paths.model.display());
    Ok(())
}
