//! The model the plugin plays: the embedded default checkpoint or a file the user loads, with
//! its calibration maps and a summary for the editor.

use std::path::Path;

use arvae_core::builtin::{builtin, names, BUILTINS};
use arvae_core::checkpoint::Checkpoint;
use arvae_core::compose::Composer;
use serde_json::Value;

/// How a saved session names a built-in model (`builtin:bach`); an empty name is the default
/// (the first of [`BUILTINS`]), anything else a checkpoint file.
pub const BUILTIN_PREFIX: &str = "builtin:";

/// What the editor shows about a model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelInfo {
    /// File name, or the built-in model's name.
    pub name: String,
    /// Dataset id and collection.
    pub dataset: String,
    /// Training summary (model kind, epochs).
    pub training: String,
    /// Evaluation summary (metrics), if the checkpoint was evaluated.
    pub metrics: String,
    /// What each knob reaches through the decoder, in knob units (lowest, highest).
    pub calibrated: [Option<(f32, f32)>; 4],
}

/// A ready-to-run model: the composer (decoder, prior, pitch range, knob maps) and info.
pub struct LoadedModel {
    /// Turns settings and a bar index into a bar (shared with `arvae-trainer generate`).
    pub composer: Composer,
    /// Summary for the editor.
    pub info: ModelInfo,
}

fn number(v: &Value, path: &[&str]) -> Option<f64> {
    let mut v = v;
    for p in path {
        v = v.get(p)?;
    }
    v.as_f64()
}

impl LoadedModel {
    /// Builds the model from a parsed checkpoint; `name` is shown in the editor.
    pub fn from_checkpoint(ck: &Checkpoint, name: &str) -> Result<Self, String> {
        let composer = Composer::from_checkpoint(ck).map_err(|e| format!("{name}: {e}"))?;
        let meta = &ck.meta;
        let mut info = ModelInfo {
            name: name.to_string(),
            // The id may be a path on the machine that built the dataset: show its file name.
            dataset: format!(
                "{} ({})",
                meta.dataset.collection,
                Path::new(&meta.dataset.id)
                    .file_name()
                    .map_or(meta.dataset.id.clone(), |n| n
                        .to_string_lossy()
                        .into_owned())
            ),
            ..ModelInfo::default()
        };
        for i in 0..4 {
            info.calibrated[i] = Some(composer.reach(i));
        }
        let cfg = &meta.training["config"];
        let epochs = number(cfg, &["epochs"]);
        info.training = format!(
            "{} {}, latent {}{}",
            cfg.get("model")
                .and_then(Value::as_str)
                .unwrap_or("measure-vae"),
            meta.model_kind,
            composer.latent(),
            epochs.map(|e| format!(", {e} epochs")).unwrap_or_default()
        );
        if let Some(ev) = &meta.evaluation {
            let m = &ev["metrics"];
            let acc = number(ev, &["reconstruction_accuracy"]);
            let parts: Vec<String> = [
                ("interpretability", "interpretability_mean"),
                ("MIG", "mig_mean"),
                ("SAP", "sap_mean"),
                ("SCC", "scc_mean"),
                ("modularity", "modularity"),
            ]
            .iter()
            .filter_map(|(label, key)| number(m, &[key]).map(|v| format!("{label} {v:.3}")))
            .chain(acc.map(|a| format!("reconstruction {:.1} %", 100.0 * a)))
            .collect();
            info.metrics = parts.join(", ");
        } else {
            info.metrics = "not evaluated".into();
        }
        Ok(LoadedModel { composer, info })
    }

    /// The default model (the first built-in one, Bach).
    pub fn embedded() -> Result<Self, String> {
        Self::builtin(BUILTINS[0].name)
    }

    /// A built-in model by name.
    pub fn builtin(name: &str) -> Result<Self, String> {
        let b = builtin(name)
            .ok_or_else(|| format!("no built-in model called {name:?} (there are: {})", names()))?;
        let shown = format!("{} (built-in)", b.name);
        let ck = Checkpoint::from_bytes(b.bytes, &shown).map_err(|e| e.to_string())?;
        Self::from_checkpoint(&ck, &shown)
    }

    /// What a saved session or the editor names: empty for the default, `builtin:NAME`, or a
    /// checkpoint file.
    pub fn from_spec(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            Self::embedded()
        } else if let Some(name) = spec.strip_prefix(BUILTIN_PREFIX) {
            Self::builtin(name)
        } else {
            Self::from_file(Path::new(spec))
        }
    }

    /// A checkpoint file; the error names the file and what is wrong.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let ck = Checkpoint::load(path).map_err(|e| e.to_string())?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Self::from_checkpoint(&ck, &name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_model_loads_with_calibration() {
        let m = LoadedModel::embedded().unwrap();
        assert!(m.composer.has_prior());
        assert_eq!(m.composer.pitch_range(), (55, 84));
        assert!(
            m.info.calibrated.iter().all(Option::is_some),
            "{:?}",
            m.info
        );
        assert!(!m.info.dataset.is_empty());
    }

    #[test]
    fn specs_name_builtins_or_files() {
        assert_eq!(
            LoadedModel::from_spec("").unwrap().info.name,
            "bach (built-in)"
        );
        let m = LoadedModel::from_spec("builtin:bach").unwrap();
        assert!(m.info.dataset.starts_with("bach ("), "{}", m.info.dataset);
        assert!(!m.info.dataset.contains('/'), "{}", m.info.dataset);
        let folk = LoadedModel::from_spec("builtin:folk").unwrap();
        assert!(
            folk.info.dataset.starts_with("folk ("),
            "{}",
            folk.info.dataset
        );
        assert!(folk.info.calibrated.iter().all(Option::is_some));
        let e = LoadedModel::from_spec("builtin:mozart").err().unwrap();
        assert!(e.contains("mozart") && e.contains("bach, folk"), "{e}");
        let e = LoadedModel::from_spec("/no/such/model.safetensors")
            .err()
            .unwrap();
        assert!(e.contains("model.safetensors"), "{e}");
    }

    #[test]
    fn an_image_model_is_refused_with_a_reason() {
        use arvae_core::checkpoint::{Checkpoint, CheckpointMeta, DatasetInfo};
        use arvae_core::image_model::{conv_vae_shapes, ConvVaeConfig, CONV_VAE_KIND};
        let cfg = ConvVaeConfig::mnist();
        let tensors = conv_vae_shapes(&cfg)
            .into_iter()
            .map(|(name, shape)| {
                let n = shape.iter().product();
                (name, (shape, vec![0.01f32; n]))
            })
            .collect();
        let mut meta = CheckpointMeta::measure_vae(
            &Default::default(),
            DatasetInfo {
                id: "mnist".into(),
                collection: "morpho-mnist".into(),
                hash: "x".into(),
            },
        );
        meta.model_kind = CONV_VAE_KIND.into();
        meta.config = serde_json::to_value(&cfg).unwrap();
        meta.vocabulary.clear();
        meta.attributes.clear();
        let dir = std::env::temp_dir().join(format!("arvae-plugin-img-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("digits.safetensors");
        Checkpoint { meta, tensors }.save_atomic(&p).unwrap();
        let e = LoadedModel::from_file(&p).err().unwrap();
        println!("{e}");
        assert!(
            e.contains("digits.safetensors") && e.contains("conv_vae"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_file_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("arvae-plugin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("broken.safetensors");
        std::fs::write(&p, b"not a checkpoint").unwrap();
        let e = LoadedModel::from_file(&p).err().unwrap();
        assert!(e.contains("broken.safetensors"), "{e}");
        assert!(LoadedModel::from_file(&dir.join("missing.safetensors")).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
