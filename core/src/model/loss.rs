//! MeasureVAE losses (docs/architecture.md §6): reconstruction cross-entropy, KL to N(0, I), and the
//! attribute-regularization (AR) loss of Pati & Lerch, on the sampled z.

use candle_core::{DType, Result, Tensor, D};
use serde::{Deserialize, Serialize};

use super::measure_vae::VaeOutput;

/// Mean cross-entropy over all B x 24 tokens of logits (B, T, V) against targets (B, T) u32.
pub fn reconstruction_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    candle_nn::loss::cross_entropy(&logits.reshape((b * t, v))?, &targets.reshape(b * t)?)
}

/// Share of tokens whose argmax equals the target, as a scalar tensor.
pub fn token_accuracy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    logits
        .argmax(D::Minus1)?
        .eq(targets)?
        .to_dtype(DType::F32)?
        .mean_all()
}

/// KL(N(mu, exp(log_std)²) || N(0, 1)) summed over latent dimensions, mean over the batch.
pub fn kl_divergence(mu: &Tensor, log_std: &Tensor) -> Result<Tensor> {
    // 0.5 (σ² + μ² − 1) − log σ
    let per_dim = (((log_std * 2.0)?.exp()? + mu.sqr()?)? - 1.0)?
        .affine(0.5, 0.0)?
        .sub(log_std)?;
    per_dim.sum(D::Minus1)?.mean_all()
}

/// AR loss for one latent column z (B) and its attribute a (B): the mean over all B x B pairs
/// (diagonal included) of |tanh(delta (z_i − z_j)) − sign(a_i − a_j)|, with sign(0) = 0.
pub fn ar_loss(z: &Tensor, attribute: &Tensor, delta: f64) -> Result<Tensor> {
    let dz = z.unsqueeze(1)?.broadcast_sub(&z.unsqueeze(0)?)?;
    let da = attribute
        .unsqueeze(1)?
        .broadcast_sub(&attribute.unsqueeze(0)?)?
        .sign()?;
    ((dz * delta)?.tanh()? - da)?.abs()?.mean_all()
}

/// An attribute regularized on a latent dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegularizedDim {
    /// Attribute index (column of the attribute tensor, [`crate::music::Attribute::index`]).
    pub attribute: usize,
    /// Latent dimension it is regularized on.
    pub latent_dim: usize,
}

/// Loss weights: L = recon + beta · KL + gamma · Σ AR_l.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    /// KL weight.
    pub beta: f64,
    /// AR weight (0 gives the β-VAE baseline).
    pub gamma: f64,
    /// tanh sharpness of the AR loss.
    pub delta: f64,
    /// The regularized attributes.
    pub regularized: Vec<RegularizedDim>,
}

impl LossConfig {
    /// The music AR-VAE defaults: beta 0.001, gamma 1, delta 10, attribute l on dimension l.
    pub fn ar_vae_music() -> Self {
        LossConfig {
            beta: 0.001,
            gamma: 1.0,
            delta: 10.0,
            regularized: crate::music::Attribute::ALL
                .iter()
                .map(|a| RegularizedDim {
                    attribute: a.index(),
                    latent_dim: a.index(),
                })
                .collect(),
        }
    }

    /// The music β-VAE baseline: beta 0.001, gamma 0.
    pub fn beta_vae_music() -> Self {
        LossConfig {
            gamma: 0.0,
            regularized: Vec::new(),
            ..Self::ar_vae_music()
        }
    }
}

/// The loss terms of one batch as tensors (`total` is the one to differentiate).
#[derive(Clone, Debug)]
pub struct LossTerms {
    /// recon + beta · kl + gamma · Σ ar.
    pub total: Tensor,
    /// Reconstruction cross-entropy.
    pub reconstruction: Tensor,
    /// KL divergence.
    pub kl: Tensor,
    /// AR loss per regularized attribute, in [`LossConfig::regularized`] order.
    pub ar: Vec<Tensor>,
    /// Token accuracy of the logits.
    pub accuracy: Tensor,
}

/// The loss terms of one batch as numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LossValues {
    /// Total loss.
    pub total: f32,
    /// Reconstruction cross-entropy.
    pub reconstruction: f32,
    /// KL divergence (unweighted).
    pub kl: f32,
    /// AR loss per regularized attribute (unweighted).
    pub ar: Vec<f32>,
    /// Token accuracy.
    pub accuracy: f32,
}

impl LossTerms {
    /// Computes every term for a forward pass over tokens (B, 24) u32 with attributes (B, 4).
    pub fn new(
        out: &VaeOutput,
        tokens: &Tensor,
        attributes: &Tensor,
        cfg: &LossConfig,
    ) -> Result<Self> {
        let reconstruction = reconstruction_loss(&out.logits, tokens)?;
        let kl = kl_divergence(&out.mu, &out.log_std)?;
        let mut total = (&reconstruction + (&kl * cfg.beta)?)?;
        let mut ar = Vec::with_capacity(cfg.regularized.len());
        for r in &cfg.regularized {
            let z = out.z.narrow(1, r.latent_dim, 1)?.squeeze(1)?;
            let a = attributes.narrow(1, r.attribute, 1)?.squeeze(1)?;
            let l = ar_loss(&z, &a, cfg.delta)?;
            if cfg.gamma != 0.0 {
                total = (total + (&l * cfg.gamma)?)?;
            }
            ar.push(l);
        }
        let accuracy = token_accuracy(&out.logits, tokens)?;
        Ok(LossTerms {
            total,
            reconstruction,
            kl,
            ar,
            accuracy,
        })
    }

    /// Copies the terms to the host.
    pub fn values(&self) -> Result<LossValues> {
        let f = |t: &Tensor| t.to_dtype(DType::F32)?.to_scalar::<f32>();
        Ok(LossValues {
            total: f(&self.total)?,
            reconstruction: f(&self.reconstruction)?,
            kl: f(&self.kl)?,
            ar: self.ar.iter().map(f).collect::<Result<_>>()?,
            accuracy: f(&self.accuracy)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};

    fn ar_reference(z: &[f64], a: &[f64], delta: f64) -> f64 {
        let n = z.len();
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                let sign = (a[i] - a[j])
                    .partial_cmp(&0.0)
                    .map_or(0.0, |o| o as i8 as f64);
                s += ((delta * (z[i] - z[j])).tanh() - sign).abs();
            }
        }
        s / (n * n) as f64
    }

    #[test]
    fn ar_loss_value_and_gradient() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let n = 7;
        let z: Vec<f64> = (0..n).map(|_| rng.gen_range(-0.3..0.3)).collect();
        // Ties included: sign(0) = 0 pulls tied z together.
        let a: Vec<f64> = vec![0.1, 0.5, 0.5, 0.2, 0.0, 0.1, 0.9];
        let zv = Var::from_vec(z.clone(), n, &Device::Cpu).unwrap();
        let at = Tensor::from_vec(a.clone(), n, &Device::Cpu).unwrap();
        let delta = 10.0;
        let loss = ar_loss(zv.as_tensor(), &at, delta).unwrap();
        let value = loss.to_scalar::<f64>().unwrap();
        assert!((value - ar_reference(&z, &a, delta)).abs() < 1e-12);
        let grad = loss
            .backward()
            .unwrap()
            .get(zv.as_tensor())
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let eps = 1e-6;
        for i in 0..n {
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp[i] += eps;
            zm[i] -= eps;
            let fd = (ar_reference(&zp, &a, delta) - ar_reference(&zm, &a, delta)) / (2.0 * eps);
            let rel = (fd - grad[i]).abs() / (fd.abs() + grad[i].abs()).max(1e-9);
            assert!(
                rel < 1e-6,
                "dz[{i}]: autograd {} vs finite difference {fd}",
                grad[i]
            );
        }
    }

    #[test]
    fn kl_and_reconstruction_values() {
        let d = Device::Cpu;
        let mu = Tensor::new(&[[0.5f32, -1.0], [0.0, 0.0]], &d).unwrap();
        let ls = Tensor::new(&[[0.0f32, 0.3], [0.0, -0.2]], &d).unwrap();
        let kl = kl_divergence(&mu, &ls).unwrap().to_scalar::<f32>().unwrap();
        let term = |m: f32, l: f32| 0.5 * ((2.0 * l).exp() + m * m - 1.0) - l;
        let want = (term(0.5, 0.0) + term(-1.0, 0.3) + term(0.0, 0.0) + term(0.0, -0.2)) / 2.0;
        assert!((kl - want).abs() < 1e-6);

        // Uniform logits: CE = ln V; accuracy counts argmax (first index on ties) matches.
        let logits = Tensor::zeros((2, 24, 132), DType::F32, &d).unwrap();
        let targets = Tensor::zeros((2, 24), DType::U32, &d).unwrap();
        let ce = reconstruction_loss(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((ce - 132f32.ln()).abs() < 1e-5);
        assert_eq!(
            token_accuracy(&logits, &targets)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            1.0
        );
    }
}
