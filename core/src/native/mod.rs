//! A native CPU training engine for MeasureVAE: hand-written forward and backward passes on
//! preallocated buffers and `gemm`, no candle (feature `native`, part of `train`).
//!
//! It is the same model as `model::MeasureVae` (docs/architecture.md §5, §6): the same parameter names
//! and shapes (checkpoints are interchangeable), the same losses, Adam with the same update
//! and state names (`--resume` works across engines), and the same randomness: [`StepNoise`]
//! draws dropout masks and eps from an RNG in the order the candle model does, so one seed
//! gives both engines the same training run up to float rounding. The tests in
//! `native::tests` check loss parts and every parameter gradient against candle's autograd.
//!
//! The files, each importing only files listed before it:
//!
//! | file | what |
//! |---|---|
//! | `kernels` | element-wise math: fast exp, SELU, the GRU cell forward and backward, argmax |
//! | `params` | every parameter in one flat vector, the offset of each tensor |
//! | `noise` | the step's dropout masks and eps ([`StepNoise`]) |
//! | `adam` | Adam on the flat vector ([`NativeAdam`]) |
//! | `gru` | one GRU layer over a sequence, forward and backward (`Seq`) |
//! | `layers` | shared pieces: sizes, parameter view, batch part and its masks, linear backward |
//! | `stack` | GRU layers stacked with dropout, forward and backward: the beat and tick RNN |
//! | `loss` | cross-entropy, KL, AR, d mu and d log-std ([`NativeLoss`], [`StepValues`]) |
//! | `encoder` | embedding, bidirectional GRU, mean and log-std heads, forward and backward |
//! | `decoder` | beat RNN, tick RNN (teacher forcing or greedy), output, forward and backward |
//! | `work` | one part's buffers and its two passes (phases 1 and 3) |
//! | `engine` | [`NativeEngine`]: splitting the batch, the three phases, Adam steps |
//! | `bridge` | conversions to and from the candle model (feature `train`) |

mod adam;
#[cfg(feature = "train")]
mod bridge;
mod decoder;
mod encoder;
mod engine;
mod gru;
mod kernels;
mod layers;
mod loss;
mod noise;
mod params;
mod stack;
#[cfg(all(test, feature = "train"))]
mod tests;
mod work;

pub use adam::NativeAdam;
#[cfg(feature = "train")]
pub use bridge::dataset_batch;
pub use engine::NativeEngine;
pub use loss::{NativeLoss, StepValues};
pub use noise::StepNoise;
