//! The audio thread's side of the decode worker: which measure each bar plays.
//!
//! Bars are a pure function of (model, recipe, bar index), so they are asked for ahead and kept
//! by bar index: the bar playing and the next [`LOOKAHEAD`] bars, the bar at the stopped
//! transport's position, and the first bars of the host's loop. A loop, a jump back or a
//! restart finds the bars that belong there; a knob moved while stopped is decoded before Play.
//!
//! In real time a bar that is not decoded when it starts (a jump to a far bar, a render faster
//! than the worker, knobs changed in the very block that starts playback) plays from the
//! moment it arrives, from its next onset on the grid; at a bar line a bar of an older recipe
//! stands in while the new one is decoded. In offline
//! rendering the audio thread waits for the worker, so a bounce is exactly reproducible.
//! Nothing here allocates or locks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arvae_core::compose::key::PitchMap;
use arvae_core::music::attributes::attributes;
use arvae_core::music::token::Measure;
use crossbeam_channel::{Receiver, Sender};

use crate::capture::Capture;
use crate::params::Regen;
use crate::sequencer::BarProvider;
use crate::shared::{AtomicMeasure, UiShared};
use crate::worker::{DecodeRequest, Decoded, Recipe, ToWorker};

/// Bars asked for beyond the one playing.
pub const LOOKAHEAD: i64 = 8;

/// Bars kept by index.
const KEPT: usize = 32;

/// Requests remembered as sent (per recipe generation).
const SENT: usize = 32;

/// Longest an offline render waits for one bar.
const OFFLINE_WAIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug)]
struct Slot {
    bar: i64,
    gen: u32,
    measure: Measure,
}

/// Chooses and publishes the measure of every bar; see the [module docs](self).
pub struct Playback {
    to_worker: Sender<ToWorker>,
    from_worker: Receiver<Decoded>,
    shared: Arc<UiShared>,
    held_state: Arc<AtomicMeasure>,
    /// Bars by index (any generation; the current one is preferred).
    kept: [Option<Slot>; KEPT],
    /// Requests sent for the current generation.
    sent: [i64; SENT],
    n_sent: usize,
    /// Raw measure of the bar playing.
    current: Measure,
    /// The bar playing (or where the stopped transport stands).
    anchor: i64,
    /// First bar of the host's loop, when it loops.
    loop_start: Option<i64>,
    gen: u32,
    recipe: Recipe,
    regen: Regen,
    pitch: PitchMap,
    offline: bool,
    /// A capture (or clear) that did not fit in the channel yet.
    pending_capture: Option<ToWorker>,
    /// Transform-mode input.
    pub capture: Capture,
}

impl Playback {
    /// A playback of `recipe` starting on `current` (the held bar in Hold mode).
    pub fn new(
        to_worker: Sender<ToWorker>,
        from_worker: Receiver<Decoded>,
        shared: Arc<UiShared>,
        held_state: Arc<AtomicMeasure>,
        current: Measure,
        recipe: Recipe,
        regen: Regen,
    ) -> Self {
        Playback {
            to_worker,
            from_worker,
            shared,
            held_state,
            kept: [None; KEPT],
            sent: [0; SENT],
            n_sent: 0,
            current,
            anchor: 0,
            loop_start: None,
            gen: 0,
            recipe,
            regen,
            pitch: PitchMap::default(),
            offline: false,
            pending_capture: None,
            capture: Capture::default(),
        }
    }

    /// Offline rendering waits for the decoder at bar lines.
    pub fn set_offline(&mut self, offline: bool) {
        self.offline = offline;
    }

    /// Keeps a bar decoded before playback started (activation).
    pub fn preload(&mut self, d: Decoded) {
        self.keep(d);
    }

    /// The recipe generation in use.
    pub fn generation(&self) -> u32 {
        self.gen
    }

    /// New knob values from this block; a changed recipe asks for its bars again.
    pub fn set_recipe(&mut self, recipe: Recipe, regen: Regen, pitch: PitchMap) {
        self.pitch = pitch;
        self.regen = regen;
        let recipe = Recipe {
            capture: self.recipe.capture,
            ..recipe
        };
        if recipe != self.recipe {
            if self.recipe.transform && !recipe.transform {
                self.pending_capture = Some(ToWorker::ClearCapture);
                self.capture.clear();
            }
            self.recipe = recipe;
            self.new_generation();
        }
    }

    fn new_generation(&mut self) {
        self.gen = self.gen.wrapping_add(1);
        self.n_sent = 0;
    }

    /// Where the transport stands while stopped (its bar is decoded before Play) and the
    /// first bar of the host's loop, if it loops.
    pub fn set_position(&mut self, stopped_at: Option<i64>, loop_start: Option<i64>) {
        if let Some(b) = stopped_at {
            self.anchor = b;
        }
        self.loop_start = loop_start;
    }

    fn find(&self, bar: i64, current_only: bool) -> Option<Measure> {
        let mut other = None;
        for s in self.kept.iter().flatten().filter(|s| s.bar == bar) {
            if s.gen == self.gen {
                return Some(s.measure);
            }
            other = Some(s.measure);
        }
        if current_only {
            None
        } else {
            other
        }
    }

    fn keep(&mut self, d: Decoded) {
        let current = |s: &Slot| s.gen == self.gen;
        let anchor = self.anchor;
        let distance = |s: &Slot| (s.bar - anchor).unsigned_abs();
        let i = self
            .kept
            .iter()
            .position(|s| s.is_some_and(|s| s.bar == d.bar && (!current(&s) || d.gen == self.gen)))
            .or_else(|| self.kept.iter().position(Option::is_none))
            .or_else(|| {
                self.kept
                    .iter()
                    .position(|s| s.is_some_and(|s| !current(&s)))
            })
            .or_else(|| (0..KEPT).max_by_key(|&i| self.kept[i].map_or(0, |s| distance(&s))));
        if let Some(i) = i {
            if d.gen == self.gen || self.kept[i].is_none_or(|s| !current(&s)) {
                self.kept[i] = Some(Slot {
                    bar: d.bar,
                    gen: d.gen,
                    measure: d.measure,
                });
            }
        }
        if d.bar == self.anchor + 1 && d.gen == self.gen {
            self.shared
                .next
                .store(Some(&self.pitch.measure(&d.measure)));
        }
    }

    /// Asks for `bar` unless it is kept or already asked for; false when the channel is full.
    fn want(&mut self, bar: i64) -> bool {
        if self.find(bar, true).is_some() || self.sent[..self.n_sent].contains(&bar) {
            return true;
        }
        let r = ToWorker::Decode(DecodeRequest {
            bar,
            gen: self.gen,
            recipe: self.recipe,
        });
        if self.to_worker.try_send(r).is_err() {
            return false;
        }
        if self.n_sent == SENT {
            // Forget the oldest half; they are either kept by now or asked for again.
            self.sent.copy_within(SENT / 2.., 0);
            self.n_sent = SENT / 2;
        }
        self.sent[self.n_sent] = bar;
        self.n_sent += 1;
        true
    }

    /// Sends the capture and the requests due, and takes finished bars; once per block.
    pub fn poll(&mut self) {
        if let Some(m) = self.pending_capture {
            if self.to_worker.try_send(m).is_err() {
                return;
            }
            self.pending_capture = None;
        }
        while let Ok(d) = self.from_worker.try_recv() {
            self.keep(d);
        }
        if self.regen == Regen::Hold {
            return;
        }
        let mut ok = true;
        for b in self.anchor..=self.anchor + LOOKAHEAD {
            ok = ok && self.want(b);
        }
        if let Some(l) = self.loop_start.filter(|&l| l < self.anchor) {
            for b in l..l + 2 {
                ok = ok && self.want(b);
            }
        }
    }

    /// Offline: waits (sleeping, without allocating) until the worker delivers `bar` of the
    /// current generation.
    fn wait_for(&mut self, bar: i64) -> Option<Measure> {
        let start = Instant::now();
        loop {
            self.poll();
            let _ = self.want(bar);
            if let Some(m) = self.find(bar, true) {
                return Some(m);
            }
            if start.elapsed() > OFFLINE_WAIT {
                return None;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// The measure of `bar`, if there is one to play now. At a bar line an older recipe's bar
    /// stands in for one not decoded yet (a knob turned just before it); after a start or a
    /// jump only the current recipe's bar plays, from when it arrives.
    fn choose(&mut self, bar: i64, resync: bool) -> Option<Measure> {
        if self.regen == Regen::Hold {
            self.held_state.store(Some(&self.current));
            return Some(self.current);
        }
        if self.offline {
            return self.wait_for(bar).or(self.find(bar, false));
        }
        let m = self.find(bar, true);
        if m.is_none() {
            self.shared
                .late_bars
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if resync {
            m
        } else {
            m.or(self.find(bar, false))
        }
    }

    fn publish(&mut self, bar: i64, m: Measure) -> Measure {
        self.current = m;
        let out = self.pitch.measure(&m);
        self.shared.push_played(bar, &out, attributes(&out));
        out
    }
}

impl BarProvider for Playback {
    fn bar_started(&mut self, bar: i64, resync: bool) -> Option<Measure> {
        if resync {
            self.capture.resync(bar);
        } else {
            self.capture.bar_started(bar);
        }
        self.anchor = bar;
        self.shared.next.store(None);
        // The finished input bar goes first, so the next bars are decoded from it.
        if self.recipe.transform {
            if let Some(m) = self.capture.take_finished() {
                self.pending_capture = Some(ToWorker::Capture(m));
                self.recipe.capture = self.recipe.capture.wrapping_add(1);
                self.new_generation();
            }
        }
        self.poll();
        let m = self.choose(bar, resync)?;
        Some(self.publish(bar, m))
    }

    fn bar_ready(&mut self, bar: i64) -> Option<Measure> {
        self.poll();
        let m = self.find(bar, true)?;
        Some(self.publish(bar, m))
    }
}
