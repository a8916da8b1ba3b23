//! Training and evaluation of the convolutional VAEs on image datasets: the epoch loop with
//! a checkpoint per epoch (resumable), the latents of a split, the per-pixel reconstruction
//! accuracy, and the paper's defaults per dataset (docs/architecture.md §6).

use crate::checkpoint::{
    AttributeDim, Checkpoint, CheckpointMeta, DatasetInfo, TrainState, FORMAT_VERSION,
};
use crate::data::dataset::Split;
use crate::data::images::ImageDataset;
use crate::image_model::{ConvArch, ConvVaeConfig};
use crate::model::adam::{Adam, AdamConfig};
use crate::model::conv_vae::{
    image_eval_step, image_train_step, ConvVae, ImageBatch, ImageLossConfig, ImageLossValues,
};
use crate::model::loss::RegularizedDim;
use crate::training::ModelKind;
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything that defines an image training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageTrainConfig {
    /// AR-VAE or β-VAE.
    pub model: ModelKind,
    /// Architecture and latent size.
    pub vae: ConvVaeConfig,
    /// Epochs in total.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// KL weight.
    pub beta: f64,
    /// AR weight (0 for the β-VAE).
    pub gamma: f64,
    /// AR sharpness.
    pub delta: f64,
    /// Seed of initialisation, shuffling, sampling and dropout.
    pub seed: u64,
    /// Train on at most this many images per epoch (a fresh random subset each epoch).
    pub max_train_images: Option<usize>,
    /// Validate on at most this many images.
    pub max_val_images: usize,
}

impl ImageTrainConfig {
    /// The paper's settings for a dataset collection (`dsprites` or `morpho-mnist`):
    /// batch 128, 100 epochs, lr 1e-4, z 10 / 16, β-VAE beta 4, AR-VAE beta 1 gamma 10 delta 1.
    pub fn paper(collection: &str, model: ModelKind) -> Result<Self, String> {
        let vae = match collection {
            "dsprites" => ConvVaeConfig::dsprites(),
            "morpho-mnist" => ConvVaeConfig::mnist(),
            other => {
                return Err(format!(
                    "no image model for collection '{other}' (dsprites, morpho-mnist)"
                ))
            }
        };
        let ar = model == ModelKind::ArVae;
        Ok(ImageTrainConfig {
            model,
            vae,
            epochs: 100,
            batch: 128,
            lr: 1e-4,
            beta: if ar { 1.0 } else { 4.0 },
            gamma: if ar { 10.0 } else { 0.0 },
            delta: 1.0,
            seed: 0,
            max_train_images: None,
            max_val_images: 10_000,
        })
    }

    /// The loss config: attribute l on latent dimension l for an AR-VAE.
    pub fn loss(&self, num_attributes: usize) -> ImageLossConfig {
        let regularized = if self.model == ModelKind::ArVae {
            (0..num_attributes.min(self.vae.latent))
                .map(|l| RegularizedDim {
                    attribute: l,
                    latent_dim: l,
                })
                .collect()
        } else {
            Vec::new()
        };
        ImageLossConfig {
            beta: self.beta,
            gamma: self.gamma,
            delta: self.delta,
            regularized,
        }
    }
}

/// Receives progress from [`train_images`].
pub trait ImageObserver {
    /// An epoch of `batches` batches starts.
    fn epoch_start(&self, _epoch: usize, _batches: usize) {}
    /// A batch finished; running means and images per second so far.
    fn batch_done(&self, _running: &ImageLossValues, _images_per_s: f64) {}
    /// An epoch finished.
    fn epoch_end(&self, _s: &ImageEpochSummary) {}
}

/// What one epoch did.
#[derive(Clone, Debug)]
pub struct ImageEpochSummary {
    /// Epoch number (1-based).
    pub epoch: usize,
    /// Mean training loss parts.
    pub train: ImageLossValues,
    /// Validation loss parts.
    pub val: ImageLossValues,
    /// Best validation loss so far.
    pub best: bool,
    /// Training images per second.
    pub images_per_s: f64,
    /// Seconds of the epoch.
    pub seconds: f64,
}

/// A finished run.
pub struct TrainedImages {
    /// The model after the last epoch.
    pub model: ConvVae,
    /// model.safetensors (last epoch).
    pub model_path: PathBuf,
    /// best.safetensors (lowest validation loss).
    pub best_path: PathBuf,
    /// log.csv.
    pub log_path: PathBuf,
}

/// Images (B, 1, S, S) and attributes of `idx` as a batch.
pub fn batch_of(
    ds: &ImageDataset,
    idx: &[usize],
    device: &Device,
) -> candle_core::Result<ImageBatch> {
    let n = ds.pixels_per_image();
    let mut px = vec![0f32; idx.len() * n];
    let mut at = Vec::with_capacity(idx.len() * ds.num_attributes());
    for (k, &i) in idx.iter().enumerate() {
        ds.image_into(i, &mut px[k * n..(k + 1) * n]);
        at.extend_from_slice(ds.attributes_of(i));
    }
    ImageBatch::new(px, ds.header.width, at, ds.num_attributes(), device)
}

fn add(acc: &mut ImageLossValues, v: &ImageLossValues, w: f32) {
    acc.total += w * v.total;
    acc.reconstruction += w * v.reconstruction;
    acc.kl += w * v.kl;
    acc.accuracy += w * v.accuracy;
    if acc.ar.len() < v.ar.len() {
        acc.ar.resize(v.ar.len(), 0.0);
    }
    for (a, x) in acc.ar.iter_mut().zip(&v.ar) {
        *a += w * x;
    }
}

fn scaled(v: &ImageLossValues, s: f32) -> ImageLossValues {
    let mut o = ImageLossValues::default();
    add(&mut o, v, s);
    o
}

/// Mean loss parts over `idx` (no training), batches of `batch`.
pub fn image_loss_over(
    model: &ConvVae,
    ds: &ImageDataset,
    idx: &[usize],
    loss: &ImageLossConfig,
    batch: usize,
    seed: u64,
) -> candle_core::Result<ImageLossValues> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut acc = ImageLossValues::default();
    for chunk in idx.chunks(batch.max(1)) {
        let b = batch_of(ds, chunk, model.device())?;
        let v = image_eval_step(model, &b, loss, &mut rng)?;
        add(&mut acc, &v, chunk.len() as f32 / idx.len().max(1) as f32);
    }
    Ok(acc)
}

/// (means, samples) of z for `idx`, row-major N x Z; samples from a `seed`ed RNG.
pub fn image_latents(
    model: &ConvVae,
    ds: &ImageDataset,
    idx: &[usize],
    batch: usize,
    seed: u64,
) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut means, mut samples) = (Vec::new(), Vec::new());
    for chunk in idx.chunks(batch.max(1)) {
        let b = batch_of(ds, chunk, model.device())?;
        let (mu, ls) = model.encode(&b.x, None)?;
        let z = model.sample(&mu, &ls, &mut rng)?;
        means.extend(mu.flatten_all()?.to_vec1::<f32>()?);
        samples.extend(z.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok((means, samples))
}

fn meta_for(ds: &ImageDataset, path_id: &str, cfg: &ImageTrainConfig) -> CheckpointMeta {
    let loss = cfg.loss(ds.num_attributes());
    CheckpointMeta {
        format_version: FORMAT_VERSION,
        model_kind: String::new(),
        config: serde_json::Value::Null,
        vocabulary: Vec::new(),
        attributes: loss
            .regularized
            .iter()
            .map(|r| AttributeDim {
                name: ds.header.attributes[r.attribute].clone(),
                latent_dim: r.latent_dim,
            })
            .collect(),
        calibration: Vec::new(),
        training: serde_json::to_value(cfg).expect("config serializes"),
        dataset: DatasetInfo {
            id: path_id.to_string(),
            collection: ds.header.collection.clone(),
            hash: ds.header.content_hash.clone(),
        },
        evaluation: None,
        train_state: None,
        prior: None,
        pitch_range: None,
    }
}

/// Trains `cfg` on `ds`, writing `model.safetensors` (every epoch, with optimizer state),
/// `best.safetensors` and `log.csv` into `out`; `resume` continues a run there.
pub fn train_images(
    ds: &ImageDataset,
    dataset_id: &str,
    cfg: &ImageTrainConfig,
    out: &Path,
    resume: bool,
    device: &Device,
    obs: &dyn ImageObserver,
) -> anyhow_free::Result<TrainedImages> {
    let side = cfg.vae.side();
    if ds.header.height != side || ds.header.width != side {
        return Err(format!(
            "the {:?} model takes {side} x {side} images, the dataset has {} x {}",
            cfg.vae.arch, ds.header.height, ds.header.width
        )
        .into());
    }
    let _lock = crate::training::hold_run_folder(out).map_err(|e| e.to_string())?;
    let paths = crate::training::RunPaths::new(out);
    let loss = cfg.loss(ds.num_attributes());
    let ImageRun {
        model,
        mut opt,
        start_epoch,
        mut best_val,
    } = if resume && paths.model.is_file() {
        resumed_images(ds, cfg, &paths.model, device)?
    } else {
        let run = fresh_images(cfg, device)?;
        write_log_header(&paths.log, ds, &loss)?;
        run
    };
    let train_idx = ds.indices(Split::Train);
    let val_idx = ds.sample(Split::Val, cfg.max_val_images, cfg.seed);
    if train_idx.is_empty() {
        return Err("the dataset's train split is empty".to_string().into());
    }
    for epoch in start_epoch..cfg.epochs {
        let t0 = Instant::now();
        let mut rng =
            ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        let mut order = train_idx.clone();
        order.shuffle(&mut rng);
        if let Some(m) = cfg.max_train_images {
            order.truncate(m);
        }
        let batches: Vec<&[usize]> = order
            .chunks(cfg.batch)
            .filter(|c| c.len() == cfg.batch || order.len() < cfg.batch)
            .collect();
        obs.epoch_start(epoch + 1, batches.len());
        let mut acc = ImageLossValues::default();
        let mut seen = 0usize;
        for (k, chunk) in batches.iter().enumerate() {
            let b = batch_of(ds, chunk, device)?;
            let v = image_train_step(&model, &mut opt, &b, &loss, &mut rng)?;
            add(&mut acc, &v, 1.0);
            seen += chunk.len();
            obs.batch_done(
                &scaled(&acc, 1.0 / (k + 1) as f32),
                seen as f64 / t0.elapsed().as_secs_f64(),
            );
        }
        let train = scaled(&acc, 1.0 / batches.len().max(1) as f32);
        let ips = seen as f64 / t0.elapsed().as_secs_f64();
        let val = if val_idx.is_empty() {
            train.clone()
        } else {
            image_loss_over(&model, ds, &val_idx, &loss, 256, cfg.seed)?
        };
        let is_best = val.total < best_val;
        if is_best {
            best_val = val.total;
        }
        let mut summary = ImageEpochSummary {
            epoch: epoch + 1,
            train,
            val,
            best: is_best,
            images_per_s: ips,
            seconds: 0.0,
        };
        let meta = meta_for(ds, dataset_id, cfg);
        save_image_epoch(&model, &opt, meta, &paths, &mut summary, best_val, t0)?;
        obs.epoch_end(&summary);
    }
    if !paths.best.is_file() {
        std::fs::copy(&paths.model, &paths.best).map_err(|e| e.to_string())?;
    }
    Ok(TrainedImages {
        model,
        model_path: paths.model,
        best_path: paths.best,
        log_path: paths.log,
    })
}

/// What an image run carries from epoch to epoch.
struct ImageRun {
    model: ConvVae,
    opt: Adam,
    start_epoch: usize,
    best_val: f32,
}

/// Adam with the run's learning rate over `model`'s variables.
fn image_adam(model: &ConvVae, cfg: &ImageTrainConfig) -> anyhow_free::Result<Adam> {
    Ok(Adam::new(
        model.named_vars(),
        AdamConfig {
            lr: cfg.lr,
            ..Default::default()
        },
    )?)
}

/// The run in `model_path`, which must have the same model, batch, seed and dataset.
fn resumed_images(
    ds: &ImageDataset,
    cfg: &ImageTrainConfig,
    model_path: &Path,
    device: &Device,
) -> anyhow_free::Result<ImageRun> {
    let ck = Checkpoint::load(model_path)?;
    let stored: ImageTrainConfig = serde_json::from_value(ck.meta.training.clone())
        .map_err(|e| format!("{}: training settings: {e}", model_path.display()))?;
    if stored.vae != cfg.vae
        || stored.model != cfg.model
        || stored.batch != cfg.batch
        || stored.seed != cfg.seed
        || ck.meta.dataset.hash != ds.header.content_hash
    {
        return Err(format!(
            "{}: --resume needs the same model, batch, seed and dataset as the run in that folder",
            model_path.display()
        )
        .into());
    }
    let model = ConvVae::from_checkpoint(&ck, device)?;
    let mut opt = image_adam(&model, cfg)?;
    let (mut start_epoch, mut best_val) = (0, f32::INFINITY);
    if let Some(ts) = &ck.meta.train_state {
        opt.load_state(ts.optimizer_step, &ck.tensors)?;
        start_epoch = ts.epoch as usize;
        best_val = ts
            .extra
            .get("best_val")
            .and_then(|v| v.as_f64())
            .unwrap_or(f64::INFINITY) as f32;
    }
    Ok(ImageRun {
        model,
        opt,
        start_epoch,
        best_val,
    })
}

/// A new image run from the seed's initialisation.
fn fresh_images(cfg: &ImageTrainConfig, device: &Device) -> anyhow_free::Result<ImageRun> {
    let model = ConvVae::new(&cfg.vae, cfg.seed, device)?;
    let opt = image_adam(&model, cfg)?;
    Ok(ImageRun {
        model,
        opt,
        start_epoch: 0,
        best_val: f32::INFINITY,
    })
}

/// The log's header: losses, one AR column per regularized attribute, validation, speed.
fn write_log_header(
    log_path: &Path,
    ds: &ImageDataset,
    loss: &ImageLossConfig,
) -> anyhow_free::Result<()> {
    let mut f = std::fs::File::create(log_path)
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let ar_cols: Vec<String> = loss
        .regularized
        .iter()
        .map(|r| format!("train_ar_{}", ds.header.attributes[r.attribute]))
        .collect();
    writeln!(
        f,
        "epoch,train_loss,train_recon,train_kl,train_acc,{}{}val_loss,val_acc,images_per_s,seconds",
        ar_cols.join(","),
        if ar_cols.is_empty() { "" } else { "," }
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// Writes the epoch: the resumable model (with Adam's state), its log row (its time in
/// `summary.seconds`), and best when it is. Best last: a failure before it never leaves best
/// ahead of the model and the log.
fn save_image_epoch(
    model: &ConvVae,
    opt: &Adam,
    mut meta: CheckpointMeta,
    paths: &crate::training::RunPaths,
    summary: &mut ImageEpochSummary,
    best_val: f32,
    t0: Instant,
) -> anyhow_free::Result<()> {
    meta.train_state = Some(TrainState {
        epoch: summary.epoch as u32,
        step: opt.step_count(),
        optimizer_step: opt.step_count(),
        extra: serde_json::json!({ "best_val": best_val }),
    });
    let mut ck = model.to_checkpoint(meta.clone())?;
    ck.tensors.extend(opt.state_tensors()?);
    ck.save_atomic(&paths.model)?;
    summary.seconds = t0.elapsed().as_secs_f64();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&paths.log)
        .map_err(|e| format!("cannot append to {}: {e}", paths.log.display()))?;
    let (train, val) = (&summary.train, &summary.val);
    let ar: Vec<String> = train.ar.iter().map(|x| format!("{x:.5}")).collect();
    writeln!(
        f,
        "{},{:.4},{:.4},{:.4},{:.5},{}{}{:.4},{:.5},{:.1},{:.1}",
        summary.epoch,
        train.total,
        train.reconstruction,
        train.kl,
        train.accuracy,
        ar.join(","),
        if ar.is_empty() { "" } else { "," },
        val.total,
        val.accuracy,
        summary.images_per_s,
        summary.seconds
    )
    .map_err(|e| e.to_string())?;
    if summary.best {
        meta.train_state = None;
        model.to_checkpoint(meta)?.save_atomic(&paths.best)?;
    }
    Ok(())
}

/// Per-pixel reconstruction accuracy over `idx` from sampled z (dropout off).
pub fn reconstruction_accuracy(
    model: &ConvVae,
    ds: &ImageDataset,
    idx: &[usize],
    seed: u64,
) -> candle_core::Result<f64> {
    let loss = ImageLossConfig {
        beta: 0.0,
        gamma: 0.0,
        delta: 1.0,
        regularized: vec![],
    };
    Ok(image_loss_over(model, ds, idx, &loss, 256, seed)?.accuracy as f64)
}

/// Decodes latents (N x Z, row-major) to probabilities in [0, 1] (N x S*S).
pub fn decode_images(model: &ConvVae, z: &[f32]) -> candle_core::Result<Vec<f32>> {
    let d = model.config().latent;
    let n = z.len() / d;
    let t = Tensor::from_slice(z, (n, d), model.device())?;
    crate::model::conv_vae::decode_probabilities(model, &t)?
        .flatten_all()?
        .to_vec1::<f32>()
}

/// Classifier accuracy along one latent axis (content preservation).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContentAxis {
    /// Attribute whose dimension is traversed.
    pub attribute: String,
    /// The latent dimension.
    pub dim: usize,
    /// Accuracy over all images and traversal points.
    pub accuracy: f64,
    /// Accuracy at each traversal point.
    pub per_step: Vec<f64>,
}

/// Content preservation (paper §5.3, Fig. 7): how often a classifier still finds an image's
/// class (the digit) in the inputs, in their reconstructions and along the traversals.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContentPreservation {
    /// Images used.
    pub images: usize,
    /// Accuracy on the inputs themselves.
    pub inputs: f64,
    /// Accuracy on reconstructions decoded from the posterior mean.
    pub reconstructions: f64,
    /// Accuracy over every traversal of every axis.
    pub traversals: f64,
    /// Latent values of the traversal points.
    pub z_values: Vec<f32>,
    /// Per axis.
    pub axes: Vec<ContentAxis>,
}

/// Measures [`ContentPreservation`] on the images `idx` of `ds`: each image is encoded to its
/// posterior mean; the reconstruction decodes that mean; a traversal sets one axis' latent
/// dimension to each of `steps` values in [-range, range] (the paper: 10 in [-4, 4]) and
/// decodes. Decoded Bernoulli probabilities go to `classifier`; a prediction is right when it
/// equals the image's label. `progress(done, total)` counts images.
#[allow(clippy::too_many_arguments)]
pub fn content_preservation(
    vae: &ConvVae,
    classifier: &crate::model::classifier::ImageClassifier,
    ds: &ImageDataset,
    idx: &[usize],
    axes: &[(String, usize)],
    steps: usize,
    range: f32,
    progress: &mut dyn FnMut(usize, usize),
) -> candle_core::Result<ContentPreservation> {
    let d = vae.config().latent;
    if classifier.config().side != ds.header.width || vae.config().side() != ds.header.width {
        candle_core::bail!(
            "the classifier takes {0}x{0} images, the VAE {1}x{1}, the dataset has {2}x{2}",
            classifier.config().side,
            vae.config().side(),
            ds.header.width
        );
    }
    if let Some((name, dim)) = axes.iter().find(|(_, dim)| *dim >= d) {
        candle_core::bail!("axis {name} is latent dimension {dim}, the model has {d}");
    }
    if idx.is_empty() {
        candle_core::bail!("no images to measure content preservation on");
    }
    let z_values: Vec<f32> = (0..steps)
        .map(|k| {
            if steps == 1 {
                0.0
            } else {
                -range + 2.0 * range * k as f32 / (steps - 1) as f32
            }
        })
        .collect();
    let (mut inputs, mut recon) = (0usize, 0usize);
    let mut along = vec![vec![0usize; steps]; axes.len()];
    let hits = |pred: &[u8], chunk: &[usize]| -> usize {
        pred.iter()
            .zip(chunk)
            .filter(|(&p, &i)| ds.labels[i] == p)
            .count()
    };
    let mut done = 0;
    for chunk in idx.chunks(256) {
        let b = batch_of(ds, chunk, vae.device())?;
        let px = b.x.flatten_all()?.to_vec1::<f32>()?;
        inputs += hits(&classifier.predict(&px)?, chunk);
        let (mu, _) = vae.encode(&b.x, None)?;
        let means = mu.flatten_all()?.to_vec1::<f32>()?;
        recon += hits(&classifier.predict(&decode_images(vae, &means)?)?, chunk);
        for (a, (_, dim)) in axes.iter().enumerate() {
            for (k, &v) in z_values.iter().enumerate() {
                let mut z = means.clone();
                for row in z.chunks_mut(d) {
                    row[*dim] = v;
                }
                along[a][k] += hits(&classifier.predict(&decode_images(vae, &z)?)?, chunk);
            }
        }
        done += chunk.len();
        progress(done, idx.len());
    }
    let n = idx.len() as f64;
    let axes: Vec<ContentAxis> = axes
        .iter()
        .zip(&along)
        .map(|((name, dim), counts)| ContentAxis {
            attribute: name.clone(),
            dim: *dim,
            accuracy: counts.iter().sum::<usize>() as f64 / (n * steps as f64),
            per_step: counts.iter().map(|&c| c as f64 / n).collect(),
        })
        .collect();
    let traversals = if axes.is_empty() {
        0.0
    } else {
        axes.iter().map(|a| a.accuracy).sum::<f64>() / axes.len() as f64
    };
    Ok(ContentPreservation {
        images: idx.len(),
        inputs: inputs as f64 / n,
        reconstructions: recon as f64 / n,
        traversals,
        z_values,
        axes,
    })
}

/// The architecture for an image dataset's collection.
pub fn arch_for(collection: &str) -> Option<ConvArch> {
    match collection {
        "dsprites" => Some(ConvArch::Dsprites),
        "morpho-mnist" => Some(ConvArch::Mnist),
        _ => None,
    }
}

/// A small error type: messages from every layer, as text.
pub mod anyhow_free {
    /// An error message.
    #[derive(Debug)]
    pub struct Error(pub String);
    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Error {}
    impl From<String> for Error {
        fn from(s: String) -> Self {
            Error(s)
        }
    }
    impl From<candle_core::Error> for Error {
        fn from(e: candle_core::Error) -> Self {
            Error(e.to_string())
        }
    }
    impl From<crate::checkpoint::CheckpointError> for Error {
        fn from(e: crate::checkpoint::CheckpointError) -> Self {
            Error(e.to_string())
        }
    }
    /// Result with [`Error`].
    pub type Result<T> = std::result::Result<T, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::dataset::{ImageHeader, IMAGE_FORMAT_VERSION};
    use crate::data::images::PixelFormat;
    use crate::image_model::{classifier_shapes, ClassifierConfig};
    use crate::model::classifier::ImageClassifier;
    use rand::Rng;

    /// `n` random 28x28 images; label i % 4 of 10 classes, one attribute.
    fn digits(n: usize) -> ImageDataset {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        ImageDataset {
            header: ImageHeader {
                format_version: IMAGE_FORMAT_VERSION,
                kind: "images".into(),
                collection: "morpho-mnist".into(),
                source: "test".into(),
                source_digests: vec![],
                content_hash: String::new(),
                height: 28,
                width: 28,
                pixel_format: PixelFormat::U8,
                attributes: vec!["area".into()],
                label_name: "digit".into(),
                label_classes: (0..10).map(|d| d.to_string()).collect(),
                num_images: n,
                notes: vec![],
            },
            pixels: (0..n * 784).map(|_| rng.gen::<u8>()).collect(),
            attributes: (0..n).map(|i| i as f32).collect(),
            labels: (0..n).map(|i| (i % 4) as u8).collect(),
            split: vec![Split::Test; n],
        }
    }

    /// A classifier that answers `class` for every image: zero weights, a large bias.
    fn constant_classifier(class: usize) -> ImageClassifier {
        let cfg = ClassifierConfig::new(28, 10);
        let tensors = classifier_shapes(&cfg)
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let mut v = vec![0f32; n];
                if name == "cls.out.bias" {
                    v[class] = 10.0;
                }
                (name, (shape, v))
            })
            .collect();
        ImageClassifier::from_tensors(&cfg, &tensors, &Device::Cpu).unwrap()
    }

    #[test]
    fn content_preservation_counts_against_the_labels() {
        let ds = digits(10);
        let vae = ConvVae::new(&ConvVaeConfig::mnist(), 0, &Device::Cpu).unwrap();
        // Labels 0,1,2,3,0,1,2,3,0,1: class 1 is right for 3 of 10 images, wherever they go.
        let cls = constant_classifier(1);
        let idx: Vec<usize> = (0..10).collect();
        let axes = vec![("area".to_string(), 0), ("other".to_string(), 5)];
        let mut calls = Vec::new();
        let c = content_preservation(&vae, &cls, &ds, &idx, &axes, 3, 4.0, &mut |d, t| {
            calls.push((d, t))
        })
        .unwrap();
        assert_eq!(calls.last(), Some(&(10, 10)));
        assert_eq!(c.images, 10);
        assert_eq!(c.z_values, vec![-4.0, 0.0, 4.0]);
        assert!((c.inputs - 0.3).abs() < 1e-12);
        assert!((c.reconstructions - 0.3).abs() < 1e-12);
        assert!((c.traversals - 0.3).abs() < 1e-12);
        assert_eq!(c.axes.len(), 2);
        assert_eq!(c.axes[1].dim, 5);
        assert!(c.axes[1].per_step.iter().all(|&a| (a - 0.3).abs() < 1e-12));

        // Bad requests are errors that say what is wrong.
        let e = content_preservation(
            &vae,
            &cls,
            &ds,
            &idx,
            &[("x".into(), 16)],
            3,
            4.0,
            &mut |_, _| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("latent dimension 16"), "{e}");
        let e = content_preservation(&vae, &cls, &ds, &[], &axes, 3, 4.0, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("no images"), "{e}");
        let wide = ImageClassifier::new(&ClassifierConfig::new(64, 10), 0, &Device::Cpu).unwrap();
        let e = content_preservation(&vae, &wide, &ds, &idx, &axes, 3, 4.0, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("64x64"), "{e}");
    }
}
