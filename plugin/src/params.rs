//! The plugin's host parameters (all automatable) and the state saved with a session.

use std::sync::{Arc, Mutex};

use nice_plug::prelude::*;
use nice_plug_egui::EguiEditorState;

use crate::knobs::KNOBS;
use crate::pitch::{Root, ScaleLock};
use crate::shared::PersistedBar;

/// When a new melody is drawn.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regen {
    /// A new melody every bar (the variation seed and the bar index pick it).
    #[name = "Every bar"]
    EveryBar,
    /// The same melody every bar; it changes only when a knob moves.
    #[name = "On knob change"]
    OnChange,
    /// Keep the bar that is playing, whatever the knobs do.
    #[name = "Hold"]
    Hold,
}

fn int_param(
    name: &str,
    default: i32,
    min: i32,
    max: i32,
    fmt: impl Fn(i32) -> String + Send + Sync + 'static,
) -> IntParam {
    IntParam::new(name, default, IntRange::Linear { min, max })
        .with_value_to_string(Arc::new(fmt))
        .with_string_to_value(Arc::new(|s: &str| {
            let n: String = s
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_digit() || matches!(c, '-' | '+'))
                .collect();
            n.trim_start_matches('+').parse().ok()
        }))
}

fn on_off(name: &str, default: bool) -> BoolParam {
    BoolParam::new(name, default)
        .with_value_to_string(Arc::new(|v| if v { "On" } else { "Off" }.into()))
        .with_string_to_value(Arc::new(|s| match s.trim().to_ascii_lowercase().as_str() {
            "on" | "1" | "true" => Some(true),
            "off" | "0" | "false" => Some(false),
            _ => None,
        }))
}

/// Every parameter and persisted field of the plugin.
#[derive(Params)]
pub struct ArvaeParams {
    /// Editor window size.
    pub editor_state: Arc<EguiEditorState>,

    /// Rhythmic complexity target, percent.
    #[id = "rhythm"]
    pub rhythm: FloatParam,
    /// Pitch range target, semitones.
    #[id = "range"]
    pub range: FloatParam,
    /// Note density target, notes per bar.
    #[id = "density"]
    pub density: FloatParam,
    /// Contour target, semitones from the first to the last note.
    #[id = "contour"]
    pub contour: FloatParam,

    /// Seed of the non-regularized latent dimensions.
    #[id = "variation"]
    pub variation: IntParam,
    /// When to draw a new melody.
    #[id = "regen"]
    pub regen: EnumParam<Regen>,
    /// Transform mode: the knobs move the attributes of a bar played into the plugin.
    #[id = "transform"]
    pub transform: BoolParam,
    /// Target matching: search the regularized dimensions for the bar whose measured
    /// attributes are nearest the knobs (off: the paper's plain manipulation).
    #[id = "match"]
    pub match_targets: BoolParam,
    /// Semitones added to the output.
    #[id = "transpose"]
    pub transpose: IntParam,
    /// Scale the output is locked to.
    #[id = "scale"]
    pub scale: EnumParam<ScaleLock>,
    /// Root of the scale lock.
    #[id = "root"]
    pub root: EnumParam<Root>,
    /// Note-on velocity.
    #[id = "velocity"]
    pub velocity: IntParam,
    /// Share of the time to the next event that a note sounds.
    #[id = "gate"]
    pub gate: FloatParam,
    /// MIDI channel 1..=16.
    #[id = "channel"]
    pub channel: IntParam,

    /// Checkpoint file in use; empty for the embedded default.
    #[persist = "model-path"]
    pub model_path: Mutex<String>,
    /// The bar kept in Hold mode.
    #[persist = "held-bar"]
    pub held_bar: PersistedBar,
    /// The bar captured in transform mode (its latent code is the transform source).
    #[persist = "captured-bar"]
    pub captured_bar: PersistedBar,
}

fn attribute_param(i: usize, name: &str) -> FloatParam {
    let k = KNOBS[i];
    FloatParam::new(
        name,
        k.default,
        FloatRange::Linear {
            min: k.min,
            max: k.max,
        },
    )
    .with_value_to_string(k.value_to_string())
    .with_string_to_value(k.string_to_value())
}

impl Default for ArvaeParams {
    fn default() -> Self {
        ArvaeParams {
            editor_state: EguiEditorState::from_size(
                nice_plug::editor::dpi::LogicalSize::new(860.0, 700.0),
                1.0,
            ),
            rhythm: attribute_param(0, "Rhythmic complexity"),
            range: attribute_param(1, "Pitch range"),
            density: attribute_param(2, "Note density"),
            contour: attribute_param(3, "Contour"),
            variation: int_param("Variation", 0, 0, 9999, |v| format!("{v}")),
            regen: EnumParam::new("Regenerate", Regen::EveryBar),
            transform: on_off("Transform", false),
            match_targets: on_off("Match targets", true),
            transpose: int_param("Transpose", 0, -24, 24, |v| format!("{v:+} st")),
            scale: EnumParam::new("Scale lock", ScaleLock::Off),
            root: EnumParam::new("Root", Root::C),
            velocity: int_param("Velocity", 100, 1, 127, |v| format!("{v}")),
            gate: FloatParam::new(
                "Gate",
                90.0,
                FloatRange::Linear {
                    min: 5.0,
                    max: 100.0,
                },
            )
            .with_value_to_string(Arc::new(|v| format!("{v:.0} %")))
            .with_string_to_value(Arc::new(|s| {
                s.trim().trim_end_matches('%').trim().parse().ok()
            })),
            channel: int_param("MIDI channel", 1, 1, 16, |v| format!("{v}")),
            model_path: Mutex::new(String::new()),
            held_bar: PersistedBar::default(),
            captured_bar: PersistedBar::default(),
        }
    }
}

impl ArvaeParams {
    /// The four attribute knobs in [`Attribute::ALL`](arvae_core::music::Attribute) order.
    pub fn attribute_knobs(&self) -> [&FloatParam; 4] {
        [&self.rhythm, &self.range, &self.density, &self.contour]
    }

    /// Knob targets in attribute units.
    pub fn targets(&self) -> [f32; 4] {
        let k = self.attribute_knobs();
        std::array::from_fn(|i| KNOBS[i].to_attribute(k[i].value()))
    }
}
