//! The paper's figures: latent traversals (Fig. 11), attribute surfaces (Figs. 12, 13), metric box
//! plots (Figs. 3, 5) and the sweep trade-off (Fig. 8). Every figure is written twice, as PNG and
//! SVG, by one drawing function generic over the plotters backend.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (plotters' `ab_glyph` font backend), so
//! no system fonts, fontconfig or freetype are needed.

pub mod charts;
pub mod compare;
pub mod image_traverse;
pub mod latent;
pub mod piano_roll;
pub mod surface;
pub mod traverse;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// The font family every figure uses (registered from the embedded DejaVu Sans).
pub const FONT: &str = "sans-serif";

/// Registers the embedded fonts with plotters (once per process).
pub fn init_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are valid TrueType files shipped by the `dejavu` crate.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// A text style of `size` pixels in the embedded font.
pub fn text(size: u32) -> TextStyle<'static> {
    (FONT, size as f64).into_font().color(&BLACK)
}

/// A bold text style of `size` pixels.
pub fn bold(size: u32) -> TextStyle<'static> {
    (FONT, size as f64)
        .into_font()
        .style(FontStyle::Bold)
        .color(&BLACK)
}

/// Something that can be drawn on any plotters backend.
pub trait Figure {
    /// Size in pixels (the SVG uses the same user units).
    fn size(&self) -> (u32, u32);
    /// Draws the figure on `root`, which is already filled white.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Converts a plotters error (which is not `Send + Sync` in general) into an anyhow error.
pub trait PlotResult<T> {
    /// The result with the error as text.
    fn plot(self) -> Result<T>;
}

impl<T, E: std::fmt::Debug> PlotResult<T> for std::result::Result<T, E> {
    fn plot(self) -> Result<T> {
        self.map_err(|e| anyhow!("drawing failed: {e:?}"))
    }
}

/// Writes `fig` to `stem.png` and `stem.svg`; returns both paths.
pub fn save<F: Figure>(fig: &F, stem: &Path) -> Result<[PathBuf; 2]> {
    init_fonts();
    if let Some(dir) = stem.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let size = fig.size();
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        root.fill(&WHITE).plot()?;
        fig.draw(&root)
            .with_context(|| format!("cannot draw {}", png.display()))?;
        root.present()
            .map_err(|e| anyhow!("cannot write {}: {e:?}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        root.fill(&WHITE).plot()?;
        fig.draw(&root)
            .with_context(|| format!("cannot draw {}", svg.display()))?;
        root.present()
            .map_err(|e| anyhow!("cannot write {}: {e:?}", svg.display()))?;
    }
    Ok([png, svg])
}

/// Colours for categories (Tableau 10, distinguishable in print and for most colour vision).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The viridis colour map (purple for low, yellow for high, as the paper's surfaces) at t in 0..=1.
pub fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// The readable name of an attribute with its unit, for axis labels.
pub fn attribute_label(name: &str) -> String {
    match name {
        "rhythmic_complexity" => "rhythmic complexity (weighted off-beat share)".into(),
        "pitch_range" => "pitch range (semitones / 26)".into(),
        "note_density" => "note density (onsets / 24 ticks)".into(),
        "contour" => "contour ((last − first pitch) / 26)".into(),
        other => other.replace('_', " "),
    }
}

/// The readable name of an attribute without unit.
pub fn attribute_title(name: &str) -> String {
    let s = name.replace('_', " ");
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

/// `n` evenly spaced values from `lo` to `hi` inclusive.
pub fn linspace(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    match n {
        0 => Vec::new(),
        1 => vec![(lo + hi) / 2.0],
        _ => (0..n)
            .map(|i| lo + (hi - lo) * i as f32 / (n - 1) as f32)
            .collect(),
    }
}

/// Arguments of `traverse` (music and image models alike).
#[derive(Args)]
pub struct TraverseArgs {
    /// Checkpoint (model.safetensors or best.safetensors of a run), or a shipped model's name.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset the test measures (or images, for an image model) come from.
    #[arg(long)]
    pub data: PathBuf,
    /// Number of test measures (or images) to traverse.
    #[arg(long, default_value_t = 20)]
    pub count: usize,
    /// Output folder: traverse_mNN.{png,svg}, traverse_mNN_<attribute>.mid, traverse_summary.{png,svg}, traverse.json; for images traverse_<attribute>.png grids (rows: images; columns: input, reconstruction, the traversal).
    #[arg(long)]
    pub out: PathBuf,
    /// Points along the dimension (one bar or image each; the paper's image grids use 10).
    #[arg(long, default_value_t = 9)]
    pub steps: usize,
    /// The dimension goes from -RANGE to +RANGE.
    #[arg(long, default_value_t = 4.0)]
    pub range: f32,
    /// Seed of the choice of test measures.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Tempo of the MIDI files.
    #[arg(long, default_value_t = 120.0)]
    pub bpm: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_and_linspace() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(f64::NAN), RGBColor(68, 1, 84));
        assert_eq!(linspace(-4.0, 4.0, 5), vec![-4.0, -2.0, 0.0, 2.0, 4.0]);
        assert_eq!(linspace(0.0, 1.0, 1), vec![0.5]);
    }
}
