//! What happens to the model's pitches on the way out: transpose, then scale lock.

use arvae_core::music::token::Measure;
use nice_plug::prelude::Enum;

/// Scale the output is locked to (`Off`: chromatic, no change).
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleLock {
    /// No lock.
    #[name = "Off"]
    Off,
    /// Ionian.
    #[name = "Major"]
    Major,
    /// Aeolian (natural minor).
    #[name = "Minor"]
    Minor,
    /// Dorian.
    #[name = "Dorian"]
    Dorian,
    /// Phrygian.
    #[name = "Phrygian"]
    Phrygian,
    /// Lydian.
    #[name = "Lydian"]
    Lydian,
    /// Mixolydian.
    #[name = "Mixolydian"]
    Mixolydian,
    /// Locrian.
    #[name = "Locrian"]
    Locrian,
    /// Harmonic minor.
    #[name = "Harmonic minor"]
    HarmonicMinor,
    /// Major pentatonic.
    #[name = "Major pentatonic"]
    MajorPentatonic,
    /// Minor pentatonic.
    #[name = "Minor pentatonic"]
    MinorPentatonic,
    /// Blues (minor pentatonic with the flat fifth).
    #[name = "Blues"]
    Blues,
}

impl ScaleLock {
    /// Pitch classes of the scale relative to its root, as a 12-bit mask.
    pub fn mask(self) -> u16 {
        let steps: &[u8] = match self {
            ScaleLock::Off => &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            ScaleLock::Major => &[0, 2, 4, 5, 7, 9, 11],
            ScaleLock::Minor => &[0, 2, 3, 5, 7, 8, 10],
            ScaleLock::Dorian => &[0, 2, 3, 5, 7, 9, 10],
            ScaleLock::Phrygian => &[0, 1, 3, 5, 7, 8, 10],
            ScaleLock::Lydian => &[0, 2, 4, 6, 7, 9, 11],
            ScaleLock::Mixolydian => &[0, 2, 4, 5, 7, 9, 10],
            ScaleLock::Locrian => &[0, 1, 3, 5, 6, 8, 10],
            ScaleLock::HarmonicMinor => &[0, 2, 3, 5, 7, 8, 11],
            ScaleLock::MajorPentatonic => &[0, 2, 4, 7, 9],
            ScaleLock::MinorPentatonic => &[0, 3, 5, 7, 10],
            ScaleLock::Blues => &[0, 3, 5, 6, 7, 10],
        };
        steps.iter().fold(0, |m, s| m | 1 << s)
    }
}

/// Root note of the scale lock.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    /// C
    #[name = "C"]
    C,
    /// C sharp
    #[name = "C#"]
    Cs,
    /// D
    #[name = "D"]
    D,
    /// E flat
    #[name = "Eb"]
    Eb,
    /// E
    #[name = "E"]
    E,
    /// F
    #[name = "F"]
    F,
    /// F sharp
    #[name = "F#"]
    Fs,
    /// G
    #[name = "G"]
    G,
    /// A flat
    #[name = "Ab"]
    Ab,
    /// A
    #[name = "A"]
    A,
    /// B flat
    #[name = "Bb"]
    Bb,
    /// B
    #[name = "B"]
    B,
}

/// Pitch processing settings read from the knobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PitchMap {
    /// Semitones added to every note.
    pub transpose: i32,
    /// Scale lock.
    pub scale: ScaleLock,
    /// Root pitch class 0..12.
    pub root: u8,
}

impl Default for PitchMap {
    fn default() -> Self {
        PitchMap {
            transpose: 0,
            scale: ScaleLock::Off,
            root: 0,
        }
    }
}

impl PitchMap {
    /// One pitch: transposed, moved to the nearest scale tone (down on ties), kept in 0..=127.
    pub fn apply(&self, pitch: u8) -> u8 {
        let mut p = pitch as i32 + self.transpose;
        let mask = self.scale.mask();
        let in_scale = |p: i32| mask & (1 << ((p - self.root as i32).rem_euclid(12))) != 0;
        if !in_scale(p) {
            p = (1..=6)
                .flat_map(|d| [p - d, p + d])
                .find(|&q| in_scale(q))
                .unwrap_or(p);
        }
        while p < 0 {
            p += 12;
        }
        while p > 127 {
            p -= 12;
        }
        p as u8
    }

    /// A measure with every note mapped by [`apply`](Self::apply).
    pub fn measure(&self, m: &Measure) -> Measure {
        let mut out = *m;
        for t in out.0.iter_mut() {
            if *t < 128 {
                *t = self.apply(*t);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_transpose() {
        let c_major = PitchMap {
            transpose: 0,
            scale: ScaleLock::Major,
            root: 0,
        };
        assert_eq!(c_major.apply(60), 60);
        assert_eq!(c_major.apply(61), 60); // C# -> C (down on ties)
        assert_eq!(c_major.apply(66), 65); // F# -> F
        let d_dorian_up = PitchMap {
            transpose: 2,
            scale: ScaleLock::Dorian,
            root: 2,
        };
        assert_eq!(d_dorian_up.apply(60), 62);
        assert_eq!(d_dorian_up.apply(64), 65); // F# not in D dorian -> F
        let off = PitchMap {
            transpose: 24,
            ..PitchMap::default()
        };
        assert_eq!(off.apply(120), 120); // 144 folds down by octaves
        for p in 0..128 {
            for s in 0..ScaleLock::variants().len() {
                let m = PitchMap {
                    transpose: -30,
                    scale: ScaleLock::from_index(s),
                    root: 5,
                };
                assert!(m.apply(p) <= 127);
            }
        }
    }
}
