//! The loss terms and their gradients (docs/architecture.md §6; the same as `model::loss`):
//! cross-entropy of the logits per part of the batch, and over the whole batch KL to N(0, I)
//! and the attribute-regularization (AR) term on the sampled z.

use super::kernels::{argmax, exp};
use super::layers::T;
use crate::music::Attribute;

/// Attribute values per measure: the row width of the attributes (B, 4) of a batch.
pub(super) const ATTRIBUTES: usize = Attribute::ALL.len();

/// Loss weights (the same meaning as `model::LossConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct NativeLoss {
    /// KL weight.
    pub beta: f64,
    /// AR weight (0: β-VAE; the AR terms are still reported).
    pub gamma: f64,
    /// tanh sharpness of the AR loss.
    pub delta: f64,
    /// (attribute column, latent dimension) pairs.
    pub regularized: Vec<(usize, usize)>,
}

/// Loss parts of one batch (the same meaning as `model::LossValues`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepValues {
    /// recon + beta · kl + gamma · Σ ar.
    pub total: f32,
    /// Cross-entropy, mean over B x 24 tokens.
    pub reconstruction: f32,
    /// KL divergence, mean over the batch.
    pub kl: f32,
    /// AR loss per regularized attribute.
    pub ar: Vec<f32>,
    /// Share of tokens whose argmax is the target.
    pub accuracy: f32,
}

/// The logits of one part of the batch, (T, rows, vocab) after the optional ReLU (`pre`:
/// before it, `relu`: whether it applies), against its `tokens` (rows, T).
pub(super) struct Logits<'a> {
    pub logits: &'a [f32],
    pub pre: &'a [f32],
    pub relu: bool,
    pub tokens: &'a [u32],
    pub rows: usize,
    pub vocab: usize,
}

/// Cross-entropy summed over the part's tokens and the count of tokens whose argmax is the
/// target; with `dlogits`, writes d loss / d logits of the batch mean (over `batch` x 24).
pub(super) fn cross_entropy(
    lg: &Logits,
    batch: usize,
    mut dlogits: Option<&mut [f32]>,
) -> (f64, usize) {
    let (rows, v) = (lg.rows, lg.vocab);
    let scale = 1.0 / (batch * T) as f32;
    let (mut ce, mut correct) = (0.0f64, 0usize);
    for t in 0..T {
        for b in 0..rows {
            let i = (t * rows + b) * v;
            let row = &lg.logits[i..i + v];
            let target = lg.tokens[b * T + t] as usize;
            let best = argmax(row);
            let max = row[best];
            correct += (best == target) as usize;
            let sum: f32 = row.iter().map(|&x| exp(x - max)).sum();
            ce += (sum.ln() + max - row[target]) as f64;
            if let Some(dl) = dlogits.as_deref_mut() {
                let d = &mut dl[i..i + v];
                let k = scale / sum;
                for (d, &x) in d.iter_mut().zip(row) {
                    *d = exp(x - max) * k;
                }
                d[target] -= scale;
                if lg.relu {
                    for (d, &x) in d.iter_mut().zip(&lg.pre[i..i + v]) {
                        if x < 0.0 {
                            *d = 0.0;
                        }
                    }
                }
            }
        }
    }
    (ce, correct)
}

/// KL(N(mu, exp(ls)²) || N(0, 1)) summed over all rows and dimensions.
pub(super) fn kl_sum(mu: &[f32], ls: &[f32]) -> f64 {
    let mut kl = 0.0f64;
    for (&m, &l) in mu.iter().zip(ls) {
        kl += 0.5 * (((2.0 * l).exp() + m * m - 1.0) as f64) - l as f64;
    }
    kl
}

/// The sampled latent code of the whole batch (B, latent), with its mean and log-std.
pub(super) struct BatchLatent<'a> {
    pub mu: &'a [f32],
    pub ls: &'a [f32],
    pub z: &'a [f32],
    pub batch: usize,
    pub latent: usize,
}

/// AR loss of one attribute (column `attr` of `attributes` (B, 4)) over all B x B pairs on
/// latent column `dim`; with `grad` = (gamma, dz), adds gamma · d AR / d z to dz. Matches
/// candle's autograd including |x|' = 1 at 0 (the two orders of each pair cancel there).
pub(super) fn ar_term(
    lat: &BatchLatent,
    attributes: &[f32],
    (attr, dim): (usize, usize),
    delta: f64,
    grad: Option<(f64, &mut [f32])>,
) -> f32 {
    let (z, batch, zd) = (lat.z, lat.batch, lat.latent);
    let delta32 = delta as f32;
    let n2 = (batch * batch) as f32;
    let mut sum = 0.0f64;
    let mut dz = vec![0.0f32; batch];
    for i in 0..batch {
        let (zi, ai) = (z[i * zd + dim], attributes[i * ATTRIBUTES + attr]);
        for j in 0..batch {
            let (zj, aj) = (z[j * zd + dim], attributes[j * ATTRIBUTES + attr]);
            let u = ((zi - zj) * delta32).tanh();
            let da = ai - aj;
            let s = if da > 0.0 {
                1.0
            } else if da < 0.0 {
                -1.0
            } else {
                0.0
            };
            let arg = u - s;
            sum += arg.abs() as f64;
            let sg = if arg >= 0.0 { 1.0 } else { -1.0 };
            let gij = sg * (1.0 - u * u) * delta32 / n2;
            dz[i] += gij;
            dz[j] -= gij;
        }
    }
    if let Some((gamma, out)) = grad {
        for (i, d) in dz.iter().enumerate() {
            out[i * zd + dim] += gamma as f32 * d;
        }
    }
    (sum / (batch * batch) as f64) as f32
}

/// KL and AR of the whole batch with the part sums of cross-entropy `ce` and of correct
/// tokens: the step's loss values, and (when gamma ≠ 0) gamma · d AR / d z (B, latent).
pub(super) fn batch_loss(
    lat: &BatchLatent,
    attributes: &[f32],
    loss: &NativeLoss,
    (ce, correct): (f64, usize),
) -> (StepValues, Vec<f32>) {
    let batch = lat.batch;
    let bf = batch as f64;
    let kl = kl_sum(lat.mu, lat.ls) / bf;
    let mut dz_ar = vec![0.0f32; batch * lat.latent];
    let ar: Vec<f32> = loss
        .regularized
        .iter()
        .map(|&pair| {
            let grad = (loss.gamma != 0.0).then_some((loss.gamma, &mut dz_ar[..]));
            ar_term(lat, attributes, pair, loss.delta, grad)
        })
        .collect();
    let recon = ce / (bf * T as f64);
    let mut total = recon + loss.beta * kl;
    if loss.gamma != 0.0 {
        total += loss.gamma * ar.iter().map(|&x| x as f64).sum::<f64>();
    }
    let values = StepValues {
        total: total as f32,
        reconstruction: recon as f32,
        kl: kl as f32,
        ar,
        accuracy: correct as f32 / (batch * T) as f32,
    };
    (values, dz_ar)
}

/// d loss / d mu and d loss / d log-std of rows `r0`.. (`dmu.len()` / latent of them) from
/// d loss / d z: the decoder's `dz` (these rows) plus the AR term's `dz_ar` (whole batch),
/// through z = mu + exp(ls) · eps, plus beta times KL's own gradients.
pub(super) fn latent_gradients(
    lat: &BatchLatent,
    eps: &[f32],
    beta: f64,
    r0: usize,
    dz: &[f32],
    dz_ar: &[f32],
    (dmu, dls): (&mut [f32], &mut [f32]),
) {
    let beta = beta as f32;
    let inv_b = 1.0 / lat.batch as f32;
    let zd = lat.latent;
    for i in 0..dmu.len() {
        let gi = r0 * zd + i;
        let dz = dz[i] + dz_ar[gi];
        let (m, l) = (lat.mu[gi], lat.ls[gi]);
        dmu[i] = dz + beta * m * inv_b;
        dls[i] = dz * l.exp() * eps[gi] + beta * ((2.0 * l).exp() - 1.0) * inv_b;
    }
}
