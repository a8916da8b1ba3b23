//! The model's own distribution of codes, for drawing the free latent dimensions.
//!
//! A MeasureVAE trained with beta = 0.001 does not put its codes at N(0, I): the aggregate
//! posterior of the training measures has its own mean and covariance, and a decoder fed codes
//! far from it plays broken bars (24 onsets, MIDI 127, empty bars). [`CodePrior`] holds a
//! Gaussian fitted to that aggregate posterior (mean of the posterior means; covariance of the
//! means plus the mean posterior variance), stored in the checkpoint by the trainer.

use serde::{Deserialize, Serialize};

/// A Gaussian over latent codes: what the checkpoint stores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodePrior {
    /// Mean (latent values).
    pub mean: Vec<f32>,
    /// Covariance, row-major latent x latent.
    pub covariance: Vec<f32>,
    /// Measures it was estimated from.
    pub measures: u64,
}

impl CodePrior {
    /// The standard normal N(0, I): what a checkpoint without a stored prior gets.
    pub fn standard(latent: usize) -> Self {
        let mut covariance = vec![0.0; latent * latent];
        for i in 0..latent {
            covariance[i * latent + i] = 1.0;
        }
        CodePrior {
            mean: vec![0.0; latent],
            covariance,
            measures: 0,
        }
    }

    /// The Gaussian of the aggregate posterior of `n` encoded measures: `means` and
    /// `log_stds` are `n x latent`, row-major. `None` when `n` is 0 or a value is not finite.
    pub fn from_posteriors(means: &[f32], log_stds: &[f32], latent: usize) -> Option<Self> {
        if means.len() != log_stds.len() {
            return None;
        }
        Self::moments(means, Some(log_stds), latent)
    }

    /// The Gaussian of sampled codes (`n x latent`, row-major; z = mean + std * eps drawn
    /// from each posterior), whose moments are the aggregate posterior's.
    pub fn from_codes(codes: &[f32], latent: usize) -> Option<Self> {
        Self::moments(codes, None, latent)
    }

    fn moments(means: &[f32], log_stds: Option<&[f32]>, latent: usize) -> Option<Self> {
        let n = means.len() / latent.max(1);
        if n == 0 || means.len() != n * latent {
            return None;
        }
        let mut mean = vec![0f64; latent];
        for row in means.chunks(latent) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += x as f64 / n as f64;
            }
        }
        let mut cov = vec![0f64; latent * latent];
        for row in means.chunks(latent) {
            for i in 0..latent {
                let di = row[i] as f64 - mean[i];
                for j in 0..=i {
                    cov[i * latent + j] += di * (row[j] as f64 - mean[j]) / n as f64;
                }
            }
        }
        for row in log_stds.unwrap_or(&[]).chunks(latent) {
            for (i, &s) in row.iter().enumerate() {
                cov[i * latent + i] += (2.0 * s as f64).exp() / n as f64;
            }
        }
        for i in 0..latent {
            for j in 0..i {
                cov[j * latent + i] = cov[i * latent + j];
            }
        }
        let prior = CodePrior {
            mean: mean.iter().map(|&x| x as f32).collect(),
            covariance: cov.iter().map(|&x| x as f32).collect(),
            measures: n as u64,
        };
        prior.validate(latent).ok().map(|_| prior)
    }

    /// Checks sizes, finiteness and that the covariance is symmetric positive definite.
    pub fn validate(&self, latent: usize) -> Result<(), String> {
        if self.mean.len() != latent || self.covariance.len() != latent * latent {
            return Err(format!(
                "prior has {} mean values and {} covariance values for {latent} latent dimensions",
                self.mean.len(),
                self.covariance.len()
            ));
        }
        if self
            .mean
            .iter()
            .chain(&self.covariance)
            .any(|x| !x.is_finite())
        {
            return Err("prior has a non-finite value".into());
        }
        for i in 0..latent {
            for j in 0..i {
                let (a, b) = (
                    self.covariance[i * latent + j],
                    self.covariance[j * latent + i],
                );
                if (a - b).abs() > 1e-4 * (1.0 + a.abs().max(b.abs())) {
                    return Err(format!("prior covariance is not symmetric at ({i}, {j})"));
                }
            }
        }
        cholesky(&self.covariance, latent)
            .map(|_| ())
            .ok_or_else(|| "prior covariance is not positive definite".into())
    }
}

/// Lower Cholesky factor of a symmetric positive definite `n x n` matrix (row-major), in f64;
/// `None` when it is not positive definite.
pub fn cholesky(a: &[f32], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j] as f64;
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// Draws of the free (non-regularized) dimensions from a [`CodePrior`]'s marginal: z_free =
/// mean_free + L u for standard normal u, with L the Cholesky factor of the free block of the
/// covariance. The marginal leaves the free dimensions independent of the knobs, so moving a
/// knob keeps the melody's identity (the paper's manipulation).
#[derive(Clone, Debug)]
pub struct FreeSampler {
    latent: usize,
    free: Vec<usize>,
    mean: Vec<f32>,
    chol: Vec<f64>,
}

impl FreeSampler {
    /// The sampler of `prior` with `regularized` dimensions left out.
    pub fn new(prior: &CodePrior, regularized: &[usize]) -> Result<Self, String> {
        let d = prior.mean.len();
        prior.validate(d)?;
        let free: Vec<usize> = (0..d).filter(|i| !regularized.contains(i)).collect();
        let f = free.len();
        let block: Vec<f32> = free
            .iter()
            .flat_map(|&i| free.iter().map(move |&j| prior.covariance[i * d + j]))
            .collect();
        let chol = cholesky(&block, f).ok_or("prior covariance is not positive definite")?;
        Ok(FreeSampler {
            latent: d,
            mean: free.iter().map(|&i| prior.mean[i]).collect(),
            free,
            chol,
        })
    }

    /// Latent dimensions of a code.
    pub fn latent(&self) -> usize {
        self.latent
    }

    /// The free dimensions.
    pub fn free(&self) -> &[usize] {
        &self.free
    }

    /// Writes the free dimensions of `z` from standard normal values `u` (one per free
    /// dimension); the regularized dimensions of `z` are left as they are.
    pub fn write(&self, u: &[f32], z: &mut [f32]) {
        let f = self.free.len();
        for (r, &dim) in self.free.iter().enumerate() {
            let row = &self.chol[r * f..r * f + r + 1];
            let s: f64 = row.iter().zip(u).map(|(a, &b)| a * b as f64).sum();
            z[dim] = self.mean[r] + s as f32;
        }
    }

    /// The prior mean of dimension `dim`.
    pub fn mean_of(&self, dim: usize) -> Option<f32> {
        self.free
            .iter()
            .position(|&d| d == dim)
            .map(|r| self.mean[r])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{mix, normals};

    #[test]
    fn posterior_moments_by_hand() {
        // Two codes in 2-D: means (1, 0) and (3, 2), log-std 0 (variance 1) everywhere.
        let p = CodePrior::from_posteriors(&[1.0, 0.0, 3.0, 2.0], &[0.0; 4], 2).unwrap();
        assert_eq!(p.mean, vec![2.0, 1.0]);
        // Covariance of the means [[1, 1], [1, 1]] plus the mean variance 1 on the diagonal.
        assert_eq!(p.covariance, vec![2.0, 1.0, 1.0, 2.0]);
        assert_eq!(p.measures, 2);
        assert!(CodePrior::from_posteriors(&[], &[], 2).is_none());
        // Codes (1, 0), (3, 2), (2, 4): mean (2, 2), covariance [[2/3, 2/3], [2/3, 8/3]].
        let codes = CodePrior::from_codes(&[1.0, 0.0, 3.0, 2.0, 2.0, 4.0], 2).unwrap();
        assert_eq!(codes.mean, vec![2.0, 2.0]);
        for (got, want) in codes
            .covariance
            .iter()
            .zip([2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 8.0 / 3.0])
        {
            assert!((got - want).abs() < 1e-6, "{:?}", codes.covariance);
        }
        // Two codes on a line: a singular covariance is no prior.
        assert!(CodePrior::from_codes(&[1.0, 0.0, 3.0, 2.0], 2).is_none());
        assert!(CodePrior::from_posteriors(&[f32::NAN, 0.0], &[0.0, 0.0], 2).is_none());
    }

    #[test]
    fn sampler_matches_the_covariance() {
        let p = CodePrior {
            mean: vec![0.5, 9.0, -1.0],
            covariance: vec![4.0, 0.0, 2.0, 0.0, 1.0, 0.0, 2.0, 0.0, 2.0],
            measures: 1,
        };
        // Dimension 1 regularized: the free block is [[4, 2], [2, 2]], L = [[2, 0], [1, 1]].
        let s = FreeSampler::new(&p, &[1]).unwrap();
        assert_eq!(s.free(), &[0, 2]);
        let mut z = [0.0, 7.0, 0.0];
        s.write(&[1.0, 1.0], &mut z);
        assert_eq!(z, [0.5 + 2.0, 7.0, -1.0 + 2.0]);
        let n = 20_000;
        let mut u = vec![0.0; 2 * n];
        normals(3, &mut u);
        let (mut c00, mut c02, mut c22) = (0.0f64, 0.0f64, 0.0f64);
        for uu in u.chunks(2) {
            s.write(uu, &mut z);
            let (a, b) = ((z[0] - 0.5) as f64, (z[2] + 1.0) as f64);
            c00 += a * a / n as f64;
            c02 += a * b / n as f64;
            c22 += b * b / n as f64;
        }
        assert!((c00 - 4.0).abs() < 0.15, "{c00}");
        assert!((c02 - 2.0).abs() < 0.1, "{c02}");
        assert!((c22 - 2.0).abs() < 0.1, "{c22}");
        let bad = CodePrior {
            covariance: vec![1.0, 2.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            ..p
        };
        assert!(bad.validate(3).unwrap_err().contains("positive definite"));
    }

    #[test]
    fn streams_are_deterministic_and_distinct() {
        let (mut a, mut b) = ([0.0; 5], [0.0; 5]);
        normals(mix(1, 2, 3), &mut a);
        normals(mix(1, 2, 3), &mut b);
        assert_eq!(a, b);
        normals(mix(1, 3, 2), &mut b);
        assert_ne!(a, b);
        assert_ne!(mix(0, -1, 0), mix(0, 0, -1));
    }
}
