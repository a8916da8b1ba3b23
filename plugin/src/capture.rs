//! Transform mode's input side: MIDI notes played into the plugin, snapped to the 24-tick grid
//! and collected into one measure per bar (top note of a chord, as the importers do).

use arvae_core::music::token::{tick_offset, Measure, HOLD, REST, TICKS_PER_MEASURE};

use crate::sequencer::BEATS_PER_BAR;

/// The grid tick nearest to `offset` beats into a bar; 24 means the next bar's downbeat.
pub fn nearest_tick(offset: f64) -> usize {
    let mut best = (f64::INFINITY, 0);
    for t in 0..=TICKS_PER_MEASURE {
        let at = if t == TICKS_PER_MEASURE {
            BEATS_PER_BAR
        } else {
            tick_offset(t)
        };
        let d = (offset - at).abs();
        if d < best.0 {
            best = (d, t);
        }
    }
    best.1
}

/// Collects the notes of the bar being played in; never allocates.
#[derive(Clone, Debug)]
pub struct Capture {
    bar: i64,
    tokens: [u8; TICKS_PER_MEASURE],
    any: bool,
    /// The held input note: (pitch, tick).
    held: Option<(u8, usize)>,
    done: Option<Measure>,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            bar: i64::MIN,
            tokens: Self::empty(),
            any: false,
            held: None,
            done: None,
        }
    }
}

impl Capture {
    fn empty() -> [u8; TICKS_PER_MEASURE] {
        let mut t = [HOLD; TICKS_PER_MEASURE];
        t[0] = REST;
        t
    }

    /// Finishes the bar being collected if `bar` is later; starts collecting `bar`.
    fn goto(&mut self, bar: i64) {
        if bar == self.bar {
            return;
        }
        if self.any && bar > self.bar {
            self.done = Some(Measure(self.tokens));
        }
        self.bar = bar;
        self.tokens = Self::empty();
        self.any = false;
        self.held = None;
    }

    /// Snaps a position in beats to (bar, tick).
    fn locate(pos_beats: f64) -> (i64, usize) {
        let bar = (pos_beats / BEATS_PER_BAR).floor() as i64;
        let t = nearest_tick(pos_beats - bar as f64 * BEATS_PER_BAR);
        if t == TICKS_PER_MEASURE {
            (bar + 1, 0)
        } else {
            (bar, t)
        }
    }

    /// A note-on at `pos_beats`.
    pub fn note_on(&mut self, pos_beats: f64, pitch: u8) {
        let (bar, t) = Self::locate(pos_beats);
        self.goto(bar);
        let cur = self.tokens[t];
        self.tokens[t] = if cur < 128 { cur.max(pitch) } else { pitch };
        self.any = true;
        self.held = Some((self.tokens[t], t));
    }

    /// A note-off at `pos_beats`: a rest from there if that note is the one sounding.
    pub fn note_off(&mut self, pos_beats: f64, pitch: u8) {
        let (bar, t) = Self::locate(pos_beats);
        if bar != self.bar {
            return;
        }
        if let Some((p, on)) = self.held {
            if p == pitch && t > on && self.tokens[t] == HOLD {
                self.tokens[t] = REST;
                self.held = None;
            }
        }
    }

    /// Bar `bar` starts playing: a finished earlier bar becomes available.
    pub fn bar_started(&mut self, bar: i64) {
        if bar > self.bar {
            self.goto(bar);
        }
    }

    /// The last finished bar with notes, once.
    pub fn take_finished(&mut self) -> Option<Measure> {
        self.done.take()
    }

    /// Playback re-synced into `bar` (start, loop, jump): a partial capture of another bar is
    /// dropped; notes already collected for `bar` itself stay.
    pub fn resync(&mut self, bar: i64) {
        if bar != self.bar {
            self.clear();
        }
    }

    /// Forgets everything (transport jump, mode switch).
    pub fn clear(&mut self) {
        *self = Capture::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snaps_to_the_grid_and_finishes_bars() {
        assert_eq!(nearest_tick(0.0), 0);
        assert_eq!(nearest_tick(0.3), 2); // 1/3
        assert_eq!(nearest_tick(0.26), 1); // 1/4
        assert_eq!(nearest_tick(3.98), 24);
        let mut c = Capture::default();
        c.note_on(4.0, 60);
        c.note_off(4.49, 60);
        c.note_on(5.0, 64);
        c.note_on(5.0, 67); // chord: top note
        c.note_on(7.76, 62); // 3.76 into the bar: tick 23 (3.75)
        assert!(c.take_finished().is_none());
        c.bar_started(2);
        let m = c.take_finished().unwrap();
        let mut want = [HOLD; 24];
        want[0] = 60;
        want[3] = REST;
        want[6] = 67;
        want[23] = 62;
        assert_eq!(m, Measure(want));
        c.bar_started(3);
        assert!(c.take_finished().is_none());
    }
}
