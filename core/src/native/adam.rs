//! Adam on the flat parameter vector, bit-for-bit the update of `model::adam::Adam` (the same
//! f32 rounding of every constant and the same order of operations), with its state exported
//! under the same names (`adam.m.<parameter>`, `adam.v.<parameter>`) so checkpoints and
//! `--resume` work across engines.

use super::params::ParamLayout;
use crate::checkpoint::{NamedTensors, ADAM_M_PREFIX, ADAM_V_PREFIX};

/// Adam over a flat vector of parameters.
#[derive(Clone, Debug)]
pub struct NativeAdam {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    m: Vec<f32>,
    v: Vec<f32>,
    step: u64,
}

impl NativeAdam {
    /// Zero moments for `n` parameters, PyTorch's defaults with learning rate `lr`.
    pub fn new(n: usize, lr: f64) -> Self {
        NativeAdam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            m: vec![0.0; n],
            v: vec![0.0; n],
            step: 0,
        }
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// One update of `params` from `grads`.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32]) {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2_sqrt = (1.0 - self.beta2.powi(self.step as i32)).sqrt();
        // candle's affine ops convert each f64 scalar to f32 and compute x * mul + add.
        let b1 = self.beta1 as f32;
        let omb1 = (1.0 - self.beta1) as f32;
        let b2 = self.beta2 as f32;
        let omb2 = (1.0 - self.beta2) as f32;
        let inv_bc2 = (1.0 / bc2_sqrt) as f32;
        let eps = self.eps as f32;
        let step_size = (self.lr / bc1) as f32;
        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
        {
            *m = *m * b1 + g * omb1;
            *v = *v * b2 + (g * g) * omb2;
            let denom = v.sqrt() * inv_bc2 + eps;
            *p -= (*m / denom) * step_size;
        }
    }

    /// The moments as named tensors (the names `model::adam::Adam` writes).
    pub(crate) fn state_tensors(&self, layout: &ParamLayout) -> NamedTensors {
        let mut out = layout.unflatten(&self.m, ADAM_M_PREFIX);
        out.extend(layout.unflatten(&self.v, ADAM_V_PREFIX));
        out
    }

    /// Restores the step count and the moments from named tensors.
    pub(crate) fn load_state(
        &mut self,
        layout: &ParamLayout,
        step: u64,
        tensors: &NamedTensors,
    ) -> Result<(), String> {
        let m = layout
            .flatten_prefixed(tensors, ADAM_M_PREFIX)
            .map_err(|e| format!("optimizer state: {e}"))?;
        let v = layout
            .flatten_prefixed(tensors, ADAM_V_PREFIX)
            .map_err(|e| format!("optimizer state: {e}"))?;
        self.m = m;
        self.v = v;
        self.step = step;
        Ok(())
    }
}
