//! Dataset building (collections, transpositions, splits) and the dataset file.

pub mod corpus;
