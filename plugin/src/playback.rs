//! The audio thread's side of the decode worker: which measure each bar plays.
//!
//! At every bar line the next bar is taken from what the worker decoded ahead of time (it was
//! requested a whole bar earlier); in real time, a bar that is not ready repeats the bar before
//! it instead of waiting. In offline rendering (a bounce) the audio thread waits for the worker
//! so that a render is exactly reproducible. Nothing here allocates or locks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arvae_core::music::attributes::attributes;
use arvae_core::music::token::Measure;
use crossbeam_channel::{Receiver, Sender};

use crate::capture::Capture;
use crate::params::Regen;
use crate::pitch::PitchMap;
use crate::sequencer::BarProvider;
use crate::shared::{AtomicMeasure, UiShared};
use crate::worker::{DecodeRequest, Decoded, ToWorker};

/// Knob settings that decide what the worker decodes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnobState {
    /// Attribute targets.
    pub targets: [f32; 4],
    /// Variation seed.
    pub seed: u32,
    /// Regenerate mode.
    pub regen: Regen,
    /// Transform mode.
    pub transform: bool,
    /// Target matching.
    pub match_targets: bool,
}

/// Longest an offline render waits for one bar.
const OFFLINE_WAIT: Duration = Duration::from_secs(20);

/// Chooses and publishes the measure of every bar; see the [module docs](self).
pub struct Playback {
    to_worker: Sender<ToWorker>,
    from_worker: Receiver<Decoded>,
    shared: Arc<UiShared>,
    held_state: Arc<AtomicMeasure>,
    /// Raw (model pitch) measure of the bar playing.
    current: Measure,
    /// Best decoded candidate for the bar after it.
    next: Option<Decoded>,
    bar: i64,
    gen: u32,
    knobs: KnobState,
    pitch: PitchMap,
    offline: bool,
    /// A request that did not fit in the channel yet.
    pending: Option<ToWorker>,
    pending_capture: Option<ToWorker>,
    /// Transform-mode input.
    pub capture: Capture,
}

impl Playback {
    /// A playback starting on `current`.
    pub fn new(
        to_worker: Sender<ToWorker>,
        from_worker: Receiver<Decoded>,
        shared: Arc<UiShared>,
        held_state: Arc<AtomicMeasure>,
        current: Measure,
        knobs: KnobState,
    ) -> Self {
        Playback {
            to_worker,
            from_worker,
            shared,
            held_state,
            current,
            next: None,
            bar: 0,
            gen: 0,
            knobs,
            pitch: PitchMap::default(),
            offline: false,
            pending: None,
            pending_capture: None,
            capture: Capture::default(),
        }
    }

    /// Offline rendering waits for the decoder at bar lines.
    pub fn set_offline(&mut self, offline: bool) {
        self.offline = offline;
    }

    /// Replaces the bar playing (activation, restored Hold bar).
    pub fn set_current(&mut self, m: Measure) {
        self.current = m;
        self.next = None;
    }

    /// New knob values from this block; a change re-requests the next bar.
    pub fn set_knobs(&mut self, knobs: KnobState, pitch: PitchMap) {
        self.pitch = pitch;
        if knobs != self.knobs {
            if knobs.transform != self.knobs.transform && !knobs.transform {
                self.pending_capture = Some(ToWorker::ClearCapture);
                self.capture.clear();
            }
            self.knobs = knobs;
            self.gen = self.gen.wrapping_add(1);
            self.pending = Some(self.request(self.bar + 1));
        }
    }

    fn request(&self, bar: i64) -> ToWorker {
        ToWorker::Decode(DecodeRequest {
            bar,
            gen: self.gen,
            targets: self.knobs.targets,
            seed: self.knobs.seed,
            regen: self.knobs.regen,
            transform: self.knobs.transform,
            match_targets: self.knobs.match_targets,
        })
    }

    /// Sends what is queued (captures first) and takes finished bars; once per block.
    pub fn poll(&mut self) {
        if let Some(m) = self.pending_capture {
            if self.to_worker.try_send(m).is_ok() {
                self.pending_capture = None;
            }
        }
        if self.pending_capture.is_none() {
            if let Some(m) = self.pending {
                if self.to_worker.try_send(m).is_ok() {
                    self.pending = None;
                }
            }
        }
        while let Ok(d) = self.from_worker.try_recv() {
            self.offer(d);
        }
    }

    /// Keeps `d` if it is for the next bar and at least as new as what is there.
    fn offer(&mut self, d: Decoded) {
        if d.bar != self.bar + 1 {
            return;
        }
        let newer = match self.next {
            None => true,
            Some(n) => d.gen.wrapping_sub(n.gen) as i32 >= 0,
        };
        if newer {
            self.next = Some(d);
            self.shared
                .next
                .store(Some(&self.pitch.measure(&d.measure)));
        }
    }

    /// Offline: waits (sleeping, without allocating) until the worker delivers bar `bar` with
    /// the current knob generation.
    fn wait_for(&mut self, bar: i64) -> Option<Measure> {
        let want = self.gen;
        let start = Instant::now();
        loop {
            if let Some(m) = self.pending_capture {
                if self.to_worker.try_send(m).is_ok() {
                    self.pending_capture = None;
                }
            }
            if self.pending_capture.is_none() {
                if let Some(m) = self.pending {
                    if self.to_worker.try_send(m).is_ok() {
                        self.pending = None;
                    }
                }
            }
            while let Ok(d) = self.from_worker.try_recv() {
                if d.bar == bar && d.gen == want {
                    return Some(d.measure);
                }
            }
            if start.elapsed() > OFFLINE_WAIT {
                return None;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn choose(&mut self, bar: i64, resync: bool) {
        if self.knobs.regen == Regen::Hold {
            self.held_state.store(Some(&self.current));
            return;
        }
        let ready = self.next.filter(|d| d.bar == bar);
        if self.offline {
            if ready.is_some_and(|d| d.gen == self.gen) {
                self.current = ready.unwrap().measure;
                return;
            }
            // The bar this request asks for is now the one playing; offer() must not drop it.
            let prev = self.bar;
            self.bar = bar - 1;
            let pending_here = matches!(self.pending, Some(ToWorker::Decode(r)) if r.bar == bar);
            if resync || !pending_here {
                self.pending = Some(self.request(bar));
            }
            if let Some(m) = self.wait_for(bar) {
                self.current = m;
            }
            self.bar = prev;
            return;
        }
        match ready {
            Some(d) => self.current = d.measure,
            None => {
                // Not decoded in time: repeat the bar rather than glitch.
                self.shared.late_bars.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl BarProvider for Playback {
    fn bar_started(&mut self, bar: i64, resync: bool) -> Measure {
        if resync {
            self.capture.resync(bar);
        } else {
            self.capture.bar_started(bar);
        }
        self.choose(bar, resync);
        self.bar = bar;
        self.next = None;
        self.shared.next.store(None);
        // The finished input bar goes first, so the next bar is decoded from it.
        if self.knobs.transform {
            if let Some(m) = self.capture.take_finished() {
                self.pending_capture = Some(ToWorker::Capture(m));
            }
        }
        if self.knobs.regen != Regen::Hold {
            self.pending = Some(self.request(bar + 1));
        }
        self.poll();
        let out = self.pitch.measure(&self.current);
        self.shared.push_played(bar, &out, attributes(&out));
        out
    }
}
