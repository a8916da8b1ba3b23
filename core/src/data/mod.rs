//! Dataset building (collections, transpositions, splits) and the dataset file.

pub mod build;
pub mod corpus;
pub mod dataset;
pub mod images;
pub mod npz;
pub mod stats;
pub mod synthetic;

pub use build::{build, BuildOptions, Collection};
pub use dataset::{Dataset, Split};
