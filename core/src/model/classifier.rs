//! The content-preservation classifier (paper §5.3, Fig. 7): a small CNN in candle that
//! predicts an image dataset's class label (the digit of Morpho-MNIST, the shape of dSprites)
//! from intensities in [0, 1]. Trained on the training split by `classify-train`; `eval
//! --content` then asks it which class the VAE's reconstructions and traversals show.
//!
//! The paper used a ResNet-18 (96.15 % on the MNIST test set); this three-convolution network
//! reaches more than 98 % in a few epochs on the CPU and is what the accuracies are measured
//! with here. Parameter names and shapes are [`crate::image_model::classifier_shapes`].

use candle_core::{DType, Device, Result, Tensor, Var, D};
use candle_nn::VarMap;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

use super::adam::{Adam, AdamConfig};
use super::conv_ops::conv2d;
use super::params;
use crate::checkpoint::{Checkpoint, CheckpointMeta, DatasetInfo, FORMAT_VERSION};
use crate::data::dataset::Split;
use crate::data::images::ImageDataset;
use crate::image_model::{classifier_shapes, ClassifierConfig, IMAGE_CLASSIFIER_KIND};

/// The classifier: config, variables and device.
#[derive(Clone)]
pub struct ImageClassifier {
    cfg: ClassifierConfig,
    varmap: VarMap,
    device: Device,
    p: std::collections::BTreeMap<String, Tensor>,
}

impl std::fmt::Debug for ImageClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageClassifier")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl ImageClassifier {
    /// A freshly initialised classifier (PyTorch's default U(±1/√fan_in) for every weight
    /// and bias); the same seed gives the same weights.
    pub fn new(cfg: &ClassifierConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let shapes = classifier_shapes(cfg);
        let mut values = crate::checkpoint::NamedTensors::new();
        for (name, shape) in &shapes {
            let weight = match name.strip_suffix(".bias") {
                Some(layer) => format!("{layer}.weight"),
                None => name.clone(),
            };
            let ws = &shapes.iter().find(|(n, _)| *n == weight).expect("weight").1;
            let fan_in: usize = ws[1..].iter().product();
            let bound = 1.0 / (fan_in as f64).sqrt();
            let n: usize = shape.iter().product();
            let v = (0..n)
                .map(|_| rng.gen_range(-bound..bound) as f32)
                .collect();
            values.insert(name.clone(), (shape.clone(), v));
        }
        Self::from_tensors(cfg, &values, device)
    }

    /// A classifier with the given parameter values (all required, shapes checked).
    pub fn from_tensors(
        cfg: &ClassifierConfig,
        tensors: &crate::checkpoint::NamedTensors,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::msg)?;
        let varmap = params::varmap_from_tensors(classifier_shapes(cfg), tensors, device)?;
        let p = params::tensor_table(&varmap);
        Ok(ImageClassifier {
            cfg: cfg.clone(),
            varmap,
            device: device.clone(),
            p,
        })
    }

    /// A classifier from a validated checkpoint of kind [`IMAGE_CLASSIFIER_KIND`].
    pub fn from_checkpoint(ck: &Checkpoint, device: &Device) -> Result<Self> {
        if ck.meta.model_kind != IMAGE_CLASSIFIER_KIND {
            candle_core::bail!(
                "model kind is {:?}, not an image classifier ({IMAGE_CLASSIFIER_KIND:?}; make one with classify-train)",
                ck.meta.model_kind
            );
        }
        let cfg: ClassifierConfig =
            serde_json::from_value(ck.meta.config.clone()).map_err(candle_core::Error::wrap)?;
        Self::from_tensors(&cfg, &ck.tensors, device)
    }

    /// A checkpoint of the current parameters: no vocabulary, no attributes, the dataset and
    /// `evaluation` (e.g. the test accuracy) in the metadata.
    pub fn to_checkpoint(
        &self,
        dataset: DatasetInfo,
        training: serde_json::Value,
        evaluation: Option<serde_json::Value>,
    ) -> Result<Checkpoint> {
        let tensors = params::tensors_of(self.named_vars())?;
        Ok(Checkpoint {
            meta: CheckpointMeta {
                format_version: FORMAT_VERSION,
                model_kind: IMAGE_CLASSIFIER_KIND.to_string(),
                config: serde_json::to_value(&self.cfg).map_err(candle_core::Error::wrap)?,
                vocabulary: Vec::new(),
                attributes: Vec::new(),
                calibration: Vec::new(),
                training,
                dataset,
                evaluation,
                train_state: None,
                prior: None,
                pitch_range: None,
            },
            tensors,
        })
    }

    /// The config.
    pub fn config(&self) -> &ClassifierConfig {
        &self.cfg
    }

    /// The variables by name, in checkpoint order.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        params::named_vars(&self.varmap, classifier_shapes(&self.cfg))
    }

    fn conv(&self, i: usize, x: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
        let w = &self.p[&format!("cls.conv.{i}.weight")];
        let b = &self.p[&format!("cls.conv.{i}.bias")];
        conv2d(x, w, pad, stride)?
            .broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?
            .relu()
    }

    fn linear(&self, prefix: &str, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.p[&format!("{prefix}.weight")].t()?)?
            .broadcast_add(&self.p[&format!("{prefix}.bias")])
    }

    /// Class logits (B, classes) for images (B, 1, S, S); dropout when `rng` is given.
    pub fn forward(&self, x: &Tensor, rng: Option<&mut dyn RngCore>) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        if c != 1 || h != self.cfg.side || w != self.cfg.side {
            candle_core::bail!(
                "the classifier takes (B, 1, {s}, {s}) images, got ({b}, {c}, {h}, {w})",
                s = self.cfg.side
            );
        }
        let h = self.conv(0, x, 1, 1)?;
        let h = self.conv(1, &h, 1, 2)?;
        let h = self.conv(2, &h, 1, 2)?;
        let mut h = self.linear("cls.linear", &h.reshape((b, ()))?)?.relu()?;
        if let Some(rng) = rng {
            let p = self.cfg.dropout;
            if p > 0.0 {
                let keep = 1.0 / (1.0 - p);
                let m: Vec<f32> = (0..h.elem_count())
                    .map(|_| if rng.gen::<f32>() < p { 0.0 } else { keep })
                    .collect();
                let mask = Tensor::from_vec(m, h.dims(), &Device::Cpu)?.to_device(&self.device)?;
                h = (h * mask)?;
            }
        }
        self.linear("cls.out", &h)
    }

    /// The predicted class of each image; `pixels` holds N images of S*S intensities.
    pub fn predict(&self, pixels: &[f32]) -> Result<Vec<u8>> {
        let n = self.cfg.side * self.cfg.side;
        if !pixels.len().is_multiple_of(n) {
            candle_core::bail!(
                "{} pixels are not a whole number of {}x{} images",
                pixels.len(),
                self.cfg.side,
                self.cfg.side
            );
        }
        let mut out = Vec::with_capacity(pixels.len() / n);
        for chunk in pixels.chunks(256 * n) {
            let b = chunk.len() / n;
            let x = Tensor::from_slice(chunk, (b, 1, self.cfg.side, self.cfg.side), &self.device)?;
            let pred = self
                .forward(&x, None)?
                .argmax(D::Minus1)?
                .to_vec1::<u32>()?;
            out.extend(pred.into_iter().map(|p| p as u8));
        }
        Ok(out)
    }

    /// Share of `idx` whose predicted class is the dataset's label.
    pub fn accuracy(&self, ds: &ImageDataset, idx: &[usize]) -> Result<f64> {
        if idx.is_empty() {
            return Ok(0.0);
        }
        let n = ds.pixels_per_image();
        let mut correct = 0usize;
        let mut px = vec![0f32; 256 * n];
        for chunk in idx.chunks(256) {
            for (k, &i) in chunk.iter().enumerate() {
                ds.image_into(i, &mut px[k * n..(k + 1) * n]);
            }
            let pred = self.predict(&px[..chunk.len() * n])?;
            correct += chunk
                .iter()
                .zip(&pred)
                .filter(|(&i, &p)| ds.labels[i] == p)
                .count();
        }
        Ok(correct as f64 / idx.len() as f64)
    }
}

/// How to train the classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierTrainConfig {
    /// Epochs over the training split.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed of initialisation, shuffling, shifts and dropout.
    pub seed: u64,
    /// Random translation of each training image by up to this many pixels (zero fill).
    pub max_shift: usize,
    /// Train on at most this many images per epoch (a fresh random subset each epoch).
    pub max_train_images: Option<usize>,
}

impl Default for ClassifierTrainConfig {
    fn default() -> Self {
        ClassifierTrainConfig {
            epochs: 3,
            batch: 128,
            lr: 1e-3,
            seed: 0,
            max_shift: 2,
            max_train_images: None,
        }
    }
}

/// What one classifier epoch did.
#[derive(Clone, Debug, Serialize)]
pub struct ClassifierEpoch {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's batches.
    pub train_loss: f64,
    /// Accuracy on the training batches (with dropout and shifts).
    pub train_accuracy: f64,
    /// Accuracy on the validation split (the test split when there is no validation split).
    pub val_accuracy: f64,
    /// Training images per second.
    pub images_per_s: f64,
}

/// `img` (S x S) moved by (dx, dy) pixels, zero fill.
fn shifted(img: &[f32], side: usize, dx: isize, dy: isize, out: &mut [f32]) {
    for y in 0..side {
        for x in 0..side {
            let (sx, sy) = (x as isize - dx, y as isize - dy);
            out[y * side + x] =
                if sx >= 0 && sy >= 0 && (sx as usize) < side && (sy as usize) < side {
                    img[sy as usize * side + sx as usize]
                } else {
                    0.0
                };
        }
    }
}

/// Trains a classifier on the training split of `ds` (labels: `ds.labels`), checking it on the
/// validation split after each epoch; `on_batch(done, total, running loss, images/s)` and
/// `on_epoch` report progress. Returns the classifier after the last epoch.
pub fn train_classifier(
    ds: &ImageDataset,
    cfg: &ClassifierTrainConfig,
    device: &Device,
    on_batch: &mut dyn FnMut(usize, usize, f64, f64),
    on_epoch: &mut dyn FnMut(&ClassifierEpoch),
) -> Result<ImageClassifier> {
    let side = ds.header.width;
    if ds.header.height != side {
        candle_core::bail!(
            "images are {}x{}; the classifier takes square images",
            ds.header.height,
            side
        );
    }
    let classes = ds.header.label_classes.len();
    let model_cfg = ClassifierConfig::new(side, classes);
    model_cfg.validate().map_err(candle_core::Error::msg)?;
    if let Some(&bad) = ds.labels.iter().find(|&&l| l as usize >= classes) {
        candle_core::bail!("label {bad} is out of range for {classes} classes");
    }
    let train = ds.indices(Split::Train);
    if train.is_empty() {
        candle_core::bail!("the training split is empty");
    }
    let mut val = ds.indices(Split::Val);
    if val.is_empty() {
        val = ds.indices(Split::Test);
    }
    let model = ImageClassifier::new(&model_cfg, cfg.seed, device)?;
    let mut opt = Adam::new(
        model.named_vars(),
        AdamConfig {
            lr: cfg.lr,
            ..AdamConfig::default()
        },
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x00c1_a551_f1e5);
    let n = side * side;
    let batch = cfg.batch.max(1);
    let shift = cfg.max_shift as isize;
    let mut raw = vec![0f32; n];
    for epoch in 1..=cfg.epochs {
        let mut order = train.clone();
        order.shuffle(&mut rng);
        if let Some(m) = cfg.max_train_images {
            order.truncate(m.max(1));
        }
        let batches = order.len().div_ceil(batch);
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        for (bi, chunk) in order.chunks(batch).enumerate() {
            let mut px = vec![0f32; chunk.len() * n];
            let mut labels = Vec::with_capacity(chunk.len());
            for (k, &i) in chunk.iter().enumerate() {
                ds.image_into(i, &mut raw);
                let (dx, dy) = if shift > 0 {
                    (rng.gen_range(-shift..=shift), rng.gen_range(-shift..=shift))
                } else {
                    (0, 0)
                };
                shifted(&raw, side, dx, dy, &mut px[k * n..(k + 1) * n]);
                labels.push(ds.labels[i] as u32);
            }
            let x = Tensor::from_vec(px, (chunk.len(), 1, side, side), device)?;
            let y = Tensor::from_vec(labels, chunk.len(), device)?;
            let logits = model.forward(&x, Some(&mut rng))?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            opt.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            correct += logits
                .argmax(D::Minus1)?
                .eq(&y)?
                .to_dtype(DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()? as usize;
            seen += chunk.len();
            let ips = seen as f64 / start.elapsed().as_secs_f64().max(1e-9);
            on_batch(bi + 1, batches, loss_sum / seen as f64, ips);
        }
        let ips = seen as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let val_accuracy = model.accuracy(ds, &val)?;
        on_epoch(&ClassifierEpoch {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_accuracy,
            images_per_s: ips,
        });
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::dataset::ImageHeader;
    use crate::data::images::PixelFormat;

    /// 8x8 images of two classes: a bright left half (class 0) or a bright right half (1),
    /// with noise.
    fn halves(n: usize, seed: u64) -> ImageDataset {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let side = 8;
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        let mut split = Vec::new();
        for i in 0..n {
            let c = (i % 2) as u8;
            for _y in 0..side {
                for x in 0..side {
                    let on = (x < side / 2) == (c == 0);
                    let v: f32 = if on { 0.8 } else { 0.1 } + rng.gen_range(-0.1..0.1);
                    pixels.push((v.clamp(0.0, 1.0) * 255.0) as u8);
                }
            }
            labels.push(c);
            split.push(match i % 10 {
                0 => Split::Val,
                1 => Split::Test,
                _ => Split::Train,
            });
        }
        ImageDataset {
            header: ImageHeader {
                format_version: crate::data::images::dataset::IMAGE_FORMAT_VERSION,
                kind: "images".into(),
                collection: "test".into(),
                source: "test".into(),
                source_digests: vec![],
                content_hash: String::new(),
                height: side,
                width: side,
                pixel_format: PixelFormat::U8,
                attributes: vec![],
                label_name: "half".into(),
                label_classes: vec!["left".into(), "right".into()],
                num_images: n,
                notes: vec![],
            },
            pixels,
            attributes: vec![],
            labels,
            split,
        }
    }

    #[test]
    fn shapes_and_bad_inputs() {
        let cfg = ClassifierConfig::new(8, 3);
        let m = ImageClassifier::new(&cfg, 0, &Device::Cpu).unwrap();
        let x = Tensor::zeros((5, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(m.forward(&x, None).unwrap().dims(), &[5, 3]);
        assert_eq!(m.predict(&vec![0.0; 2 * 64]).unwrap().len(), 2);
        let wrong = Tensor::zeros((5, 1, 12, 12), DType::F32, &Device::Cpu).unwrap();
        let e = m.forward(&wrong, None).unwrap_err().to_string();
        assert!(e.contains("(B, 1, 8, 8)"), "{e}");
        assert!(m.predict(&[0.0; 65]).is_err());
        assert!(ClassifierConfig::new(30, 10).validate().is_err());
        assert!(ClassifierConfig::new(28, 1).validate().is_err());
    }

    #[test]
    fn shift_moves_pixels_and_fills_zero() {
        let img: Vec<f32> = (0..9).map(|v| v as f32 + 1.0).collect();
        let mut out = vec![0.0; 9];
        shifted(&img, 3, 1, 0, &mut out);
        assert_eq!(out, vec![0.0, 1.0, 2.0, 0.0, 4.0, 5.0, 0.0, 7.0, 8.0]);
        shifted(&img, 3, 0, -1, &mut out);
        assert_eq!(out, vec![4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn learns_a_separable_task_and_round_trips_through_a_checkpoint() {
        let ds = halves(400, 1);
        let cfg = ClassifierTrainConfig {
            epochs: 4,
            batch: 32,
            lr: 3e-3,
            seed: 0,
            max_shift: 1,
            max_train_images: None,
        };
        let mut epochs = Vec::new();
        let m = train_classifier(&ds, &cfg, &Device::Cpu, &mut |_, _, _, _| {}, &mut |e| {
            epochs.push(e.clone())
        })
        .unwrap();
        assert_eq!(epochs.len(), 4);
        assert!(epochs[3].train_loss < epochs[0].train_loss);
        let test = ds.indices(Split::Test);
        let acc = m.accuracy(&ds, &test).unwrap();
        assert!(acc > 0.95, "test accuracy {acc}");
        let ck = m
            .to_checkpoint(
                DatasetInfo {
                    id: "t".into(),
                    collection: "test".into(),
                    hash: String::new(),
                },
                serde_json::Value::Null,
                None,
            )
            .unwrap();
        ck.validate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cls.safetensors");
        ck.save_atomic(&path).unwrap();
        let back =
            ImageClassifier::from_checkpoint(&Checkpoint::load(&path).unwrap(), &Device::Cpu)
                .unwrap();
        assert_eq!(back.accuracy(&ds, &test).unwrap(), acc);
    }

    #[test]
    fn labels_out_of_range_are_an_error() {
        let mut ds = halves(40, 2);
        ds.labels[3] = 7;
        let e = train_classifier(
            &ds,
            &ClassifierTrainConfig::default(),
            &Device::Cpu,
            &mut |_, _, _, _| {},
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("label 7"), "{e}");
    }
}
