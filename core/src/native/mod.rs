//! A native CPU training engine for MeasureVAE: hand-written forward and backward passes on
//! preallocated buffers and `gemm`, no candle (feature `native`, part of `train`).
//!
//! It is the same model as `model::MeasureVae` (docs/architecture.md §5, §6): the same parameter names
//! and shapes (checkpoints are interchangeable), the same losses, Adam with the same update
//! and state names (`--resume` works across engines), and the same randomness: [`StepNoise`]
//! draws dropout masks and eps from an RNG in the order the candle model does, so one seed
//! gives both engines the same training run up to float rounding. The tests in
//! `native::tests` check loss parts and every parameter gradient against candle's autograd.

mod adam;
#[cfg(feature = "train")]
mod bridge;
mod engine;
mod gru;
mod kernels;
mod noise;
mod params;
#[cfg(all(test, feature = "train"))]
mod tests;

pub use adam::NativeAdam;
#[cfg(feature = "train")]
pub use bridge::dataset_batch;
pub use engine::{NativeEngine, NativeLoss, StepValues};
pub use noise::StepNoise;
