//! `arvae-trainer train`, `generate` and the demo's training part.

use anyhow::{bail, Context, Result};
use arvae_core::checkpoint::Checkpoint;
use arvae_core::cuda::Unavailable;
use arvae_core::data::{Dataset, Split};
use arvae_core::family::Family;
use arvae_core::model::LossValues;
use arvae_core::music::attributes::Attribute;
use arvae_core::training::{
    self, Engine, EpochSummary, ModelKind, Start, TrainConfig, TrainObserver,
};
use candle_core::Device;
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
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
    /// The CPU: candle and the image models on all cores (RAYON_NUM_THREADS), the native
    /// engine on at most two (each batch as two halves).
    Cpu,
    /// The first CUDA GPU (a build of scripts/build-cuda.sh); an error names what is missing.
    Cuda,
    /// The first CUDA GPU where one is usable, else the CPU (saying why).
    Auto,
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
    /// Epochs in total (a resumed run continues up to this number) [default: 30; images 100].
    #[arg(long)]
    epochs: Option<usize>,
    /// Batch size [default: 256; images 128].
    #[arg(long)]
    batch: Option<usize>,
    /// Adam learning rate [default: 0.0001].
    #[arg(long)]
    lr: Option<f64>,
    /// KL weight beta [default: 0.001; images: β-VAE 4, AR-VAE 1].
    #[arg(long)]
    beta: Option<f64>,
    /// AR loss weight gamma, AR-VAE only [default: 1; images 10].
    #[arg(long)]
    gamma: Option<f64>,
    /// AR loss sharpness delta [default: 10; images 1].
    #[arg(long)]
    delta: Option<f64>,
    /// Seed of initialisation, shuffling, sampling and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Latent size [default: 32; dSprites 10, Morpho-MNIST 16; with --init, the model's].
    #[arg(long)]
    latent: Option<usize>,
    /// Dropout between the GRU layers of MeasureVAE in training, in [0, 1) [default: 0.5, the
    /// paper's]. More regularizes more: a model that reconstructs its training measures far
    /// better than unseen ones may generalize better with more. Music models only.
    #[arg(long)]
    dropout: Option<f32>,
    /// Attributes to regularize, comma-separated (default: all four). Attribute l stays on
    /// latent dimension l: rhythmic_complexity 0, pitch_range 1, note_density 2, contour 3.
    #[arg(long, value_delimiter = ',', value_parser = parse_attribute)]
    attributes: Vec<Attribute>,
    /// Train on at most this many measures (images, for an image dataset) per epoch (a fresh
    /// random subset each epoch).
    #[arg(long)]
    max_measures: Option<usize>,
    /// Device. The CPU by default: the native engine there is fast, and a run does not change
    /// engine (and numbers) with the machine it happens to start on.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Training implementation [default: native on the CPU, candle on a GPU].
    #[arg(long, value_enum)]
    engine: Option<EngineArg>,
    /// Continue the run in --out from its last complete epoch (same settings and data).
    #[arg(long)]
    resume: bool,
    /// Fine-tune: start from this model's weights (a checkpoint, or a shipped model's name:
    /// bach, folk) instead of a random initialisation, with a fresh optimizer. The knobs are
    /// recalibrated on --data. Its latent size and attributes are used unless --latent or
    /// --attributes say otherwise. With --resume, an interrupted fine-tuning run continues.
    #[arg(long, value_name = "CHECKPOINT")]
    init: Option<PathBuf>,
    /// Measures (images) of the test split evaluated at the end (stored in the checkpoint's
    /// metadata).
    #[arg(long, default_value_t = 8192)]
    eval_measures: usize,
}

fn parse_attribute(s: &str) -> Result<Attribute, String> {
    Attribute::from_name(s).ok_or_else(|| {
        format!("unknown attribute '{s}' (rhythmic_complexity, pitch_range, note_density, contour)")
    })
}

/// The candle device for `--device`. `cuda` is an error naming what is missing (probed before
/// candle opens CUDA, whose loader would panic on a missing library); `auto` falls back to the
/// CPU with one line saying why.
pub fn device(d: DeviceArg) -> Result<Device> {
    match d {
        DeviceArg::Cpu => Ok(Device::Cpu),
        DeviceArg::Cuda => match arvae_core::cuda::probe() {
            Ok(info) => {
                let dev = Device::new_cuda(0).with_context(|| format!("cannot open {info}"))?;
                println!("training on {info}");
                Ok(dev)
            }
            Err(Unavailable::NotBuilt) => bail!(
                "this build has no CUDA support: rebuild with `--features cuda` (needs nvcc; scripts/build-cuda.sh does it all)"
            ),
            Err(why) => bail!("--device cuda: CUDA cannot be used: {why}"),
        },
        DeviceArg::Auto => {
            let why = match arvae_core::cuda::probe() {
                Ok(info) => match Device::new_cuda(0) {
                    Ok(dev) => {
                        println!("--device auto: training on {info}");
                        return Ok(dev);
                    }
                    Err(e) => format!("cannot open {info}: {e}"),
                },
                Err(Unavailable::NotBuilt) => "this build has no CUDA support".to_string(),
                Err(why) => why.to_string(),
            };
            println!("--device auto: training on the CPU ({why})");
            Ok(Device::Cpu)
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
        *self.bar.borrow_mut() = Some(crate::progress::epoch_bar(epoch, batches));
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

/// Largest latent size `train` accepts.
const MAX_LATENT: usize = 4096;

/// Checks the numbers of `train` before any work: each message names the flag and the value.
fn check_train_args(a: &TrainArgs, image: bool) -> Result<()> {
    let weight = |flag: &str, v: f64| -> Result<()> {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{flag} {v} must be a finite number >= 0");
        }
        Ok(())
    };
    let positive = |flag: &str, v: f64| -> Result<()> {
        if !(v.is_finite() && v > 0.0) {
            bail!("{flag} {v} must be a finite number > 0");
        }
        Ok(())
    };
    a.beta.map_or(Ok(()), |v| weight("--beta", v))?;
    a.gamma.map_or(Ok(()), |v| weight("--gamma", v))?;
    a.delta.map_or(Ok(()), |v| positive("--delta", v))?;
    a.lr.map_or(Ok(()), |v| positive("--lr", v))?;
    for (flag, v) in [("--epochs", a.epochs), ("--batch", a.batch)] {
        if v == Some(0) {
            bail!("{flag} 0: must be at least 1");
        }
    }
    if a.max_measures == Some(0) {
        bail!("--max-measures 0: must be at least 1 (leave it out to use every measure)");
    }
    if let Some(p) = a.dropout.filter(|p| !(0.0..1.0).contains(p)) {
        bail!("--dropout {p} must be in [0, 1)");
    }
    if a.eval_measures == 0 {
        bail!("--eval-measures 0: must be at least 1");
    }
    // Music attribute l lives on latent dimension l, so all four dimensions must exist.
    let least = if image { 1 } else { Attribute::ALL.len() };
    if let Some(latent) = a.latent.filter(|l| !(least..=MAX_LATENT).contains(l)) {
        bail!(
            "--latent {latent} is outside {least}..={MAX_LATENT} (music attributes are regularized on dimensions 0..3)"
        );
    }
    if let Some(d) = a
        .attributes
        .iter()
        .enumerate()
        .find(|(i, x)| a.attributes[..*i].contains(x))
    {
        bail!("--attributes names {} twice", d.1.name());
    }
    Ok(())
}

pub fn train(a: TrainArgs) -> Result<()> {
    let family = Family::of_dataset(&a.data);
    check_train_args(&a, family == Family::Images)?;
    match family {
        Family::Images => train_images(a),
        Family::Music => train_music(a),
    }
}

/// `train` on an image dataset: the convolutional VAE (`image_cmd`).
fn train_images(a: TrainArgs) -> Result<()> {
    if !a.attributes.is_empty() {
        bail!("--attributes names musical attributes; image models regularize every attribute of the dataset");
    }
    if a.dropout.is_some() {
        bail!("--dropout sets MeasureVAE's dropout; the image models keep the paper's (Table 2)");
    }
    if a.init.is_some() {
        bail!(
            "--init fine-tunes music models; {} is an image dataset",
            a.data.display()
        );
    }
    crate::image_cmd::train(crate::image_cmd::TrainRequest {
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
    })
}

/// `train` on a music dataset: MeasureVAE.
fn train_music(a: TrainArgs) -> Result<()> {
    let ds = Dataset::load(&a.data)?;
    let kind = if a.model == ModelArg::ArVae {
        ModelKind::ArVae
    } else {
        ModelKind::BetaVae
    };
    let mut cfg = TrainConfig::music(kind);
    cfg.epochs = a.epochs.unwrap_or(cfg.epochs);
    cfg.batch = a.batch.unwrap_or(cfg.batch);
    cfg.lr = a.lr.unwrap_or(cfg.lr);
    cfg.beta = a.beta.unwrap_or(cfg.beta);
    if kind == ModelKind::ArVae {
        cfg.gamma = a.gamma.unwrap_or(cfg.gamma);
    }
    cfg.delta = a.delta.unwrap_or(cfg.delta);
    cfg.seed = a.seed;
    cfg.latent = a.latent.unwrap_or(cfg.latent);
    cfg.dropout = a.dropout.unwrap_or(cfg.dropout);
    cfg.max_train_measures = a.max_measures;
    if (a.engine, a.device) == (Some(EngineArg::Native), DeviceArg::Cuda) {
        bail!("--engine native trains on the CPU only; use --engine candle with --device cuda")
    }
    if kind == ModelKind::ArVae && !a.attributes.is_empty() {
        cfg.attributes = a.attributes.clone();
    } else if kind == ModelKind::BetaVae && !a.attributes.is_empty() {
        bail!("--attributes only applies to --model ar-vae (a β-VAE regularizes nothing)");
    }
    let dev = match (a.engine, a.device) {
        (Some(EngineArg::Native), DeviceArg::Auto) => {
            println!("--device auto: training on the CPU (--engine native trains on the CPU only)");
            Device::Cpu
        }
        (_, d) => device(d)?,
    };
    cfg.engine = match a.engine {
        Some(EngineArg::Native) => Engine::Native,
        Some(EngineArg::Candle) => Engine::Candle,
        None if dev.is_cpu() => Engine::Native,
        None => Engine::Candle,
    };
    println!(
        "training {} on {} ({} train / {} val measures), {} epochs, batch {}, beta {}, gamma {}, delta {}, dropout {}, seed {}",
        if kind == ModelKind::ArVae { "AR-VAE" } else { "β-VAE" },
        a.data.display(),
        ds.count(Split::Train),
        ds.count(Split::Val),
        cfg.epochs,
        cfg.batch,
        cfg.beta,
        cfg.gamma,
        cfg.delta,
        cfg.dropout,
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
    let init = match &a.init {
        Some(p) => {
            println!("starting from the weights of {} (fine-tuning)", p.display());
            Some(start_from(p, &mut cfg, &a)?)
        }
        None => None,
    };
    let start = match (&init, a.resume) {
        (_, true) if a.out.join("model.safetensors").is_file() => Start::Resume,
        (Some(ck), _) => Start::From(ck),
        (None, true) => Start::Resume,
        (None, false) => Start::Fresh,
    };
    let out =
        training::train(&ds, &cfg, &a.out, start, &dev, &obs).with_context(|| match &a.init {
            Some(p) => format!("fine-tuning {} on {}", p.display(), a.data.display()),
            None => format!("training on {}", a.data.display()),
        })?;
    println!("evaluating on the test split ...");
    let e = crate::eval_cmd::record_evaluation(&a.out, &ds, a.eval_measures)?;
    crate::evaluation::print_evaluation(&e);
    println!(
        "wrote {} and {} (log: {})",
        out.paths.model.display(),
        out.paths.best.display(),
        out.paths.log.display()
    );
    Ok(())
}

/// The model `train --init` starts from; its latent size becomes the run's where --latent
/// keeps its default.
fn start_from(path: &Path, cfg: &mut TrainConfig, a: &TrainArgs) -> Result<Checkpoint> {
    let ck = arvae_core::builtin::load_checkpoint(path)?;
    let sizes = ck
        .meta
        .measure_vae_config()
        .map_err(|e| anyhow::anyhow!("--init {}: {e}", path.display()))?;
    if a.latent.is_none() {
        cfg.latent = sizes.latent;
    }
    if a.model == ModelArg::ArVae && a.attributes.is_empty() {
        let named: Vec<Attribute> = ck
            .meta
            .attributes
            .iter()
            .filter_map(|d| Attribute::from_name(&d.name))
            .collect();
        if !named.is_empty() {
            cfg.attributes = named;
        }
    }
    Ok(ck)
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
    let start = if resume { Start::Resume } else { Start::Fresh };
    let trained = training::train(ds, &cfg, &run, start, &Device::Cpu, &obs)?;
    println!(
        "\nSpearman rho between each regularized dimension and its attribute (validation split):"
    );
    for (a, dim, rho) in training::attribute_order(&trained.model, ds, &Attribute::ALL)? {
        println!("  {:<20} dim {dim}  rho {rho:+.3}", a.name());
    }
    println!(
        "\nyour own model: {} (try: arvae-trainer generate --checkpoint {} --note-density 6 --out melody.mid)",
        trained.paths.model.display(),
        trained.paths.model.display()
    );
    Ok(())
}
