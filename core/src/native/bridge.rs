//! Between the native engine and the candle model (feature `train`): loss settings and
//! values, parameters and Adam state both ways, dataset batches.

use candle_core::Tensor;

use super::engine::NativeEngine;
use super::loss::{NativeLoss, StepValues};
use crate::data::Dataset;
use crate::model::{Adam, LossConfig, LossValues, MeasureVae};

impl From<&LossConfig> for NativeLoss {
    fn from(l: &LossConfig) -> Self {
        NativeLoss {
            beta: l.beta,
            gamma: l.gamma,
            delta: l.delta,
            regularized: l
                .regularized
                .iter()
                .map(|r| (r.attribute, r.latent_dim))
                .collect(),
        }
    }
}

impl From<StepValues> for LossValues {
    fn from(v: StepValues) -> Self {
        LossValues {
            total: v.total,
            reconstruction: v.reconstruction,
            kl: v.kl,
            ar: v.ar,
            accuracy: v.accuracy,
        }
    }
}

impl NativeEngine {
    /// An engine with the candle model's parameters and the candle optimizer's state.
    pub fn from_candle(model: &MeasureVae, adam: &Adam) -> candle_core::Result<Self> {
        let mut e = NativeEngine::new(model.config(), &model.to_tensors()?, adam.config().lr)
            .map_err(candle_core::Error::msg)?;
        e.load_adam_state(adam.step_count(), &adam.state_tensors()?)
            .map_err(candle_core::Error::msg)?;
        Ok(e)
    }

    /// Writes the parameters into the candle model and the Adam state into its optimizer, so
    /// the candle side can evaluate, calibrate and checkpoint exactly this state.
    pub fn store_into(&self, model: &MeasureVae, adam: &mut Adam) -> candle_core::Result<()> {
        let tensors = self.to_tensors();
        for (name, var) in model.named_vars() {
            let (shape, values) = &tensors[&name];
            var.set(&Tensor::from_slice(
                values,
                shape.as_slice(),
                model.device(),
            )?)?;
        }
        adam.load_state(self.adam_step_count(), &self.adam_state_tensors())
    }
}

/// Tokens (B, 24) and stored attributes (B, 4) of the dataset measures `idx`.
pub fn dataset_batch(ds: &Dataset, idx: &[usize]) -> (Vec<u32>, Vec<f32>) {
    let tokens = idx
        .iter()
        .flat_map(|&i| ds.measures[i].0.map(u32::from))
        .collect();
    let attrs = idx.iter().flat_map(|&i| ds.attributes[i]).collect();
    (tokens, attrs)
}
