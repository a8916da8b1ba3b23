//! arvae-core: the library behind the arvae trainer and plugin.
//!
//! - [`music`]: one-bar measures on the 24-tick grid, the four musical attributes, importers
//!   (MusicXML, ABC, MIDI) and MIDI export.
//! - [`data`]: dataset building (collections, transpositions, splits) and the dataset file.
//! - [`metrics`]: disentanglement metrics (KSG mutual information, Interpretability, MIG, ...).
//! - [`model`]: MeasureVAE in candle, the losses, Adam and one training step (feature `train`).
//! - [`native`]: the hand-written CPU training engine for MeasureVAE (feature `native`).
//! - [`training`]: the epoch loop, checkpoints per epoch, calibration (feature `train`).
//! - [`image_model`]: the convolutional VAEs of the paper's Table 2 as a checkpoint contract.
//! - [`image_training`]: training and evaluation of the image VAEs (feature `train`).
//! - [`files`]: safe output files (atomic replace, devices and symlinks kept), run-folder
//!   locks, stale temporaries, outputs that are inputs refused.
//! - [`cuda`]: is CUDA usable here (libraries, driver, GPU), asked before candle opens it.
//! - [`checkpoint`]: the single-file checkpoint (safetensors + JSON metadata), candle-free.
//! - [`compose`]: from one bar to music (prior, pitch range, knobs in musical units, key,
//!   motion and phrases), shared by the plugin and `generate`.
//! - [`prior`]: the model's own distribution of codes (stored in checkpoints) and seeded
//!   normal streams.
//! - [`infer`]: allocation-free encoder and greedy decoder on plain f32 weights, candle-free.

#[cfg(feature = "builtin-models")]
pub mod builtin;
pub mod checkpoint;
pub mod compose;
pub mod cuda;
pub mod data;
pub mod family;
pub mod files;
pub mod image_model;
#[cfg(feature = "train")]
pub mod image_training;
pub mod infer;
// Dense kernels on gemm, shared by the native engine and the image convolutions.
#[cfg(feature = "native")]
pub(crate) mod linalg;
pub mod metrics;
#[cfg(feature = "train")]
pub mod model;
pub mod music;
pub mod music_model;
#[cfg(feature = "native")]
pub mod native;
pub mod prior;
pub mod random;
#[cfg(feature = "train")]
pub mod training;
