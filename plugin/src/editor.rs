//! The editor (egui): the four attribute knobs, the current and next bar as a piano roll, the
//! measured attributes of the playing bar against the knob targets, model info, "Load model..."
//! and "Export last bars". File work runs on its own thread, never on the audio thread.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arvae_core::music::midi_export::{write_file, ExportOptions};
use arvae_core::music::token::{tick_offset, Measure, HOLD, TICKS_PER_MEASURE};
use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Shape, Stroke, Vec2};
use nice_plug::prelude::*;
use nice_plug_egui::widgets::ParamSlider;
use nice_plug_egui::{
    create_egui_editor, EguiEditor, EguiNiceSettings, Frame, NiceEguiApp, RepaintNotifier,
};

use crate::model::{LoadedModel, ModelInfo, BUILTIN_PREFIX};
use crate::params::ArvaeParams;
use crate::shared::UiShared;
use arvae_core::compose::knobs::KNOBS;

/// The editor's state.
pub struct ArvaeEditor {
    params: Arc<ArvaeParams>,
    shared: Arc<UiShared>,
    gui: Option<nice_plug::context::gui::GuiContext>,
    model_path: String,
    export_path: String,
}

/// Builds the editor.
pub fn create(params: Arc<ArvaeParams>, shared: Arc<UiShared>) -> Option<EguiEditor<ArvaeEditor>> {
    let model_path = params
        .model_path
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    let export_path = default_export_path().display().to_string();
    create_egui_editor(
        params.editor_state.clone(),
        RepaintNotifier::new(),
        EguiNiceSettings::new().with_tile("arvae"),
        ArvaeEditor {
            params,
            shared,
            gui: None,
            model_path,
            export_path,
        },
    )
}

fn default_export_path() -> PathBuf {
    let base = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join("arvae-last-bars.mid")
}

/// Loads a checkpoint on a new thread; on success hands it to the decoder and remembers the
/// path, on failure reports the error and keeps the model in use.
pub fn load_model_async(params: Arc<ArvaeParams>, shared: Arc<UiShared>, path: String) {
    shared.set_status(format!("Loading {path} ..."), false);
    std::thread::spawn(move || {
        let loaded = LoadedModel::from_spec(&path);
        match loaded {
            Ok(m) => {
                let name = m.info.name.clone();
                if let Ok(mut p) = params.model_path.lock() {
                    *p = path.trim().to_string();
                }
                let sender = shared.model_sender.lock().ok().and_then(|s| s.clone());
                match sender {
                    Some(s) if s.send(Box::new(m)).is_ok() => {
                        shared.set_status(format!("Loaded {name}"), false)
                    }
                    _ => shared.set_status(format!("{name} will load when playback starts"), false),
                }
            }
            Err(e) => shared.set_status(format!("{e} (keeping the current model)"), true),
        }
    });
}

/// Writes the last `bars` played bars to `path` as a MIDI file; returns the status line.
pub fn export_last_bars(
    params: &ArvaeParams,
    shared: &UiShared,
    bars: usize,
    path: &str,
) -> (String, bool) {
    let measures = shared.last_bars(bars);
    if measures.is_empty() {
        return ("Nothing played yet".into(), true);
    }
    let opts = ExportOptions {
        bpm: shared.tempo.load(Ordering::Relaxed) as f64,
        velocity: params.velocity.value().clamp(1, 127) as u8,
        channel: (params.channel.value().clamp(1, 16) - 1) as u8,
        track_name: "arvae".into(),
    };
    match write_file(std::path::Path::new(path), &measures, &opts) {
        Ok(()) => (format!("Exported {} bars to {path}", measures.len()), false),
        Err(e) => (format!("Export to {path} failed: {e}"), true),
    }
}

/// A large rotary knob for `param`: drag up/down, double-click for the default.
fn knob(ui: &mut egui::Ui, param: &FloatParam, setter: &ParamSetter, size: f32) {
    let (rect, resp) = ui.allocate_exact_size(Vec2::splat(size), Sense::click_and_drag());
    if resp.drag_started() {
        setter.begin_set_parameter(param);
    }
    if resp.dragged() {
        let fine = if ui.input(|i| i.modifiers.shift) {
            0.2
        } else {
            1.0
        };
        let norm = (param.unmodulated_normalized_value() - resp.drag_delta().y / 250.0 * fine)
            .clamp(0.0, 1.0);
        setter.set_parameter_normalized(param, norm);
    }
    if resp.drag_stopped() {
        setter.end_set_parameter(param);
    }
    if resp.double_clicked() {
        setter.begin_set_parameter(param);
        setter.set_parameter(param, param.default_plain_value());
        setter.end_set_parameter(param);
    }
    let p = ui.painter();
    let c = rect.center();
    let r = size * 0.4;
    let start = std::f32::consts::PI * 0.75;
    let sweep = std::f32::consts::PI * 1.5;
    let arc = |from: f32, to: f32| -> Vec<Pos2> {
        (0..=48)
            .map(|i| {
                let a = start + sweep * (from + (to - from) * i as f32 / 48.0);
                c + Vec2::new(a.cos(), a.sin()) * r
            })
            .collect()
    };
    p.circle_filled(c, r * 0.8, Color32::from_gray(45));
    p.add(Shape::line(
        arc(0.0, 1.0),
        Stroke::new(6.0, Color32::from_gray(70)),
    ));
    let v = param.unmodulated_normalized_value();
    p.add(Shape::line(
        arc(0.0, v),
        Stroke::new(6.0, Color32::from_rgb(90, 170, 250)),
    ));
    let a = start + sweep * v;
    p.line_segment(
        [c, c + Vec2::new(a.cos(), a.sin()) * r * 0.75],
        Stroke::new(3.0, Color32::WHITE),
    );
    p.text(
        // In the gap at the bottom of the arc, inside the knob's rectangle.
        c + Vec2::new(0.0, r * 0.85),
        Align2::CENTER_TOP,
        param.to_string(),
        FontId::proportional(15.0),
        Color32::WHITE,
    );
}

/// Draws two bars side by side as a piano roll on the non-uniform grid.
fn piano_roll(ui: &mut egui::Ui, bars: [Option<Measure>; 2], size: Vec2) {
    let (rect, _) = ui.allocate_exact_size(size, Sense::hover());
    let p = ui.painter_at(rect);
    p.rect_filled(rect, 4.0, Color32::from_gray(25));
    let pitches = bars
        .iter()
        .flatten()
        .flat_map(|m| m.onsets().map(|(_, p)| p))
        .collect::<Vec<_>>();
    let lo = pitches
        .iter()
        .copied()
        .min()
        .unwrap_or(60)
        .saturating_sub(2);
    let hi = pitches
        .iter()
        .copied()
        .max()
        .unwrap_or(72)
        .saturating_add(2)
        .max(lo + 12);
    let rows = (hi - lo + 1) as f32;
    let bar_w = rect.width() / 2.0;
    let x_at =
        |bar: usize, beats: f64| rect.left() + bar as f32 * bar_w + (beats as f32 / 4.0) * bar_w;
    for (bar, measure) in bars.iter().enumerate() {
        for beat in 0..4 {
            let x = x_at(bar, beat as f64);
            let w = if beat == 0 { 2.0 } else { 1.0 };
            p.line_segment(
                [Pos2::new(x, rect.top()), Pos2::new(x, rect.bottom())],
                Stroke::new(w, Color32::from_gray(if beat == 0 { 110 } else { 60 })),
            );
        }
        let label = if bar == 0 { "playing" } else { "next" };
        p.text(
            Pos2::new(x_at(bar, 0.0) + 4.0, rect.top() + 2.0),
            Align2::LEFT_TOP,
            label,
            FontId::proportional(12.0),
            Color32::GRAY,
        );
        let Some(m) = measure else { continue };
        let t = m.tokens();
        for (i, pitch) in m.onsets() {
            let end = (i + 1..TICKS_PER_MEASURE)
                .find(|&j| t[j] != HOLD)
                .unwrap_or(TICKS_PER_MEASURE);
            let x0 = x_at(bar, tick_offset(i));
            let x1 = if end == TICKS_PER_MEASURE {
                x_at(bar, 4.0)
            } else {
                x_at(bar, tick_offset(end))
            };
            let row = (hi - pitch) as f32;
            let y0 = rect.top() + row / rows * rect.height();
            let note = Rect::from_min_max(
                Pos2::new(x0 + 1.0, y0 + 1.0),
                Pos2::new((x1 - 1.0).max(x0 + 3.0), y0 + rect.height() / rows - 1.0),
            );
            let color = if bar == 0 {
                Color32::from_rgb(90, 170, 250)
            } else {
                Color32::from_rgb(150, 150, 190)
            };
            p.rect_filled(note, 2.0, color);
        }
    }
}

/// The title line: plugin name, model and dataset, training and metrics.
fn header(ui: &mut egui::Ui, info: &ModelInfo) {
    ui.horizontal(|ui| {
        ui.heading("arvae");
        ui.label(format!("model: {} · data: {}", info.name, info.dataset));
    });
    ui.label(format!("{} · {}", info.training, info.metrics));
}

/// The four attribute knobs, each with its target, what the playing bar measures and the
/// model's calibrated range.
fn knobs_panel(
    ui: &mut egui::Ui,
    params: &ArvaeParams,
    shared: &UiShared,
    setter: &ParamSetter,
    info: &ModelInfo,
) {
    ui.horizontal(|ui| {
        for (i, param) in params.attribute_knobs().into_iter().enumerate() {
            ui.vertical(|ui| {
                ui.set_width(200.0);
                ui.label(egui::RichText::new(KNOBS[i].label).strong());
                knob(ui, param, setter, 150.0);
                let measured = KNOBS[i].from_attribute(shared.measured[i].load(Ordering::Relaxed));
                ui.label(format!("target {}", KNOBS[i].describe(param.value())));
                ui.label(format!("playing {}", KNOBS[i].describe(measured)));
                if let Some((lo, hi)) = info.calibrated[i] {
                    ui.small(format!(
                        "model reaches {} .. {}",
                        KNOBS[i].format(lo),
                        KNOBS[i].describe(hi)
                    ));
                }
            });
        }
    });
}

/// The piano roll of the playing and next bar, and the bar counter line below it.
fn playback_panel(ui: &mut egui::Ui, shared: &UiShared) {
    piano_roll(
        ui,
        [shared.current.load(), shared.next.load()],
        Vec2::new(ui.available_width().min(820.0), 150.0),
    );
    ui.label(format!(
        "bar {} · late bars {}{}",
        shared.bar.load(Ordering::Relaxed) + 1,
        shared.late_bars.load(Ordering::Relaxed),
        if shared.transform_active.load(Ordering::Relaxed) {
            " · transforming the captured bar"
        } else {
            ""
        }
    ));
}

/// The grid of setting sliders, two per row.
fn settings_grid(ui: &mut egui::Ui, params: &ArvaeParams, setter: &ParamSetter) {
    egui::Grid::new("settings").num_columns(4).show(ui, |ui| {
        ui.label("Key");
        ui.add(ParamSlider::for_param(&params.root, setter));
        ui.label("Scale");
        ui.add(ParamSlider::for_param(&params.scale, setter));
        ui.end_row();
        ui.label("Motion");
        ui.add(ParamSlider::for_param(&params.motion, setter));
        ui.label("Phrase");
        ui.add(ParamSlider::for_param(&params.phrase, setter));
        ui.end_row();
        ui.label("Phrase variation");
        ui.add(ParamSlider::for_param(&params.phrase_variation, setter));
        ui.label("Scale lock");
        ui.add(ParamSlider::for_param(&params.snap, setter));
        ui.end_row();
        ui.label("Variation");
        ui.add(ParamSlider::for_param(&params.variation, setter));
        ui.label("Regenerate");
        ui.add(ParamSlider::for_param(&params.regen, setter));
        ui.end_row();
        ui.label("Transform");
        ui.add(ParamSlider::for_param(&params.transform, setter));
        ui.label("Match targets");
        ui.add(ParamSlider::for_param(&params.match_targets, setter));
        ui.end_row();
        ui.label("Transpose");
        ui.add(ParamSlider::for_param(&params.transpose, setter));
        ui.label("MIDI channel");
        ui.add(ParamSlider::for_param(&params.channel, setter));
        ui.end_row();
        ui.label("Velocity");
        ui.add(ParamSlider::for_param(&params.velocity, setter));
        ui.label("Gate");
        ui.add(ParamSlider::for_param(&params.gate, setter));
        ui.end_row();
    });
}

/// The last status message, red for an error, green otherwise (nothing when empty).
fn status_line(ui: &mut egui::Ui, shared: &UiShared) {
    let (status, error) = shared.status.lock().map(|s| s.clone()).unwrap_or_default();
    if !status.is_empty() {
        let color = if error {
            Color32::from_rgb(255, 110, 110)
        } else {
            Color32::LIGHT_GREEN
        };
        ui.colored_label(color, status);
    }
}

impl ArvaeEditor {
    /// The model file field with "Load model...", and a button per built-in model.
    fn model_rows(&mut self, ui: &mut egui::Ui, params: &Arc<ArvaeParams>, shared: &Arc<UiShared>) {
        ui.horizontal(|ui| {
            ui.label("Model file");
            ui.add(egui::TextEdit::singleline(&mut self.model_path).desired_width(420.0));
            if ui.button("Load model...").clicked() {
                load_model_async(params.clone(), shared.clone(), self.model_path.clone());
            }
        });
        ui.horizontal(|ui| {
            ui.label("Built-in models");
            for b in arvae_core::builtin::BUILTINS {
                if ui.button(b.name).on_hover_text(b.description).clicked() {
                    self.model_path = format!("{BUILTIN_PREFIX}{}", b.name);
                    load_model_async(params.clone(), shared.clone(), self.model_path.clone());
                }
            }
        });
    }

    /// The export path field with a button per number of last bars to export.
    fn export_row(&mut self, ui: &mut egui::Ui, params: &ArvaeParams, shared: &UiShared) {
        ui.horizontal(|ui| {
            ui.label("Export to");
            ui.add(egui::TextEdit::singleline(&mut self.export_path).desired_width(420.0));
            for n in [4, 8, 16] {
                if ui.button(format!("Last {n} bars")).clicked() {
                    let (msg, err) = export_last_bars(params, shared, n, &self.export_path);
                    shared.set_status(msg, err);
                }
            }
        });
    }
}

impl NiceEguiApp for ArvaeEditor {
    fn build(
        &mut self,
        _egui_ctx: egui::Context,
        gui: nice_plug::context::gui::GuiContext,
        _frame: &mut Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        self.gui = Some(gui);
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut Frame) {
        let Some(gui) = self.gui.clone() else { return };
        let setter = gui.param_setter();
        let params = self.params.clone();
        let shared = self.shared.clone();
        let info = shared
            .model_info
            .lock()
            .map(|i| i.clone())
            .unwrap_or_default();
        header(ui, &info);

        // The four knobs, with what the playing bar measures.
        ui.separator();
        knobs_panel(ui, &params, &shared, &setter, &info);

        ui.separator();
        playback_panel(ui, &shared);

        ui.separator();
        settings_grid(ui, &params, &setter);

        ui.separator();
        self.model_rows(ui, &params, &shared);
        self.export_row(ui, &params, &shared);
        status_line(ui, &shared);
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(50));
    }

    fn editor_closed(&mut self) {
        self.gui = None;
    }
}
