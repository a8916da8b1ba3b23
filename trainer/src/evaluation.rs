//! The result of evaluating a model, shared by `eval`, `train`, `compare`, the figures and
//! the report: what is stored in a checkpoint's `evaluation`, how it prints, and whether a
//! checkpoint and a dataset belong together.

use anyhow::{bail, Result};
use arvae_core::checkpoint::Checkpoint;
use arvae_core::data::Dataset;
use arvae_core::metrics::MetricsReport;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What `eval` reports and the trainer stores in a checkpoint's `evaluation`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    /// Dataset collection and content hash.
    pub dataset: String,
    pub dataset_hash: String,
    pub split: String,
    /// Greedy token accuracy from the sampled z.
    pub reconstruction_accuracy: f64,
    pub metrics: MetricsReport,
    /// Content preservation (image models, `eval --content`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<arvae_core::image_training::ContentPreservation>,
}

/// Checks that a checkpoint can be evaluated on a dataset.
pub fn check_compatible(
    ck: &Checkpoint,
    ck_path: &Path,
    ds: &Dataset,
    ds_path: &Path,
) -> Result<()> {
    if ck.meta.vocabulary != ds.header.vocabulary {
        bail!(
            "{} and {} disagree: the checkpoint's vocabulary ({} tokens) is not the dataset's ({} tokens)",
            ck_path.display(),
            ds_path.display(),
            ck.meta.vocabulary.len(),
            ds.header.vocabulary.len()
        );
    }
    for a in &ck.meta.attributes {
        if !ds.header.attributes.contains(&a.name) {
            bail!(
                "{} and {} disagree: the checkpoint regularizes '{}', which the dataset does not have ({})",
                ck_path.display(),
                ds_path.display(),
                a.name,
                ds.header.attributes.join(", ")
            );
        }
    }
    Ok(())
}

/// Prints the metric table and the reconstruction accuracy.
pub fn print_evaluation(e: &Evaluation) {
    print!("{}", e.metrics.to_table());
    println!(
        "reconstruction accuracy {:.2}% ({} split of {})",
        100.0 * e.reconstruction_accuracy,
        e.split,
        e.dataset
    );
}
