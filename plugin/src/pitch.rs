//! The key, scale and phrase-length lists of the plugin's parameters, and what they mean to
//! the composer (`arvae_core::compose`).

use arvae_core::compose::key::Scale;
use nice_plug::prelude::Enum;

/// The key's scale (`Any`: no key, bars keep the model's pitches), [`Scale::ALL`] order.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyScale {
    /// No key.
    #[name = "Any"]
    Any,
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

/// Root of the key.
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

impl KeyScale {
    /// The composer's scale.
    pub fn to_scale(self) -> Scale {
        Scale::ALL[self as usize]
    }
}

impl Root {
    /// Pitch class 0..12.
    pub fn pitch_class(self) -> u8 {
        self as u8
    }
}

/// How many bars a phrase has before it comes back.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhraseLength {
    /// Every bar is its own phrase.
    #[name = "1 bar"]
    One,
    /// Two bars.
    #[name = "2 bars"]
    Two,
    /// Four bars.
    #[name = "4 bars"]
    Four,
    /// Eight bars.
    #[name = "8 bars"]
    Eight,
}

impl PhraseLength {
    /// Bars.
    pub fn bars(self) -> u32 {
        1 << self as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_map_to_the_composer() {
        assert_eq!(KeyScale::variants().len(), Scale::ALL.len());
        for (i, s) in Scale::ALL.iter().enumerate() {
            assert_eq!(KeyScale::from_index(i).to_scale(), *s);
            assert_eq!(
                KeyScale::variants()[i]
                    .to_ascii_lowercase()
                    .replace(' ', "-"),
                if *s == Scale::Any {
                    "any".to_string()
                } else {
                    s.name().to_string()
                }
            );
        }
        for (i, n) in arvae_core::compose::key::ROOT_NAMES.iter().enumerate() {
            assert_eq!(Root::from_index(i).pitch_class(), i as u8);
            assert_eq!(Root::variants()[i], *n);
        }
        assert_eq!(PhraseLength::from_index(2).bars(), 4);
        assert_eq!(PhraseLength::Eight.bars(), 8);
    }
}
