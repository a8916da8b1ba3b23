//! What the latent-space figures need from a model: which dimension carries each attribute, and
//! the attributes of decoded latent vectors. Music implements it today; the image VAEs can
//! implement [`AttributeDecoder`] and reuse the surface figure unchanged.

use anyhow::{Context, Result};
use arvae_core::checkpoint::Checkpoint;
use arvae_core::data::{Dataset, Split};
use arvae_core::metrics::{mutual_info_matrix, Matrix};
use arvae_core::model::MeasureVae;
use arvae_core::music::attributes::{attributes, Attribute};
use arvae_core::music::Measure;
use arvae_core::training;
use candle_core::Device;
use std::path::Path;

/// A generative model whose decoded outputs have measurable attributes.
pub trait AttributeDecoder {
    /// Size of the latent vector.
    fn latent_size(&self) -> usize;
    /// Names of the attributes [`AttributeDecoder::decode_attributes`] returns, in order.
    fn attribute_names(&self) -> Vec<String>;
    /// Decodes the rows of `z` (each `latent_size` long) and measures the attributes of each
    /// output; one row of attribute values per latent vector.
    fn decode_attributes(&self, z: &[f32]) -> Result<Vec<Vec<f32>>>;
}

/// MeasureVAE: decodes one-bar melodies and measures the four musical attributes.
pub struct MusicDecoder<'a>(pub &'a MeasureVae);

/// Latent vectors decoded per call (bounded memory for large grids).
const DECODE_CHUNK: usize = 512;

impl MusicDecoder<'_> {
    /// Greedy decoding of the rows of `z` in chunks.
    pub fn decode(&self, z: &[f32]) -> Result<Vec<Measure>> {
        let d = self.0.config().latent;
        let mut out = Vec::with_capacity(z.len() / d);
        for chunk in z.chunks(DECODE_CHUNK * d) {
            out.extend(training::decode(self.0, chunk)?);
        }
        Ok(out)
    }
}

impl AttributeDecoder for MusicDecoder<'_> {
    fn latent_size(&self) -> usize {
        self.0.config().latent
    }
    fn attribute_names(&self) -> Vec<String> {
        Attribute::ALL
            .iter()
            .map(|a| a.name().to_string())
            .collect()
    }
    fn decode_attributes(&self, z: &[f32]) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .decode(z)?
            .iter()
            .map(|m| attributes(m).to_vec())
            .collect())
    }
}

/// The latent dimension that carries an attribute, and why that one.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AttributeAxis {
    /// The attribute.
    pub attribute: Attribute,
    /// Its latent dimension.
    pub dim: usize,
    /// "regularized" for an AR-VAE, "highest MI" for a β-VAE (the paper's choice for Fig. 11).
    pub how: &'static str,
}

/// A checkpoint, its model on the CPU and a dataset checked against it.
pub struct Loaded {
    /// The checkpoint.
    pub ck: Checkpoint,
    /// The model.
    pub model: MeasureVae,
    /// The dataset.
    pub ds: Dataset,
}

/// Loads a checkpoint and a dataset and checks that they belong together.
pub fn load(checkpoint: &Path, data: &Path) -> Result<Loaded> {
    let ck = arvae_core::builtin::load_checkpoint(checkpoint)?;
    let ds = Dataset::load(data)?;
    crate::evaluation::check_compatible(&ck, checkpoint, &ds, data)?;
    let model = MeasureVae::from_checkpoint(&ck, &Device::Cpu)
        .with_context(|| format!("{}: cannot build the model", checkpoint.display()))?;
    Ok(Loaded { ck, model, ds })
}

/// The test split (the training split when a tiny dataset has no test measures).
pub fn test_indices(ds: &Dataset) -> Vec<usize> {
    let idx = ds.indices(Split::Test);
    if idx.is_empty() {
        ds.indices(Split::Train)
    } else {
        idx
    }
}

/// Measures used to find a β-VAE's highest-MI dimensions when the checkpoint stores no evaluation.
const MI_MEASURES: usize = 2000;

/// For an AR-VAE, its regularized attributes on their dimensions; for a β-VAE (nothing
/// regularized), all four attributes, each on the dimension with the highest mutual information
/// (from the checkpoint's stored evaluation, else estimated on the test split).
pub fn attribute_axes(l: &Loaded) -> Result<Vec<AttributeAxis>> {
    if !l.ck.meta.attributes.is_empty() {
        return l
            .ck
            .meta
            .attributes
            .iter()
            .map(|a| {
                let attribute = Attribute::from_name(&a.name).with_context(|| {
                    format!("the checkpoint names an unknown attribute '{}'", a.name)
                })?;
                Ok(AttributeAxis {
                    attribute,
                    dim: a.latent_dim,
                    how: "regularized",
                })
            })
            .collect();
    }
    let stored: Option<Vec<(String, usize)>> = l.ck.meta.evaluation.as_ref().and_then(|e| {
        e.pointer("/metrics/attributes")?
            .as_array()?
            .iter()
            .map(|a| {
                Some((
                    a.get("name")?.as_str()?.to_string(),
                    a.get("interpretability_dim")?.as_u64()? as usize,
                ))
            })
            .collect()
    });
    let dims: Vec<usize> = match stored {
        Some(s)
            if Attribute::ALL
                .iter()
                .all(|a| s.iter().any(|x| x.0 == a.name())) =>
        {
            Attribute::ALL
                .iter()
                .map(|a| s.iter().find(|x| x.0 == a.name()).unwrap().1)
                .collect()
        }
        _ => {
            let mut idx = test_indices(&l.ds);
            idx.truncate(MI_MEASURES);
            let ms: Vec<Measure> = idx.iter().map(|&i| l.ds.measures[i]).collect();
            let (_, z) = training::latents(&l.model, &ms, 256, 0)?;
            let d = l.model.config().latent;
            let zm = Matrix::from_f32(ms.len(), d, &z)?;
            let a: Vec<f64> = idx
                .iter()
                .flat_map(|&i| l.ds.attributes[i].map(|x| x as f64))
                .collect();
            let am = Matrix::new(ms.len(), 4, a)?;
            let (mi, _) = mutual_info_matrix(&zm, &am, 3, 0);
            (0..4)
                .map(|k| {
                    (0..d)
                        .max_by(|&x, &y| mi[x][k].total_cmp(&mi[y][k]))
                        .unwrap_or(0)
                })
                .collect()
        }
    };
    Ok(Attribute::ALL
        .iter()
        .zip(dims)
        .map(|(&attribute, dim)| AttributeAxis {
            attribute,
            dim,
            how: "highest MI",
        })
        .collect())
}

/// A short name of the model kind for titles.
pub fn model_name(ck: &Checkpoint) -> &'static str {
    if ck.meta.attributes.is_empty() {
        "β-VAE"
    } else {
        "AR-VAE"
    }
}
