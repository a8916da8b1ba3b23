//! Built-in procedural melodies with known factors, in the spirit of dMelodies: four-bar phrases
//! over I-IV-V-I where each bar arpeggiates its chord with its own rhythm, note count, step size
//! and direction. No download; deterministic from a seed. The factors are chosen so that all four
//! attributes vary widely and independently enough to regularize each one.

use crate::music::melody::{Bar, Melody, Note};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SCALES: [(&str, [u8; 7]); 4] = [
    ("major", [0, 2, 4, 5, 7, 9, 11]),
    ("minor", [0, 2, 3, 5, 7, 8, 10]),
    ("dorian", [0, 2, 3, 5, 7, 9, 10]),
    ("harmonic minor", [0, 2, 3, 5, 7, 8, 11]),
];

/// Chord roots (scale degrees, 0-based) of the four bars.
const PROGRESSION: [i32; 4] = [0, 3, 4, 0];

/// Ticks (within a beat) used by each rhythm family: sixteenths, triplets, eighths, mixed.
const RHYTHM_FAMILIES: [&[usize]; 4] = [&[0, 1, 3, 5], &[0, 2, 4], &[0, 3], &[0, 1, 2, 3, 4, 5]];

const MIN_PITCH: i32 = 55;
const MAX_PITCH: i32 = 84;

/// The factors of one generated bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarFactors {
    /// Number of notes (1..=12).
    pub notes: usize,
    /// Index into the rhythm families (sixteenths, triplets, eighths, mixed).
    pub rhythm: usize,
    /// Chord tones moved per note (0 = repeated note).
    pub step: i32,
    /// 0 up, 1 down, 2 up then down, 3 down then up.
    pub direction: u8,
}

/// The factors of one generated piece.
#[derive(Clone, Debug, PartialEq)]
pub struct PieceFactors {
    /// Pitch class of the tonic (0 = C).
    pub tonic: u8,
    /// Scale name.
    pub scale: &'static str,
    /// Per bar.
    pub bars: [BarFactors; 4],
}

fn scale_pitch(scale: &[u8; 7], tonic_midi: i32, idx: i32) -> i32 {
    let oct = idx.div_euclid(7);
    tonic_midi + 12 * oct + scale[idx.rem_euclid(7) as usize] as i32
}

/// Generates `count` pieces from `seed`, with their factors.
pub fn generate(count: usize, seed: u64) -> Vec<(Melody, PieceFactors)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count).map(|i| piece(&mut rng, i)).collect()
}

/// One piece: a random key and scale, then one random bar per chord of the progression.
fn piece(rng: &mut ChaCha8Rng, index: usize) -> (Melody, PieceFactors) {
    let tonic = rng.gen_range(0..12u8);
    let (scale_name, scale) = SCALES[rng.gen_range(0..SCALES.len())];
    let tonic_midi = 60 + tonic as i32 - if tonic > 6 { 12 } else { 0 };
    let mut notes = Vec::new();
    let mut bars = Vec::new();
    let mut factors = [BarFactors {
        notes: 1,
        rhythm: 0,
        step: 0,
        direction: 0,
    }; 4];
    for (b, &root) in PROGRESSION.iter().enumerate() {
        let start = 4.0 * b as f64;
        bars.push(Bar {
            start,
            duration: 4.0,
            time_signature: (4, 4),
        });
        let (bar, chosen) = bar_factors(rng);
        factors[b] = bar;
        let pitches = bar_pitches(&scale, tonic_midi, root, &bar);
        push_bar_notes(rng, start, &chosen, &pitches, &mut notes);
    }
    let melody = Melody {
        id: format!("synthetic-{index:05}"),
        title: format!(
            "Synthetic {index} ({} {scale_name})",
            crate::music::token::token_name(tonic_midi as u8)
        ),
        notes,
        bars,
    };
    (
        melody,
        PieceFactors {
            tonic,
            scale: scale_name,
            bars: factors,
        },
    )
}

/// Draws one bar's factors and its sorted onset slots (ticks of the bar, six per beat).
fn bar_factors(rng: &mut ChaCha8Rng) -> (BarFactors, Vec<usize>) {
    let rhythm = rng.gen_range(0..RHYTHM_FAMILIES.len());
    let family = RHYTHM_FAMILIES[rhythm];
    let slots: Vec<usize> = (0..4)
        .flat_map(|beat| family.iter().map(move |&t| beat * 6 + t))
        .collect();
    let n = rng.gen_range(1..=12usize.min(slots.len()));
    // Choose n slots; the downbeat is kept most of the time.
    let mut chosen: Vec<usize> = Vec::with_capacity(n);
    if rng.gen_bool(0.8) {
        chosen.push(0);
    }
    while chosen.len() < n {
        let s = slots[rng.gen_range(0..slots.len())];
        if !chosen.contains(&s) {
            chosen.push(s);
        }
    }
    chosen.sort_unstable();
    let step = rng.gen_range(0..=3i32);
    let direction = rng.gen_range(0..4u8);
    let factors = BarFactors {
        notes: n,
        rhythm,
        step,
        direction,
    };
    (factors, chosen)
}

/// MIDI pitches of a bar's notes: chord tones of `root` along the bar's contour, moved into range.
fn bar_pitches(scale: &[u8; 7], tonic_midi: i32, root: i32, bar: &BarFactors) -> Vec<i32> {
    let (n, step) = (bar.notes, bar.step);
    // Chord-tone indices: tone k of the chord on `root` is scale index root + 2k.
    let half = n.div_ceil(2) as i32;
    let tones: Vec<i32> = (0..n as i32)
        .map(|k| match bar.direction {
            0 => k * step,
            1 => -k * step,
            2 => step * if k < half { k } else { 2 * half - k - 2 },
            _ => -step * if k < half { k } else { 2 * half - k - 2 },
        })
        .collect();
    let mut pitches: Vec<i32> = tones
        .iter()
        .map(|&t| scale_pitch(scale, tonic_midi, root + 2 * t))
        .collect();
    // Shift by octaves into range; squeeze the step if the bar is still too wide.
    let (lo, hi) = (
        *pitches.iter().min().unwrap(),
        *pitches.iter().max().unwrap(),
    );
    let mut shift = 0;
    while lo + shift < MIN_PITCH {
        shift += 12;
    }
    while hi + shift > MAX_PITCH && lo + shift - 12 >= MIN_PITCH {
        shift -= 12;
    }
    for p in pitches.iter_mut() {
        *p = (*p + shift).clamp(MIN_PITCH, MAX_PITCH);
    }
    pitches
}

/// Appends the notes and rests of the bar starting at `start`, detaching some notes at random.
fn push_bar_notes(
    rng: &mut ChaCha8Rng,
    start: f64,
    chosen: &[usize],
    pitches: &[i32],
    notes: &mut Vec<Note>,
) {
    let twelfths = |tick: usize| crate::music::token::tick_twelfths(tick) as f64 / 12.0;
    for (k, &slot) in chosen.iter().enumerate() {
        let onset = start + twelfths(slot);
        if k == 0 && slot > 0 {
            notes.push(Note {
                onset: start,
                duration: onset - start,
                pitch: None,
            });
        }
        let next = chosen
            .get(k + 1)
            .map_or(start + 4.0, |&s| start + twelfths(s));
        let gap = next - onset;
        // Some notes are detached: they stop at the next beat, then a rest.
        let beat_end = (onset + 1e-6).ceil();
        if beat_end < next - 1e-6 && rng.gen_bool(0.3) {
            notes.push(Note {
                onset,
                duration: beat_end - onset,
                pitch: Some(pitches[k] as u8),
            });
            notes.push(Note {
                onset: beat_end,
                duration: next - beat_end,
                pitch: None,
            });
        } else {
            notes.push(Note {
                onset,
                duration: gap,
                pitch: Some(pitches[k] as u8),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::attributes::attributes;
    use crate::music::tokenize::measures;

    #[test]
    fn deterministic_and_tokenizable() {
        let a = generate(50, 7);
        let b = generate(50, 7);
        assert_eq!(
            a.iter().map(|x| &x.0).collect::<Vec<_>>(),
            b.iter().map(|x| &x.0).collect::<Vec<_>>()
        );
        for (m, f) in &a {
            let ms = measures(m).unwrap();
            assert_eq!(ms.len(), 4);
            for (bar, meas) in f.bars.iter().zip(&ms) {
                assert_eq!(meas.onsets().count(), bar.notes);
                assert!(meas.onsets().all(|(_, p)| (55..=84).contains(&p)));
            }
        }
    }

    #[test]
    fn attributes_spread_over_their_ranges() {
        let ms: Vec<_> = generate(400, 1)
            .iter()
            .flat_map(|(m, _)| measures(m).unwrap())
            .collect();
        let attrs: Vec<[f32; 4]> = ms.iter().map(attributes).collect();
        for k in 0..4 {
            let mut v: Vec<f32> = attrs.iter().map(|a| a[k]).collect();
            v.sort_by(f32::total_cmp);
            let distinct = v.windows(2).filter(|w| w[0] != w[1]).count() + 1;
            assert!(distinct >= 10, "attribute {k} has only {distinct} values");
        }
        // Contour takes both signs.
        assert!(attrs.iter().any(|a| a[3] > 0.2) && attrs.iter().any(|a| a[3] < -0.2));
    }
}
