//! The four musical attributes of a measure, exactly as the reference computes them (docs/architecture.md §3).

use super::token::{is_note, Measure, TICKS_PER_MEASURE};
use serde::{Deserialize, Serialize};

/// Weights of each tick in rhythmic complexity (sum 27.79).
pub const RHYTHM_WEIGHTS: [f32; TICKS_PER_MEASURE] = [
    0.20, 1.0, 2.0, 0.5, 2.0, 1.0, 0.67, 1.0, 2.0, 0.5, 2.0, 1.0, 0.25, 1.0, 2.0, 0.5, 2.0, 1.0,
    0.67, 1.0, 2.0, 0.5, 2.0, 1.0,
];

/// Divisor of pitch range and contour, in semitones (a constant of the reference).
pub const PITCH_SCALE: f32 = 26.0;

/// A musical attribute; its index is the latent dimension that regularizes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    /// Weighted share of onsets on off-beat ticks.
    RhythmicComplexity,
    /// (highest - lowest onset pitch) / 26.
    PitchRange,
    /// Onsets / 24.
    NoteDensity,
    /// (last - first onset pitch) / 26.
    Contour,
}

impl Attribute {
    /// All four, in latent-dimension order.
    pub const ALL: [Attribute; 4] = [
        Attribute::RhythmicComplexity,
        Attribute::PitchRange,
        Attribute::NoteDensity,
        Attribute::Contour,
    ];

    /// The snake_case name used in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Attribute::RhythmicComplexity => "rhythmic_complexity",
            Attribute::PitchRange => "pitch_range",
            Attribute::NoteDensity => "note_density",
            Attribute::Contour => "contour",
        }
    }

    /// Parses a name as written by [`Attribute::name`] (dashes accepted).
    pub fn from_name(s: &str) -> Option<Self> {
        let s = s.replace('-', "_");
        Attribute::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Index of the attribute (and of its regularized latent dimension).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The attribute of `measure`.
    pub fn of(self, measure: &Measure) -> f32 {
        match self {
            Attribute::RhythmicComplexity => rhythmic_complexity(measure),
            Attribute::PitchRange => pitch_range(measure),
            Attribute::NoteDensity => note_density(measure),
            Attribute::Contour => contour(measure),
        }
    }

    /// The range the attribute can take.
    pub fn bounds(self) -> (f32, f32) {
        match self {
            Attribute::RhythmicComplexity | Attribute::NoteDensity => (0.0, 1.0),
            Attribute::PitchRange => (0.0, 127.0 / PITCH_SCALE),
            Attribute::Contour => (-127.0 / PITCH_SCALE, 127.0 / PITCH_SCALE),
        }
    }
}

/// The four attributes of one measure, in [`Attribute::ALL`] order.
pub type AttributeValues = [f32; 4];

/// All four attributes of `measure`.
pub fn attributes(measure: &Measure) -> AttributeValues {
    Attribute::ALL.map(|a| a.of(measure))
}

/// Sum of the tick weights of onsets divided by the sum of all weights.
pub fn rhythmic_complexity(measure: &Measure) -> f32 {
    let total: f32 = RHYTHM_WEIGHTS.iter().sum();
    let onset: f32 = measure
        .0
        .iter()
        .zip(RHYTHM_WEIGHTS)
        .filter(|(&t, _)| is_note(t))
        .fold(0.0, |acc, (_, w)| acc + w);
    onset / total
}

/// The rhythmic complexity a bar of `onsets` onsets can have (lowest, highest): its onsets on
/// the lightest or on the heaviest ticks. A fractional count interpolates between its two
/// neighbours; counts are clamped to 0..=24.
pub fn rhythm_bounds(onsets: f32) -> (f32, f32) {
    let mut w = RHYTHM_WEIGHTS;
    w.sort_by(f32::total_cmp);
    let total: f32 = w.iter().sum();
    let n = if onsets.is_finite() {
        onsets.clamp(0.0, TICKS_PER_MEASURE as f32)
    } else {
        0.0
    };
    let (k, frac) = (n.floor() as usize, n.fract());
    let bound = |sorted: &mut dyn Iterator<Item = f32>| {
        let mut it = sorted.take(k + 1);
        let whole: f32 = it.by_ref().take(k).sum();
        (whole + frac * it.next().unwrap_or(0.0)) / total
    };
    (
        bound(&mut w.iter().copied()),
        bound(&mut w.iter().rev().copied()),
    )
}

/// (max - min onset pitch) / 26; 0 with fewer than two onsets.
pub fn pitch_range(measure: &Measure) -> f32 {
    let mut it = measure.onsets().map(|(_, p)| p);
    let Some(first) = it.next() else { return 0.0 };
    let (lo, hi) = it.fold((first, first), |(lo, hi), p| (lo.min(p), hi.max(p)));
    (hi - lo) as f32 / PITCH_SCALE
}

/// Number of onsets / 24.
pub fn note_density(measure: &Measure) -> f32 {
    measure.onsets().count() as f32 / TICKS_PER_MEASURE as f32
}

/// (last - first onset pitch) / 26 (the telescoped sum of successive differences); 0 with fewer
/// than two onsets.
pub fn contour(measure: &Measure) -> f32 {
    let mut it = measure.onsets().map(|(_, p)| p as f32);
    match (it.next(), it.last()) {
        (Some(first), Some(last)) => (last - first) / PITCH_SCALE,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::token::{END, HOLD, REST, START};
    use proptest::prelude::*;

    #[test]
    fn rhythm_bounds_by_hand() {
        // Total weight 27.79. One onset: the downbeat (0.20) or an off-beat sixteenth (2.0).
        let (lo, hi) = rhythm_bounds(1.0);
        assert!(close(lo, 0.20 / 27.79) && close(hi, 2.0 / 27.79));
        // Three: 0.20 + 0.25 + 0.5, or three of the 2.0 ticks.
        let (lo, hi) = rhythm_bounds(3.0);
        assert!(close(lo, 0.95 / 27.79) && close(hi, 6.0 / 27.79));
        // Halfway between one and two onsets.
        assert!(close(rhythm_bounds(1.5).0, 0.325 / 27.79));
        assert_eq!(rhythm_bounds(0.0), (0.0, 0.0));
        assert!(close(rhythm_bounds(24.0).0, 1.0) && close(rhythm_bounds(99.0).1, 1.0));
        assert_eq!(rhythm_bounds(f32::NAN), (0.0, 0.0));
        // Eight eighth notes sit at the lowest eight weights but one (0.67 twice, not 1.0).
        let eighths = Measure(std::array::from_fn(|i| if i % 3 == 0 { 60 } else { HOLD }));
        let (lo, hi) = rhythm_bounds(8.0);
        assert!(lo <= rhythmic_complexity(&eighths) && rhythmic_complexity(&eighths) <= hi);
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn weights_sum_as_reference() {
        assert!((RHYTHM_WEIGHTS.iter().sum::<f32>() - 27.79).abs() < 1e-4);
    }

    #[test]
    fn empty_bar_is_all_zero() {
        assert_eq!(attributes(&Measure::rest()), [0.0; 4]);
        assert_eq!(attributes(&Measure([START; 24])), [0.0; 4]);
        assert_eq!(attributes(&Measure([END; 24])), [0.0; 4]);
    }

    #[test]
    fn all_holds_is_zero() {
        // A note tied over the whole bar from the previous one: no onsets.
        assert_eq!(attributes(&Measure([HOLD; 24])), [0.0; 4]);
    }

    #[test]
    fn one_note() {
        let mut t = [HOLD; 24];
        t[0] = 67;
        let a = attributes(&Measure(t));
        assert!(close(a[0], 0.20 / 27.79));
        assert_eq!(a[1], 0.0);
        assert!(close(a[2], 1.0 / 24.0));
        assert_eq!(a[3], 0.0);
    }

    #[test]
    fn hand_computed_bar() {
        // Beat 1: C4 on tick 0, E4 on the triplet tick 2; beat 2: rest; beat 3: G4 on the 16th
        // after the beat (tick 13); beat 4: D4 on the eighth (tick 21).
        let mut t = [HOLD; 24];
        t[0] = 60;
        t[2] = 64;
        t[6] = REST;
        t[13] = 67;
        t[21] = 62;
        let m = Measure(t);
        let a = attributes(&m);
        assert!(close(a[0], (0.20 + 2.0 + 1.0 + 0.5) / 27.79));
        assert!(close(a[1], 7.0 / 26.0));
        assert!(close(a[2], 4.0 / 24.0));
        assert!(close(a[3], 2.0 / 26.0));
    }

    #[test]
    fn padding_is_not_an_onset() {
        // A pickup bar: START for three beats, then two eighths.
        let mut t = [START; 24];
        t[18] = 72;
        t[19] = HOLD;
        t[20] = HOLD;
        t[21] = 71;
        t[22] = HOLD;
        t[23] = HOLD;
        let a = attributes(&Measure(t));
        assert!(close(a[0], (0.67 + 0.5) / 27.79));
        assert!(close(a[1], 1.0 / 26.0));
        assert!(close(a[2], 2.0 / 24.0));
        assert!(close(a[3], -1.0 / 26.0));
    }

    #[test]
    fn names_round_trip() {
        for a in Attribute::ALL {
            assert_eq!(Attribute::from_name(a.name()), Some(a));
        }
        assert_eq!(
            Attribute::from_name("note-density"),
            Some(Attribute::NoteDensity)
        );
        assert_eq!(Attribute::from_name("loudness"), None);
    }

    proptest! {
        #[test]
        fn attributes_stay_in_range(tokens in proptest::collection::vec(0u8..132, 24)) {
            let m = Measure::from_slice(&tokens).unwrap();
            for a in Attribute::ALL {
                let v = a.of(&m);
                let (lo, hi) = a.bounds();
                prop_assert!(v.is_finite() && v >= lo - 1e-6 && v <= hi + 1e-6, "{a:?} = {v}");
            }
            let n = m.onsets().count() as f32;
            prop_assert!((note_density(&m) * 24.0 - n).abs() < 1e-4);
        }
    }
}
