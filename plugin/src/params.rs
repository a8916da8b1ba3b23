//! The plugin's host parameters (all automatable) and the state saved with a session.

use std::sync::{Arc, Mutex};

use nice_plug::prelude::*;
use nice_plug_egui::EguiEditorState;

use arvae_core::compose::key::{Key, PitchMap};
use arvae_core::compose::knobs::KNOBS;
use arvae_core::compose::Settings;

use crate::pitch::{KeyScale, PhraseLength, Root};
use crate::shared::PersistedBar;

/// When a new melody is drawn.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regen {
    /// Phrases: the melody moves bar by bar (Motion) and comes back (Phrase).
    #[name = "Phrase"]
    EveryBar,
    /// The same bar every bar; it changes only when a knob moves.
    #[name = "Repeat bar"]
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
    /// How far the melody moves from one bar to the next, percent.
    #[id = "motion"]
    pub motion: FloatParam,
    /// Bars after which the phrase comes back.
    #[id = "phrase"]
    pub phrase: EnumParam<PhraseLength>,
    /// How different a returning phrase is, percent.
    #[id = "phrase-var"]
    pub phrase_variation: FloatParam,
    /// Semitones added to the output.
    #[id = "transpose"]
    pub transpose: IntParam,
    /// The key's scale every bar is moved into (Any: none).
    #[id = "scale"]
    pub scale: EnumParam<KeyScale>,
    /// Root of the key.
    #[id = "root"]
    pub root: EnumParam<Root>,
    /// Snap notes still outside the key to the nearest scale tone.
    #[id = "snap"]
    pub snap: BoolParam,
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
    .with_unit(k.unit())
    .with_value_to_string(k.value_to_string())
    .with_string_to_value(k.string_to_value())
}

fn percent_param(name: &str, default: f32, min: f32) -> FloatParam {
    FloatParam::new(name, default, FloatRange::Linear { min, max: 100.0 })
        .with_unit(" %")
        .with_value_to_string(Arc::new(|v| format!("{v:.0}")))
        .with_string_to_value(Arc::new(|s| {
            s.trim().trim_end_matches('%').trim().parse().ok()
        }))
}

impl Default for ArvaeParams {
    fn default() -> Self {
        ArvaeParams {
            editor_state: EguiEditorState::from_size(
                nice_plug::editor::dpi::LogicalSize::new(860.0, 760.0),
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
            motion: percent_param("Motion", 100.0 * Settings::default().motion, 0.0),
            phrase: EnumParam::new("Phrase", PhraseLength::Four),
            phrase_variation: percent_param(
                "Phrase variation",
                100.0 * Settings::default().variation,
                0.0,
            ),
            transpose: int_param("Transpose", 0, -24, 24, |v| format!("{v:+}"))
                .with_unit(" semitones"),
            scale: EnumParam::new("Scale", KeyScale::Major),
            root: EnumParam::new("Key", Root::C),
            snap: on_off("Scale lock", false),
            velocity: int_param("Velocity", 100, 1, 127, |v| format!("{v}")),
            gate: percent_param("Gate", 90.0, 5.0),
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

    /// The composer settings of the parameters' current values.
    pub fn settings(&self) -> Settings {
        let k = self.attribute_knobs();
        Settings {
            knobs: std::array::from_fn(|i| k[i].value()),
            seed: self.variation.value().max(0) as u32,
            motion: self.motion.value() / 100.0,
            phrase: self.phrase.value().bars(),
            variation: self.phrase_variation.value() / 100.0,
            key: self.key(),
            match_targets: self.match_targets.value(),
            free: [false; 4],
        }
    }

    /// The key.
    pub fn key(&self) -> Key {
        Key {
            root: self.root.value().pitch_class(),
            scale: self.scale.value().to_scale(),
        }
    }

    /// Transpose and scale lock, applied on the way out.
    pub fn pitch_map(&self) -> PitchMap {
        PitchMap {
            transpose: self.transpose.value(),
            key: self.key(),
            snap: self.snap.value(),
        }
    }
}
