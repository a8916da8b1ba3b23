//! A finished (or partly finished) training run as the sweep, compare plots and report read it:
//! settings, epochs done and the stored evaluation, from the checkpoint's metadata.

use crate::evaluation::Evaluation;
use anyhow::{Context, Result};
use arvae_core::checkpoint::Checkpoint;
use arvae_core::training::{ModelKind, TrainConfig};
use std::path::{Path, PathBuf};

/// What a run's checkpoint says about the run.
pub struct RunRecord {
    /// The run folder (the checkpoint's folder).
    pub dir: PathBuf,
    /// The checkpoint read.
    pub checkpoint: PathBuf,
    /// Training settings, when the checkpoint has a training record.
    pub config: Option<TrainConfig>,
    /// Epochs completed.
    pub epochs_done: usize,
    /// The evaluation stored at the end of training (or by `eval`), if any.
    pub evaluation: Option<Evaluation>,
    /// AR-VAE or β-VAE (from the regularized attributes).
    pub kind: ModelKind,
}

impl RunRecord {
    /// Reads a run folder (its `model.safetensors`) or a checkpoint file.
    pub fn load(path: &Path) -> Result<RunRecord> {
        let checkpoint = if path.is_dir() {
            path.join("model.safetensors")
        } else {
            path.to_path_buf()
        };
        let ck = Checkpoint::load(&checkpoint)?;
        let training = &ck.meta.training;
        let config: Option<TrainConfig> = training
            .get("config")
            .and_then(|c| serde_json::from_value(c.clone()).ok());
        let epochs_done = training
            .get("history")
            .and_then(|h| h.as_array())
            .map_or(0, |h| h.len());
        let evaluation = match &ck.meta.evaluation {
            Some(v) => Some(serde_json::from_value(v.clone()).with_context(|| {
                format!(
                    "{}: the stored evaluation cannot be read",
                    checkpoint.display()
                )
            })?),
            None => None,
        };
        let kind = if ck.meta.attributes.is_empty() {
            ModelKind::BetaVae
        } else {
            ModelKind::ArVae
        };
        Ok(RunRecord {
            dir: checkpoint
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            checkpoint,
            config,
            epochs_done,
            evaluation,
            kind,
        })
    }

    /// "AR-VAE" or "β-VAE".
    pub fn model_name(&self) -> &'static str {
        match self.kind {
            ModelKind::ArVae => "AR-VAE",
            ModelKind::BetaVae => "β-VAE",
        }
    }
}
