//! `arvae-trainer traverse` (paper Fig. 11): test measures decoded along the latent dimension of
//! each attribute, as piano rolls with the attribute values plotted beside, and as MIDI.

use super::latent::{self, AttributeAxis, MusicDecoder};
use super::{attribute_label, attribute_title, bold, linspace, piano_roll, save, text};
use super::{Figure, PlotResult, TraverseArgs, PALETTE};
use anyhow::{bail, Result};
use arvae_core::checkpoint::Checkpoint;
use arvae_core::family::Family;
use arvae_core::music::attributes::Attribute;
use arvae_core::music::midi_export::{write_file, ExportOptions};
use arvae_core::music::Measure;
use arvae_core::training;
use indicatif::ProgressBar;
use plotters::coord::Shift;
use plotters::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::Path;

/// One attribute's traversal of one measure.
#[derive(Clone, Serialize)]
pub struct TraverseRow {
    /// The attribute and its dimension.
    pub axis: AttributeAxis,
    /// Latent values along the dimension.
    pub z: Vec<f32>,
    /// The attribute of each decoded bar.
    pub values: Vec<f32>,
    /// The attribute of the original test measure.
    pub original: f32,
    /// The decoded bars.
    #[serde(skip)]
    pub measures: Vec<Measure>,
    /// The MIDI file of the bars (relative to the output folder).
    pub midi: String,
}

/// Fig. 11 for one test measure: a row per attribute.
pub struct TraverseFigure {
    /// Figure title.
    pub title: String,
    /// Rows, one per attribute.
    pub rows: Vec<TraverseRow>,
}

const ROW_H: u32 = 300;
const TITLE_H: u32 = 50;

impl Figure for TraverseFigure {
    fn size(&self) -> (u32, u32) {
        (1600, TITLE_H + ROW_H * self.rows.len().max(1) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (top, body) = root.split_vertically(TITLE_H);
        top.titled(&self.title, bold(24)).plot()?;
        let rows = body.split_evenly((self.rows.len().max(1), 1));
        for (row, area) in self.rows.iter().zip(&rows) {
            let (left, right) = area.split_horizontally(1130);
            let dim = row.axis.dim;
            let labels: Vec<String> = row.z.iter().map(|z| format!("{z:+.1}")).collect();
            piano_roll::draw(
                &left,
                &row.measures,
                &labels,
                &format!(
                    "{}: z{dim} ({}) from {:+.0} to {:+.0}",
                    attribute_title(row.axis.attribute.name()),
                    row.axis.how,
                    row.z.first().copied().unwrap_or(0.0),
                    row.z.last().copied().unwrap_or(0.0)
                ),
                &format!("one bar per value of latent dimension z{dim} (value under each bar)"),
            )?;
            draw_attribute_curve(&right, row)?;
        }
        Ok(())
    }
}

fn value_range(values: impl Iterator<Item = f32>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(0.05);
    ((lo - pad) as f64, (hi + pad) as f64)
}

fn draw_attribute_curve<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    row: &TraverseRow,
) -> Result<()> {
    let (x0, x1) = (
        row.z.first().copied().unwrap_or(-1.0) as f64,
        row.z.last().copied().unwrap_or(1.0) as f64,
    );
    let (y0, y1) = value_range(row.values.iter().copied().chain([row.original]));
    let mut chart = ChartBuilder::on(area)
        .caption("attribute of each bar", text(17))
        .margin(8)
        .x_label_area_size(52)
        .y_label_area_size(62)
        .build_cartesian_2d(x0..x1, y0..y1)
        .plot()?;
    let name = row.axis.attribute.name();
    chart
        .configure_mesh()
        .x_desc(format!("z{}", row.axis.dim))
        .y_desc(short_unit(name))
        .x_labels(5)
        .y_labels(5)
        .label_style(text(14))
        .axis_desc_style(text(15))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .plot()?;
    chart
        .draw_series(DashedLineSeries::new(
            [(x0, row.original as f64), (x1, row.original as f64)],
            6,
            4,
            RGBColor(120, 120, 120).stroke_width(1),
        ))
        .plot()?
        .label("original bar")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RGBColor(120, 120, 120)));
    let pts: Vec<(f64, f64)> = row
        .z
        .iter()
        .zip(&row.values)
        .map(|(&z, &v)| (z as f64, v as f64))
        .collect();
    chart
        .draw_series(LineSeries::new(pts.clone(), PALETTE[3].stroke_width(2)))
        .plot()?;
    chart
        .draw_series(pts.iter().map(|&p| Circle::new(p, 4, PALETTE[3].filled())))
        .plot()?
        .label("decoded bar")
        .legend(|(x, y)| Circle::new((x + 8, y), 4, PALETTE[3].filled()));
    chart
        .configure_series_labels()
        .label_font(text(13))
        .background_style(WHITE.mix(0.8))
        .border_style(RGBColor(180, 180, 180))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .plot()?;
    Ok(())
}

/// The attribute name with its unit, short enough for a narrow axis.
fn short_unit(name: &str) -> String {
    match name {
        "rhythmic_complexity" => "rhythmic complexity".into(),
        "pitch_range" => "pitch range (st / 26)".into(),
        "note_density" => "density (onsets / 24)".into(),
        "contour" => "contour (st / 26)".into(),
        other => other.replace('_', " "),
    }
}

/// Median and quartiles of each attribute along its dimension over all traversed measures.
pub struct TraverseSummaryFigure {
    /// Figure title.
    pub title: String,
    /// Per attribute: axis, z values, per measure the values along z.
    pub curves: Vec<(AttributeAxis, Vec<f32>, Vec<Vec<f32>>)>,
}

fn quantile(sorted: &[f32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let x = p * (sorted.len() - 1) as f64;
    let (i, j) = (x.floor() as usize, x.ceil() as usize);
    sorted[i] as f64 + (sorted[j] as f64 - sorted[i] as f64) * (x - i as f64)
}

impl Figure for TraverseSummaryFigure {
    fn size(&self) -> (u32, u32) {
        (1400, 60 + 520 * self.curves.len().div_ceil(2).max(1) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (top, body) = root.split_vertically(60);
        top.titled(&self.title, bold(24)).plot()?;
        let panels = body.split_evenly((self.curves.len().div_ceil(2).max(1), 2));
        for ((axis, z, per_measure), area) in self.curves.iter().zip(&panels) {
            let n = per_measure.len();
            let stats: Vec<(f64, f64, f64, f64)> = (0..z.len())
                .map(|k| {
                    let mut v: Vec<f32> = per_measure.iter().map(|m| m[k]).collect();
                    v.sort_by(f32::total_cmp);
                    (
                        z[k] as f64,
                        quantile(&v, 0.25),
                        quantile(&v, 0.5),
                        quantile(&v, 0.75),
                    )
                })
                .collect();
            let (y0, y1) = value_range(per_measure.iter().flatten().copied());
            let (x0, x1) = (
                z.first().copied().unwrap_or(-1.0) as f64,
                z.last().copied().unwrap_or(1.0) as f64,
            );
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!(
                        "{} along z{} ({})",
                        attribute_title(axis.attribute.name()),
                        axis.dim,
                        axis.how
                    ),
                    bold(19),
                )
                .margin(12)
                .x_label_area_size(55)
                .y_label_area_size(75)
                .build_cartesian_2d(x0..x1, y0..y1)
                .plot()?;
            chart
                .configure_mesh()
                .x_desc(format!("latent value z{}", axis.dim))
                .y_desc(attribute_label(axis.attribute.name()))
                .label_style(text(15))
                .axis_desc_style(text(16))
                .light_line_style(RGBColor(238, 238, 238))
                .draw()
                .plot()?;
            for m in per_measure {
                chart
                    .draw_series(LineSeries::new(
                        z.iter().zip(m).map(|(&a, &b)| (a as f64, b as f64)),
                        RGBColor(200, 200, 200),
                    ))
                    .plot()?;
            }
            let mut band: Vec<(f64, f64)> = stats.iter().map(|s| (s.0, s.1)).collect();
            band.extend(stats.iter().rev().map(|s| (s.0, s.3)));
            chart
                .draw_series(std::iter::once(Polygon::new(band, PALETTE[0].mix(0.25))))
                .plot()?
                .label("25–75% of the measures")
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], PALETTE[0].mix(0.25).filled())
                });
            chart
                .draw_series(LineSeries::new(
                    stats.iter().map(|s| (s.0, s.2)),
                    PALETTE[0].stroke_width(3),
                ))
                .plot()?
                .label(format!("median of {n} measures"))
                .legend(|(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], PALETTE[0].stroke_width(3))
                });
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                .plot()?
                .label("one measure")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RGBColor(200, 200, 200)));
            chart
                .configure_series_labels()
                .label_font(text(14))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .plot()?;
        }
        Ok(())
    }
}

/// What `traverse` wrote, as stored in traverse.json.
#[derive(Serialize)]
pub struct TraverseIndex {
    /// The checkpoint.
    pub checkpoint: String,
    /// AR-VAE or β-VAE.
    pub model: String,
    /// Attribute axes used.
    pub axes: Vec<AttributeAxis>,
    /// One entry per traversed measure.
    pub measures: Vec<TraversedMeasure>,
    /// The summary figure (PNG; the SVG sits beside it).
    pub summary: String,
}

/// One traversed test measure.
#[derive(Serialize)]
pub struct TraversedMeasure {
    /// Index of the measure in the dataset.
    pub dataset_index: usize,
    /// The figure (PNG; the SVG sits beside it).
    pub figure: String,
    /// One traversal per attribute.
    pub rows: Vec<TraverseRow>,
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn check_args(a: &TraverseArgs) -> Result<()> {
    if a.count == 0 {
        bail!("--count must be at least 1");
    }
    if a.steps < 2 {
        bail!("--steps must be at least 2");
    }
    if !(a.range.is_finite() && a.range > 0.0) {
        bail!("--range must be a positive number, got {}", a.range);
    }
    Ok(())
}

/// Runs `traverse`; returns what it wrote.
pub fn run(a: &TraverseArgs, quiet: bool) -> Result<TraverseIndex> {
    check_args(a)?;
    let l = latent::load(&a.checkpoint, &a.data)?;
    let axes = latent::attribute_axes(&l)?;
    let mut idx = latent::test_indices(&l.ds);
    if idx.is_empty() {
        bail!("{}: the dataset has no measures", a.data.display());
    }
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(a.seed));
    idx.truncate(a.count);
    std::fs::create_dir_all(&a.out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", a.out.display()))?;
    let ms: Vec<Measure> = idx.iter().map(|&i| l.ds.measures[i]).collect();
    let (means, _) = training::latents(&l.model, &ms, 256, a.seed)?;
    let d = l.model.config().latent;
    let zs = linspace(-a.range, a.range, a.steps);
    let dec = MusicDecoder(&l.model);
    let model = latent::model_name(&l.ck);
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(idx.len() as u64)
            .with_style(crate::progress::style())
            .with_message("traverse")
    };
    let opts = ExportOptions {
        bpm: a.bpm,
        ..ExportOptions::default()
    };
    let mut out = Vec::new();
    for (k, &i) in idx.iter().enumerate() {
        let base = &means[k * d..(k + 1) * d];
        let mut rows = Vec::new();
        for axis in &axes {
            let z: Vec<f32> = zs
                .iter()
                .flat_map(|&v| {
                    let mut z = base.to_vec();
                    z[axis.dim] = v;
                    z
                })
                .collect();
            let measures = dec.decode(&z)?;
            let attr: Attribute = axis.attribute;
            let values: Vec<f32> = measures.iter().map(|m| attr.of(m)).collect();
            let midi = a.out.join(format!("traverse_m{k:02}_{}.mid", attr.name()));
            write_file(&midi, &measures, &opts)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", midi.display()))?;
            rows.push(TraverseRow {
                axis: axis.clone(),
                z: zs.clone(),
                values,
                original: l.ds.attributes[i][attr.index()],
                measures,
                midi: file_name(&midi),
            });
        }
        let fig = TraverseFigure {
            title: format!(
                "{model}: test measure {i} of {} decoded along each attribute's dimension",
                l.ds.header.collection
            ),
            rows,
        };
        let [png, _] = save(&fig, &a.out.join(format!("traverse_m{k:02}")))?;
        out.push(TraversedMeasure {
            dataset_index: i,
            figure: file_name(&png),
            rows: fig.rows,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let summary = TraverseSummaryFigure {
        title: format!(
            "{model}: attribute of decoded bars along each dimension ({} test measures)",
            out.len()
        ),
        curves: axes
            .iter()
            .enumerate()
            .map(|(r, axis)| {
                (
                    axis.clone(),
                    zs.clone(),
                    out.iter().map(|m| m.rows[r].values.clone()).collect(),
                )
            })
            .collect(),
    };
    let [summary_png, _] = save(&summary, &a.out.join("traverse_summary"))?;
    let index = TraverseIndex {
        checkpoint: a.checkpoint.display().to_string(),
        model: model.to_string(),
        axes,
        measures: out,
        summary: file_name(&summary_png),
    };
    let json = a.out.join("traverse.json");
    arvae_core::files::write_bytes(&json, serde_json::to_string_pretty(&index)?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", json.display()))?;
    Ok(index)
}

/// The `traverse` command.
pub fn traverse(a: TraverseArgs) -> Result<()> {
    check_args(&a)?;
    let ck = arvae_core::builtin::load_checkpoint(&a.checkpoint)?;
    match Family::of_pair(&ck, &a.checkpoint, &a.data).map_err(anyhow::Error::msg)? {
        Family::Images => traverse_images(&a, ck),
        Family::Music => traverse_music(&a),
    }
}

/// `traverse` of a convolutional VAE: image grids.
fn traverse_images(a: &TraverseArgs, ck: Checkpoint) -> Result<()> {
    let index = super::image_traverse::run(a, ck)?;
    println!(
        "wrote {} grids ({} images x {} columns) and traverse.json to {}",
        index.axes.len(),
        index.images.len(),
        index.z.len() + 2,
        a.out.display()
    );
    for axis in &index.axes {
        println!(
            "  {:<12} z{:<2} ({})  {}",
            axis.attribute, axis.dim, axis.how, axis.figure
        );
    }
    Ok(())
}

/// `traverse` of a MeasureVAE: piano rolls and MIDI.
fn traverse_music(a: &TraverseArgs) -> Result<()> {
    let index = run(a, false)?;
    println!(
        "wrote {} figures (PNG + SVG), {} MIDI files, {} and traverse.json to {}",
        index.measures.len() + 1,
        index.measures.len() * index.axes.len(),
        index.summary,
        a.out.display()
    );
    for axis in &index.axes {
        println!(
            "  {:<20} z{:<2} ({})",
            axis.attribute.name(),
            axis.dim,
            axis.how
        );
    }
    Ok(())
}
