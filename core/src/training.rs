//! The epoch loop around [`crate::model::train_step`]: shuffling, validation, `log.csv`, atomic
//! checkpoints after every epoch (`model.safetensors` with the optimizer state for `--resume`,
//! `best.safetensors` by validation loss), attribute calibration, and latent extraction.

use crate::checkpoint::{
    AttributeDim, Calibration, Checkpoint, CheckpointMeta, DatasetInfo, TrainState,
};
use crate::data::{Dataset, Split};
use crate::files::{remove_stale_temps, RunLock};
use crate::model::{
    eval_step, teacher_forcing_coin, train_step, Adam, AdamConfig, Batch, LossConfig, LossValues,
};
use crate::model::{MeasureVae, RegularizedDim};
use crate::music::attributes::Attribute;
use crate::music::Measure;
use crate::music_model::MeasureVaeConfig;
use crate::native::{dataset_batch, NativeEngine, NativeLoss};
use crate::prior::CodePrior;
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// AR-VAE or the β-VAE baseline (the same model with gamma = 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Attribute-regularized VAE.
    ArVae,
    /// β-VAE baseline.
    BetaVae,
}

/// Which implementation runs the training steps. Both train the same model with the same
/// randomness from the same seed; checkpoints and `--resume` work across them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// The hand-written CPU engine ([`crate::native`]), several times faster on the CPU.
    #[default]
    Native,
    /// candle autograd (any device, CUDA included).
    Candle,
}

/// Everything that defines a training run (docs/architecture.md §6 defaults for music).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// AR-VAE or β-VAE.
    pub model: ModelKind,
    /// Epochs to train in total.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// KL weight.
    pub beta: f64,
    /// AR loss weight (0 for β-VAE).
    pub gamma: f64,
    /// AR loss sharpness.
    pub delta: f64,
    /// Seed of initialisation, shuffling, sampling and dropout.
    pub seed: u64,
    /// Latent size.
    pub latent: usize,
    /// Dropout between the GRU layers in training (the paper's 0.5; runs saved before this
    /// setting existed read as 0.5).
    #[serde(default = "paper_dropout")]
    pub dropout: f32,
    /// Regularized attributes; attribute l sits on latent dimension l.
    pub attributes: Vec<Attribute>,
    /// Use at most this many training measures per epoch (a fresh random subset each epoch).
    pub max_train_measures: Option<usize>,
    /// Validate on at most this many measures (a fixed subset).
    pub max_val_measures: Option<usize>,
    /// The implementation that trains (CPU only for [`Engine::Native`]); a resumed run may
    /// switch engines.
    #[serde(default)]
    pub engine: Engine,
}

/// MeasureVAE's dropout in the paper (and the reference code).
fn paper_dropout() -> f32 {
    MeasureVaeConfig::default().dropout
}

impl TrainConfig {
    /// The paper's music settings for `model`.
    pub fn music(model: ModelKind) -> Self {
        TrainConfig {
            model,
            epochs: 30,
            batch: 256,
            lr: 1e-4,
            beta: 0.001,
            gamma: if model == ModelKind::ArVae { 1.0 } else { 0.0 },
            delta: 10.0,
            seed: 0,
            latent: 32,
            dropout: paper_dropout(),
            attributes: if model == ModelKind::ArVae {
                Attribute::ALL.to_vec()
            } else {
                Vec::new()
            },
            max_train_measures: None,
            max_val_measures: Some(8192),
            engine: Engine::default(),
        }
    }

    /// The demo's settings: the paper's losses, but batch 64 and lr 1e-3 so the synthetic set
    /// trains in minutes on two cores.
    pub fn demo(model: ModelKind, epochs: usize) -> Self {
        TrainConfig {
            epochs,
            batch: 64,
            lr: 1e-3,
            ..Self::music(model)
        }
    }

    /// The loss settings.
    pub fn loss(&self) -> LossConfig {
        let regularized = if self.model == ModelKind::ArVae {
            self.attributes
                .iter()
                .map(|a| RegularizedDim {
                    attribute: a.index(),
                    latent_dim: a.index(),
                })
                .collect()
        } else {
            Vec::new()
        };
        LossConfig {
            beta: self.beta,
            gamma: if self.model == ModelKind::ArVae {
                self.gamma
            } else {
                0.0
            },
            delta: self.delta,
            regularized,
        }
    }

    /// The model sizes.
    pub fn model_config(&self) -> MeasureVaeConfig {
        MeasureVaeConfig {
            latent: self.latent,
            dropout: self.dropout,
            ..MeasureVaeConfig::default()
        }
    }
}

/// Mean loss parts of one epoch on one split.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochSummary {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss parts.
    pub train: LossValues,
    /// Mean validation loss parts (greedy decoding, no teacher forcing).
    pub val: LossValues,
    /// Training throughput.
    pub measures_per_s: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
    /// Whether this epoch has the best validation loss so far.
    pub best: bool,
}

/// Receives progress (a progress bar in the CLI).
pub trait TrainObserver {
    /// An epoch starts with `batches` batches.
    fn epoch_start(&self, _epoch: usize, _batches: usize) {}
    /// A batch finished; `running` is the running mean of the epoch.
    fn batch_done(&self, _running: &LossValues, _measures_per_s: f64) {}
    /// Validation and checkpoints of an epoch are done.
    fn epoch_end(&self, _summary: &EpochSummary) {}
}

/// An observer that reports nothing.
pub struct Quiet;
impl TrainObserver for Quiet {}

/// What went wrong in training; the message names the file when there is one.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Bad settings or a mismatch between run and data.
    #[error("{0}")]
    Config(String),
    /// Reading or writing a file.
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    /// A checkpoint problem.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// A tensor operation failed.
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
}

/// Accumulates loss values into means.
#[derive(Default)]
struct Mean {
    sum: LossValues,
    n: usize,
}

impl Mean {
    fn add(&mut self, v: &LossValues) {
        if self.n == 0 {
            self.sum = LossValues {
                ar: vec![0.0; v.ar.len()],
                ..Default::default()
            };
        }
        self.sum.total += v.total;
        self.sum.reconstruction += v.reconstruction;
        self.sum.kl += v.kl;
        self.sum.accuracy += v.accuracy;
        for (s, a) in self.sum.ar.iter_mut().zip(&v.ar) {
            *s += a;
        }
        self.n += 1;
    }
    fn mean(&self) -> LossValues {
        let n = self.n.max(1) as f32;
        LossValues {
            total: self.sum.total / n,
            reconstruction: self.sum.reconstruction / n,
            kl: self.sum.kl / n,
            accuracy: self.sum.accuracy / n,
            ar: self.sum.ar.iter().map(|a| a / n).collect(),
        }
    }
}

/// Files of a run folder.
pub struct RunPaths {
    /// Last complete epoch, with optimizer state.
    pub model: PathBuf,
    /// Best validation loss so far.
    pub best: PathBuf,
    /// One row per epoch.
    pub log: PathBuf,
}

impl RunPaths {
    /// The files inside `dir`.
    pub fn new(dir: &Path) -> Self {
        RunPaths {
            model: dir.join("model.safetensors"),
            best: dir.join("best.safetensors"),
            log: dir.join("log.csv"),
        }
    }
}

fn batches_of(indices: &[usize], batch: usize) -> Vec<&[usize]> {
    // drop_last as the reference, but never drop everything.
    let full = indices.len() / batch;
    if full == 0 {
        return if indices.is_empty() {
            vec![]
        } else {
            vec![indices]
        };
    }
    indices.chunks_exact(batch).take(full).collect()
}

/// A batch of dataset measures with the attributes the dataset already stores (no recompute).
fn batch(ds: &Dataset, idx: &[usize], device: &Device) -> candle_core::Result<Batch> {
    let tokens: Vec<u32> = idx
        .iter()
        .flat_map(|&i| ds.measures[i].0.map(u32::from))
        .collect();
    let attrs: Vec<f32> = idx.iter().flat_map(|&i| ds.attributes[i]).collect();
    Ok(Batch {
        tokens: Tensor::from_vec(tokens, (idx.len(), 24), &Device::Cpu)?.to_device(device)?,
        attributes: Tensor::from_vec(attrs, (idx.len(), 4), &Device::Cpu)?.to_device(device)?,
    })
}

/// Mean validation losses over `idx` (greedy decoding, sampled z from a fixed seed).
pub fn evaluate(
    model: &MeasureVae,
    ds: &Dataset,
    idx: &[usize],
    loss: &LossConfig,
    batch_size: usize,
    seed: u64,
) -> Result<LossValues, TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut mean = Mean::default();
    for chunk in idx.chunks(batch_size) {
        let b = batch(ds, chunk, model.device())?;
        mean.add(&eval_step(model, &b, loss, &mut rng)?);
    }
    Ok(mean.mean())
}

/// [`evaluate`] on the native engine (the same batches and eps draws).
fn evaluate_native(
    engine: &mut NativeEngine,
    ds: &Dataset,
    idx: &[usize],
    loss: &NativeLoss,
    batch_size: usize,
    seed: u64,
) -> LossValues {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut mean = Mean::default();
    for chunk in idx.chunks(batch_size) {
        let (tokens, attrs) = dataset_batch(ds, chunk);
        mean.add(&engine.eval_step(&tokens, &attrs, loss, &mut rng).into());
    }
    mean.mean()
}

/// Posterior means and sampled z (as the reference's metrics use) of the measures `idx`.
pub fn latents(
    model: &MeasureVae,
    measures: &[Measure],
    batch_size: usize,
    seed: u64,
) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut means, mut samples) = (Vec::new(), Vec::new());
    for chunk in measures.chunks(batch_size.max(1)) {
        let b = Batch::from_measures(chunk, model.device())?;
        let (mu, log_std) = model.encode(&b.tokens, None)?;
        let z = model.sample(&mu, &log_std, &mut rng)?;
        means.extend(
            mu.flatten_all()?
                .to_device(&Device::Cpu)?
                .to_vec1::<f32>()?,
        );
        samples.extend(z.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?);
    }
    Ok((means, samples))
}

/// Number of quantile points stored per calibrated attribute.
pub const CALIBRATION_POINTS: usize = 21;

/// Calibration of each regularized attribute: quantiles of the latent means on its dimension
/// against the same quantiles of the attribute, so a musical target maps to a latent value;
/// and the Gaussian of the sampled codes of the same measures (the model's own prior, from
/// which generation draws the free dimensions; see `prior`).
pub fn calibrate(
    model: &MeasureVae,
    ds: &Dataset,
    idx: &[usize],
    attributes: &[Attribute],
    batch_size: usize,
) -> Result<(Vec<Calibration>, Option<CodePrior>), TrainError> {
    if idx.is_empty() {
        return Ok((Vec::new(), None));
    }
    let ms: Vec<Measure> = idx.iter().map(|&i| ds.measures[i]).collect();
    let (means, samples) = latents(model, &ms, batch_size, 0)?;
    let d = model.config().latent;
    let prior = CodePrior::from_codes(&samples, d);
    let calibration = attributes
        .iter()
        .map(|a| {
            let l = a.index();
            let mut z: Vec<f32> = (0..ms.len()).map(|i| means[i * d + l]).collect();
            let mut v: Vec<f32> = idx.iter().map(|&i| ds.attributes[i][l]).collect();
            z.sort_by(f32::total_cmp);
            v.sort_by(f32::total_cmp);
            let q = |s: &[f32], p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
            let points = (0..CALIBRATION_POINTS)
                .map(|k| {
                    let p = k as f64 / (CALIBRATION_POINTS - 1) as f64;
                    (q(&z, p), q(&v, p))
                })
                .collect();
            Calibration {
                attribute: a.name().to_string(),
                latent_dim: l,
                points,
            }
        })
        .collect();
    Ok((calibration, prior))
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn csv_header(cfg: &TrainConfig) -> String {
    let mut cols = vec!["epoch".to_string()];
    for split in ["train", "val"] {
        cols.extend(["loss", "recon", "kl", "acc"].map(|c| format!("{split}_{c}")));
        cols.extend(
            cfg.attributes
                .iter()
                .filter(|_| cfg.model == ModelKind::ArVae)
                .map(|a| format!("{split}_ar_{}", a.name())),
        );
    }
    cols.extend(["measures_per_s", "seconds"].map(String::from));
    cols.join(",")
}

fn csv_row(s: &EpochSummary) -> String {
    let mut cols = vec![s.epoch.to_string()];
    for v in [&s.train, &s.val] {
        cols.extend([v.total, v.reconstruction, v.kl, v.accuracy].map(|x| format!("{x:.6}")));
        cols.extend(v.ar.iter().map(|x| format!("{x:.6}")));
    }
    cols.push(format!("{:.1}", s.measures_per_s));
    cols.push(format!("{:.2}", s.seconds));
    cols.join(",")
}

/// Settings stored in the checkpoint's `training` metadata.
#[derive(Serialize, Deserialize)]
struct TrainingMeta {
    config: TrainConfig,
    history: Vec<EpochSummary>,
    best_val_loss: Option<f32>,
}

/// Creates the run folder, locks it for this process ([`RunLock`]) and removes temporary
/// files that killed writers left in it.
pub fn hold_run_folder(out: &Path) -> Result<RunLock, TrainError> {
    std::fs::create_dir_all(out).map_err(|e| io_err(out, e))?;
    let lock = RunLock::acquire(out).map_err(TrainError::Config)?;
    remove_stale_temps(out).map_err(|e| io_err(out, e))?;
    Ok(lock)
}

/// Writes the log's header and the rows of `history` (atomically).
fn rewrite_log(path: &Path, cfg: &TrainConfig, history: &[EpochSummary]) -> Result<(), TrainError> {
    let mut text = csv_header(cfg) + "\n";
    for h in history {
        text += &(csv_row(h) + "\n");
    }
    crate::files::write_bytes(path, text.as_bytes()).map_err(|e| io_err(path, e))
}

/// The result of [`train`].
pub struct TrainOutcome {
    /// The trained model (last epoch).
    pub model: MeasureVae,
    /// Every epoch, including ones before a resume.
    pub history: Vec<EpochSummary>,
    /// The run's files.
    pub paths: RunPaths,
    /// The run folder's lock, held until the outcome is dropped (so the caller may still
    /// write into the run, e.g. the final evaluation).
    pub lock: RunLock,
}

/// Where a run's weights come from.
#[derive(Clone, Copy)]
pub enum Start<'a> {
    /// A new model from the seed; an existing run in `out` is refused.
    Fresh,
    /// `out/model.safetensors`, with its optimizer state (same settings and data required);
    /// a fresh start where there is none yet.
    Resume,
    /// The weights of another model (fine-tuning: `train --init bach`), with a fresh optimizer.
    /// Its model sizes must match the configuration's.
    From(&'a Checkpoint),
}

/// Trains on `ds` into the folder `out`, starting as `start` says (docs/architecture.md §6).
pub fn train(
    ds: &Dataset,
    cfg: &TrainConfig,
    out: &Path,
    start: Start<'_>,
    device: &Device,
    obs: &dyn TrainObserver,
) -> Result<TrainOutcome, TrainError> {
    check_config(cfg)?;
    let paths = RunPaths::new(out);
    let lock = hold_run_folder(out)?;
    let (mut train_idx, val_idx) = split_indices(ds, cfg)?;
    let loss = cfg.loss();
    let meta = run_meta(ds, cfg);
    let RunState {
        model,
        mut adam,
        mut history,
        mut best,
    } = match start {
        Start::Resume if paths.model.is_file() => resumed(ds, cfg, &paths, device)?,
        _ => fresh(cfg, &paths, start, device)?,
    };
    let mut native = match cfg.engine {
        Engine::Native if !device.is_cpu() => {
            return Err(TrainError::Config(
                "the native engine trains on the CPU only: use the candle engine on a GPU".into(),
            ))
        }
        Engine::Native => Some(NativeEngine::from_candle(&model, &adam)?),
        Engine::Candle => None,
    };
    let native_loss = NativeLoss::from(&loss);
    let mut calib_idx = train_idx.clone();
    calib_idx.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xca11b));
    calib_idx.truncate(4096);

    for epoch in history.len()..cfg.epochs {
        let t0 = Instant::now();
        let mut rng =
            ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        train_idx.sort_unstable();
        train_idx.shuffle(&mut rng);
        let used = cfg
            .max_train_measures
            .map_or(train_idx.len(), |m| m.min(train_idx.len()));
        let batches = batches_of(&train_idx[..used], cfg.batch);
        obs.epoch_start(epoch + 1, batches.len());
        let mut step = |idx: &[usize], rng: &mut ChaCha8Rng| -> Result<LossValues, TrainError> {
            let tf = teacher_forcing_coin(rng);
            Ok(match native.as_mut() {
                Some(engine) => {
                    let (tokens, attrs) = dataset_batch(ds, idx);
                    engine
                        .train_step(&tokens, &attrs, &native_loss, tf, rng)
                        .into()
                }
                None => train_step(&model, &mut adam, &batch(ds, idx, device)?, &loss, tf, rng)?,
            })
        };
        let (train, seen) = run_epoch(&batches, epoch, t0, &mut rng, &mut step, obs)?;
        let train_secs = t0.elapsed().as_secs_f64();
        let val = match native.as_mut() {
            Some(engine) => {
                engine.store_into(&model, &mut adam)?;
                evaluate_native(engine, ds, &val_idx, &native_loss, cfg.batch.max(256), 1234)
            }
            None => evaluate(&model, ds, &val_idx, &loss, cfg.batch.max(256), 1234)?,
        };
        let is_best = best.is_none_or(|b| val.total < b);
        if is_best {
            best = Some(val.total);
        }
        let summary = EpochSummary {
            epoch: epoch + 1,
            train,
            val,
            measures_per_s: seen as f64 / train_secs,
            seconds: t0.elapsed().as_secs_f64(),
            best: is_best,
        };
        history.push(summary.clone());
        let mut m = meta.clone();
        (m.calibration, m.prior) = calibrate(
            &model,
            ds,
            &calib_idx,
            &cfg.attributes_for_calibration(),
            512,
        )?;
        m.pitch_range = ds.pitch_range();
        m.training = serde_json::to_value(TrainingMeta {
            config: cfg.clone(),
            history: history.clone(),
            best_val_loss: best,
        })
        .expect("training meta serializes");
        save_epoch(&model, &adam, m, &paths, &summary)?;
        obs.epoch_end(&summary);
    }
    Ok(TrainOutcome {
        model,
        history,
        paths,
        lock,
    })
}

/// Settings no run can start with.
fn check_config(cfg: &TrainConfig) -> Result<(), TrainError> {
    if cfg.batch == 0 || cfg.epochs == 0 {
        return Err(TrainError::Config(
            "batch and epochs must be at least 1".into(),
        ));
    }
    if cfg.model == ModelKind::ArVae && cfg.attributes.is_empty() {
        return Err(TrainError::Config(
            "an AR-VAE needs at least one regularized attribute".into(),
        ));
    }
    if cfg.latent < 4 {
        return Err(TrainError::Config(
            "the latent size must be at least 4 (one dimension per attribute)".into(),
        ));
    }
    Ok(())
}

/// The training and validation measures. Tiny datasets without a validation split validate
/// on the test split, else on the training data.
fn split_indices(ds: &Dataset, cfg: &TrainConfig) -> Result<(Vec<usize>, Vec<usize>), TrainError> {
    let train_idx = ds.indices(Split::Train);
    let mut val_idx = ds.indices(Split::Val);
    if train_idx.is_empty() {
        return Err(TrainError::Config(format!(
            "dataset {} has no training measures",
            ds.header.collection
        )));
    }
    if val_idx.is_empty() {
        val_idx = ds.indices(Split::Test);
        if val_idx.is_empty() {
            val_idx = train_idx.clone();
        }
    }
    if let Some(m) = cfg.max_val_measures {
        val_idx.shuffle(&mut ChaCha8Rng::seed_from_u64(17));
        val_idx.truncate(m);
        val_idx.sort_unstable();
    }
    Ok((train_idx, val_idx))
}

/// The metadata every checkpoint of the run starts from: model config, data, regularized
/// dimensions.
fn run_meta(ds: &Dataset, cfg: &TrainConfig) -> CheckpointMeta {
    let dataset_info = DatasetInfo {
        id: ds.header.source.clone(),
        collection: ds.header.collection.clone(),
        hash: ds.header.content_hash.clone(),
    };
    let mut meta = CheckpointMeta::measure_vae(&cfg.model_config(), dataset_info);
    meta.attributes = cfg
        .attributes
        .iter()
        .filter(|_| cfg.model == ModelKind::ArVae)
        .map(|a| AttributeDim {
            name: a.name().into(),
            latent_dim: a.index(),
        })
        .collect();
    meta
}

/// What a run carries from epoch to epoch.
struct RunState {
    model: MeasureVae,
    adam: Adam,
    history: Vec<EpochSummary>,
    best: Option<f32>,
}

/// Adam with the run's learning rate over `model`'s variables.
fn adam_for(model: &MeasureVae, cfg: &TrainConfig) -> Result<Adam, TrainError> {
    Ok(Adam::new(
        model.named_vars(),
        AdamConfig {
            lr: cfg.lr,
            ..AdamConfig::default()
        },
    )?)
}

/// The state of the run in `paths`, which must have been trained with the same settings on
/// the same data.
fn resumed(
    ds: &Dataset,
    cfg: &TrainConfig,
    paths: &RunPaths,
    device: &Device,
) -> Result<RunState, TrainError> {
    let ck = Checkpoint::load(&paths.model)?;
    let what = |e: String| TrainError::Config(format!("{}: {e}", paths.model.display()));
    let prev: TrainingMeta = serde_json::from_value(ck.meta.training.clone())
        .map_err(|e| what(format!("no usable training record: {e}")))?;
    let same = TrainConfig {
        epochs: cfg.epochs,
        engine: cfg.engine,
        ..prev.config.clone()
    } == *cfg;
    if !same {
        return Err(what(format!(
            "was trained with other settings ({}); resume with the same flags or use another --out",
            serde_json::to_string(&prev.config).unwrap_or_default()
        )));
    }
    if ck.meta.dataset.hash != ds.header.content_hash {
        return Err(what(format!(
            "was trained on other data ({}), not this dataset",
            ck.meta.dataset.id
        )));
    }
    let state = ck
        .meta
        .train_state
        .clone()
        .ok_or_else(|| what("has no optimizer state to resume from".into()))?;
    let model = MeasureVae::from_checkpoint(&ck, device)?;
    let mut adam = adam_for(&model, cfg)?;
    adam.load_state(state.optimizer_step, &ck.tensors)?;
    // The log says what the checkpoint holds (a kill may have left it a row short).
    rewrite_log(&paths.log, cfg, &prev.history)?;
    Ok(RunState {
        model,
        adam,
        history: prev.history,
        best: prev.best_val_loss,
    })
}

/// A new run (fresh weights, or `start`'s for fine-tuning) in a folder without a model.
fn fresh(
    cfg: &TrainConfig,
    paths: &RunPaths,
    start: Start<'_>,
    device: &Device,
) -> Result<RunState, TrainError> {
    if paths.model.exists() && !matches!(start, Start::Resume) {
        return Err(TrainError::Config(format!(
            "{} already exists: pass --resume to continue it, or choose another --out",
            paths.model.display()
        )));
    }
    let model = match start {
        Start::From(init) => initial_weights(init, cfg, device)?,
        _ => MeasureVae::new(&cfg.model_config(), cfg.seed, device)?,
    };
    let adam = adam_for(&model, cfg)?;
    rewrite_log(&paths.log, cfg, &[])?;
    Ok(RunState {
        model,
        adam,
        history: Vec::new(),
        best: None,
    })
}

/// One optimizer step on a batch (measure indices) with the epoch's random stream.
type StepFn<'a> = dyn FnMut(&[usize], &mut ChaCha8Rng) -> Result<LossValues, TrainError> + 'a;

/// One pass over `batches` with `step` (one optimizer step a batch): the mean losses and the
/// measures seen. Fails when the loss stops being finite.
fn run_epoch(
    batches: &[&[usize]],
    epoch: usize,
    t0: Instant,
    rng: &mut ChaCha8Rng,
    step: &mut StepFn,
    obs: &dyn TrainObserver,
) -> Result<(LossValues, usize), TrainError> {
    let mut mean = Mean::default();
    let mut seen = 0usize;
    for idx in batches {
        let v = step(idx, rng)?;
        if !v.total.is_finite() {
            return Err(TrainError::Config(format!(
                "the loss became {} in epoch {}: lower --lr or check the data",
                v.total,
                epoch + 1
            )));
        }
        mean.add(&v);
        seen += idx.len();
        obs.batch_done(&mean.mean(), seen as f64 / t0.elapsed().as_secs_f64());
    }
    Ok((mean.mean(), seen))
}

/// Writes the epoch: the resumable model (with Adam's state), its log row, and best when it
/// is. Model and log first, then best: a failure in between never leaves best ahead.
fn save_epoch(
    model: &MeasureVae,
    adam: &Adam,
    mut meta: CheckpointMeta,
    paths: &RunPaths,
    summary: &EpochSummary,
) -> Result<(), TrainError> {
    meta.train_state = Some(TrainState {
        epoch: summary.epoch as u32,
        step: adam.step_count(),
        optimizer_step: adam.step_count(),
        extra: serde_json::Value::Null,
    });
    let ck = model.to_checkpoint(meta)?;
    let mut resumable = ck.clone();
    resumable.tensors.extend(adam.state_tensors()?);
    resumable.save_atomic(&paths.model)?;
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&paths.log)
        .map_err(|e| io_err(&paths.log, e))?;
    writeln!(log, "{}", csv_row(summary)).map_err(|e| io_err(&paths.log, e))?;
    if summary.best {
        let mut best_ck = ck;
        best_ck.meta.train_state = None;
        best_ck.save_atomic(&paths.best)?;
    }
    Ok(())
}

/// The model a fine-tuning run starts from: `init`'s weights, which must have the sizes `cfg`
/// trains (its dropout may differ: the run's applies).
fn initial_weights(
    init: &Checkpoint,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<MeasureVae, TrainError> {
    let want = cfg.model_config();
    let have = init
        .meta
        .measure_vae_config()
        .map_err(|e| TrainError::Config(format!("the model to start from: {e}")))?;
    let have = MeasureVaeConfig {
        dropout: want.dropout,
        ..have
    };
    if have != want {
        return Err(TrainError::Config(format!(
            "the model to start from has other sizes ({have:?}) than this run ({want:?}); use its --latent"
        )));
    }
    Ok(MeasureVae::from_tensors(&want, &init.tensors, device)?)
}

impl TrainConfig {
    fn attributes_for_calibration(&self) -> Vec<Attribute> {
        if self.model == ModelKind::ArVae {
            self.attributes.clone()
        } else {
            Vec::new()
        }
    }
}

/// Decodes latent vectors (rows of `z`, each `latent` long) greedily into measures.
pub fn decode(model: &MeasureVae, z: &[f32]) -> Result<Vec<Measure>, TrainError> {
    let d = model.config().latent;
    let n = z.len() / d;
    if n == 0 {
        return Ok(Vec::new());
    }
    let zt = Tensor::from_slice(z, (n, d), &Device::Cpu)?.to_device(model.device())?;
    let tokens = model
        .generate(&zt)?
        .to_device(&Device::Cpu)?
        .to_vec2::<u32>()?;
    Ok(tokens
        .iter()
        .map(|row| {
            let t: Vec<u8> = row.iter().map(|&x| x.min(131) as u8).collect();
            Measure::from_slice(&t).expect("24 tokens in range")
        })
        .collect())
}

/// Spearman rho between each regularized dimension and its attribute on the validation split,
/// on the posterior means (the encoding itself, without the sampling noise the metrics of
/// `eval` include); for an attribute without a regularized dimension, the best |rho| over all
/// dimensions.
pub fn attribute_order(
    model: &MeasureVae,
    ds: &Dataset,
    regularized: &[Attribute],
) -> Result<Vec<(Attribute, usize, f64)>, TrainError> {
    let idx = ds.indices(Split::Val);
    let ms: Vec<Measure> = idx.iter().map(|&i| ds.measures[i]).collect();
    let (z, _) = latents(model, &ms, 512, 7)?;
    let d = model.config().latent;
    let col = |j: usize| -> Vec<f64> { (0..ms.len()).map(|i| z[i * d + j] as f64).collect() };
    Ok(Attribute::ALL
        .iter()
        .map(|&a| {
            let attr: Vec<f64> = idx
                .iter()
                .map(|&i| ds.attributes[i][a.index()] as f64)
                .collect();
            let rho =
                |j: usize| crate::metrics::stats::spearman(&col(j), &attr).map_or(0.0, |(r, _)| r);
            if regularized.contains(&a) {
                (a, a.index(), rho(a.index()))
            } else {
                (0..d)
                    .map(|j| (a, j, rho(j)))
                    .max_by(|x, y| x.2.abs().total_cmp(&y.2.abs()))
                    .unwrap()
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_drop_last_but_never_everything() {
        let idx: Vec<usize> = (0..10).collect();
        assert_eq!(batches_of(&idx, 4).len(), 2);
        assert_eq!(batches_of(&idx, 20).len(), 1);
        assert!(batches_of(&[], 4).is_empty());
    }

    /// A run started from another model's weights begins where that model is (its first
    /// epoch beats a fresh run's), and a model of other sizes is refused.
    #[test]
    fn fine_tuning_starts_from_the_given_weights() {
        let build = |pieces, seed| {
            let opts = crate::data::build::BuildOptions {
                synthetic_pieces: pieces,
                seed,
                ..Default::default()
            };
            crate::data::build::build(&opts, &crate::data::build::Silent).unwrap()
        };
        let (base, mine) = (build(120, 1), build(30, 2));
        let cfg = |epochs| TrainConfig {
            epochs,
            batch: 32,
            lr: 1e-3,
            latent: 8,
            max_val_measures: Some(256),
            ..TrainConfig::music(ModelKind::ArVae)
        };
        let dir = tempfile::tempdir().unwrap();
        let cpu = Device::Cpu;
        let pre = train(
            &base,
            &cfg(3),
            &dir.path().join("base"),
            Start::Fresh,
            &cpu,
            &Quiet,
        );
        let init = Checkpoint::load(pre.unwrap().paths.model).unwrap();
        let tuned = train(
            &mine,
            &cfg(1),
            &dir.path().join("t"),
            Start::From(&init),
            &cpu,
            &Quiet,
        );
        let fresh = train(
            &mine,
            &cfg(1),
            &dir.path().join("f"),
            Start::Fresh,
            &cpu,
            &Quiet,
        );
        let (tuned, fresh) = (&tuned.unwrap().history[0], &fresh.unwrap().history[0]);
        assert!(
            tuned.val.total < 0.8 * fresh.val.total,
            "fine-tuned {} vs fresh {}",
            tuned.val.total,
            fresh.val.total
        );
        let other = TrainConfig {
            latent: 16,
            ..cfg(1)
        };
        let e = train(
            &mine,
            &other,
            &dir.path().join("o"),
            Start::From(&init),
            &cpu,
            &Quiet,
        );
        assert!(e.err().unwrap().to_string().contains("--latent"));
        // The dropout is no size: a fine-tuning run may change it; the run's applies and is
        // what its checkpoint records.
        let run = |dropout, out: &str| {
            let c = TrainConfig { dropout, ..cfg(1) };
            train(
                &mine,
                &c,
                &dir.path().join(out),
                Start::From(&init),
                &cpu,
                &Quiet,
            )
            .unwrap()
        };
        let (none, most) = (run(0.0, "d0"), run(0.9, "d9"));
        let recorded = |r: &TrainOutcome| {
            let ck = Checkpoint::load(&r.paths.model).unwrap();
            ck.meta.measure_vae_config().unwrap().dropout
        };
        assert_eq!((recorded(&none), recorded(&most)), (0.0, 0.9));
        let train_loss = |r: &TrainOutcome| r.history[0].train.total;
        assert!(
            train_loss(&none) < train_loss(&most),
            "dropout 0: {}, dropout 0.9: {}",
            train_loss(&none),
            train_loss(&most)
        );
    }
}
