//! Adam as PyTorch's `torch.optim.Adam` (betas 0.9/0.999, eps 1e-8, no weight decay), with
//! its state (step count, first and second moments by parameter name) exportable so that
//! training resumes exactly. candle-nn's AdamW keeps its state private.

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var};

use crate::checkpoint::{NamedTensors, ADAM_M_PREFIX, ADAM_V_PREFIX};

/// Adam hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
}

impl Default for AdamConfig {
    /// PyTorch's defaults with the paper's learning rate 1e-4.
    fn default() -> Self {
        AdamConfig {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// One parameter with its moments.
struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

/// The Adam optimizer over named variables.
pub struct Adam {
    cfg: AdamConfig,
    slots: Vec<Slot>,
    step: u64,
}

impl Adam {
    /// Adam over `params` (name, variable) with zero moments.
    pub fn new(params: Vec<(String, Var)>, cfg: AdamConfig) -> Result<Self> {
        let slots = params
            .into_iter()
            .map(|(name, var)| {
                let m = var.as_tensor().zeros_like()?;
                let v = m.clone();
                Ok(Slot { name, var, m, v })
            })
            .collect::<Result<_>>()?;
        Ok(Adam {
            cfg,
            slots,
            step: 0,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamConfig {
        &self.cfg
    }

    /// Changes the learning rate.
    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    /// Steps taken so far (drives the bias correction).
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Applies one update from `grads`. Parameters without a gradient are left alone (their
    /// moments too), as PyTorch does for parameters whose grad is None.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let AdamConfig {
            lr,
            beta1,
            beta2,
            eps,
        } = self.cfg;
        let bc1 = 1.0 - beta1.powi(self.step as i32);
        let bc2_sqrt = (1.0 - beta2.powi(self.step as i32)).sqrt();
        let step_size = lr / bc1;
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let g = g.detach();
            // m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²
            slot.m = ((&slot.m * beta1)? + (&g * (1.0 - beta1))?)?;
            slot.v = ((&slot.v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            // p -= lr/bc1 · m / (√v / √bc2 + eps)
            let denom = ((slot.v.sqrt()? / bc2_sqrt)? + eps)?;
            let update = ((&slot.m / denom)? * step_size)?;
            let next = (slot.var.as_detached_tensor() - update)?;
            slot.var.set(&next)?;
        }
        Ok(())
    }

    /// Backpropagates `loss` and applies one update.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.step(&grads)
    }

    /// The moments as `adam.m.<name>` / `adam.v.<name>` tensors (on the host), for a
    /// checkpoint; store [`Adam::step_count`] next to them.
    pub fn state_tensors(&self) -> Result<NamedTensors> {
        let host = |t: &Tensor| -> Result<(Vec<usize>, Vec<f32>)> {
            Ok((
                t.dims().to_vec(),
                t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?,
            ))
        };
        let mut out = NamedTensors::new();
        for s in &self.slots {
            out.insert(format!("{ADAM_M_PREFIX}{}", s.name), host(&s.m)?);
            out.insert(format!("{ADAM_V_PREFIX}{}", s.name), host(&s.v)?);
        }
        Ok(out)
    }

    /// Restores the step count and the moments of every parameter from `tensors` (which may
    /// also hold other tensors, e.g. a whole checkpoint's).
    pub fn load_state(&mut self, step: u64, tensors: &NamedTensors) -> Result<()> {
        let mut restored = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let device = s.var.device();
            let get = |prefix: &str| -> Result<Tensor> {
                let key = format!("{prefix}{}", s.name);
                let Some((shape, data)) = tensors.get(&key) else {
                    candle_core::bail!("optimizer state lacks {key}");
                };
                if shape.as_slice() != s.var.dims() {
                    candle_core::bail!(
                        "optimizer state {key} has shape {shape:?}, parameter has {:?}",
                        s.var.dims()
                    );
                }
                Tensor::from_slice(data, shape.as_slice(), &Device::Cpu)?.to_device(device)
            };
            restored.push((get(ADAM_M_PREFIX)?, get(ADAM_V_PREFIX)?));
        }
        for (s, (m, v)) in self.slots.iter_mut().zip(restored) {
            s.m = m;
            s.v = v;
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pytorch_update_and_resumes_exactly() {
        let d = Device::Cpu;
        let p0 = [0.5f32, -1.0, 2.0];
        let make = || Var::from_vec(p0.to_vec(), 3, &d).unwrap();
        let loss_of = |v: &Var| -> Tensor {
            // loss = Σ c_i p_i² so grad = 2 c_i p_i
            (v.as_tensor().sqr().unwrap() * Tensor::new(&[1.0f32, 3.0, -0.5], &d).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let cfg = AdamConfig {
            lr: 0.1,
            ..Default::default()
        };

        // Hand-computed PyTorch Adam in f64.
        let c = [1.0f64, 3.0, -0.5];
        let mut p: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
        let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
        for t in 1..=3 {
            for i in 0..3 {
                let g = 2.0 * c[i] * p[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let bc1 = 1.0 - 0.9f64.powi(t);
                let bc2 = 1.0 - 0.999f64.powi(t);
                p[i] -= 0.1 / bc1 * m[i] / (v[i].sqrt() / bc2.sqrt() + 1e-8);
            }
        }
        let var = make();
        let mut opt = Adam::new(vec![("w".into(), var.clone())], cfg.clone()).unwrap();
        for _ in 0..3 {
            opt.backward_step(&loss_of(&var)).unwrap();
        }
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        for i in 0..3 {
            assert!((got[i] as f64 - p[i]).abs() < 1e-5, "{got:?} vs {p:?}");
        }

        // Export after 1 step, restore into a fresh optimizer, continue: identical to uninterrupted.
        let a = make();
        let mut opt_a = Adam::new(vec![("w".into(), a.clone())], cfg.clone()).unwrap();
        opt_a.backward_step(&loss_of(&a)).unwrap();
        let state = opt_a.state_tensors().unwrap();
        assert!(state.contains_key("adam.m.w") && state.contains_key("adam.v.w"));
        let b = Var::from_tensor(&a.as_detached_tensor()).unwrap();
        let mut opt_b = Adam::new(vec![("w".into(), b.clone())], cfg).unwrap();
        opt_b.load_state(opt_a.step_count(), &state).unwrap();
        for _ in 0..2 {
            opt_a.backward_step(&loss_of(&a)).unwrap();
            opt_b.backward_step(&loss_of(&b)).unwrap();
        }
        assert_eq!(
            a.as_tensor().to_vec1::<f32>().unwrap(),
            b.as_tensor().to_vec1::<f32>().unwrap()
        );
        assert!(opt_b.load_state(1, &NamedTensors::new()).is_err());
    }
}
