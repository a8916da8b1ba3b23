//! A minimal CLAP host (clack-host) that loads the built plugin, drives its transport block by
//! block and records the notes it plays.
//!
//! The plugin library is `ARVAE_PLUGIN_LIB` when set; otherwise the test builds it with
//! `cargo build --workspace --lib --tests` into the same target directory and profile as the
//! test itself (`cargo test` alone does not refresh the cdylib). That command resolves features
//! exactly as the README's `cargo test --workspace` does, so it only compiles the plugin crate
//! (seconds) instead of every dependency again with the plugin's own feature set (`-p
//! arvae-plugin`: minutes on 2 cores). The library it makes links `arvae-core` with the
//! workspace's features (`train` among them); the plugin code is the same.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use arvae_core::music::token::{tick_offset, Measure, HOLD, TICKS_PER_MEASURE};
use clack_extensions::params::{ParamInfoBuffer, PluginParams};
use clack_extensions::render::{PluginRender, RenderMode};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::{
    NoteOffEvent, NoteOnEvent, ParamValueEvent, TransportEvent, TransportFlags,
};
use clack_host::events::{EventFlags, EventHeader, Match};
use clack_host::prelude::*;
use clack_host::utils::{BeatTime, SecondsTime};

pub const SAMPLE_RATE: f64 = 48_000.0;

/// Path of the plugin library to load.
pub fn plugin_lib() -> &'static PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        if let Some(p) = std::env::var_os("ARVAE_PLUGIN_LIB") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/<test binary>
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe.parent().and_then(|d| d.parent()).expect("profile dir");
        let target_dir = profile_dir.parent().expect("target dir");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--workspace", "--lib", "--tests", "--target-dir"])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for the plugin");
        assert!(status.success(), "building the plugin failed");
        let name = if cfg!(target_os = "windows") {
            "arvae_plugin.dll"
        } else if cfg!(target_os = "macos") {
            "libarvae_plugin.dylib"
        } else {
            "libarvae_plugin.so"
        };
        profile_dir.join(name)
    })
}

pub struct Host;
pub struct HostShared;

impl SharedHandler<'_> for HostShared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {}
}

impl HostHandlers for Host {
    type Shared<'a> = HostShared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();
}

/// A note the plugin played, in absolute samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlayedNote {
    pub start: u64,
    /// `None` while it sounds.
    pub end: Option<u64>,
    pub pitch: u8,
    pub channel: u16,
}

/// One note event as emitted: (absolute sample, on?, pitch).
pub type NoteEv = (u64, bool, u8);

/// How the transport moves during a run.
#[derive(Clone, Copy, Debug)]
pub struct Transport {
    pub playing: bool,
    pub tempo: f64,
    /// Beat position at the run's first sample.
    pub start_beats: f64,
}

/// A loaded, active plugin instance with the host's buffers.
pub struct Session {
    pub instance: PluginInstance<Host>,
    processor: Option<StoppedPluginAudioProcessor<Host>>,
    pub ids: HashMap<String, (ClapId, f64, f64)>,
    max_block: u32,
    /// Absolute sample counter (host time).
    pub now: u64,
    /// Every note event, in order.
    pub events: Vec<NoteEv>,
    /// Input notes to send: (absolute sample, on?, pitch).
    pub input: Vec<NoteEv>,
    /// Send a transport with every block (false: a host that sends none).
    pub send_transport: bool,
    /// Why the state given to [`Session::try_new`] did not load.
    pub load_error: Option<String>,
    /// Parameter changes to send with the next block: (id, value).
    pending_params: Vec<(ClapId, f64)>,
    /// Wall-clock pacing: `Some(x)` runs x times faster than real time (a real-time host at
    /// 1, a fast unflagged render above); `None` as fast as possible.
    pub pace: Option<f64>,
    /// The host's loop (start, end) in beats, sent with the transport when set.
    pub loop_beats: Option<(f64, f64)>,
}

fn entry() -> &'static PluginEntry {
    static ENTRY: OnceLock<PluginEntry> = OnceLock::new();
    ENTRY.get_or_init(|| {
        // SAFETY: loading our own plugin library.
        unsafe { PluginEntry::load(plugin_lib()) }.expect("load the plugin library")
    })
}

impl Session {
    /// Creates an instance; `state` is loaded before activation when given (it must load).
    pub fn new(max_block: u32, offline: bool, state: Option<&[u8]>) -> Session {
        let s = Session::try_new(max_block, offline, state);
        assert!(s.load_error.is_none(), "load state: {:?}", s.load_error);
        s
    }

    /// Like [`Session::new`], but a state the plugin refuses is recorded in `load_error`.
    pub fn try_new(max_block: u32, offline: bool, state: Option<&[u8]>) -> Session {
        let entry = entry();
        let factory = entry.get_plugin_factory().expect("plugin factory");
        let desc = factory
            .plugin_descriptors()
            .find(|d| {
                d.id()
                    .is_some_and(|id| id.to_bytes() == b"org.arvae.melody")
            })
            .expect("arvae descriptor");
        let id = CString::from(desc.id().unwrap());
        let info = HostInfo::new("arvae-test", "arvae", "https://example.invalid", "0.1").unwrap();
        let mut instance = PluginInstance::<Host>::new(|_| HostShared, |_| (), entry, &id, &info)
            .expect("instance");
        let mut ids = HashMap::new();
        let mut load_error = None;
        {
            let h = instance.plugin_handle();
            let params: PluginParams = h.get_extension().expect("params extension");
            let mut buf = ParamInfoBuffer::new();
            for i in 0..params.count(&h) {
                let p = params.get_info(&h, i, &mut buf).expect("param info");
                ids.insert(
                    String::from_utf8_lossy(p.name).into_owned(),
                    (p.id, p.min_value, p.max_value),
                );
            }
            if let Some(state) = state {
                let st: PluginState = h.get_extension().expect("state extension");
                load_error = st.load(&h, &mut &state[..]).err().map(|e| format!("{e:?}"));
            }
            if offline {
                let r: PluginRender = h.get_extension().expect("render extension");
                r.set(&h, RenderMode::Offline).expect("offline render");
            }
        }
        let cfg = PluginAudioConfiguration {
            sample_rate: SAMPLE_RATE,
            min_frames_count: 1,
            max_frames_count: max_block,
        };
        let processor = instance.activate(|_, _| (), cfg).expect("activate");
        Session {
            instance,
            processor: Some(processor),
            ids,
            max_block,
            now: 0,
            events: Vec::new(),
            input: Vec::new(),
            pending_params: Vec::new(),
            pace: None,
            loop_beats: None,
            send_transport: true,
            load_error,
        }
    }

    /// Saves the plugin state.
    pub fn save(&mut self) -> Vec<u8> {
        let h = self.instance.plugin_handle();
        let st: PluginState = h.get_extension().expect("state extension");
        let mut out = Vec::new();
        st.save(&h, &mut out).expect("save state");
        out
    }

    /// Sets a parameter by name to a normalized value (0..1) with the next block.
    pub fn set_normalized(&mut self, name: &str, normalized: f64) {
        let (id, min, max) = *self
            .ids
            .get(name)
            .unwrap_or_else(|| panic!("no parameter {name}"));
        self.pending_params
            .push((id, min + (max - min) * normalized.clamp(0.0, 1.0)));
    }

    /// Sets a parameter by name to a plain value in the linear range `lo..=hi`.
    pub fn set_plain(&mut self, name: &str, value: f64, lo: f64, hi: f64) {
        self.set_normalized(name, (value - lo) / (hi - lo));
    }

    /// Runs `samples` samples in blocks of `block` (the last may be shorter), with a steady
    /// transport from `t`. Returns the number of samples run.
    pub fn run(&mut self, t: Transport, samples: u64, block: u32) {
        assert!(block <= self.max_block);
        let processor = self.processor.take().expect("processor");
        let mut pending = std::mem::take(&mut self.pending_params);
        let mut input = std::mem::take(&mut self.input);
        input.sort_by_key(|e| e.0);
        let start_now = self.now;
        let send_transport = self.send_transport;
        let (pace, loop_beats) = (self.pace, self.loop_beats);
        let wall = std::time::Instant::now();
        let (processor, events) = std::thread::scope(|s| {
            s.spawn(move || {
                let mut p = processor.start_processing().expect("start processing");
                let mut events: Vec<NoteEv> = Vec::new();
                let mut out_buf = EventBuffer::with_capacity(256);
                let mut in_buf = EventBuffer::with_capacity(256);
                let mut ports = AudioPorts::with_capacity(2, 1);
                let mut audio = vec![vec![0.0f32; block as usize]; 2];
                let mut done = 0u64;
                let mut next_input = 0;
                while done < samples {
                    let n = (samples - done).min(block as u64) as u32;
                    let abs = start_now + done;
                    let beats = t.start_beats + done as f64 * t.tempo / 60.0 / SAMPLE_RATE;
                    if let Some(x) = pace {
                        let due = std::time::Duration::from_secs_f64(done as f64 / SAMPLE_RATE / x);
                        if let Some(wait) = due.checked_sub(wall.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let mut flags = TransportFlags::HAS_TEMPO
                        | TransportFlags::HAS_BEATS_TIMELINE
                        | TransportFlags::HAS_SECONDS_TIMELINE;
                    if t.playing {
                        flags |= TransportFlags::IS_PLAYING;
                    }
                    let (loop_start, loop_end) = loop_beats.unwrap_or((0.0, 0.0));
                    if loop_beats.is_some() {
                        flags |= TransportFlags::IS_LOOP_ACTIVE;
                    }
                    let transport = TransportEvent {
                        header: EventHeader::new_core(0, EventFlags::empty()),
                        flags,
                        song_pos_beats: BeatTime::from_float(beats),
                        song_pos_seconds: SecondsTime::from_float(beats * 60.0 / t.tempo),
                        tempo: t.tempo,
                        tempo_inc: 0.0,
                        loop_start_beats: BeatTime::from_float(loop_start),
                        loop_end_beats: BeatTime::from_float(loop_end),
                        loop_start_seconds: SecondsTime::from_float(loop_start * 60.0 / t.tempo),
                        loop_end_seconds: SecondsTime::from_float(loop_end * 60.0 / t.tempo),
                        bar_start: BeatTime::from_float((beats / 4.0).floor() * 4.0),
                        bar_number: (beats / 4.0).floor() as i32,
                        time_signature_numerator: 4,
                        time_signature_denominator: 4,
                    };
                    in_buf.clear();
                    for (id, v) in pending.drain(..) {
                        in_buf.push(&ParamValueEvent::new(0, id, Pckn::match_all(), v));
                    }
                    while next_input < input.len() && input[next_input].0 < abs + n as u64 {
                        let (at, on, key) = input[next_input];
                        let time = at.saturating_sub(abs) as u32;
                        let pckn = Pckn::new(0u16, 0u16, key as u16, Match::All);
                        if on {
                            in_buf.push(&NoteOnEvent::new(time, pckn, 0.8));
                        } else {
                            in_buf.push(&NoteOffEvent::new(time, pckn, 0.0));
                        }
                        next_input += 1;
                    }
                    out_buf.clear();
                    for ch in audio.iter_mut() {
                        ch.iter_mut().for_each(|x| *x = 0.0);
                    }
                    let mut outputs = ports.with_output_buffers([AudioPortBuffer {
                        latency: 0,
                        channels: AudioPortBufferType::f32_output_only(
                            audio.iter_mut().map(|c| &mut c[..n as usize]),
                        ),
                    }]);
                    p.process(
                        &InputAudioBuffers::empty(),
                        &mut outputs,
                        &InputEvents::from_buffer(&in_buf),
                        &mut OutputEvents::from_buffer(&mut out_buf),
                        Some(abs),
                        send_transport.then_some(&transport),
                    )
                    .expect("process");
                    for e in out_buf.iter() {
                        let time = abs + e.header().time() as u64;
                        if let Some(on) = e.as_event::<NoteOnEvent>() {
                            let k = on.pckn().key.into_specific().expect("key") as u8;
                            events.push((time, true, k));
                        } else if let Some(off) = e.as_event::<NoteOffEvent>() {
                            let k = off.pckn().key.into_specific().expect("key") as u8;
                            events.push((time, false, k));
                        }
                    }
                    done += n as u64;
                }
                (p.stop_processing(), events)
            })
            .join()
            .expect("audio thread")
        });
        self.processor = Some(processor);
        self.events.extend(events);
        self.now += samples;
    }

    /// Plays `bars` bars at `tempo` from the song start, in blocks of 512.
    pub fn play_from_start(&mut self, bars: f64, tempo: f64) {
        self.run(
            Transport {
                playing: true,
                tempo,
                start_beats: 0.0,
            },
            Session::bar_samples(bars, tempo),
            512,
        );
    }

    /// A CLAP state blob as nice-plug writes it (little-endian u64 length, then the JSON).
    pub fn state_blob(json: &serde_json::Value) -> Vec<u8> {
        let body = serde_json::to_vec(json).unwrap();
        let mut state = (body.len() as u64).to_le_bytes().to_vec();
        state.extend(body);
        state
    }

    /// Samples in `bars` bars at `tempo`.
    pub fn bar_samples(bars: f64, tempo: f64) -> u64 {
        (bars * 4.0 * 60.0 / tempo * SAMPLE_RATE).round() as u64
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(p) = self.processor.take() {
            self.instance.deactivate(p);
        }
    }
}

/// Pairs NoteOn/NoteOff events into notes, asserting monophony and matching pitches.
pub fn notes(events: &[NoteEv]) -> Vec<PlayedNote> {
    let mut out: Vec<PlayedNote> = Vec::new();
    for &(t, on, pitch) in events {
        if on {
            if let Some(last) = out.last() {
                assert!(
                    last.end.is_some(),
                    "NoteOn {pitch} at {t} while {} sounds",
                    last.pitch
                );
            }
            out.push(PlayedNote {
                start: t,
                end: None,
                pitch,
                channel: 0,
            });
        } else {
            let last = out
                .last_mut()
                .unwrap_or_else(|| panic!("NoteOff {pitch} at {t} with nothing sounding"));
            assert!(
                last.end.is_none(),
                "NoteOff {pitch} at {t} with nothing sounding"
            );
            assert_eq!(last.pitch, pitch, "NoteOff pitch at {t}");
            assert!(t >= last.start);
            last.end = Some(t);
        }
    }
    out
}

/// Rebuilds the measures played from notes: bar `b` covers samples from `origin` + b bars.
/// Onsets are snapped to the nearest grid tick.
pub fn measures_from_notes(
    notes: &[PlayedNote],
    origin: u64,
    tempo: f64,
    bars: usize,
) -> Vec<Measure> {
    let spb = 60.0 / tempo * SAMPLE_RATE;
    let mut out = vec![[HOLD; TICKS_PER_MEASURE]; bars];
    for m in out.iter_mut() {
        m[0] = 128;
    }
    for n in notes {
        if n.start < origin {
            continue;
        }
        let beats = (n.start - origin) as f64 / spb;
        let bar = (beats / 4.0).floor() as usize;
        if bar >= bars {
            continue;
        }
        let off = beats - bar as f64 * 4.0;
        let tick = (0..TICKS_PER_MEASURE)
            .min_by(|&a, &b| {
                (tick_offset(a) - off)
                    .abs()
                    .total_cmp(&(tick_offset(b) - off).abs())
            })
            .unwrap();
        out[bar][tick] = n.pitch;
    }
    out.into_iter().map(Measure).collect()
}
