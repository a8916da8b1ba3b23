//! Lock-free state shared between the audio thread, the decode worker and the editor.
//!
//! The audio thread only stores and loads atomics here; the `Mutex`es are touched by the editor
//! and the worker only.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use arvae_core::music::token::{Measure, TICKS_PER_MEASURE, VOCAB_SIZE};
use nice_plug::params::persist::PersistentField;
use nice_plug::prelude::AtomicF32;

use crate::model::ModelInfo;

/// A measure in atomics (tokens may tear between bars; fine for display and state).
#[derive(Debug)]
pub struct AtomicMeasure {
    tokens: [AtomicU8; TICKS_PER_MEASURE],
    valid: AtomicBool,
}

impl Default for AtomicMeasure {
    fn default() -> Self {
        AtomicMeasure {
            tokens: std::array::from_fn(|_| AtomicU8::new(0)),
            valid: AtomicBool::new(false),
        }
    }
}

impl AtomicMeasure {
    /// Stores `m` (or clears with `None`).
    pub fn store(&self, m: Option<&Measure>) {
        if let Some(m) = m {
            for (a, &t) in self.tokens.iter().zip(m.0.iter()) {
                a.store(t, Ordering::Relaxed);
            }
        }
        self.valid.store(m.is_some(), Ordering::Release);
    }

    /// The stored measure, if any.
    pub fn load(&self) -> Option<Measure> {
        if !self.valid.load(Ordering::Acquire) {
            return None;
        }
        let mut m = [0u8; TICKS_PER_MEASURE];
        for (t, a) in m.iter_mut().zip(self.tokens.iter()) {
            *t = a.load(Ordering::Relaxed);
        }
        Some(Measure(m))
    }
}

/// A bar saved with the session (a list of 24 tokens, or nothing), shared with the threads
/// that write it.
#[derive(Debug, Default, Clone)]
pub struct PersistedBar(pub Arc<AtomicMeasure>);

impl std::ops::Deref for PersistedBar {
    type Target = AtomicMeasure;
    fn deref(&self) -> &AtomicMeasure {
        &self.0
    }
}

impl<'a> PersistentField<'a, Option<Vec<u8>>> for PersistedBar {
    fn set(&self, new_value: Option<Vec<u8>>) {
        let m = new_value
            .and_then(|v| Measure::from_slice(&v))
            .filter(valid_measure);
        self.0.store(m.as_ref());
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&Option<Vec<u8>>) -> R,
    {
        f(&self.0.load().map(|m| m.0.to_vec()))
    }
}

/// Bars kept for "Export last bars".
pub const HISTORY: usize = 16;

/// What the editor shows and exports; written by the audio thread and the worker.
#[derive(Debug, Default)]
pub struct UiShared {
    /// The bar playing now (final pitches).
    pub current: AtomicMeasure,
    /// The bar queued next (final pitches), if decoded.
    pub next: AtomicMeasure,
    /// Attributes of the playing bar, in [`Attribute::ALL`](arvae_core::music::Attribute) order.
    pub measured: [AtomicF32; 4],
    /// Index of the playing bar.
    pub bar: AtomicI64,
    /// Bars played since the instance started (ring position of [`history`](Self::history)).
    pub played: AtomicU64,
    /// The last [`HISTORY`] bars played.
    pub history: [AtomicMeasure; HISTORY],
    /// Bars that had to repeat because the decoder was late (realtime mode).
    pub late_bars: AtomicU32,
    /// The latent mean of the captured bar is in use (transform mode).
    pub transform_active: AtomicBool,
    /// Host tempo of the last block (for MIDI export).
    pub tempo: AtomicF32,
    /// The worker's model channel, once the plugin is active (editor and activation only).
    pub model_sender: Mutex<Option<crossbeam_channel::Sender<Box<crate::model::LoadedModel>>>>,
    /// Model summary (editor and worker only).
    pub model_info: Mutex<ModelInfo>,
    /// Last model-loading or export message, and whether it is an error (editor and worker only).
    pub status: Mutex<(String, bool)>,
}

impl UiShared {
    /// Records a bar that starts playing (audio thread; lock-free).
    pub fn push_played(&self, bar: i64, m: &Measure, attrs: [f32; 4]) {
        self.current.store(Some(m));
        for (a, v) in self.measured.iter().zip(attrs) {
            a.store(v, Ordering::Relaxed);
        }
        self.bar.store(bar, Ordering::Relaxed);
        let n = self.played.load(Ordering::Relaxed);
        self.history[(n % HISTORY as u64) as usize].store(Some(m));
        self.played.store(n + 1, Ordering::Release);
    }

    /// The last `n` bars played, oldest first (at most [`HISTORY`]).
    pub fn last_bars(&self, n: usize) -> Vec<Measure> {
        let played = self.played.load(Ordering::Acquire);
        let n = (n.min(HISTORY) as u64).min(played);
        (played - n..played)
            .filter_map(|i| self.history[(i % HISTORY as u64) as usize].load())
            .collect()
    }

    /// Sets the status line.
    pub fn set_status(&self, message: impl Into<String>, error: bool) {
        if let Ok(mut s) = self.status.lock() {
            *s = (message.into(), error);
        }
    }
}

/// Whether every token of `m` is in the vocabulary.
pub fn valid_measure(m: &Measure) -> bool {
    m.0.iter().all(|&t| (t as usize) < VOCAB_SIZE)
}
