//! MeasureVAE in candle (docs/architecture.md §5, §6): the GRU stack, the model, the losses, Adam with
//! exportable state, and one training step.
//!
//! Randomness is explicit: every function that samples (z, dropout masks, the teacher-forcing
//! coin) takes a `&mut dyn RngCore`, so a seeded RNG makes runs repeat on the same device.
//! Parameter names and shapes are fixed by [`crate::music_model::measure_vae_shapes`].

pub mod adam;
pub mod classifier;
pub mod conv_ops;
pub mod conv_vae;
pub mod gru;
pub mod loss;
pub mod measure_vae;
pub mod params;
pub mod train;

pub use adam::{Adam, AdamConfig};
pub use gru::Gru;
pub use loss::{
    ar_loss, kl_divergence, reconstruction_loss, LossConfig, LossTerms, LossValues, RegularizedDim,
};
pub use measure_vae::{MeasureVae, VaeOutput};
pub use train::{eval_step, teacher_forcing_coin, train_step, Batch};
