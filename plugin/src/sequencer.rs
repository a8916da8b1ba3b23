//! Host-synced, sample-accurate playback of one-bar measures: the real-time part of the plugin.
//!
//! [`Sequencer::process_block`] turns the host transport of one block (playing, position in
//! beats, tempo) into NoteOn/NoteOff commands at sample offsets. Notes start on the 24-tick
//! non-uniform grid of the current bar and end at `gate` x the time to the next event (next
//! onset, `REST`, or the bar line; a note never crosses the bar line). It is monophonic: a
//! NoteOff always comes before the next NoteOn.
//!
//! A position that does not continue the previous block (loop, jump, tempo-map edit) ends the
//! sounding note at sample 0 and re-syncs to the bar at the new position; a stopped transport
//! ends the sounding note at sample 0 of that block. It never allocates.

use arvae_core::music::token::{tick_offset, Measure, HOLD, TICKS_PER_MEASURE};

/// Beats in one bar (4/4; the model's measures are 4 beats).
pub const BEATS_PER_BAR: f64 = 4.0;

/// One block as the host describes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockTransport {
    /// Transport is rolling.
    pub playing: bool,
    /// Position at the first sample of the block, in quarter-note beats (`None`: the host gives
    /// none; the sequencer then runs on from where it was).
    pub pos_beats: Option<f64>,
    /// Tempo in quarter notes per minute (`None`: 120).
    pub tempo: Option<f64>,
    /// Sample rate in Hz.
    pub sample_rate: f32,
    /// Samples in the block.
    pub samples: u32,
}

/// A note command for the host, at a sample offset inside the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteCmd {
    /// Start `pitch` at sample `at`.
    On {
        /// Sample offset in the block.
        at: u32,
        /// MIDI pitch.
        pitch: u8,
    },
    /// End `pitch` at sample `at`.
    Off {
        /// Sample offset in the block.
        at: u32,
        /// MIDI pitch.
        pitch: u8,
    },
}

/// Where the sequencer gets each bar's measure from (the plugin's bar source).
pub trait BarProvider {
    /// Bar `bar` starts (or playback re-syncs into it when `resync`): the measure to play, or
    /// `None` when it is not ready yet (the sequencer then asks [`bar_ready`](Self::bar_ready)
    /// every block). The pitches are final (after transpose and scale lock).
    fn bar_started(&mut self, bar: i64, resync: bool) -> Option<Measure>;

    /// The measure of `bar` if it has become ready since `bar_started` had none.
    fn bar_ready(&mut self, _bar: i64) -> Option<Measure> {
        None
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct BarEvent {
    /// Offset from the bar start, in beats.
    offset: f64,
    /// `Some(pitch)`: NoteOn; `None`: NoteOff of the sounding note.
    on: Option<u8>,
}

/// Most events in one bar: an on and an off per tick.
const MAX_EVENTS: usize = 2 * TICKS_PER_MEASURE;

/// Relative slack (in samples) when deciding which sample a grid time falls on.
const SAMPLE_EPS: f64 = 1e-6;

/// Host-synced sample-accurate player of one-bar measures; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Sequencer {
    /// Gate: share of the time to the next event that a note sounds (0.05..=1).
    gate: f64,
    /// Position where the next block starts if the transport runs on.
    expected_pos: Option<f64>,
    /// Bar being played.
    bar: i64,
    events: [BarEvent; MAX_EVENTS],
    n_events: usize,
    cursor: usize,
    sounding: Option<u8>,
    /// The bar playing had no measure yet: ask for it every block.
    waiting: bool,
    /// Slack in beats for "the position continues the previous block".
    jump_tolerance_beats: f64,
}

impl Default for Sequencer {
    fn default() -> Self {
        Self::new()
    }
}

impl Sequencer {
    /// A stopped sequencer with gate 0.9.
    pub fn new() -> Self {
        Sequencer {
            gate: 0.9,
            expected_pos: None,
            bar: 0,
            events: [BarEvent::default(); MAX_EVENTS],
            n_events: 0,
            cursor: 0,
            sounding: None,
            waiting: false,
            jump_tolerance_beats: 1e-3,
        }
    }

    /// Sets the gate (clamped to 0.05..=1); it applies from the next bar.
    pub fn set_gate(&mut self, gate: f32) {
        self.gate = (gate as f64).clamp(0.05, 1.0);
    }

    /// The bar being played.
    pub fn bar(&self) -> i64 {
        self.bar
    }

    /// The sounding pitch, if any.
    pub fn sounding(&self) -> Option<u8> {
        self.sounding
    }

    /// Forgets the transport position, so the next playing block re-syncs; ends the sounding
    /// note through `out` at sample 0.
    pub fn reset(&mut self, out: &mut impl FnMut(NoteCmd)) {
        self.note_off(0, out);
        self.expected_pos = None;
    }

    fn note_off(&mut self, at: u32, out: &mut impl FnMut(NoteCmd)) {
        if let Some(pitch) = self.sounding.take() {
            out(NoteCmd::Off { at, pitch });
        }
    }

    /// Lays out the bar's measure, or silence while it is not ready (see [`BarProvider`]).
    fn start_bar(&mut self, m: Option<Measure>) {
        self.waiting = m.is_none();
        self.load(&m.unwrap_or_else(Measure::rest));
    }

    /// Moves the cursor past what lies before `in_bar` beats into the bar (an event exactly
    /// there still plays). A note that should already be sounding is left out: every onset
    /// stays on the grid, also for a bar that arrives late.
    fn seek(&mut self, in_bar: f64, bps: f64) {
        while self.cursor < self.n_events
            && self.events[self.cursor].offset < in_bar - SAMPLE_EPS * bps
        {
            self.cursor += 1;
        }
        // A NoteOff whose NoteOn was skipped has nothing to end.
        if self.cursor < self.n_events && self.events[self.cursor].on.is_none() {
            self.cursor += 1;
        }
    }

    /// Lays out the events of `m` for the current bar and rewinds the cursor.
    fn load(&mut self, m: &Measure) {
        let t = m.tokens();
        let mut n = 0;
        for (i, &tok) in t.iter().enumerate() {
            if tok >= 128 {
                continue;
            }
            let end = (i + 1..TICKS_PER_MEASURE)
                .find(|&j| t[j] != HOLD)
                .unwrap_or(TICKS_PER_MEASURE);
            let start = tick_offset(i);
            let stop = if end == TICKS_PER_MEASURE {
                BEATS_PER_BAR
            } else {
                tick_offset(end)
            };
            self.events[n] = BarEvent {
                offset: start,
                on: Some(tok),
            };
            self.events[n + 1] = BarEvent {
                offset: start + self.gate * (stop - start),
                on: None,
            };
            n += 2;
        }
        self.n_events = n;
        self.cursor = 0;
    }

    /// Plays one block: emits note commands in time order through `out`.
    pub fn process_block(
        &mut self,
        block: BlockTransport,
        bars: &mut impl BarProvider,
        out: &mut impl FnMut(NoteCmd),
    ) {
        if !block.playing || block.samples == 0 {
            if !block.playing {
                self.reset(out);
            }
            return;
        }
        let tempo = block
            .tempo
            .filter(|t| t.is_finite() && *t > 0.0)
            .unwrap_or(120.0);
        let sr = if block.sample_rate.is_finite() && block.sample_rate > 0.0 {
            block.sample_rate as f64
        } else {
            48_000.0
        };
        let bps = tempo / 60.0 / sr;
        let p0 = match block.pos_beats.filter(|p| p.is_finite()) {
            Some(p) => p,
            None => self.expected_pos.unwrap_or(0.0),
        };
        let continues = self
            .expected_pos
            .is_some_and(|e| (p0 - e).abs() <= self.jump_tolerance_beats.max(2.0 * bps));
        if !continues {
            // Start, loop or jump: end what sounds and re-sync to the bar at p0.
            self.note_off(0, out);
            self.bar = (p0 / BEATS_PER_BAR).floor() as i64;
            let m = bars.bar_started(self.bar, true);
            self.start_bar(m);
            self.seek(p0 - self.bar as f64 * BEATS_PER_BAR, bps);
        } else if self.waiting {
            if let Some(m) = bars.bar_ready(self.bar) {
                self.start_bar(Some(m));
                self.seek(p0 - self.bar as f64 * BEATS_PER_BAR, bps);
            }
        }
        let n = block.samples;
        loop {
            let bar_start = self.bar as f64 * BEATS_PER_BAR;
            let (at_beat, event) = if self.cursor < self.n_events {
                let e = self.events[self.cursor];
                (bar_start + e.offset, Some(e))
            } else {
                (bar_start + BEATS_PER_BAR, None)
            };
            let x = (at_beat - p0) / bps;
            let s = (x - SAMPLE_EPS).ceil().max(0.0);
            if s >= n as f64 {
                break;
            }
            let s = s as u32;
            match event {
                Some(BarEvent {
                    on: Some(pitch), ..
                }) => {
                    self.note_off(s, out);
                    out(NoteCmd::On { at: s, pitch });
                    self.sounding = Some(pitch);
                    self.cursor += 1;
                }
                Some(BarEvent { on: None, .. }) => {
                    self.note_off(s, out);
                    self.cursor += 1;
                }
                None => {
                    // Bar line: nothing crosses it.
                    self.note_off(s, out);
                    self.bar += 1;
                    let m = bars.bar_started(self.bar, false);
                    self.start_bar(m);
                }
            }
        }
        self.expected_pos = Some(p0 + n as f64 * bps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arvae_core::music::token::REST;

    struct Fixed(Measure, Vec<(i64, bool)>);
    impl BarProvider for Fixed {
        fn bar_started(&mut self, bar: i64, resync: bool) -> Option<Measure> {
            self.1.push((bar, resync));
            Some(self.0)
        }
    }

    /// Bar 0 arrives only after `late` blocks.
    struct Late(Measure, u32);
    impl BarProvider for Late {
        fn bar_started(&mut self, _bar: i64, _resync: bool) -> Option<Measure> {
            None
        }
        fn bar_ready(&mut self, _bar: i64) -> Option<Measure> {
            self.1 = self.1.saturating_sub(1);
            (self.1 == 0).then_some(self.0)
        }
    }

    #[test]
    fn a_late_bar_plays_from_its_arrival_on_the_grid() {
        let mut seq = Sequencer::new();
        let mut src = Late(melody(), 2);
        let mut out = Vec::new();
        let mk = |pos: f64| BlockTransport {
            playing: true,
            pos_beats: Some(pos),
            tempo: Some(120.0),
            sample_rate: 48_000.0,
            samples: 4800, // 0.2 beats
        };
        let mut pos = 0.0;
        for _ in 0..4 {
            seq.process_block(mk(pos), &mut src, &mut |c| out.push((pos, c)));
            pos += 0.2;
        }
        // Nothing in the first two blocks; at the third (0.4 beats in) the bar arrives while
        // D4 (1/3..1 beat) should be sounding: it is left out, so the first note is E4 on its
        // grid tick (13: beat 2 + 1/4), in the block that starts at 2.2 beats.
        let want_at = ((2.25 - 2.2) * 24_000.0f64).round() as u32;
        assert_eq!(
            out.first(),
            None,
            "nothing before 2.2 beats in these 4 blocks"
        );
        for _ in 4..12 {
            seq.process_block(mk(pos), &mut src, &mut |c| out.push((pos, c)));
            pos += 0.2;
        }
        let first = out.first().expect("E4 plays");
        assert!((first.0 - 2.2).abs() < 1e-9, "{first:?}");
        assert_eq!(
            first.1,
            NoteCmd::On {
                at: want_at,
                pitch: 64
            }
        );
    }

    fn melody() -> Measure {
        let mut t = [HOLD; 24];
        t[0] = 60;
        t[2] = 62; // triplet tick: 1/3 beat
        t[6] = REST;
        t[13] = 64;
        t[21] = 65;
        Measure(t)
    }

    fn run(block: u32, bars: usize, tempo: f64) -> Vec<(u64, NoteCmd)> {
        let mut seq = Sequencer::new();
        seq.set_gate(1.0);
        let mut src = Fixed(melody(), Vec::new());
        let sr = 48_000.0;
        let total = (bars as f64 * 4.0 * 60.0 / tempo * sr) as u64;
        let mut out = Vec::new();
        let mut t = 0u64;
        while t < total {
            let pos = t as f64 * tempo / 60.0 / sr;
            let b = BlockTransport {
                playing: true,
                pos_beats: Some(pos),
                tempo: Some(tempo),
                sample_rate: sr as f32,
                samples: block,
            };
            seq.process_block(b, &mut src, &mut |c| out.push((t, c)));
            t += block as u64;
        }
        // Stop: the sounding note ends.
        seq.reset(&mut |c| out.push((t, c)));
        out.into_iter()
            .map(|(t0, c)| match c {
                NoteCmd::On { at, .. } | NoteCmd::Off { at, .. } => (t0 + at as u64, c),
            })
            .collect()
    }

    #[test]
    fn onsets_on_the_grid_for_any_block_size() {
        for block in [64, 512, 1000] {
            for tempo in [120.0, 97.0] {
                let ev = run(block, 2, tempo);
                let ons: Vec<u64> = ev
                    .iter()
                    .filter(|(_, c)| matches!(c, NoteCmd::On { .. }))
                    .map(|(t, _)| *t)
                    .filter(|&t| (t as f64) < 2.0 * 4.0 * 60.0 / tempo * 48_000.0 - 0.5)
                    .collect();
                assert_eq!(ons.len(), 8, "block {block} tempo {tempo}");
                let spb = 60.0 / tempo * 48_000.0;
                for (k, &t) in ons.iter().enumerate() {
                    let tick = [0, 2, 13, 21][k % 4];
                    let want = ((k / 4) as f64 * 4.0 + tick_offset(tick)) * spb;
                    assert!((t as f64 - want).abs() <= 1.0, "{t} vs {want}");
                }
            }
        }
    }

    #[test]
    fn monophonic_and_balanced() {
        let ev = run(333, 3, 120.0);
        let mut sounding: Option<u8> = None;
        for (_, c) in &ev {
            match *c {
                NoteCmd::On { pitch, .. } => {
                    assert!(sounding.is_none());
                    sounding = Some(pitch);
                }
                NoteCmd::Off { pitch, .. } => {
                    assert_eq!(sounding, Some(pitch));
                    sounding = None;
                }
            }
        }
        assert!(sounding.is_none());
    }

    #[test]
    fn stop_and_jump_end_notes() {
        let mut seq = Sequencer::new();
        let mut src = Fixed(melody(), Vec::new());
        let mut out = Vec::new();
        let mk = |pos: f64, playing| BlockTransport {
            playing,
            pos_beats: Some(pos),
            tempo: Some(120.0),
            sample_rate: 48_000.0,
            samples: 512,
        };
        seq.process_block(mk(0.0, true), &mut src, &mut |c| out.push(c));
        assert_eq!(out, vec![NoteCmd::On { at: 0, pitch: 60 }]);
        out.clear();
        // Jump back into the middle of bar 3.
        seq.process_block(mk(13.0, true), &mut src, &mut |c| out.push(c));
        assert_eq!(out[0], NoteCmd::Off { at: 0, pitch: 60 });
        assert_eq!(seq.bar(), 3);
        assert_eq!(src.1, vec![(0, true), (3, true)]);
        // Stop.
        out.clear();
        seq.process_block(mk(13.0 + 512.0 / 24_000.0, true), &mut src, &mut |c| {
            out.push(c)
        });
        let sounding = seq.sounding();
        out.clear();
        seq.process_block(mk(13.1, false), &mut src, &mut |c| out.push(c));
        if let Some(p) = sounding {
            assert_eq!(out, vec![NoteCmd::Off { at: 0, pitch: p }]);
        }
        assert!(seq.sounding().is_none());
    }
}
