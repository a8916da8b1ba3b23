//! `traverse` for the image VAEs (the paper's image traversals): one PNG grid per attribute
//! axis. Rows are test images; the columns are the input, its reconstruction (decoded from the
//! posterior mean) and then the decodes with the axis' latent dimension set to `steps` values
//! in [-range, range], the other dimensions at that image's posterior mean. Pixels are the
//! decoder's Bernoulli probabilities (black 0, white 1), as the paper shows them.

use super::{bold, init_fonts, linspace, text, PlotResult};
use anyhow::{bail, Context, Result};
use arvae_core::checkpoint::Checkpoint;
use arvae_core::data::images::ImageDataset;
use arvae_core::data::Split;
use arvae_core::image_training::{decode_images, image_latents};
use arvae_core::metrics::{mutual_info_matrix, Matrix};
use arvae_core::model::conv_vae::ConvVae;
use candle_core::Device;
use plotters::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::Path;

use super::TraverseArgs;

/// One image axis: an attribute and its latent dimension.
#[derive(Clone, Debug, Serialize)]
pub struct ImageAxis {
    /// Attribute name (as in the dataset header).
    pub attribute: String,
    /// Latent dimension.
    pub dim: usize,
    /// "regularized" (AR-VAE) or "highest MI" (β-VAE).
    pub how: &'static str,
    /// The grid (PNG).
    pub figure: String,
}

/// What an image `traverse` wrote (traverse.json).
#[derive(Serialize)]
pub struct ImageTraverseIndex {
    /// The checkpoint.
    pub checkpoint: String,
    /// AR-VAE or β-VAE.
    pub model: String,
    /// Dataset indices of the rows.
    pub images: Vec<usize>,
    /// Latent values of the traversal columns.
    pub z: Vec<f32>,
    /// One grid per axis.
    pub axes: Vec<ImageAxis>,
}

/// Images used to find a β-VAE's highest-MI dimensions.
const MI_IMAGES: usize = 2000;

/// Pixels per image pixel in the grids (28-pixel digits are drawn 2x).
fn scale_for(side: usize) -> u32 {
    if side <= 32 {
        2
    } else {
        1
    }
}

pub(crate) fn axes_for(
    ck: &Checkpoint,
    model: &ConvVae,
    ds: &ImageDataset,
    test: &[usize],
) -> Result<Vec<(String, usize, &'static str)>> {
    if !ck.meta.attributes.is_empty() {
        return Ok(ck
            .meta
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.latent_dim, "regularized"))
            .collect());
    }
    // β-VAE: per attribute the dimension with the highest mutual information (KSG, k = 3).
    let idx: Vec<usize> = test.iter().copied().take(MI_IMAGES).collect();
    let (_, z) = image_latents(model, ds, &idx, 256, 0)?;
    let d = model.config().latent;
    let k = ds.num_attributes();
    let zm = Matrix::from_f32(idx.len(), d, &z)?;
    let a: Vec<f64> = idx
        .iter()
        .flat_map(|&i| ds.attributes_of(i).iter().map(|&x| x as f64))
        .collect();
    let am = Matrix::new(idx.len(), k, a)?;
    let (mi, _) = mutual_info_matrix(&zm, &am, 3, 0);
    Ok(ds
        .header
        .attributes
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let dim = (0..d)
                .max_by(|&x, &y| mi[x][j].total_cmp(&mi[y][j]))
                .unwrap_or(0);
            (name.clone(), dim, "highest MI")
        })
        .collect())
}

/// Draws one grid: `rows` rows of `cols` images (`side` x `side` probabilities each), with a
/// header row naming the columns.
fn draw_grid(
    path: &Path,
    title: &str,
    headers: &[String],
    images: &[Vec<f32>],
    cols: usize,
    side: usize,
) -> Result<()> {
    init_fonts();
    let s = scale_for(side);
    let cell = side as u32 * s;
    let pad = 4u32;
    let (left, top) = (8u32, 56u32);
    let rows = images.len().div_ceil(cols.max(1));
    let w = left * 2 + cols as u32 * (cell + pad);
    let h = top + rows as u32 * (cell + pad) + 8;
    let root = BitMapBackend::new(path, (w.max(420), h)).into_drawing_area();
    root.fill(&WHITE).plot()?;
    root.draw(&Text::new(title.to_string(), (left as i32, 6), bold(16)))
        .plot()?;
    for (c, head) in headers.iter().enumerate() {
        let x = left + c as u32 * (cell + pad);
        root.draw(&Text::new(head.clone(), (x as i32, 32), text(11)))
            .plot()?;
    }
    for (n, img) in images.iter().enumerate() {
        let (r, c) = (n / cols, n % cols);
        let x0 = left + c as u32 * (cell + pad);
        let y0 = top + r as u32 * (cell + pad);
        for (p, &v) in img.iter().enumerate() {
            let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            let color = RGBColor(g, g, g);
            let (px, py) = ((p % side) as u32 * s + x0, (p / side) as u32 * s + y0);
            for dy in 0..s {
                for dx in 0..s {
                    root.draw_pixel(((px + dx) as i32, (py + dy) as i32), &color)
                        .plot()?;
                }
            }
        }
    }
    root.present()
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e:?}", path.display()))?;
    Ok(())
}

/// Runs `traverse` on an image checkpoint and dataset.
pub fn run(a: &TraverseArgs, ck: Checkpoint) -> Result<ImageTraverseIndex> {
    let ds = ImageDataset::load(&a.data)?;
    let model = ConvVae::from_checkpoint(&ck, &Device::Cpu)
        .with_context(|| format!("{}: cannot build the image model", a.checkpoint.display()))?;
    let side = model.config().side();
    if side * side != ds.pixels_per_image() {
        bail!(
            "{} has {}-pixel images, but {} was trained on {side} x {side}",
            a.data.display(),
            ds.pixels_per_image(),
            a.checkpoint.display()
        );
    }
    let mut test = ds.indices(Split::Test);
    if test.is_empty() {
        test = ds.indices(Split::Train);
    }
    if test.is_empty() {
        bail!("{}: the dataset has no images", a.data.display());
    }
    test.shuffle(&mut ChaCha8Rng::seed_from_u64(a.seed));
    let axes = axes_for(&ck, &model, &ds, &test)?;
    let idx: Vec<usize> = test.iter().copied().take(a.count).collect();
    let (means, _) = image_latents(&model, &ds, &idx, 256, a.seed)?;
    let d = model.config().latent;
    let recon = decode_images(&model, &means)?;
    let zs = linspace(-a.range, a.range, a.steps);
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let name = if ck.meta.attributes.is_empty() {
        "β-VAE"
    } else {
        "AR-VAE"
    };
    let mut headers = vec!["input".to_string(), "recon.".to_string()];
    headers.extend(zs.iter().map(|v| format!("{v:+.1}")));
    let cols = headers.len();
    let px = side * side;
    let mut out = Vec::new();
    for (attribute, dim, how) in axes {
        if dim >= d {
            bail!(
                "{}: attribute {attribute} on latent dimension {dim}, but the model has {d}",
                a.checkpoint.display()
            );
        }
        let z: Vec<f32> = (0..idx.len())
            .flat_map(|k| {
                let base = &means[k * d..(k + 1) * d];
                zs.iter().flat_map(move |&v| {
                    let mut z = base.to_vec();
                    z[dim] = v;
                    z
                })
            })
            .collect();
        let dec = decode_images(&model, &z)?;
        let mut images = Vec::with_capacity(idx.len() * cols);
        for (k, &i) in idx.iter().enumerate() {
            images.push(ds.image(i));
            images.push(recon[k * px..(k + 1) * px].to_vec());
            for s in 0..zs.len() {
                let at = (k * zs.len() + s) * px;
                images.push(dec[at..at + px].to_vec());
            }
        }
        let file = format!("traverse_{attribute}.png");
        let title = format!(
            "{name} on {}: {attribute} along z{dim} ({how}), {} test images",
            ds.header.collection,
            idx.len()
        );
        draw_grid(&a.out.join(&file), &title, &headers, &images, cols, side)?;
        out.push(ImageAxis {
            attribute,
            dim,
            how,
            figure: file,
        });
    }
    let index = ImageTraverseIndex {
        checkpoint: a.checkpoint.display().to_string(),
        model: name.to_string(),
        images: idx,
        z: zs,
        axes: out,
    };
    let json = a.out.join("traverse.json");
    arvae_core::files::write_bytes(&json, serde_json::to_string_pretty(&index)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    Ok(index)
}
