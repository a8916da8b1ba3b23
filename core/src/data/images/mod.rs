//! Image datasets (dSprites, Morpho-MNIST): readers, the Morpho-MNIST morphometrics, the
//! dSprites renderer, and the image dataset file.

pub mod dataset;
pub mod idx;
pub mod md5;
pub mod mnist;
pub mod morpho;

pub use dataset::{ImageDataset, PixelFormat};
pub mod dsprites;
