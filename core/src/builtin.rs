//! The trained models shipped with the project (feature `builtin-models`): AR-VAE checkpoints
//! made by our own trainer with the commands in the README ("Trained models"), embedded in the
//! binaries that enable the feature (the plugin and the trainer), and found by name
//! (`generate --checkpoint bach`).

use crate::checkpoint::{Checkpoint, CheckpointError};
use std::path::Path;

/// One shipped model.
#[derive(Clone, Copy, Debug)]
pub struct Builtin {
    /// Name used on the command line and in saved plugin sessions.
    pub name: &'static str,
    /// What it was trained on.
    pub description: &'static str,
    /// The safetensors checkpoint.
    pub bytes: &'static [u8],
}

/// Every shipped model; the first is the default.
pub static BUILTINS: &[Builtin] = &[
    Builtin {
        name: "bach",
        description: "AR-VAE on the Bach chorales (music21 corpus)",
        bytes: include_bytes!("../models/bach.safetensors"),
    },
    Builtin {
        name: "folk",
        description: "AR-VAE on Scottish and Irish folk tunes (Ryan's Mammoth, O'Neill's, Aird's Airs; music21 corpus)",
        bytes: include_bytes!("../models/folk.safetensors"),
    },
];

/// The shipped model called `name` (case-insensitive).
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name.eq_ignore_ascii_case(name))
}

/// A checkpoint named on a command line: the file `arg`, or, where no such file exists, the
/// shipped model of that name (`eval --checkpoint bach`). The error names both readings.
pub fn load_checkpoint(arg: &Path) -> Result<Checkpoint, CheckpointError> {
    if !arg.exists() {
        if let Some(b) = arg.to_str().and_then(builtin) {
            return Checkpoint::from_bytes(b.bytes, b.name);
        }
        return Err(CheckpointError::new(
            &arg.display().to_string(),
            format!(
                "no such file, and not the name of a shipped model ({})",
                names()
            ),
        ));
    }
    Checkpoint::load(arg)
}

/// The names, comma-separated (for help and error texts).
pub fn names() -> String {
    BUILTINS
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::InferModel;
    use crate::music::Attribute;

    #[test]
    fn a_checkpoint_argument_is_a_file_or_a_shipped_name() {
        let ck = load_checkpoint(Path::new("Folk")).unwrap();
        assert_eq!(ck.meta.dataset.collection, "folk");
        let e = load_checkpoint(Path::new("no-such-model"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no-such-model") && e.contains("bach, folk"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bach");
        std::fs::write(&bad, b"not a checkpoint").unwrap();
        // A file of that name wins over the shipped model, and its problem is reported.
        let e = load_checkpoint(&bad).unwrap_err().to_string();
        assert!(e.contains("safetensors"), "{e}");
    }

    #[test]
    fn every_builtin_loads_with_calibration_and_evaluation() {
        assert!(!BUILTINS.is_empty());
        for b in BUILTINS {
            let ck = Checkpoint::from_bytes(b.bytes, b.name).unwrap();
            InferModel::from_checkpoint(&ck).unwrap();
            assert_eq!(ck.meta.calibration.len(), 4, "{}", b.name);
            for a in Attribute::ALL {
                assert!(ck.meta.attributes.iter().any(|d| d.name == a.name()));
            }
            let ev = ck.meta.evaluation.as_ref().expect("stored evaluation");
            assert!(ev["reconstruction_accuracy"].as_f64().unwrap() > 0.85);
            assert!(
                ck.meta.dataset.collection == b.name,
                "{}",
                ck.meta.dataset.collection
            );
        }
        assert!(builtin("BACH").is_some());
        assert!(builtin("nope").is_none());
    }
}
