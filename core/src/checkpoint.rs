//! Single-file model checkpoints: one `.safetensors` file with f32 tensors by name and the
//! JSON metadata under the `__metadata__` key `arvae` (docs/architecture.md §8).
//!
//! This module is candle-free: the plugin and the plain-Rust decoder read checkpoints with
//! default features off. The models' *format contracts* (configs, parameter names and
//! shapes) live beside it in [`crate::music_model`] and [`crate::image_model`]; a checkpoint
//! is checked against the contract of its model kind.
//!
//! Loading validates everything (format version, model kind, config, vocabulary, attribute
//! names, calibration, every tensor's presence, dtype, shape and finiteness) and fails with a
//! [`CheckpointError`] that names the file and the problem; it never panics on a bad file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::music::token::{token_name, VOCAB_SIZE};
use crate::music::Attribute;
use crate::music_model::{measure_vae_shapes, MeasureVaeConfig, MEASURE_VAE_KIND};

/// Version of the checkpoint layout written by this build.
pub const FORMAT_VERSION: u32 = 1;
/// Key of the JSON metadata inside the safetensors `__metadata__` map.
pub const METADATA_KEY: &str = "arvae";
/// Name prefix of Adam's first moments stored for resuming (`adam.m.<parameter>`).
pub const ADAM_M_PREFIX: &str = "adam.m.";
/// Name prefix of Adam's second moments stored for resuming (`adam.v.<parameter>`).
pub const ADAM_V_PREFIX: &str = "adam.v.";

/// Tensors by name: (shape, row-major f32 values).
pub type NamedTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Parameter names and shapes required by a model of `model_kind` with `config`.
pub fn expected_shapes(
    model_kind: &str,
    config: &Value,
) -> Result<Vec<(String, Vec<usize>)>, String> {
    match model_kind {
        MEASURE_VAE_KIND => {
            let cfg: MeasureVaeConfig = serde_json::from_value(config.clone())
                .map_err(|e| format!("config is not a MeasureVAE config: {e}"))?;
            cfg.validate()?;
            Ok(measure_vae_shapes(&cfg))
        }
        crate::image_model::CONV_VAE_KIND => {
            let cfg: crate::image_model::ConvVaeConfig = serde_json::from_value(config.clone())
                .map_err(|e| format!("config is not a conv-VAE config: {e}"))?;
            cfg.validate()?;
            Ok(crate::image_model::conv_vae_shapes(&cfg))
        }
        crate::image_model::IMAGE_CLASSIFIER_KIND => {
            let cfg: crate::image_model::ClassifierConfig = serde_json::from_value(config.clone())
                .map_err(|e| format!("config is not an image classifier config: {e}"))?;
            cfg.validate()?;
            Ok(crate::image_model::classifier_shapes(&cfg))
        }
        other => Err(format!(
            "unknown model kind {other:?} (this build knows {MEASURE_VAE_KIND:?}, {:?} and {:?})",
            crate::image_model::CONV_VAE_KIND,
            crate::image_model::IMAGE_CLASSIFIER_KIND
        )),
    }
}

/// Number of latent dimensions of a model, from its config.
fn latent_size(model_kind: &str, config: &Value) -> Option<usize> {
    match model_kind {
        MEASURE_VAE_KIND => serde_json::from_value::<MeasureVaeConfig>(config.clone())
            .ok()
            .map(|c| c.latent),
        crate::image_model::CONV_VAE_KIND => {
            serde_json::from_value::<crate::image_model::ConvVaeConfig>(config.clone())
                .ok()
                .map(|c| c.latent)
        }
        _ => None,
    }
}

/// The token names of this build's vocabulary, as stored in every checkpoint.
pub fn vocabulary() -> Vec<String> {
    (0..VOCAB_SIZE).map(|t| token_name(t as u8)).collect()
}

/// A regularized attribute and the latent dimension it lives on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributeDim {
    /// Attribute name as [`Attribute::name`] writes it.
    pub name: String,
    /// Latent dimension regularized by this attribute.
    pub latent_dim: usize,
}

/// Latent value -> attribute value pairs for one attribute, so a knob can speak musical units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Attribute name.
    pub attribute: String,
    /// Latent dimension the points refer to.
    pub latent_dim: usize,
    /// (latent value z, attribute value), sorted by z.
    pub points: Vec<(f32, f32)>,
}

/// The dataset a model was trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Dataset id (e.g. the cache file name).
    pub id: String,
    /// Collection (bach, folk, synthetic, user, ...).
    pub collection: String,
    /// Content hash of the dataset.
    pub hash: String,
}

/// Where training stood when the checkpoint was written, for resuming.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: u32,
    /// Batches completed.
    pub step: u64,
    /// Adam's step count (bias correction); `adam.m.*`/`adam.v.*` tensors hold its moments.
    pub optimizer_step: u64,
    /// Anything else the trainer needs to resume (RNG positions, ...).
    #[serde(default)]
    pub extra: Value,
}

/// Everything stored as JSON in the checkpoint's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Layout version; [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// Model kind, e.g. [`MEASURE_VAE_KIND`].
    pub model_kind: String,
    /// Model config (for MeasureVAE a [`MeasureVaeConfig`]).
    pub config: Value,
    /// Token names, must equal [`vocabulary`].
    pub vocabulary: Vec<String>,
    /// Regularized attributes and their latent dimensions.
    pub attributes: Vec<AttributeDim>,
    /// Per-attribute calibration (may be empty).
    #[serde(default)]
    pub calibration: Vec<Calibration>,
    /// Training settings (free-form JSON from the trainer).
    #[serde(default)]
    pub training: Value,
    /// Training data.
    pub dataset: DatasetInfo,
    /// Evaluation summary, if evaluated.
    #[serde(default)]
    pub evaluation: Option<Value>,
    /// Resume state, if saved mid-training.
    #[serde(default)]
    pub train_state: Option<TrainState>,
    /// The model's own distribution of codes (aggregate posterior of the training measures),
    /// from which generation draws the free dimensions; `None`: N(0, I).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<crate::prior::CodePrior>,
    /// Lowest and highest MIDI pitch of the training data; the decoder never plays outside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitch_range: Option<(u8, u8)>,
}

impl CheckpointMeta {
    /// Metadata for a MeasureVAE with the four attributes on dimensions 0..=3 and empty
    /// training, calibration, evaluation and resume fields.
    pub fn measure_vae(config: &MeasureVaeConfig, dataset: DatasetInfo) -> Self {
        CheckpointMeta {
            format_version: FORMAT_VERSION,
            model_kind: MEASURE_VAE_KIND.to_string(),
            config: serde_json::to_value(config).expect("config serializes"),
            vocabulary: vocabulary(),
            attributes: Attribute::ALL
                .iter()
                .map(|a| AttributeDim {
                    name: a.name().to_string(),
                    latent_dim: a.index(),
                })
                .collect(),
            calibration: Vec::new(),
            training: Value::Null,
            dataset,
            evaluation: None,
            train_state: None,
            prior: None,
            pitch_range: None,
        }
    }

    /// The MeasureVAE config, if this is a MeasureVAE checkpoint with a valid config.
    pub fn measure_vae_config(&self) -> Result<MeasureVaeConfig, String> {
        if self.model_kind != MEASURE_VAE_KIND {
            return Err(format!(
                "model kind is {:?}, not {MEASURE_VAE_KIND:?}",
                self.model_kind
            ));
        }
        let cfg: MeasureVaeConfig = serde_json::from_value(self.config.clone())
            .map_err(|e| format!("config is not a MeasureVAE config: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Whether `name` is an attribute this build knows (any name for image models).
    fn knows_attribute(music: bool, name: &str) -> bool {
        !music || Attribute::from_name(name).is_some()
    }

    /// Checks that the vocabulary is this build's (empty for image models).
    fn check_vocabulary(&self, music: bool) -> Result<(), String> {
        let ours = if music { vocabulary() } else { Vec::new() };
        if self.vocabulary != ours {
            let first = self
                .vocabulary
                .iter()
                .zip(&ours)
                .position(|(a, b)| a != b)
                .unwrap_or(self.vocabulary.len().min(ours.len()));
            return Err(format!(
                "vocabulary differs from this build's ({} tokens vs {}; first difference at token {first})",
                self.vocabulary.len(),
                ours.len()
            ));
        }
        Ok(())
    }

    /// Checks that the attributes are known and sit on distinct latent dimensions below `latent`.
    fn check_attributes(&self, music: bool, latent: usize) -> Result<(), String> {
        let mut seen = Vec::new();
        for a in &self.attributes {
            if !Self::knows_attribute(music, &a.name) {
                return Err(format!("unknown attribute {:?}", a.name));
            }
            if a.latent_dim >= latent {
                return Err(format!(
                    "attribute {} on latent dimension {} but the model has {latent}",
                    a.name, a.latent_dim
                ));
            }
            if seen.contains(&a.latent_dim) {
                return Err(format!(
                    "latent dimension {} is used by two attributes",
                    a.latent_dim
                ));
            }
            seen.push(a.latent_dim);
        }
        Ok(())
    }

    /// Checks that each calibration is of a known attribute on a latent dimension below
    /// `latent`, with finite, increasing points.
    fn check_calibration(&self, music: bool, latent: usize) -> Result<(), String> {
        for c in &self.calibration {
            if !Self::knows_attribute(music, &c.attribute) {
                return Err(format!(
                    "calibration for unknown attribute {:?}",
                    c.attribute
                ));
            }
            if c.latent_dim >= latent {
                return Err(format!(
                    "calibration of {} on latent dimension {} but the model has {latent}",
                    c.attribute, c.latent_dim
                ));
            }
            if c.points
                .iter()
                .any(|(z, v)| !z.is_finite() || !v.is_finite())
            {
                return Err(format!(
                    "calibration of {} has a non-finite point",
                    c.attribute
                ));
            }
            if c.points
                .windows(2)
                .any(|w| w[1].0 < w[0].0 || w[1].1 < w[0].1)
            {
                return Err(format!(
                    "calibration of {} does not increase (its points must be sorted by latent value and attribute)",
                    c.attribute
                ));
            }
        }
        Ok(())
    }
}

/// A checkpoint could not be read, validated or written; names the file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint {file}: {problem}")]
pub struct CheckpointError {
    /// The file (or the name given to [`Checkpoint::from_bytes`]).
    pub file: String,
    /// What is wrong.
    pub problem: String,
}

impl CheckpointError {
    pub(crate) fn new(file: &str, problem: impl Into<String>) -> Self {
        CheckpointError {
            file: file.to_string(),
            problem: problem.into(),
        }
    }
}

/// A model checkpoint in memory: metadata and f32 tensors by name.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The JSON metadata.
    pub meta: CheckpointMeta,
    /// Model parameters (and optionally `adam.m.*`/`adam.v.*` moments).
    pub tensors: NamedTensors,
}

impl Checkpoint {
    /// A MeasureVAE checkpoint with seeded random weights of the right shapes (uniform, scaled by
    /// 1/sqrt(fan-in) like PyTorch's defaults): what `bench` times and tests decode when no
    /// trained model is wanted.
    pub fn untrained(cfg: &MeasureVaeConfig, seed: u64) -> Checkpoint {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let tensors = measure_vae_shapes(cfg)
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let bound = if shape.len() == 2 {
                    1.0 / (shape[1] as f32).sqrt()
                } else {
                    0.1
                };
                let bound = if name.ends_with("embedding.weight") {
                    1.0
                } else {
                    bound
                };
                let values = (0..n).map(|_| rng.gen_range(-bound..bound)).collect();
                (name, (shape, values))
            })
            .collect();
        let dataset = DatasetInfo {
            id: "random".into(),
            collection: "none".into(),
            hash: format!("seed-{seed}"),
        };
        Checkpoint {
            meta: CheckpointMeta::measure_vae(cfg, dataset),
            tensors,
        }
    }

    /// Checks metadata and tensors against each other; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let meta = &self.meta;
        if meta.format_version != FORMAT_VERSION {
            return Err(format!(
                "format version {} is not supported (this build reads version {FORMAT_VERSION})",
                meta.format_version
            ));
        }
        let shapes = expected_shapes(&meta.model_kind, &meta.config)?;
        // Image models have no vocabulary and name their attributes after the dataset's.
        let music = meta.model_kind == MEASURE_VAE_KIND;
        meta.check_vocabulary(music)?;
        let latent = latent_size(&meta.model_kind, &meta.config).unwrap_or(usize::MAX);
        meta.check_attributes(music, latent)?;
        meta.check_calibration(music, latent)?;
        if let Some(p) = &meta.prior {
            p.validate(latent).map_err(|e| format!("prior: {e}"))?;
        }
        if let Some((lo, hi)) = meta.pitch_range {
            if lo > hi || hi > 127 {
                return Err(format!(
                    "pitch range {lo}..={hi} is not a range of MIDI pitches"
                ));
            }
        }
        let adam = self.check_tensors(&shapes)?;
        if adam != 0 && adam != 2 * shapes.len() {
            return Err(format!(
                "optimizer state is incomplete ({adam} adam tensors, {} expected)",
                2 * shapes.len()
            ));
        }
        if adam != 0 && meta.train_state.is_none() {
            return Err("optimizer tensors present but train_state is missing".to_string());
        }
        Ok(())
    }

    /// Checks that every tensor of `shapes` is present and that every stored tensor (parameter
    /// or Adam moment) has its parameter's shape and finite values; returns the Adam tensor count.
    fn check_tensors(&self, shapes: &[(String, Vec<usize>)]) -> Result<usize, String> {
        let expected: BTreeMap<&str, &Vec<usize>> =
            shapes.iter().map(|(n, s)| (n.as_str(), s)).collect();
        for (name, shape) in shapes {
            match self.tensors.get(name) {
                None => return Err(format!("tensor {name} is missing")),
                Some((s, _)) if s != shape => {
                    return Err(format!(
                        "tensor {name} has shape {s:?}, the config needs {shape:?}"
                    ))
                }
                Some(_) => {}
            }
        }
        let mut adam = 0usize;
        for (name, (shape, data)) in &self.tensors {
            let param = name
                .strip_prefix(ADAM_M_PREFIX)
                .or_else(|| name.strip_prefix(ADAM_V_PREFIX));
            let want = match param {
                Some(p) => {
                    adam += 1;
                    expected.get(p).copied()
                }
                None => expected.get(name.as_str()).copied(),
            };
            let Some(want) = want else {
                return Err(format!("unexpected tensor {name}"));
            };
            if shape != want {
                return Err(format!(
                    "tensor {name} has shape {shape:?}, the config needs {want:?}"
                ));
            }
            let n: usize = shape.iter().product();
            if data.len() != n {
                return Err(format!(
                    "tensor {name} has {} values for shape {shape:?}",
                    data.len()
                ));
            }
            if let Some(i) = data.iter().position(|x| !x.is_finite()) {
                return Err(format!("tensor {name} has a non-finite value at index {i}"));
            }
        }
        Ok(adam)
    }

    /// The model parameters only (no optimizer state).
    pub fn parameters(&self) -> impl Iterator<Item = (&String, &(Vec<usize>, Vec<f32>))> {
        self.tensors
            .iter()
            .filter(|(n, _)| !n.starts_with(ADAM_M_PREFIX) && !n.starts_with(ADAM_V_PREFIX))
    }

    /// Serializes to safetensors bytes after validating; `name` is used in error messages.
    pub fn to_bytes(&self, name: &str) -> Result<Vec<u8>, CheckpointError> {
        self.validate()
            .map_err(|p| CheckpointError::new(name, format!("refusing to write: {p}")))?;
        let json = serde_json::to_string(&self.meta)
            .map_err(|e| CheckpointError::new(name, format!("metadata does not serialize: {e}")))?;
        let bytes: Vec<(&String, &Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(n, (s, d))| (n, s, d.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect();
        let mut views = Vec::with_capacity(bytes.len());
        for (n, s, b) in &bytes {
            let view = TensorView::new(Dtype::F32, (*s).clone(), b)
                .map_err(|e| CheckpointError::new(name, format!("tensor {n}: {e}")))?;
            views.push((n.as_str(), view));
        }
        let metadata = HashMap::from([(METADATA_KEY.to_string(), json)]);
        safetensors::serialize(views, Some(metadata)).map_err(|e| {
            CheckpointError::new(name, format!("safetensors serialization failed: {e}"))
        })
    }

    /// Writes the checkpoint atomically ([`crate::files::write_file`]: a temporary file in the
    /// same folder, fsync, rename; a symlink's target is replaced, a device written through).
    pub fn save_atomic(&self, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = self.to_bytes(&name)?;
        crate::files::write_bytes(path, &bytes)
            .map_err(|e| CheckpointError::new(&name, format!("cannot write: {e}")))
    }

    /// Reads and validates a checkpoint file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = crate::files::read_input(path, crate::files::MAX_DATA_FILE)
            .map_err(|e| CheckpointError::new(&name, format!("cannot read: {e}")))?;
        Self::from_bytes(&bytes, &name)
    }

    /// Parses and validates checkpoint bytes; `name` is used in error messages.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self, CheckpointError> {
        let err = |p: String| CheckpointError::new(name, p);
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
            err(format!(
                "not a valid safetensors file (truncated or corrupt?): {e}"
            ))
        })?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or_else(|| {
                err(format!(
                    "no `{METADATA_KEY}` metadata: not an arvae checkpoint"
                ))
            })?;
        let raw: Value =
            serde_json::from_str(json).map_err(|e| err(format!("metadata is not JSON: {e}")))?;
        // Check the version before the full schema, so a future layout gets the right message.
        match raw.get("format_version").and_then(Value::as_u64) {
            Some(v) if v == FORMAT_VERSION as u64 => {}
            Some(v) => {
                return Err(err(format!(
                "format version {v} is not supported (this build reads version {FORMAT_VERSION})"
            )))
            }
            None => return Err(err("metadata has no format_version".to_string())),
        }
        let meta: CheckpointMeta =
            serde_json::from_value(raw).map_err(|e| err(format!("metadata is malformed: {e}")))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            err(format!(
                "not a valid safetensors file (truncated or corrupt?): {e}"
            ))
        })?;
        let mut tensors = NamedTensors::new();
        for (tname, view) in st.iter() {
            if view.dtype() != Dtype::F32 {
                return Err(err(format!(
                    "tensor {tname} has dtype {:?}, expected F32",
                    view.dtype()
                )));
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.insert(tname.to_string(), (view.shape().to_vec(), data));
        }
        let ck = Checkpoint { meta, tensors };
        ck.validate().map_err(err)?;
        Ok(ck)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::fs;

    fn small_config() -> MeasureVaeConfig {
        MeasureVaeConfig {
            hidden: 8,
            latent: 6,
            head_hidden: 12,
            ..Default::default()
        }
    }

    fn expect_err(bytes: &[u8], needle: &str) {
        let e = Checkpoint::from_bytes(bytes, "bad.safetensors")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.safetensors"), "{e}");
        assert!(e.contains(needle), "{e:?} lacks {needle:?}");
    }

    #[test]
    fn default_parameter_count() {
        let n: usize = measure_vae_shapes(&MeasureVaeConfig::default())
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert_eq!(n, 1_112_095);
    }

    #[test]
    fn round_trip_through_file() {
        let mut ck = Checkpoint::untrained(&small_config(), 1);
        ck.meta.calibration.push(Calibration {
            attribute: "note_density".into(),
            latent_dim: 2,
            points: vec![(-1.0, 0.1), (1.0, 0.5)],
        });
        ck.meta.evaluation = Some(serde_json::json!({"mig": 0.3}));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        ck.save_atomic(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back, ck);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let cfg = small_config();
        let ck = Checkpoint::untrained(&cfg, 1);
        let good = ck.to_bytes("x").unwrap();
        assert!(Checkpoint::from_bytes(&good, "x").is_ok());

        for cut in [0, 3, 8, 20, good.len() / 2, good.len() - 1] {
            expect_err(&good[..cut], "truncated or corrupt");
        }
        expect_err(
            b"this is not a checkpoint at all, just some garbage bytes",
            "not a valid safetensors",
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..200 {
            let mut b = good.clone();
            let i = rng.gen_range(0..b.len());
            b[i] ^= rng.gen_range(1..=255u8);
            // Flipped bytes may land in tensor data (then the file is still valid) but must never panic.
            let _ = Checkpoint::from_bytes(&b, "fuzz");
        }

        let mut v2 = ck.clone();
        v2.meta.format_version = 2;
        let bytes = write_unchecked(&v2);
        expect_err(&bytes, "format version 2 is not supported");

        let mut shape = ck.clone();
        shape.tensors.get_mut("dec.output.weight").unwrap().0 = vec![VOCAB_SIZE, 9];
        shape
            .tensors
            .get_mut("dec.output.weight")
            .unwrap()
            .1
            .extend([0.0; VOCAB_SIZE]);
        expect_err(
            &write_unchecked(&shape),
            "tensor dec.output.weight has shape [132, 9]",
        );

        let mut missing = ck.clone();
        missing.tensors.remove("enc.rnn.weight_hh_l1_reverse");
        expect_err(
            &write_unchecked(&missing),
            "tensor enc.rnn.weight_hh_l1_reverse is missing",
        );

        let mut extra = ck.clone();
        extra.tensors.insert("foo".into(), (vec![1], vec![0.0]));
        expect_err(&write_unchecked(&extra), "unexpected tensor foo");

        let mut vocab = ck.clone();
        vocab.meta.vocabulary[60] = "C4?".into();
        expect_err(&write_unchecked(&vocab), "vocabulary differs");

        let mut attr = ck.clone();
        attr.meta.attributes[1].name = "loudness".into();
        expect_err(&write_unchecked(&attr), "unknown attribute \"loudness\"");

        let mut kind = ck.clone();
        kind.meta.model_kind = "transformer".into();
        expect_err(&write_unchecked(&kind), "unknown model kind");

        let mut nan = ck.clone();
        nan.tensors.get_mut("dec.start_input").unwrap().1[0] = f32::NAN;
        expect_err(&write_unchecked(&nan), "non-finite");

        let mut half_adam = ck.clone();
        half_adam.tensors.insert(
            "adam.m.dec.start_input".into(),
            (vec![cfg.embedding], vec![0.0; cfg.embedding]),
        );
        expect_err(
            &write_unchecked(&half_adam),
            "optimizer state is incomplete",
        );

        // A plain safetensors file without our metadata.
        let plain = safetensors::serialize(
            [(
                "a",
                TensorView::new(Dtype::F32, vec![1], &[0, 0, 0, 0]).unwrap(),
            )],
            None,
        )
        .unwrap();
        expect_err(&plain, "not an arvae checkpoint");

        // Saving refuses invalid checkpoints too.
        let dir = tempfile::tempdir().unwrap();
        let e = missing
            .save_atomic(dir.path().join("m.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("refusing to write"), "{e}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let e = Checkpoint::load(dir.path().join("none.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("none.safetensors") && e.contains("cannot read"),
            "{e}"
        );
    }

    #[test]
    fn full_optimizer_state_is_accepted() {
        let mut ck = Checkpoint::untrained(&small_config(), 1);
        let params: Vec<_> = ck
            .tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        for (n, t) in params {
            ck.tensors.insert(format!("{ADAM_M_PREFIX}{n}"), t.clone());
            ck.tensors.insert(format!("{ADAM_V_PREFIX}{n}"), t);
        }
        assert!(ck
            .validate()
            .unwrap_err()
            .contains("train_state is missing"));
        ck.meta.train_state = Some(TrainState {
            epoch: 3,
            step: 120,
            optimizer_step: 120,
            extra: serde_json::json!({"rng": 5}),
        });
        let back = Checkpoint::from_bytes(&ck.to_bytes("x").unwrap(), "x").unwrap();
        assert_eq!(back, ck);
        assert_eq!(
            back.parameters().count(),
            measure_vae_shapes(&small_config()).len()
        );
    }

    /// Serializes without validation, to produce bad files.
    fn write_unchecked(ck: &Checkpoint) -> Vec<u8> {
        let json = serde_json::to_string(&ck.meta).unwrap();
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = ck
            .tensors
            .iter()
            .map(|(n, (s, d))| {
                (
                    n.clone(),
                    s.clone(),
                    d.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            })
            .collect();
        let views: Vec<_> = bytes
            .iter()
            .map(|(n, s, b)| {
                (
                    n.as_str(),
                    TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        safetensors::serialize(
            views,
            Some(HashMap::from([(METADATA_KEY.to_string(), json)])),
        )
        .unwrap()
    }
}
