//! arvae-plugin: an AR-VAE melody generator for the DAW (CLAP and VST3).
//!
//! Every bar, in time with the host, it plays a one-bar melody decoded by MeasureVAE from a
//! latent code whose four regularized dimensions are set by the knobs (rhythmic complexity,
//! pitch range, note density, contour, in musical units through the checkpoint's calibration)
//! and whose other dimensions come from a seeded prior (the variation knob) or, in transform
//! mode, from a bar played into the plugin.
//!
//! Threads: [`process`](Plugin::process) reads the transport and emits sample-accurate notes
//! ([`sequencer`]); it never allocates, locks or blocks (real time). A worker thread owns the
//! model and decodes the next bar a whole bar ahead ([`worker`], [`playback`]). The editor
//! ([`editor`]) loads models and exports MIDI off the audio thread.

pub mod capture;
pub mod editor;
pub mod model;
pub mod params;
pub mod pitch;
pub mod playback;
pub mod sequencer;
pub mod shared;
pub mod worker;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arvae_core::music::token::Measure;
use nice_plug::midi::{Channel, Key, VoiceID};
use nice_plug::prelude::*;

use crate::model::LoadedModel;
use crate::params::{ArvaeParams, Regen};
use crate::playback::{Playback, LOOKAHEAD};
use crate::sequencer::{BlockTransport, NoteCmd, Sequencer, BEATS_PER_BAR};
use crate::shared::UiShared;
use crate::worker::{DecodeRequest, Recipe, ToWorker, WorkerHandle};

/// What exists only while the plugin is active.
struct Runtime {
    seq: Sequencer,
    playback: Playback,
    /// Channel of the sounding note (its NoteOff goes to the same channel).
    sounding_channel: u8,
}

/// The plugin instance.
pub struct ArvaePlugin {
    params: Arc<ArvaeParams>,
    shared: Arc<UiShared>,
    /// Declared before the worker: dropping the plugin without a deactivate drops the
    /// playback (and its request sender) first, so the worker's loop ends and can be joined.
    rt: Option<Runtime>,
    worker: Option<WorkerHandle>,
    /// Model file in use (empty: the embedded default).
    loaded_path: String,
}

impl Default for ArvaePlugin {
    fn default() -> Self {
        ArvaePlugin {
            params: Arc::new(ArvaeParams::default()),
            shared: Arc::new(UiShared::default()),
            rt: None,
            worker: None,
            loaded_path: String::new(),
        }
    }
}

impl ArvaePlugin {
    fn recipe(&self) -> Recipe {
        let p = &self.params;
        Recipe {
            settings: p.settings(),
            regen: p.regen.value(),
            transform: p.transform.value(),
            capture: 0,
        }
    }

    /// Loads the model named by the persisted path (empty: embedded). A bad file keeps the
    /// model in use (the embedded one on first activation) and reports the error.
    fn model_for_path(&mut self, path: &str) -> Option<LoadedModel> {
        if path.is_empty() {
            return LoadedModel::embedded().ok();
        }
        match LoadedModel::from_spec(path) {
            Ok(m) => {
                self.shared
                    .set_status(format!("Loaded {}", m.info.name), false);
                Some(m)
            }
            Err(e) => {
                self.shared.set_status(e, true);
                None
            }
        }
    }

    /// Starts the worker or swaps its model so it matches the persisted model path.
    fn ensure_worker(&mut self) -> bool {
        let path = self
            .params
            .model_path
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        if self.worker.is_some() && path == self.loaded_path {
            return true;
        }
        let model = match self.model_for_path(&path) {
            Some(m) => {
                self.loaded_path = path;
                Some(m)
            }
            None if self.worker.is_none() => {
                self.loaded_path.clear();
                LoadedModel::embedded().ok()
            }
            None => None,
        };
        match (&self.worker, model) {
            (Some(w), Some(m)) => {
                let _ = w.models.send(Box::new(m));
            }
            (None, Some(m)) => {
                let w = worker::spawn(
                    Box::new(m),
                    self.shared.clone(),
                    self.params.captured_bar.0.clone(),
                );
                if let Ok(mut s) = self.shared.model_sender.lock() {
                    *s = Some(w.models.clone());
                }
                self.worker = Some(w);
            }
            (None, None) => return false,
            (Some(_), None) => {}
        }
        true
    }
}

impl Plugin for ArvaePlugin {
    const NAME: &'static str = "arvae";
    const VENDOR: &'static str = "arvae";
    const URL: &'static str = "https://github.com/arvae/arvae";
    const EMAIL: &'static str = "arvae@example.invalid";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    // A silent stereo output: many VST3 hosts want an audio bus on a MIDI generator.
    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: None,
            main_output_channels: NonZeroU32::new(2),
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout::const_default(),
    ];
    const MIDI_INPUT: MidiConfig = MidiConfig::Basic;
    const MIDI_OUTPUT: MidiConfig = MidiConfig::Basic;
    const SAMPLE_ACCURATE_AUTOMATION: bool = false;

    type Editor = nice_plug_egui::EguiEditor<editor::ArvaeEditor>;
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::create(self.params.clone(), self.shared.clone())
    }

    fn activate(
        &mut self,
        _audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        _context: &mut impl ActivateContext<Self>,
    ) -> bool {
        if !self.ensure_worker() {
            return false;
        }
        let Some(w) = &self.worker else { return false };
        // Restored or cleared transform source (state load re-activates the plugin).
        let capture = match self.params.captured_bar.load() {
            Some(m) => ToWorker::Capture(m),
            None => ToWorker::ClearCapture,
        };
        let _ = w.to_worker.send_timeout(capture, Duration::from_secs(1));
        while w.from_worker.try_recv().is_ok() {}
        let recipe = self.recipe();
        let regen = recipe.regen;
        let held = self.params.held_bar.load().filter(|_| regen == Regen::Hold);
        let mut playback = Playback::new(
            w.to_worker.clone(),
            w.from_worker.clone(),
            self.shared.clone(),
            self.params.held_bar.0.clone(),
            held.unwrap_or_else(Measure::rest),
            recipe,
            regen,
        );
        // Decode the first bars now (not on the audio thread), so Play at the song start
        // sounds at once; any other position is asked for while the transport stands.
        if held.is_none() {
            let gen = playback.generation();
            for bar in 0..=LOOKAHEAD {
                let r = DecodeRequest { bar, gen, recipe };
                if w.to_worker
                    .send_timeout(ToWorker::Decode(r), Duration::from_secs(1))
                    .is_err()
                {
                    break;
                }
                match w.from_worker.recv_timeout(Duration::from_secs(10)) {
                    Ok(d) => playback.preload(d),
                    Err(_) => break,
                }
            }
        }
        playback.set_offline(buffer_config.process_mode == ProcessMode::Offline);
        self.rt = Some(Runtime {
            seq: Sequencer::new(),
            playback,
            sounding_channel: 0,
        });
        true
    }

    fn deactivate(&mut self) {
        self.rt = None;
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        for ch in buffer.as_slice() {
            ch.fill(0.0);
        }
        let recipe = self.recipe();
        let pitch = self.params.pitch_map();
        let transform = recipe.transform;
        let gate = self.params.gate.value() / 100.0;
        let velocity = self.params.velocity.value().clamp(1, 127) as f32 / 127.0;
        let channel = (self.params.channel.value().clamp(1, 16) - 1) as u8;
        let Some(rt) = self.rt.as_mut() else {
            return ProcessStatus::Normal;
        };
        let t = context.transport();
        // A host that sends no transport at all (no tempo, no position) gets a free-running
        // sequencer at 120 BPM from its first block; one that sends "stopped" stays stopped.
        let no_transport =
            t.tempo.is_none() && t.pos_beats().is_none() && t.pos_seconds().is_none();
        let block = BlockTransport {
            playing: t.playing || no_transport,
            pos_beats: t.pos_beats(),
            tempo: t.tempo,
            sample_rate: t.sample_rate,
            samples: buffer.samples() as u32,
        };
        let tempo = block.tempo.filter(|t| *t > 0.0).unwrap_or(120.0);
        self.shared.tempo.store(tempo as f32, Ordering::Relaxed);
        rt.playback.set_recipe(recipe, recipe.regen, pitch);
        let bar_of = |beats: f64| (beats / BEATS_PER_BAR).floor() as i64;
        let stopped_at = block.pos_beats.filter(|_| !block.playing).map(bar_of);
        let loop_start = t.loop_range_beats().map(|(start, _)| bar_of(start));
        rt.playback.set_position(stopped_at, loop_start);
        rt.seq.set_gate(gate);
        rt.playback.poll();

        // Transform mode: collect the notes played into the plugin.
        let bps = tempo / 60.0 / block.sample_rate.max(1.0) as f64;
        while let Some(event) = context.next_event() {
            let (Some(p0), true, true) = (block.pos_beats, block.playing, transform) else {
                continue;
            };
            match event {
                NoteEvent::NoteOn {
                    timing,
                    key: Key::Number(k),
                    velocity,
                    ..
                } if velocity > 0.0 => rt.playback.capture.note_on(p0 + timing as f64 * bps, k),
                NoteEvent::NoteOn {
                    timing,
                    key: Key::Number(k),
                    ..
                }
                | NoteEvent::NoteOff {
                    timing,
                    key: Key::Number(k),
                    ..
                } => rt.playback.capture.note_off(p0 + timing as f64 * bps, k),
                _ => {}
            }
        }

        let mut sounding_channel = rt.sounding_channel;
        rt.seq
            .process_block(block, &mut rt.playback, &mut |cmd| match cmd {
                NoteCmd::On { at, pitch } => {
                    sounding_channel = channel;
                    let _ = context.try_send_event(NoteEvent::NoteOn {
                        timing: at,
                        voice_id: VoiceID::Wildcard,
                        channel: Channel::Number(channel),
                        key: Key::Number(pitch),
                        velocity,
                    });
                }
                NoteCmd::Off { at, pitch } => {
                    let _ = context.try_send_event(NoteEvent::NoteOff {
                        timing: at,
                        voice_id: VoiceID::Wildcard,
                        channel: Channel::Number(sounding_channel),
                        key: Key::Number(pitch),
                        velocity: 0.0,
                    });
                }
            });
        rt.sounding_channel = sounding_channel;
        ProcessStatus::KeepAlive
    }
}

impl ClapPlugin for ArvaePlugin {
    const CLAP_ID: &'static str = "org.arvae.melody";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("One-bar melodies from an attribute-regularized VAE, steered by four musical knobs");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[
        ClapFeature::NoteEffect,
        ClapFeature::Instrument,
        ClapFeature::Utility,
    ];
}

impl Vst3Plugin for ArvaePlugin {
    const VST3_CLASS_ID: [u8; 16] = *b"ArvaeMelodyGen01";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Instrument, Vst3SubCategory::Generator];
}

nice_export_clap!(ArvaePlugin);
nice_export_vst3!(ArvaePlugin);
