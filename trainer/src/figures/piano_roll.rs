//! A piano roll of consecutive one-bar measures: pitch in semitones against time in beats, light
//! lines on the eighth notes and darker ones on the barlines, as the paper's Fig. 11.

use super::{bold, text, PlotResult, PALETTE};
use anyhow::Result;
use arvae_core::music::midi_export::{note_spans, NoteSpan};
use arvae_core::music::Measure;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Twelfths of a beat per beat (the token grid's common denominator).
const TWELFTHS: f64 = 12.0;

/// Name of a MIDI pitch (C4 = 60).
pub fn pitch_name(p: i32) -> String {
    const NAMES: [&str; 12] = [
        "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
    ];
    format!(
        "{}{}",
        NAMES[p.rem_euclid(12) as usize],
        p.div_euclid(12) - 1
    )
}

/// Draws `measures` side by side on `area`; `bar_labels` (one per measure, may be empty) are
/// written under each bar.
pub fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    measures: &[Measure],
    bar_labels: &[String],
    caption: &str,
    x_desc: &str,
) -> Result<()> {
    let spans = note_spans(measures);
    let (mut lo, mut hi) = spans.iter().fold((i32::MAX, i32::MIN), |(lo, hi), s| {
        (lo.min(s.pitch as i32), hi.max(s.pitch as i32))
    });
    if spans.is_empty() {
        (lo, hi) = (60, 72);
    }
    // At least an octave, one semitone of air on each side.
    if hi - lo < 12 {
        let pad = 12 - (hi - lo);
        lo -= pad / 2;
        hi += pad - pad / 2;
    }
    let (y0, y1) = ((lo - 1) as f64, (hi + 2) as f64);
    let beats = 4.0 * measures.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, bold(20))
        .margin(8)
        .x_label_area_size(if bar_labels.is_empty() { 30 } else { 58 })
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..beats, y0..y1)
        .plot()?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(0)
        .y_labels(((y1 - y0) as usize / 2).clamp(2, 12))
        .y_label_formatter(&|y| {
            if (y - y.round()).abs() < 1e-6 {
                pitch_name(*y as i32)
            } else {
                String::new()
            }
        })
        .y_desc("pitch (semitones)")
        .x_desc(x_desc)
        .label_style(text(15))
        .axis_desc_style(text(16))
        .draw()
        .plot()?;
    // Eighth-note grid, barlines on top.
    let eighths = (beats * 2.0) as usize;
    chart
        .draw_series((1..eighths).filter(|e| e % 8 != 0).map(|e| {
            let x = e as f64 / 2.0;
            PathElement::new(vec![(x, y0), (x, y1)], RGBColor(225, 225, 225))
        }))
        .plot()?;
    chart
        .draw_series((1..measures.len()).map(|m| {
            let x = 4.0 * m as f64;
            PathElement::new(vec![(x, y0), (x, y1)], RGBColor(90, 90, 90).stroke_width(2))
        }))
        .plot()?;
    // Each note: a filled box, then its outline on top.
    let note_box = |s: &NoteSpan| {
        let p = s.pitch as f64;
        [
            (s.start_twelfths as f64 / TWELFTHS, p + 0.1),
            (s.end_twelfths as f64 / TWELFTHS, p + 0.9),
        ]
    };
    chart
        .draw_series(
            spans
                .iter()
                .map(|s| Rectangle::new(note_box(s), PALETTE[0].filled())),
        )
        .plot()?;
    chart
        .draw_series(
            spans
                .iter()
                .map(|s| Rectangle::new(note_box(s), BLACK.stroke_width(1))),
        )
        .plot()?;
    let style = text(14).pos(Pos::new(HPos::Center, VPos::Top));
    chart
        .draw_series(bar_labels.iter().enumerate().map(|(m, label)| {
            EmptyElement::at((4.0 * m as f64 + 2.0, y0))
                + Text::new(label.clone(), (0, 6), style.clone())
        }))
        .plot()?;
    Ok(())
}
