//! The convolutional image VAEs of the paper's Table 2 in candle (dSprites and Morpho-MNIST),
//! their Bernoulli loss (binary cross-entropy with logits, summed over the pixels of an
//! image, mean over the batch) and one training step with the AR loss of docs/architecture.md §6.
//!
//! Parameter names and shapes are the checkpoint contract in
//! [`crate::image_model::conv_vae_shapes`]; initial values are PyTorch's defaults for
//! `Conv2d`, `ConvTranspose2d` and `Linear` (uniform in ±1/√fan_in for weights and biases).

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, RngCore, SeedableRng};

use super::adam::Adam;
use super::conv_ops::{conv2d, conv_transpose2d};
use super::loss::{ar_loss, kl_divergence, RegularizedDim};
use super::measure_vae::selu;
use super::params;
use crate::checkpoint::{Checkpoint, CheckpointMeta, NamedTensors};
use crate::image_model::{conv_vae_shapes, CONV_VAE_KIND};
pub use crate::image_model::{ConvArch, ConvVaeConfig};
use crate::random::standard_normal;

/// PyTorch-default initial values: U(±1/√fan_in), fan_in = shape[1] * k * k.
fn initial_values(cfg: &ConvVaeConfig, seed: u64) -> NamedTensors {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let shapes = conv_vae_shapes(cfg);
    let mut out = NamedTensors::new();
    for (name, shape) in &shapes {
        let weight = if name.ends_with(".bias") {
            name.trim_end_matches(".bias").to_string() + ".weight"
        } else {
            name.clone()
        };
        let ws = &shapes.iter().find(|(n, _)| *n == weight).expect("weight").1;
        let fan_in: usize = ws[1] * ws[2..].iter().product::<usize>();
        let bound = 1.0 / (fan_in as f64).sqrt();
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|_| rng.gen_range(-bound..bound) as f32)
            .collect();
        out.insert(name.clone(), (shape.clone(), v));
    }
    out
}

/// Output of a forward pass.
#[derive(Clone, Debug)]
pub struct ImageVaeOutput {
    /// Pixel logits (B, 1, S, S).
    pub logits: Tensor,
    /// Posterior mean (B, Z).
    pub mu: Tensor,
    /// Posterior log-std (B, Z).
    pub log_std: Tensor,
    /// Sampled z (B, Z).
    pub z: Tensor,
}

/// A convolutional VAE: config, variables and device.
#[derive(Clone)]
pub struct ConvVae {
    cfg: ConvVaeConfig,
    varmap: VarMap,
    device: Device,
    p: std::collections::BTreeMap<String, Tensor>,
}

impl std::fmt::Debug for ConvVae {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConvVae").field("cfg", &self.cfg).finish()
    }
}

/// Inverted dropout with masks from `rng` (identity without an rng or with p = 0).
fn dropout(x: &Tensor, p: f32, rng: &mut Option<&mut dyn RngCore>) -> Result<Tensor> {
    let Some(rng) = rng.as_mut() else {
        return Ok(x.clone());
    };
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 / (1.0 - p);
    let m: Vec<f32> = (0..x.elem_count())
        .map(|_| if rng.gen::<f32>() < p { 0.0 } else { keep })
        .collect();
    x * Tensor::from_vec(m, x.dims(), &Device::Cpu)?.to_device(x.device())?
}

impl ConvVae {
    /// A freshly initialised model; the same seed gives the same weights on every device.
    pub fn new(cfg: &ConvVaeConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::from_tensors(cfg, &initial_values(cfg, seed), device)
    }

    /// A model with the given parameter values (all required, shapes checked).
    pub fn from_tensors(
        cfg: &ConvVaeConfig,
        tensors: &NamedTensors,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::msg)?;
        let varmap = params::varmap_from_tensors(conv_vae_shapes(cfg), tensors, device)?;
        let p = params::tensor_table(&varmap);
        Ok(ConvVae {
            cfg: cfg.clone(),
            varmap,
            device: device.clone(),
            p,
        })
    }

    /// A model from a validated conv-VAE checkpoint.
    pub fn from_checkpoint(ck: &Checkpoint, device: &Device) -> Result<Self> {
        if ck.meta.model_kind != CONV_VAE_KIND {
            candle_core::bail!(
                "model kind is {:?}, not {CONV_VAE_KIND:?}",
                ck.meta.model_kind
            );
        }
        let cfg: ConvVaeConfig =
            serde_json::from_value(ck.meta.config.clone()).map_err(candle_core::Error::wrap)?;
        Self::from_tensors(&cfg, &ck.tensors, device)
    }

    /// Current parameter values by name (on the CPU).
    pub fn to_tensors(&self) -> Result<NamedTensors> {
        params::tensors_of(self.named_vars())
    }

    /// A checkpoint of the current parameters with `meta` (kind and config replaced by ours).
    pub fn to_checkpoint(&self, mut meta: CheckpointMeta) -> Result<Checkpoint> {
        meta.model_kind = CONV_VAE_KIND.to_string();
        meta.config = serde_json::to_value(&self.cfg).map_err(candle_core::Error::wrap)?;
        meta.vocabulary = Vec::new();
        Ok(Checkpoint {
            meta,
            tensors: self.to_tensors()?,
        })
    }

    /// The config.
    pub fn config(&self) -> &ConvVaeConfig {
        &self.cfg
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The variables by name, in checkpoint order.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        params::named_vars(&self.varmap, conv_vae_shapes(&self.cfg))
    }

    /// Number of scalar parameters.
    pub fn parameter_count(&self) -> usize {
        self.named_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    fn linear(&self, prefix: &str, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.p[&format!("{prefix}.weight")].t()?)?
            .broadcast_add(&self.p[&format!("{prefix}.bias")])
    }

    fn conv_bias(&self, name: &str, x: &Tensor) -> Result<Tensor> {
        let b = &self.p[&format!("{name}.bias")];
        x.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)
    }

    /// (mean, log-std) for images (B, 1, S, S) in [0, 1]; dropout when `rng` is given.
    pub fn encode(
        &self,
        x: &Tensor,
        mut rng: Option<&mut dyn RngCore>,
    ) -> Result<(Tensor, Tensor)> {
        let mut h = x.clone();
        let dsprites = self.cfg.arch == ConvArch::Dsprites;
        for i in 0..self.cfg.enc_convs().len() {
            let name = format!("enc.conv.{i}");
            let w = &self.p[&format!("{name}.weight")];
            h = if dsprites {
                conv2d(&h, w, 1, 2)?
            } else {
                conv2d(&h, w, 0, 1)?
            };
            h = self.conv_bias(&name, &h)?;
            h = if dsprites {
                h.relu()?
            } else {
                dropout(&selu(&h)?, self.cfg.dropout, &mut rng)?
            };
        }
        let b = h.dim(0)?;
        h = h.reshape((b, ()))?;
        for i in 0..self.cfg.enc_linear().len() - 1 {
            h = self.linear(&format!("enc.linear.{i}"), &h)?;
            h = if dsprites { h.relu()? } else { selu(&h)? };
        }
        Ok((
            self.linear("enc.mean", &h)?,
            self.linear("enc.log_std", &h)?,
        ))
    }

    /// Pixel logits (B, 1, S, S) for z (B, Z); dropout when `rng` is given.
    pub fn decode(&self, z: &Tensor, mut rng: Option<&mut dyn RngCore>) -> Result<Tensor> {
        let dsprites = self.cfg.arch == ConvArch::Dsprites;
        let mut h = z.clone();
        for i in 0..self.cfg.dec_linear().len() - 1 {
            h = self.linear(&format!("dec.linear.{i}"), &h)?;
            h = if dsprites { h.relu()? } else { selu(&h)? };
        }
        let (c, s) = self.cfg.feature_map();
        h = h.reshape((z.dim(0)?, c, s, s))?;
        let n = self.cfg.dec_convs().len();
        for i in 0..n {
            let name = format!("dec.conv.{i}");
            let w = &self.p[&format!("{name}.weight")];
            h = if dsprites {
                conv_transpose2d(&h, w, 1, 2)?
            } else {
                conv_transpose2d(&h, w, 0, 1)?
            };
            h = self.conv_bias(&name, &h)?;
            if i + 1 < n {
                h = if dsprites {
                    h.relu()?
                } else {
                    dropout(&selu(&h)?, self.cfg.dropout, &mut rng)?
                };
            }
        }
        Ok(h)
    }

    /// Draws z = mu + exp(log_std) * eps with eps from `rng`.
    pub fn sample(&self, mu: &Tensor, log_std: &Tensor, rng: &mut dyn RngCore) -> Result<Tensor> {
        let eps: Vec<f32> = (0..mu.elem_count())
            .map(|_| standard_normal(rng) as f32)
            .collect();
        let eps = Tensor::from_vec(eps, mu.dims(), &Device::Cpu)?.to_device(mu.device())?;
        mu + (log_std.exp()? * eps)?
    }

    /// Encode, sample z, decode; `train` turns dropout on.
    pub fn forward(
        &self,
        x: &Tensor,
        train: bool,
        rng: &mut dyn RngCore,
    ) -> Result<ImageVaeOutput> {
        let (mu, log_std) = self.encode(x, if train { Some(&mut *rng) } else { None })?;
        let z = self.sample(&mu, &log_std, rng)?;
        let logits = self.decode(&z, if train { Some(&mut *rng) } else { None })?;
        Ok(ImageVaeOutput {
            logits,
            mu,
            log_std,
            z,
        })
    }
}

/// Bernoulli loss: binary cross-entropy of `logits` against intensities `x` in [0, 1],
/// summed over the pixels of an image, mean over the batch.
pub fn bernoulli_loss(logits: &Tensor, x: &Tensor) -> Result<Tensor> {
    let b = logits.dim(0)? as f64;
    // max(l, 0) - l x + log(1 + exp(-|l|))
    let t = ((logits.relu()? - (logits * x)?)? + ((logits.abs()?.neg()?.exp()? + 1.0)?.log()?))?;
    t.sum_all()? / b
}

/// Per-pixel accuracy of sigmoid(logit) >= 0.5 against x >= 0.5, as a scalar tensor.
pub fn pixel_accuracy(logits: &Tensor, x: &Tensor) -> Result<Tensor> {
    logits
        .ge(0.0)?
        .eq(&x.ge(0.5)?)?
        .to_dtype(DType::F32)?
        .mean_all()
}

/// One image batch on the model's device.
#[derive(Clone, Debug)]
pub struct ImageBatch {
    /// Images (B, 1, S, S) in [0, 1].
    pub x: Tensor,
    /// Attributes (B, A).
    pub attributes: Tensor,
}

impl ImageBatch {
    /// A batch from flat pixels (B*S*S) and attributes (B*A).
    pub fn new(
        pixels: Vec<f32>,
        side: usize,
        attributes: Vec<f32>,
        num_attributes: usize,
        device: &Device,
    ) -> Result<Self> {
        let b = pixels.len() / (side * side);
        Ok(ImageBatch {
            x: Tensor::from_vec(pixels, (b, 1, side, side), device)?,
            attributes: Tensor::from_vec(attributes, (b, num_attributes), device)?,
        })
    }
}

/// Loss weights and the regularized (attribute, latent dimension) pairs.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageLossConfig {
    /// KL weight.
    pub beta: f64,
    /// AR weight (0: β-VAE).
    pub gamma: f64,
    /// tanh sharpness.
    pub delta: f64,
    /// Regularized attributes.
    pub regularized: Vec<RegularizedDim>,
}

/// Scalar loss parts of one batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageLossValues {
    /// Total loss.
    pub total: f32,
    /// Bernoulli loss (per image).
    pub reconstruction: f32,
    /// KL (per image).
    pub kl: f32,
    /// AR loss per regularized attribute (unweighted).
    pub ar: Vec<f32>,
    /// Per-pixel accuracy.
    pub accuracy: f32,
}

fn loss_terms(
    model: &ConvVae,
    out: &ImageVaeOutput,
    batch: &ImageBatch,
    cfg: &ImageLossConfig,
) -> Result<(Tensor, ImageLossValues)> {
    let rec = bernoulli_loss(&out.logits, &batch.x)?;
    let kl = kl_divergence(&out.mu, &out.log_std)?;
    let mut total = (&rec + (&kl * cfg.beta)?)?;
    let mut ar = Vec::new();
    for r in &cfg.regularized {
        let z = out.z.narrow(1, r.latent_dim, 1)?.squeeze(1)?;
        let a = batch.attributes.narrow(1, r.attribute, 1)?.squeeze(1)?;
        let l = ar_loss(&z, &a, cfg.delta)?;
        if cfg.gamma != 0.0 {
            total = (total + (&l * cfg.gamma)?)?;
        }
        ar.push(l.to_scalar::<f32>()?);
    }
    let _ = model;
    let v = ImageLossValues {
        total: total.to_scalar::<f32>()?,
        reconstruction: rec.to_scalar::<f32>()?,
        kl: kl.to_scalar::<f32>()?,
        ar,
        accuracy: pixel_accuracy(&out.logits, &batch.x)?.to_scalar::<f32>()?,
    };
    Ok((total, v))
}

/// One optimisation step (dropout on); returns the loss parts.
pub fn image_train_step(
    model: &ConvVae,
    opt: &mut Adam,
    batch: &ImageBatch,
    cfg: &ImageLossConfig,
    rng: &mut dyn RngCore,
) -> Result<ImageLossValues> {
    let out = model.forward(&batch.x, true, rng)?;
    let (total, v) = loss_terms(model, &out, batch, cfg)?;
    opt.backward_step(&total)?;
    Ok(v)
}

/// Loss parts of a batch without training (dropout off, z sampled).
pub fn image_eval_step(
    model: &ConvVae,
    batch: &ImageBatch,
    cfg: &ImageLossConfig,
    rng: &mut dyn RngCore,
) -> Result<ImageLossValues> {
    let out = model.forward(&batch.x, false, rng)?;
    Ok(loss_terms(model, &out, batch, cfg)?.1)
}

/// Decoded probabilities (B, S*S) for latents z (B, Z).
pub fn decode_probabilities(model: &ConvVae, z: &Tensor) -> Result<Tensor> {
    let l = model.decode(z, None)?;
    let b = l.dim(0)?;
    candle_nn::ops::sigmoid(&l)?.reshape((b, ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AdamConfig;

    #[test]
    fn shapes_flow_through_both_architectures() {
        for cfg in [ConvVaeConfig::dsprites(), ConvVaeConfig::mnist()] {
            let m = ConvVae::new(&cfg, 0, &Device::Cpu).unwrap();
            let s = cfg.side();
            let x = Tensor::zeros((3, 1, s, s), DType::F32, &Device::Cpu).unwrap();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            let out = m.forward(&x, true, &mut rng).unwrap();
            assert_eq!(out.logits.dims(), &[3, 1, s, s]);
            assert_eq!(out.z.dims(), &[3, cfg.latent]);
        }
    }

    #[test]
    fn bernoulli_loss_is_summed_per_image() {
        let l = Tensor::new(&[[0.0f32, 0.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        let x = Tensor::new(&[[1.0f32, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap();
        let v = bernoulli_loss(&l, &x).unwrap().to_scalar::<f32>().unwrap();
        assert!((v - 2.0 * std::f32::consts::LN_2).abs() < 1e-6, "{v}");
        let l = Tensor::new(&[[30.0f32, -30.0]], &Device::Cpu).unwrap();
        let x = Tensor::new(&[[1.0f32, 0.0]], &Device::Cpu).unwrap();
        assert!(bernoulli_loss(&l, &x).unwrap().to_scalar::<f32>().unwrap() < 1e-9);
        assert_eq!(
            pixel_accuracy(&l, &x).unwrap().to_scalar::<f32>().unwrap(),
            1.0
        );
    }

    /// candle's transposed-convolution backward against finite differences (stride 2, pad 1).
    #[test]
    fn conv_transpose_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4, 4), &dev).unwrap();
        let w0 = Tensor::randn(0f32, 0.5, (3, 2, 4, 4), &dev).unwrap();
        let w = Var::from_tensor(&w0).unwrap();
        let f = |w: &Tensor| {
            x.conv_transpose2d(w, 1, 0, 2, 1)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let g = f(w.as_tensor()).backward().unwrap();
        let gw = g
            .get(w.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let base = w0.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for k in [0usize, 7, 19, 40, 95] {
            let eps = 1e-2f32;
            let mut p = base.clone();
            p[k] += eps;
            let mut m = base.clone();
            m[k] -= eps;
            let fp = f(&Tensor::from_vec(p, (3, 2, 4, 4), &dev).unwrap())
                .to_scalar::<f32>()
                .unwrap();
            let fm = f(&Tensor::from_vec(m, (3, 2, 4, 4), &dev).unwrap())
                .to_scalar::<f32>()
                .unwrap();
            let fd = (fp - fm) / (2.0 * eps);
            assert!(
                (fd - gw[k]).abs() < 2e-2 * fd.abs().max(1.0),
                "{k}: {fd} vs {}",
                gw[k]
            );
        }
    }

    #[test]
    fn ar_vae_learns_to_order_a_toy_attribute() {
        // Bars of varying width on 28 x 28: a few steps lower the loss and AR loss.
        let cfg = ConvVaeConfig {
            latent: 4,
            ..ConvVaeConfig::mnist()
        };
        let m = ConvVae::new(&cfg, 0, &Device::Cpu).unwrap();
        let mut opt = Adam::new(
            m.named_vars(),
            AdamConfig {
                lr: 1e-3,
                ..Default::default()
            },
        )
        .unwrap();
        let mut px = Vec::new();
        let mut at = Vec::new();
        for i in 0..16 {
            let wdt = 2 + i % 8;
            for r in 0..28 {
                for c in 0..28 {
                    px.push(if (4..24).contains(&r) && c >= 10 && c < 10 + wdt {
                        1.0
                    } else {
                        0.0
                    });
                }
            }
            at.push(wdt as f32);
        }
        let batch = ImageBatch::new(px, 28, at, 1, &Device::Cpu).unwrap();
        let lc = ImageLossConfig {
            beta: 1.0,
            gamma: 10.0,
            delta: 1.0,
            regularized: vec![RegularizedDim {
                attribute: 0,
                latent_dim: 0,
            }],
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let first = image_train_step(&m, &mut opt, &batch, &lc, &mut rng).unwrap();
        let mut last = first.clone();
        for _ in 0..30 {
            last = image_train_step(&m, &mut opt, &batch, &lc, &mut rng).unwrap();
        }
        assert!(last.total < first.total, "{first:?} -> {last:?}");
        assert!(last.ar[0] < first.ar[0], "{first:?} -> {last:?}");
    }
}
