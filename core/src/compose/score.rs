//! Numbers a listener hears, for generated bars and real bars side by side: pitches outside
//! the trained range, crowded and empty bars, silences inside bars, how well 4-bar windows
//! keep one key, the interval at bar joins, and how near the bars sit to the knobs.

use crate::music::token::Measure;
use crate::music::Attribute;

use super::key::{Key, Scale};
use super::knobs::{LatentMap, KNOBS};
use super::Composer;
use crate::checkpoint::Checkpoint;

/// Onsets from which a bar counts as crowded (24 is every grid step).
pub const CROWDED: usize = 20;

/// One audible step per knob ([`KNOBS`] order, knob units): 5 %, 2 semitones, 1 note,
/// 2 semitones.
pub const AUDIBLE_STEP: [f32; 4] = [5.0, 2.0, 1.0, 2.0];

/// Counts and means over a sequence of bars; see [`score`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Score {
    /// Bars scored.
    pub bars: usize,
    /// Onsets in all bars.
    pub notes: usize,
    /// Onsets outside the trained range.
    pub outside_range: usize,
    /// Bars with at least [`CROWDED`] onsets.
    pub crowded: usize,
    /// Bars without an onset.
    pub empty: usize,
    /// Silences ([`Measure::silences`]) in all bars.
    pub silences: usize,
    /// Mean over 4-bar windows of the share of their onsets in the best-fitting major scale.
    pub key_fit: f32,
    /// Mean |first onset of a bar - last onset of the bar before|, semitones (joins where both
    /// bars have notes).
    pub join_interval: f32,
}

fn onsets(m: &Measure) -> impl Iterator<Item = u8> + '_ {
    m.tokens().iter().copied().filter(|&t| t < 128)
}

/// Share of the onsets of `bars` in the major scale (any of the 12) that holds most of them;
/// `None` without onsets.
pub fn best_major_fit(bars: &[Measure]) -> Option<f32> {
    let mut classes = [0usize; 12];
    for m in bars {
        for p in onsets(m) {
            classes[p as usize % 12] += 1;
        }
    }
    let n: usize = classes.iter().sum();
    if n == 0 {
        return None;
    }
    let best = (0..12u8)
        .map(|root| {
            let key = Key {
                root,
                scale: Scale::Major,
            };
            (0..12)
                .filter(|&c| key.contains(c as i32))
                .map(|c| classes[c])
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0);
    Some(best as f32 / n as f32)
}

/// Mean [`best_major_fit`] over the consecutive windows of `window` bars (a shorter tail
/// counts too); 0 without notes.
pub fn key_fit(bars: &[Measure], window: usize) -> f32 {
    let fits: Vec<f32> = bars
        .chunks(window.max(1))
        .filter_map(best_major_fit)
        .collect();
    if fits.is_empty() {
        0.0
    } else {
        fits.iter().sum::<f32>() / fits.len() as f32
    }
}

/// Mean |first onset - last onset of the bar before| over joins where both bars have notes;
/// `None` without such a join.
pub fn join_interval(bars: &[Measure]) -> Option<f32> {
    let joins: Vec<f32> = bars
        .windows(2)
        .filter_map(|w| {
            let last = onsets(&w[0]).last()?;
            let first = onsets(&w[1]).next()?;
            Some((first as f32 - last as f32).abs())
        })
        .collect();
    (!joins.is_empty()).then(|| joins.iter().sum::<f32>() / joins.len() as f32)
}

/// Scores consecutive `bars` against the trained pitch `range` (MIDI, inclusive).
pub fn score(bars: &[Measure], range: (u8, u8)) -> Score {
    let mut s = Score {
        bars: bars.len(),
        key_fit: key_fit(bars, 4),
        join_interval: join_interval(bars).unwrap_or(0.0),
        ..Score::default()
    };
    for m in bars {
        let n = onsets(m).count();
        s.notes += n;
        s.outside_range += onsets(m).filter(|&p| p < range.0 || p > range.1).count();
        s.crowded += usize::from(n >= CROWDED);
        s.empty += usize::from(n == 0);
        s.silences += m.silences();
    }
    s
}

/// Whether `m`'s attribute `a` is within one [`AUDIBLE_STEP`] of the knob value `knob` (knob
/// units).
pub fn near_knob(m: &Measure, a: Attribute, knob: f32) -> bool {
    let i = a.index();
    (KNOBS[i].from_attribute(a.of(m)) - knob).abs() <= AUDIBLE_STEP[i] + 1e-4
}

/// Knob response through the checkpoint's own calibration, per knob ([`Attribute::ALL`]
/// order): Spearman's rho between the calibration's 5-95 % attribute quantiles as targets and
/// what the decoder plays for them ([`Composer::response`]). `None` for an attribute without a
/// usable calibration. A model whose regularized dimensions still order their attributes
/// gives rho near 1; fine-tuning must keep it there.
pub fn knob_response(c: &mut Composer, ck: &Checkpoint) -> [Option<f64>; 4] {
    Attribute::ALL.map(|a| {
        let cal = ck
            .meta
            .calibration
            .iter()
            .find(|x| x.attribute == a.name())?;
        let map = LatentMap::from_calibration(cal)?;
        let p = &cal.points;
        let targets: Vec<f32> = p[1..p.len().saturating_sub(1)]
            .iter()
            .map(|q| q.1)
            .collect();
        let played = c.response(a.index(), &map, &targets)?;
        let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        crate::metrics::stats::spearman(&f(&targets), &f(&played)).map(|(rho, _)| rho)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::token::{HOLD, REST};

    fn bar(pitches: &[u8]) -> Measure {
        let mut t = [HOLD; 24];
        for (i, &p) in pitches.iter().enumerate() {
            t[i] = p;
        }
        Measure(t)
    }

    #[test]
    fn scores_by_hand() {
        // C major bar, then a bar with F# (outside C major but inside G major), then an
        // empty bar, then a crowded bar of 20 C4s with one pitch outside 55..84.
        let a = bar(&[60, 62, 64, 65]);
        let b = bar(&[67, 66, 69]);
        let mut c = [REST; 24];
        c[0] = REST;
        let empty = Measure(c);
        let mut d = [60u8; 24];
        d[20..].copy_from_slice(&[HOLD, HOLD, HOLD, 40]);
        let crowded = Measure(d);
        let bars = [a, b, empty, crowded];
        let s = score(&bars, (55, 84));
        assert_eq!(s.bars, 4);
        assert_eq!(s.notes, 4 + 3 + 21);
        assert_eq!(s.outside_range, 1);
        assert_eq!((s.crowded, s.empty), (1, 1));
        assert_eq!(s.silences, 1);
        // One window: pitch classes C x21 (20 + ... ) etc.; best major is C (all but F# and
        // the E2 (40 = E) is in C): 27 of 28.
        assert!((s.key_fit - 27.0 / 28.0).abs() < 1e-6, "{}", s.key_fit);
        // Joins: 65 -> 67 (2); the empty bar breaks the other two.
        assert_eq!(s.join_interval, 2.0);
        assert_eq!(best_major_fit(&[empty]), None);
        assert_eq!(key_fit(&[a, b], 1), (1.0 + 1.0) / 2.0);
    }

    #[test]
    fn knob_nearness_uses_audible_steps() {
        let m = bar(&[60, 62, 64, 65]); // 4 notes, range 5, contour +5
        assert!(near_knob(&m, Attribute::NoteDensity, 5.0));
        assert!(!near_knob(&m, Attribute::NoteDensity, 5.5));
        assert!(near_knob(&m, Attribute::PitchRange, 7.0));
        assert!(!near_knob(&m, Attribute::Contour, 8.0));
    }
}
