//! Keys and scales: moving a whole bar into a key (key fitting), then what happens to its
//! pitches on the way out (transpose, optional snapping to the scale).

use crate::music::token::Measure;

/// A scale (pitch-class set relative to its root); `Any` means no key: bars keep the pitches
/// the model chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scale {
    /// No key (chromatic): no key fitting, no snapping.
    Any,
    /// Ionian.
    Major,
    /// Aeolian (natural minor).
    Minor,
    /// Dorian.
    Dorian,
    /// Phrygian.
    Phrygian,
    /// Lydian.
    Lydian,
    /// Mixolydian.
    Mixolydian,
    /// Locrian.
    Locrian,
    /// Harmonic minor.
    HarmonicMinor,
    /// Major pentatonic.
    MajorPentatonic,
    /// Minor pentatonic.
    MinorPentatonic,
    /// Blues (minor pentatonic with the flat fifth).
    Blues,
}

impl Scale {
    /// Every scale, in the order the plugin's list shows them.
    pub const ALL: [Scale; 12] = [
        Scale::Any,
        Scale::Major,
        Scale::Minor,
        Scale::Dorian,
        Scale::Phrygian,
        Scale::Lydian,
        Scale::Mixolydian,
        Scale::Locrian,
        Scale::HarmonicMinor,
        Scale::MajorPentatonic,
        Scale::MinorPentatonic,
        Scale::Blues,
    ];

    /// Pitch classes of the scale relative to its root, as a 12-bit mask.
    pub fn mask(self) -> u16 {
        let steps: &[u8] = match self {
            Scale::Any => &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            Scale::Major => &[0, 2, 4, 5, 7, 9, 11],
            Scale::Minor => &[0, 2, 3, 5, 7, 8, 10],
            Scale::Dorian => &[0, 2, 3, 5, 7, 9, 10],
            Scale::Phrygian => &[0, 1, 3, 5, 7, 8, 10],
            Scale::Lydian => &[0, 2, 4, 6, 7, 9, 11],
            Scale::Mixolydian => &[0, 2, 4, 5, 7, 9, 10],
            Scale::Locrian => &[0, 1, 3, 5, 6, 8, 10],
            Scale::HarmonicMinor => &[0, 2, 3, 5, 7, 8, 11],
            Scale::MajorPentatonic => &[0, 2, 4, 7, 9],
            Scale::MinorPentatonic => &[0, 3, 5, 7, 10],
            Scale::Blues => &[0, 3, 5, 6, 7, 10],
        };
        steps.iter().fold(0, |m, s| m | 1 << s)
    }

    /// Name on the command line (`major`, `harmonic-minor`, `any`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Scale::Any => "any",
            Scale::Major => "major",
            Scale::Minor => "minor",
            Scale::Dorian => "dorian",
            Scale::Phrygian => "phrygian",
            Scale::Lydian => "lydian",
            Scale::Mixolydian => "mixolydian",
            Scale::Locrian => "locrian",
            Scale::HarmonicMinor => "harmonic-minor",
            Scale::MajorPentatonic => "major-pentatonic",
            Scale::MinorPentatonic => "minor-pentatonic",
            Scale::Blues => "blues",
        }
    }

    /// The scale called `s` ([`name`](Self::name), case-insensitive; `off`/`none` = `Any`).
    pub fn from_name(s: &str) -> Option<Scale> {
        let s = s.trim().to_ascii_lowercase().replace([' ', '_'], "-");
        match s.as_str() {
            "off" | "none" | "chromatic" => Some(Scale::Any),
            "ionian" => Some(Scale::Major),
            "aeolian" | "natural-minor" => Some(Scale::Minor),
            _ => Scale::ALL.into_iter().find(|x| x.name() == s),
        }
    }
}

/// Pitch-class names, sharps for black keys but `Eb`, `Ab` and `Bb`.
pub const ROOT_NAMES: [&str; 12] = [
    "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
];

/// The pitch class of a note name (`C`, `c#`, `Db`, `F#`, `Bb`, ...).
pub fn root_from_name(s: &str) -> Option<u8> {
    let s = s.trim();
    let mut chars = s.chars();
    let letter = chars.next()?.to_ascii_uppercase();
    let base: i32 = match letter {
        'C' => 0,
        'D' => 2,
        'E' => 4,
        'F' => 5,
        'G' => 7,
        'A' => 9,
        'B' => 11,
        _ => return None,
    };
    let shift: i32 = match chars.as_str() {
        "" => 0,
        "#" | "s" | "sharp" => 1,
        "b" | "flat" => -1,
        _ => return None,
    };
    Some((base + shift).rem_euclid(12) as u8)
}

/// A key: root pitch class (0 = C) and scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    /// Root pitch class 0..12.
    pub root: u8,
    /// Scale.
    pub scale: Scale,
}

impl Default for Key {
    /// C major: a definite key, so a new user hears one key.
    fn default() -> Self {
        Key {
            root: 0,
            scale: Scale::Major,
        }
    }
}

impl Key {
    /// Whether MIDI pitch `p` is in the key.
    pub fn contains(&self, p: i32) -> bool {
        self.scale.mask() & (1 << (p - self.root as i32).rem_euclid(12)) != 0
    }

    /// The scale tone nearest `p` (down on ties); `p` itself when it is in the key.
    pub fn snap(&self, p: i32) -> i32 {
        if self.contains(p) {
            return p;
        }
        (1..=6)
            .flat_map(|d| [p - d, p + d])
            .find(|&q| self.contains(q))
            .unwrap_or(p)
    }

    /// "D minor", "any key".
    pub fn describe(&self) -> String {
        match self.scale {
            Scale::Any => "any key".into(),
            s => format!("{} {}", ROOT_NAMES[self.root as usize % 12], s.name()),
        }
    }
}

/// Where the bar before ends, for choosing among equally good shifts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Register {
    /// Mean onset pitch of the bar.
    pub mean: f32,
    /// Its last onset pitch.
    pub last: i32,
}

impl Register {
    /// The register of `m`'s onsets, `None` without any.
    pub fn of(m: &Measure) -> Option<Register> {
        let (mut n, mut sum, mut last) = (0, 0i32, 0);
        for &t in m.tokens().iter().filter(|&&t| t < 128) {
            n += 1;
            sum += t as i32;
            last = t as i32;
        }
        (n > 0).then(|| Register {
            mean: sum as f32 / n as f32,
            last,
        })
    }
}

/// Weight of the step from the previous bar's last note in [`fit_shift`]'s distance (the mean
/// register has weight 1).
const JOIN_WEIGHT: f32 = 0.5;

/// Largest transposition key fitting considers, in semitones either way.
pub const MAX_SHIFT: i32 = 24;

/// The transposition that moves `m` into `key`: among shifts that keep every onset inside
/// `range` (MIDI, inclusive), the one with the most onsets in the scale; among those, the one
/// nearest `before` (the previous bar: mean pitch, and the step from its last note to this
/// bar's first), or nearest `anchor` (a MIDI pitch) for the first bar of a phrase. 0 for
/// [`Scale::Any`], an empty bar, or when no shift fits the range.
pub fn fit_shift(
    m: &Measure,
    key: Key,
    range: (u8, u8),
    before: Option<Register>,
    anchor: f32,
) -> i32 {
    let Some(here) = Register::of(m) else {
        return 0;
    };
    if key.scale == Scale::Any {
        return 0;
    }
    let notes = || m.tokens().iter().filter(|&&t| t < 128).map(|&t| t as i32);
    let (lo, hi) = notes().fold((127, 0), |(lo, hi), p| (lo.min(p), hi.max(p)));
    let first = notes().next().unwrap_or(0);
    let mut best: Option<(usize, f32, i32)> = None;
    for s in -MAX_SHIFT..=MAX_SHIFT {
        if lo + s < range.0 as i32 || hi + s > range.1 as i32 {
            continue;
        }
        let fit = notes().filter(|&p| key.contains(p + s)).count();
        let mean = here.mean + s as f32;
        let distance = match before {
            Some(b) => (mean - b.mean).abs() + JOIN_WEIGHT * (first + s - b.last).abs() as f32,
            None => (mean - anchor).abs(),
        };
        // More onsets in the scale first, then the nearer register, then the smaller shift.
        let better = match best {
            None => true,
            Some((bf, bd, bs)) => {
                fit > bf || (fit == bf && (distance < bd || (distance == bd && s.abs() < bs.abs())))
            }
        };
        if better {
            best = Some((fit, distance, s));
        }
    }
    best.map_or(0, |b| b.2)
}

/// The interval (semitones, absolute) from `before`'s last note to `m`'s first once `m` is
/// moved into `key` ([`fit_shift`]); `None` for a first bar or an empty one.
pub fn join_step(m: &Measure, key: Key, range: (u8, u8), before: Option<Register>) -> Option<i32> {
    let b = before?;
    let first = m.tokens().iter().find(|&&t| t < 128)?;
    let shift = fit_shift(m, key, range, before, b.mean);
    Some((*first as i32 + shift - b.last).abs())
}

/// Onsets of `m` that no transposition brings into `scale` (the fewest outside over the 12
/// roots); 0 for [`Scale::Any`].
pub fn outside_any_key(m: &Measure, scale: Scale) -> usize {
    if scale == Scale::Any {
        return 0;
    }
    let mut classes = [0usize; 12];
    for &t in m.tokens().iter().filter(|&&t| t < 128) {
        classes[t as usize % 12] += 1;
    }
    let mask = scale.mask();
    (0..12)
        .map(|root| {
            (0..12)
                .filter(|&c| mask & (1 << ((c + 12 - root) % 12)) == 0)
                .map(|c| classes[c])
                .sum::<usize>()
        })
        .min()
        .unwrap_or(0)
}

/// `m` with every onset moved by `shift` semitones (kept inside 0..=127 by octaves).
pub fn transposed(m: &Measure, shift: i32) -> Measure {
    let mut out = *m;
    for t in out.0.iter_mut().filter(|t| **t < 128) {
        *t = fold_midi(*t as i32 + shift);
    }
    out
}

fn fold_midi(mut p: i32) -> u8 {
    while p < 0 {
        p += 12;
    }
    while p > 127 {
        p -= 12;
    }
    p as u8
}

/// What happens to a finished bar's pitches on the way out: transpose, then (optionally)
/// snapping what is still outside the key to its nearest scale tone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PitchMap {
    /// Semitones added to every note.
    pub transpose: i32,
    /// The key (its root moves with `transpose`).
    pub key: Key,
    /// Snap notes outside the key to the nearest scale tone (scale lock).
    pub snap: bool,
}

impl PitchMap {
    /// One pitch: transposed, snapped when asked (down on ties), kept in 0..=127.
    pub fn apply(&self, pitch: u8) -> u8 {
        let p = pitch as i32 + self.transpose;
        let key = Key {
            root: (self.key.root as i32 + self.transpose).rem_euclid(12) as u8,
            scale: self.key.scale,
        };
        fold_midi(if self.snap { key.snap(p) } else { p })
    }

    /// A measure with every note mapped by [`apply`](Self::apply).
    pub fn measure(&self, m: &Measure) -> Measure {
        let mut out = *m;
        for t in out.0.iter_mut().filter(|t| **t < 128) {
            *t = self.apply(*t);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::token::HOLD;

    fn bar(pitches: &[u8]) -> Measure {
        let mut t = [HOLD; 24];
        for (i, &p) in pitches.iter().enumerate() {
            t[i * 6] = p;
        }
        Measure(t)
    }

    #[test]
    fn snapping_and_transpose() {
        let c = PitchMap {
            snap: true,
            ..PitchMap::default()
        };
        assert_eq!(c.apply(60), 60);
        assert_eq!(c.apply(61), 60); // C# -> C (down on ties)
        assert_eq!(c.apply(66), 65); // F# -> F
        let d_dorian_up = PitchMap {
            transpose: 2,
            key: Key {
                root: 0,
                scale: Scale::Dorian,
            },
            snap: true,
        };
        // C dorian moved up 2 is D dorian: F# is outside, F inside.
        assert_eq!(d_dorian_up.apply(60), 62);
        assert_eq!(d_dorian_up.apply(64), 65);
        let off = PitchMap {
            transpose: 24,
            ..PitchMap::default()
        };
        assert_eq!(off.apply(120), 120); // 144 folds down by octaves
        assert_eq!(off.apply(61), 85); // no snapping without `snap`
    }

    #[test]
    fn fitting_moves_a_bar_into_the_key() {
        // D major arpeggio with its leading tone: D F# A C#. Only a shift of -2 (or +10) puts
        // all four in C major; inside 55..84 and nearest the anchor 64 that is -2.
        let m = bar(&[62, 66, 69, 73]);
        let c_major = Key::default();
        assert_eq!(fit_shift(&m, c_major, (55, 84), None, 64.0), -2);
        let t = transposed(&m, -2);
        assert!(t
            .tokens()
            .iter()
            .filter(|&&p| p < 128)
            .all(|&p| c_major.contains(p as i32)));
        // A minor: the same pitch classes.
        let a_minor = Key {
            root: 9,
            scale: Scale::Minor,
        };
        assert_eq!(fit_shift(&m, a_minor, (55, 84), None, 64.0), -2);
        // The previous bar decides between octaves: ending high, prefer +10.
        let high = Register {
            mean: 76.0,
            last: 74,
        };
        assert_eq!(fit_shift(&m, c_major, (55, 84), Some(high), 64.0), 10);
        // Out of range shifts are never taken: with the range 60..75 only -2 fits.
        assert_eq!(fit_shift(&m, c_major, (60, 75), Some(high), 64.0), -2);
        // Any: no change; an empty bar: no change.
        let any = Key {
            root: 0,
            scale: Scale::Any,
        };
        assert_eq!(fit_shift(&m, any, (55, 84), None, 64.0), 0);
        assert_eq!(
            fit_shift(&Measure::rest(), c_major, (55, 84), None, 64.0),
            0
        );
    }

    #[test]
    fn names_round_trip() {
        for s in Scale::ALL {
            assert_eq!(Scale::from_name(s.name()), Some(s));
        }
        assert_eq!(
            Scale::from_name("Harmonic minor"),
            Some(Scale::HarmonicMinor)
        );
        assert_eq!(Scale::from_name("lydian dominant"), None);
        for (i, n) in ROOT_NAMES.iter().enumerate() {
            assert_eq!(root_from_name(n), Some(i as u8));
        }
        assert_eq!(root_from_name("Db"), Some(1));
        assert_eq!(root_from_name("cb"), Some(11));
        assert_eq!(root_from_name("H"), None);
        assert_eq!(
            Key {
                root: 2,
                scale: Scale::Minor
            }
            .describe(),
            "D minor"
        );
    }
}
