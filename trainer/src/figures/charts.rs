//! Charts over many runs: box plots per metric across seeds (paper Figs. 3, 5) and the
//! reconstruction / Interpretability trade-off of a gamma x delta sweep (Fig. 8).

use super::{bold, text, Figure, PlotResult, PALETTE};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One metric's box plot: a box per model.
pub struct BoxPanel {
    /// Panel title (the metric).
    pub title: String,
    /// y-axis label with unit.
    pub y_desc: String,
    /// Per model: name and the values of its runs (one per seed).
    pub groups: Vec<(String, Vec<f64>)>,
}

/// Box plots of several metrics side by side.
pub struct BoxPlotFigure {
    /// Figure title.
    pub title: String,
    /// Panels, one per metric.
    pub panels: Vec<BoxPanel>,
}

/// Quartiles with linear interpolation (numpy's default), of sorted values.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let x = p * (sorted.len() - 1) as f64;
    let (i, j) = (x.floor() as usize, x.ceil() as usize);
    sorted[i] + (sorted[j] - sorted[i]) * (x - i as f64)
}

impl Figure for BoxPlotFigure {
    fn size(&self) -> (u32, u32) {
        ((330 * self.panels.len().max(1) as u32).max(700), 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (top, body) = root.split_vertically(60);
        top.titled(&self.title, bold(22)).plot()?;
        let areas = body.split_evenly((1, self.panels.len().max(1)));
        for (p, area) in self.panels.iter().zip(&areas) {
            draw_box_panel(area, p)?;
        }
        Ok(())
    }
}

fn draw_box_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &BoxPanel) -> Result<()> {
    let all: Vec<f64> = p
        .groups
        .iter()
        .flat_map(|g| g.1.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    let (mut lo, mut hi) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if lo > hi {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.12).max(0.02);
    let (y0, y1) = (
        (lo - pad).max(if lo >= 0.0 { 0.0 } else { f64::MIN }),
        hi + pad,
    );
    let k = p.groups.len().max(1);
    let names: Vec<String> = p.groups.iter().map(|g| g.0.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, bold(19))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(62)
        .build_cartesian_2d(-0.5..(k as f64 - 0.5), y0..y1)
        .plot()?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(6)
        .y_desc(&p.y_desc)
        .label_style(text(14))
        .axis_desc_style(text(15))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .plot()?;
    for (gi, (_, values)) in p.groups.iter().enumerate() {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let (q1, med, q3) = (quantile(&v, 0.25), quantile(&v, 0.5), quantile(&v, 0.75));
        let iqr = q3 - q1;
        let wlo = v
            .iter()
            .copied()
            .find(|&x| x >= q1 - 1.5 * iqr)
            .unwrap_or(q1);
        let whi = v
            .iter()
            .rev()
            .copied()
            .find(|&x| x <= q3 + 1.5 * iqr)
            .unwrap_or(q3);
        let x = gi as f64;
        let c = PALETTE[gi % PALETTE.len()];
        let w = 0.28;
        chart
            .draw_series([
                Rectangle::new([(x - w, q1), (x + w, q3)], c.mix(0.25).filled()),
                Rectangle::new([(x - w, q1), (x + w, q3)], c.stroke_width(2)),
            ])
            .plot()?;
        chart
            .draw_series([
                PathElement::new(vec![(x - w, med), (x + w, med)], BLACK.stroke_width(3)),
                PathElement::new(vec![(x, q3), (x, whi)], c.stroke_width(2)),
                PathElement::new(vec![(x, q1), (x, wlo)], c.stroke_width(2)),
                PathElement::new(
                    vec![(x - w / 2.0, whi), (x + w / 2.0, whi)],
                    c.stroke_width(2),
                ),
                PathElement::new(
                    vec![(x - w / 2.0, wlo), (x + w / 2.0, wlo)],
                    c.stroke_width(2),
                ),
            ])
            .plot()?;
        // One dot per seed, spread deterministically so equal values stay visible.
        let n = values.len();
        chart
            .draw_series(
                values
                    .iter()
                    .enumerate()
                    .filter(|(_, y)| y.is_finite())
                    .map(|(i, &y)| {
                        let dx = if n > 1 {
                            -0.15 + 0.3 * i as f64 / (n - 1) as f64
                        } else {
                            0.0
                        };
                        Circle::new((x + dx, y), 5, BLACK.filled())
                    }),
            )
            .plot()?;
    }
    let style = text(16).pos(Pos::new(HPos::Center, VPos::Top));
    chart
        .draw_series(names.iter().enumerate().map(|(i, name)| {
            EmptyElement::at((i as f64, y0)) + Text::new(name.clone(), (0, 8), style.clone())
        }))
        .plot()?;
    Ok(())
}

/// One (gamma, delta) setting of a sweep: means over its seeds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TradeoffPoint {
    /// AR loss weight.
    pub gamma: f64,
    /// AR loss sharpness.
    pub delta: f64,
    /// Mean Interpretability over seeds.
    pub interpretability: f64,
    /// Mean reconstruction accuracy over seeds.
    pub reconstruction: f64,
    /// Number of seeds.
    pub seeds: usize,
}

/// Fig. 8: reconstruction accuracy against Interpretability, colour = gamma, size = delta.
pub struct TradeoffFigure {
    /// Figure title.
    pub title: String,
    /// AR-VAE settings.
    pub points: Vec<TradeoffPoint>,
    /// The β-VAE baseline (mean over seeds), if run.
    pub baseline: Option<TradeoffPoint>,
}

fn distinct(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

impl Figure for TradeoffFigure {
    fn size(&self) -> (u32, u32) {
        (1200, 820)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let gammas = distinct(self.points.iter().map(|p| p.gamma).collect());
        let deltas = distinct(self.points.iter().map(|p| p.delta).collect());
        let radius = |d: f64| -> i32 {
            let i = deltas.iter().position(|&x| x == d).unwrap_or(0);
            7 + 4 * i as i32
        };
        let colour = |g: f64| {
            let i = gammas.iter().position(|&x| x == g).unwrap_or(0);
            PALETTE[i % PALETTE.len()]
        };
        let xs = self
            .points
            .iter()
            .chain(&self.baseline)
            .map(|p| p.interpretability);
        let ys = self
            .points
            .iter()
            .chain(&self.baseline)
            .map(|p| p.reconstruction);
        let range = |it: &mut dyn Iterator<Item = f64>| {
            let (lo, hi) = it
                .filter(|v| v.is_finite())
                .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
            if lo > hi {
                (0.0, 1.0)
            } else {
                let pad = ((hi - lo) * 0.1).max(0.02);
                ((lo - pad).max(0.0), (hi + pad).min(1.05))
            }
        };
        let (x0, x1) = range(&mut xs.into_iter());
        let (y0, y1) = range(&mut ys.into_iter());
        let (main, legend) = root.split_horizontally(930);
        let mut chart = ChartBuilder::on(&main)
            .caption(&self.title, bold(21))
            .margin(14)
            .x_label_area_size(58)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0 * 100.0..y1 * 100.0)
            .plot()?;
        chart
            .configure_mesh()
            .x_desc("Interpretability (mean R² over attributes)")
            .y_desc("reconstruction accuracy (% tokens)")
            .label_style(text(16))
            .axis_desc_style(text(17))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .plot()?;
        // Each run: a filled disc, then its outline on top.
        let at = |p: &TradeoffPoint| (p.interpretability, 100.0 * p.reconstruction);
        chart
            .draw_series(
                self.points.iter().map(|p| {
                    Circle::new(at(p), radius(p.delta), colour(p.gamma).mix(0.75).filled())
                }),
            )
            .plot()?;
        chart
            .draw_series(
                self.points
                    .iter()
                    .map(|p| Circle::new(at(p), radius(p.delta), BLACK.mix(0.6).stroke_width(1))),
            )
            .plot()?;
        if let Some(b) = &self.baseline {
            chart
                .draw_series(std::iter::once(Cross::new(
                    (b.interpretability, 100.0 * b.reconstruction),
                    9,
                    BLACK.stroke_width(3),
                )))
                .plot()?;
        }
        // Legend: colours for gamma, sizes for delta, the baseline.
        let mut y = 60;
        let t = text(17);
        legend
            .draw(&Text::new("γ (colour)", (10, y), bold(18)))
            .plot()?;
        for &g in &gammas {
            y += 30;
            legend
                .draw(&Circle::new((22, y + 9), 8, colour(g).filled()))
                .plot()?;
            legend
                .draw(&Text::new(format!("γ = {g}"), (42, y), t.clone()))
                .plot()?;
        }
        y += 50;
        legend
            .draw(&Text::new("δ (size)", (10, y), bold(18)))
            .plot()?;
        for &d in &deltas {
            let r = radius(d);
            y += 2 * r.max(10) + 8;
            legend
                .draw(&Circle::new((30, y), r, RGBColor(150, 150, 150).filled()))
                .plot()?;
            legend
                .draw(&Text::new(format!("δ = {d}"), (58, y - 9), t.clone()))
                .plot()?;
        }
        if self.baseline.is_some() {
            y += 50;
            legend
                .draw(&Cross::new((22, y + 9), 9, BLACK.stroke_width(3)))
                .plot()?;
            legend
                .draw(&Text::new("β-VAE", (42, y), t.clone()))
                .plot()?;
        }
        Ok(())
    }
}
