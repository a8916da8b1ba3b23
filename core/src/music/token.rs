//! The fixed 132-token vocabulary and the non-uniform 24-tick measure grid (docs/architecture.md §2).

use std::fmt;

/// A token id: 0..=127 note onset at that MIDI pitch, then [`REST`], [`HOLD`], [`START`], [`END`].
pub type Token = u8;

/// Rest onset.
pub const REST: Token = 128;
/// Continuation of the previous event (note or rest).
pub const HOLD: Token = 129;
/// Padding in front of a pickup bar.
pub const START: Token = 130;
/// Padding after the end of a piece.
pub const END: Token = 131;
/// Number of tokens in the vocabulary.
pub const VOCAB_SIZE: usize = 132;

/// Ticks in one beat (a quarter note).
pub const TICKS_PER_BEAT: usize = 6;
/// Beats in one measure.
pub const BEATS_PER_MEASURE: usize = 4;
/// Ticks in one measure.
pub const TICKS_PER_MEASURE: usize = TICKS_PER_BEAT * BEATS_PER_MEASURE;

/// Offsets of the six ticks inside a beat, in beats: sixteenths and eighth-note triplets.
pub const TICK_OFFSETS: [f64; TICKS_PER_BEAT] = [0.0, 0.25, 1.0 / 3.0, 0.5, 2.0 / 3.0, 0.75];

/// Offsets of the six ticks inside a beat in twelfths of a beat (exact).
pub const TICK_TWELFTHS: [u32; TICKS_PER_BEAT] = [0, 3, 4, 6, 8, 9];

/// Tolerance (in beats) for an onset to count as on the grid.
pub const GRID_TOLERANCE: f64 = 1e-5;

/// Offset of tick `t` (0..24) from the start of the measure, in beats.
pub fn tick_offset(t: usize) -> f64 {
    (t / TICKS_PER_BEAT) as f64 + TICK_OFFSETS[t % TICKS_PER_BEAT]
}

/// Offset of tick `t` (0..=24) from the start of the measure in twelfths of a beat (24 = next bar).
pub fn tick_twelfths(t: usize) -> u32 {
    if t >= TICKS_PER_MEASURE {
        return 48;
    }
    (t / TICKS_PER_BEAT) as u32 * 12 + TICK_TWELFTHS[t % TICKS_PER_BEAT]
}

/// The tick (0..24) at `offset` beats from the start of a measure, if it lies on the grid.
pub fn tick_at(offset: f64) -> Option<usize> {
    if !(-GRID_TOLERANCE..4.0 - GRID_TOLERANCE).contains(&offset) {
        return None;
    }
    let beat = (offset + GRID_TOLERANCE).floor();
    let frac = offset - beat;
    TICK_OFFSETS
        .iter()
        .position(|&o| (frac - o).abs() <= GRID_TOLERANCE)
        .map(|i| beat as usize * TICKS_PER_BEAT + i)
}

/// Whether `token` is a note onset (0..=127).
pub fn is_note(token: Token) -> bool {
    token < 128
}

/// Human-readable name of a token: `C4`, `F#5`, `rest`, `__`, `START`, `END`.
pub fn token_name(token: Token) -> String {
    const NAMES: [&str; 12] = [
        "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
    ];
    match token {
        0..=127 => format!("{}{}", NAMES[token as usize % 12], token as i32 / 12 - 1),
        REST => "rest".into(),
        HOLD => "__".into(),
        START => "START".into(),
        END => "END".into(),
        _ => format!("?{token}"),
    }
}

/// One 4-beat measure: 24 tokens on the non-uniform tick grid.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Measure(pub [Token; TICKS_PER_MEASURE]);

impl Measure {
    /// A measure of one whole-bar rest.
    pub fn rest() -> Self {
        let mut t = [HOLD; TICKS_PER_MEASURE];
        t[0] = REST;
        Measure(t)
    }

    /// Tokens of the measure.
    pub fn tokens(&self) -> &[Token; TICKS_PER_MEASURE] {
        &self.0
    }

    /// Builds a measure from a slice of exactly 24 valid tokens.
    pub fn from_slice(tokens: &[Token]) -> Option<Self> {
        if tokens.len() != TICKS_PER_MEASURE || tokens.iter().any(|&t| t as usize >= VOCAB_SIZE) {
            return None;
        }
        let mut m = [0; TICKS_PER_MEASURE];
        m.copy_from_slice(tokens);
        Some(Measure(m))
    }

    /// Note onsets as (tick, MIDI pitch), in order.
    pub fn onsets(&self) -> impl Iterator<Item = (usize, u8)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, &t)| is_note(t))
            .map(|(i, &t)| (i, t))
    }

    /// Events of the measure as (start tick, end tick exclusive, token) where token is a note,
    /// `REST`, `START` or `END`; a leading `HOLD` continues the previous measure's event and is
    /// returned with token `HOLD`.
    pub fn events(&self) -> Vec<(usize, usize, Token)> {
        let mut out: Vec<(usize, usize, Token)> = Vec::new();
        for (i, &t) in self.0.iter().enumerate() {
            if t == HOLD && !out.is_empty() {
                out.last_mut().unwrap().1 = i + 1;
            } else if t == HOLD {
                out.push((i, i + 1, HOLD));
            } else if matches!(t, START | END)
                && out
                    .last()
                    .is_some_and(|&(_, end, prev)| prev == t && end == i)
            {
                out.last_mut().unwrap().1 = i + 1;
            } else {
                out.push((i, i + 1, t));
            }
        }
        out
    }

    /// Silences in the measure: each `REST` or pad (`START`, `END`: silence before or after a
    /// tune) starts one unless the event before it in the measure is silent too (a rest, then
    /// holds, then a rest is one silence). An empty measure has one.
    pub fn silences(&self) -> usize {
        self.silence().0
    }

    /// Ticks without sound: each `REST` or pad, and the holds after one.
    pub fn silent_ticks(&self) -> usize {
        self.silence().1
    }

    /// [`silences`](Self::silences) and [`silent_ticks`](Self::silent_ticks) in one pass,
    /// allocation-free (target matching counts both for every candidate).
    pub fn silence(&self) -> (usize, usize) {
        let (mut silent, mut runs, mut ticks) = (false, 0, 0);
        for &t in &self.0 {
            if matches!(t, REST | START | END) {
                runs += usize::from(!silent);
                silent = true;
            } else if is_note(t) {
                silent = false;
            }
            ticks += usize::from(silent);
        }
        (runs, ticks)
    }

    /// Transposed copy, or `None` if a note would leave 0..=127.
    pub fn transposed(&self, semitones: i32) -> Option<Self> {
        let mut m = *self;
        for t in m.0.iter_mut() {
            if is_note(*t) {
                let p = *t as i32 + semitones;
                if !(0..=127).contains(&p) {
                    return None;
                }
                *t = p as u8;
            }
        }
        Some(m)
    }
}

impl fmt::Debug for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Measure[")?;
        for (i, &t) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "{}", if i % TICKS_PER_BEAT == 0 { " | " } else { " " })?;
            }
            write!(f, "{}", token_name(t))?;
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_non_uniform() {
        assert_eq!(tick_offset(0), 0.0);
        assert_eq!(tick_offset(1), 0.25);
        assert!((tick_offset(2) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(tick_offset(6), 1.0);
        assert_eq!(tick_offset(23), 3.75);
        assert_eq!(tick_twelfths(5), 9);
        assert_eq!(tick_twelfths(24), 48);
    }

    #[test]
    fn tick_at_finds_grid_points_only() {
        for t in 0..24 {
            assert_eq!(tick_at(tick_offset(t)), Some(t));
            assert_eq!(tick_at(tick_offset(t) + 3e-6), Some(t));
        }
        assert_eq!(tick_at(0.125), None);
        assert_eq!(tick_at(1.2), None);
        assert_eq!(tick_at(4.0), None);
        assert_eq!(tick_at(-0.5), None);
    }

    #[test]
    fn names_and_events() {
        assert_eq!(token_name(60), "C4");
        assert_eq!(token_name(61), "C#4");
        assert_eq!(token_name(REST), "rest");
        let mut t = [HOLD; 24];
        t[0] = START;
        t[1] = START;
        t[2] = 60;
        t[12] = REST;
        let m = Measure(t);
        assert_eq!(m.events(), vec![(0, 2, START), (2, 12, 60), (12, 24, REST)]);
        assert_eq!(m.onsets().collect::<Vec<_>>(), vec![(2, 60)]);
        assert!(Measure::from_slice(&[1; 23]).is_none());
        assert!(Measure::from_slice(&[200; 24]).is_none());
        assert_eq!(m.transposed(2).unwrap().0[2], 62);
        assert!(m.transposed(100).is_none());
    }

    #[test]
    fn silences_count_rests_that_follow_sound() {
        assert_eq!(Measure::rest().silences(), 1);
        let mut t = [HOLD; 24];
        t[0] = 60;
        assert_eq!(Measure(t).silences(), 0);
        // C4, rest, D4, rest, rest (one silence), E4: two silences.
        t[3] = REST;
        t[6] = 62;
        t[9] = REST;
        t[12] = REST;
        t[18] = 64;
        assert_eq!(Measure(t).silences(), 2);
        // A leading hold continues the bar before: the rest after it starts a silence.
        t[0] = HOLD;
        assert_eq!(Measure(t).silences(), 2);
        // Silent ticks: the rest at 3 to 5, and 9 to 17 (rest, holds, rest, holds).
        assert_eq!(Measure(t).silent_ticks(), 3 + 9);
        t[0] = REST;
        t[3] = HOLD;
        assert_eq!(Measure(t).silences(), 2);
        assert_eq!(Measure(t).silent_ticks(), 6 + 9);
        // A pickup bar: the pads before the tune are one silence, a rest after them the same.
        let mut p = [HOLD; 24];
        p[0] = START;
        p[1] = START;
        p[2] = REST;
        p[12] = 67;
        p[18] = END;
        assert_eq!(Measure(p).silences(), 2);
        assert_eq!(Measure(p).silent_ticks(), 12 + 6);
        assert_eq!(Measure::rest().silent_ticks(), 24);
    }
}
