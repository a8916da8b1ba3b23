//! `arvae-trainer surface` (paper Figs. 12, 13): the attribute of decoded outputs over a plane of
//! the latent space spanned by the attribute's dimension (x) and a non-regularized one (y), the
//! other dimensions drawn once from the prior and kept fixed.
//!
//! The computation only needs an [`AttributeDecoder`], so the image VAEs can reuse it.

use super::latent::{self, AttributeDecoder, MusicDecoder};
use super::{attribute_label, attribute_title, bold, linspace, save, text, viridis};
use super::{Figure, PlotResult};
use anyhow::{bail, Result};
use clap::Args;
use indicatif::ProgressBar;
use plotters::coord::Shift;
use plotters::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct SurfaceArgs {
    /// Checkpoint (model.safetensors or best.safetensors of a run), or a shipped model's name.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset the model was trained on (checks the vocabulary; finds a β-VAE's dimensions).
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder: surface_<attribute>.{png,svg}, surface.{png,svg} (all panels), surface.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Grid points per axis.
    #[arg(long, default_value_t = 41)]
    pub grid: usize,
    /// Both axes go from -RANGE to +RANGE.
    #[arg(long, default_value_t = 5.0)]
    pub range: f32,
    /// The non-regularized dimension on the y-axis (default: the first dimension that carries no
    /// attribute).
    #[arg(long)]
    pub other_dim: Option<usize>,
    /// Seed of the prior draw of the other dimensions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// One attribute surface.
#[derive(Clone, Serialize)]
pub struct Surface {
    /// Attribute name.
    pub attribute: String,
    /// Dimension on the x-axis (the attribute's).
    pub x_dim: usize,
    /// Why that dimension ("regularized", "highest MI").
    pub how: String,
    /// Dimension on the y-axis.
    pub y_dim: usize,
    /// Grid values on each axis.
    pub axis: Vec<f32>,
    /// Attribute values, row-major: `values[iy * n + ix]`.
    pub values: Vec<f32>,
}

/// A plane to compute: attribute index (in the decoder's attribute order), x dim, why.
pub struct Plane {
    /// Index into [`AttributeDecoder::attribute_names`].
    pub attribute: usize,
    /// Dimension on the x-axis.
    pub x_dim: usize,
    /// Why that dimension.
    pub how: String,
}

/// Decodes a `grid` x `grid` plane per entry of `planes` around `base` (a full latent vector).
pub fn compute(
    dec: &dyn AttributeDecoder,
    planes: &[Plane],
    y_dim: usize,
    base: &[f32],
    grid: usize,
    range: f32,
    bar: &ProgressBar,
) -> Result<Vec<Surface>> {
    let d = dec.latent_size();
    let names = dec.attribute_names();
    let axis = linspace(-range, range, grid);
    let mut out = Vec::new();
    for p in planes {
        let mut values = Vec::with_capacity(grid * grid);
        // One row of the grid (fixed y) per decode call keeps memory small and the bar moving.
        for &y in &axis {
            let z: Vec<f32> = axis
                .iter()
                .flat_map(|&x| {
                    let mut z = base.to_vec();
                    z[p.x_dim] = x;
                    z[y_dim] = y;
                    z
                })
                .collect();
            debug_assert_eq!(z.len(), grid * d);
            values.extend(
                dec.decode_attributes(&z)?
                    .iter()
                    .map(|row| row[p.attribute]),
            );
            bar.inc(1);
        }
        out.push(Surface {
            attribute: names[p.attribute].clone(),
            x_dim: p.x_dim,
            how: p.how.clone(),
            y_dim,
            axis: axis.clone(),
            values,
        });
    }
    Ok(out)
}

/// Heat maps of one or more surfaces, two per row, each with its colour bar.
pub struct SurfaceFigure {
    /// Figure title.
    pub title: String,
    /// The surfaces.
    pub surfaces: Vec<Surface>,
}

const PANEL: (u32, u32) = (820, 700);

impl Figure for SurfaceFigure {
    fn size(&self) -> (u32, u32) {
        let n = self.surfaces.len().max(1) as u32;
        let cols = n.min(2);
        (PANEL.0 * cols, 60 + PANEL.1 * n.div_ceil(2))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (top, body) = root.split_vertically(60);
        top.titled(&self.title, bold(24)).plot()?;
        let n = self.surfaces.len().max(1);
        let panels = body.split_evenly((n.div_ceil(2), n.min(2)));
        for (s, area) in self.surfaces.iter().zip(&panels) {
            draw_panel(area, s)?;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, s: &Surface) -> Result<()> {
    let n = s.axis.len();
    let (lo, hi) = (
        s.axis.first().copied().unwrap_or(-1.0) as f64,
        s.axis.last().copied().unwrap_or(1.0) as f64,
    );
    let half = if n > 1 {
        (hi - lo) / (n - 1) as f64 / 2.0
    } else {
        0.5
    };
    let (mut vmin, mut vmax) = s
        .values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if vmin > vmax {
        (vmin, vmax) = (0.0, 1.0);
    }
    if vmax - vmin < 1e-6 {
        vmax = vmin + 1e-3;
    }
    let (vmin, vmax) = (vmin as f64, vmax as f64);
    let (main, cbar) = area.split_horizontally(area.dim_in_pixel().0.saturating_sub(130));
    let mut chart = ChartBuilder::on(&main)
        .caption(
            format!(
                "{} (x: z{}, {})",
                attribute_title(&s.attribute),
                s.x_dim,
                s.how
            ),
            bold(20),
        )
        .margin(10)
        .x_label_area_size(55)
        .y_label_area_size(65)
        .build_cartesian_2d((lo - half)..(hi + half), (lo - half)..(hi + half))
        .plot()?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(format!("z{} (the attribute's dimension)", s.x_dim))
        .y_desc(format!("z{} (not regularized)", s.y_dim))
        .label_style(text(15))
        .axis_desc_style(text(16))
        .draw()
        .plot()?;
    chart
        .draw_series((0..n * n).map(|k| {
            let (iy, ix) = (k / n, k % n);
            let (x, y) = (s.axis[ix] as f64, s.axis[iy] as f64);
            let v = s.values.get(k).copied().unwrap_or(f32::NAN) as f64;
            Rectangle::new(
                [(x - half, y - half), (x + half, y + half)],
                viridis((v - vmin) / (vmax - vmin)).filled(),
            )
        }))
        .plot()?;
    // Colour bar.
    let mut bar = ChartBuilder::on(&cbar)
        .margin_top(50)
        .margin_bottom(65)
        .margin_right(8)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..1.0, vmin..vmax)
        .plot()?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(6)
        .y_desc(attribute_label(&s.attribute))
        .label_style(text(14))
        .axis_desc_style(text(14))
        .draw()
        .plot()?;
    let steps = 100;
    bar.draw_series((0..steps).map(|i| {
        let (a, b) = (i as f64 / steps as f64, (i + 1) as f64 / steps as f64);
        Rectangle::new(
            [
                (0.0, vmin + a * (vmax - vmin)),
                (1.0, vmin + b * (vmax - vmin)),
            ],
            viridis((a + b) / 2.0).filled(),
        )
    }))
    .plot()?;
    Ok(())
}

/// What `surface` wrote, as stored in surface.json.
#[derive(Serialize)]
pub struct SurfaceIndex {
    /// The checkpoint.
    pub checkpoint: String,
    /// AR-VAE or β-VAE.
    pub model: String,
    /// The figure with all panels (PNG; the SVG sits beside it).
    pub combined: String,
    /// Per attribute: its figure (PNG) and the surface values.
    pub surfaces: Vec<(String, Surface)>,
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs `surface`; returns what it wrote.
pub fn run(a: &SurfaceArgs, quiet: bool) -> Result<SurfaceIndex> {
    if a.grid < 2 {
        bail!("--grid must be at least 2");
    }
    if !(a.range.is_finite() && a.range > 0.0) {
        bail!("--range must be a positive number, got {}", a.range);
    }
    let l = latent::load(&a.checkpoint, &a.data)?;
    let axes = latent::attribute_axes(&l)?;
    let d = l.model.config().latent;
    let used: Vec<usize> = axes.iter().map(|x| x.dim).collect();
    let y_dim = match a.other_dim {
        Some(y) if y >= d => bail!("--other-dim {y}: the model has only {d} latent dimensions (0..{})", d - 1),
        Some(y) if used.contains(&y) => bail!(
            "--other-dim {y} carries an attribute ({}); choose a dimension outside {:?}",
            axes.iter().find(|x| x.dim == y).unwrap().attribute.name(),
            used
        ),
        Some(y) => y,
        None => match (0..d).find(|j| !used.contains(j)) {
            Some(y) => y,
            None => bail!("every latent dimension carries an attribute; there is no free dimension for the y-axis"),
        },
    };
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let base: Vec<f32> = (0..d)
        .map(|_| arvae_core::random::standard_normal(&mut rng) as f32)
        .collect();
    let planes: Vec<Plane> = axes
        .iter()
        .map(|x| Plane {
            attribute: x.attribute.index(),
            x_dim: x.dim,
            how: x.how.to_string(),
        })
        .collect();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new((planes.len() * a.grid) as u64)
            .with_style(crate::progress::style())
            .with_message("surface")
    };
    let surfaces = compute(
        &MusicDecoder(&l.model),
        &planes,
        y_dim,
        &base,
        a.grid,
        a.range,
        &bar,
    )?;
    bar.finish_and_clear();
    let model = latent::model_name(&l.ck);
    let mut files = Vec::new();
    for s in &surfaces {
        let fig = SurfaceFigure {
            title: format!(
                "{model}: {} over the latent plane",
                attribute_label(&s.attribute)
            ),
            surfaces: vec![s.clone()],
        };
        let [png, _] = save(&fig, &a.out.join(format!("surface_{}", s.attribute)))?;
        files.push((file_name(&png), s.clone()));
    }
    let all = SurfaceFigure {
        title: format!(
            "{model}: attribute surfaces (other dimensions drawn once from N(0, 1), seed {})",
            a.seed
        ),
        surfaces: surfaces.clone(),
    };
    let [combined, _] = save(&all, &a.out.join("surface"))?;
    let index = SurfaceIndex {
        checkpoint: a.checkpoint.display().to_string(),
        model: model.into(),
        combined: file_name(&combined),
        surfaces: files,
    };
    let json = a.out.join("surface.json");
    arvae_core::files::write_bytes(&json, serde_json::to_string(&index)?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", json.display()))?;
    Ok(index)
}

/// The `surface` command.
pub fn surface(a: SurfaceArgs) -> Result<()> {
    let index = run(&a, false)?;
    println!(
        "wrote {} surfaces and {} (PNG + SVG), surface.json to {}",
        index.surfaces.len(),
        index.combined,
        a.out.display()
    );
    Ok(())
}
