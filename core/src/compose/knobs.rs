//! The four attribute knobs in musical units, and the calibration that turns a knob target into
//! a value of its regularized latent dimension.
//!
//! The map is measured through the decoder ([`LatentMap::from_decoder`]): codes drawn from the
//! model's own prior, one regularized dimension swept, every code decoded and its bar measured.
//! The checkpoint's calibration (the *encoder's* means against the attribute) only sets where
//! the sweep looks; a knob's reach is what the decoder plays.
//!
//! Knob units: rhythmic complexity in percent of the maximum (the attribute itself, 0..1),
//! pitch range in semitones (attribute x 26), note density in onsets per bar (attribute x 24),
//! contour in semitones from first to last note (attribute x 26).

use std::sync::Arc;

use crate::checkpoint::Calibration;
use crate::music::attributes::PITCH_SCALE;
use crate::music::Attribute;

/// A host text-to-value callback.
pub type StringToValue = Arc<dyn Fn(&str) -> Option<f32> + Send + Sync>;

/// How one attribute is shown on its knob.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnobUnit {
    /// The attribute.
    pub attribute: Attribute,
    /// Knob label.
    pub label: &'static str,
    /// Knob value per unit of attribute.
    pub per_attribute: f32,
    /// Knob range (min, max) and default, in knob units.
    pub min: f32,
    /// Largest knob value.
    pub max: f32,
    /// Default knob value.
    pub default: f32,
}

/// The four knobs in [`Attribute::ALL`] order. Each range covers what the shipped models reach
/// through the decoder (`arvae-trainer score` prints it; Bach: 1-17 %, 0-7 st, 1-6 notes,
/// -7..+18 st; folk: 5-42 %, 2-14 st, 1-16 notes, -24..+24 st) and little more, so a knob's
/// label is a value some model plays.
pub const KNOBS: [KnobUnit; 4] = [
    KnobUnit {
        attribute: Attribute::RhythmicComplexity,
        label: "Rhythmic complexity",
        per_attribute: 100.0,
        min: 0.0,
        max: 50.0,
        default: 8.0,
    },
    KnobUnit {
        attribute: Attribute::PitchRange,
        label: "Pitch range",
        per_attribute: PITCH_SCALE,
        min: 0.0,
        max: 16.0,
        default: 5.0,
    },
    KnobUnit {
        attribute: Attribute::NoteDensity,
        label: "Note density",
        per_attribute: 24.0,
        min: 1.0,
        max: 16.0,
        default: 4.0,
    },
    KnobUnit {
        attribute: Attribute::Contour,
        label: "Contour",
        per_attribute: PITCH_SCALE,
        min: -24.0,
        max: 24.0,
        default: 0.0,
    },
];

impl KnobUnit {
    /// Attribute value of a knob value.
    pub fn to_attribute(&self, knob: f32) -> f32 {
        knob / self.per_attribute
    }

    /// Knob value of an attribute value.
    pub fn from_attribute(&self, attribute: f32) -> f32 {
        attribute * self.per_attribute
    }

    /// The number a host shows for a knob value, e.g. `35`, `9.0`, `6.0`, `+5.0`; the unit is
    /// separate ([`unit`](Self::unit)), so hosts and scripts read the value as a number.
    pub fn format(&self, v: f32) -> String {
        // Values that round to zero print without a sign ("0", not "-0").
        let v = if v.abs() < 0.05 { 0.0 } else { v };
        match self.attribute {
            Attribute::RhythmicComplexity => format!("{v:.0}"),
            Attribute::PitchRange | Attribute::NoteDensity => format!("{v:.1}"),
            Attribute::Contour => format!("{v:+.1}"),
        }
    }

    /// The unit shown after the number, with its leading space (` %`, ` notes`, ...).
    pub fn unit(&self) -> &'static str {
        match self.attribute {
            Attribute::RhythmicComplexity => " %",
            Attribute::PitchRange | Attribute::Contour => " semitones",
            Attribute::NoteDensity => " notes",
        }
    }

    /// Number and unit, for people: `35 %`, `+5.0 semitones`.
    pub fn describe(&self, v: f32) -> String {
        format!("{}{}", self.format(v), self.unit())
    }

    /// Parses what [`format`](Self::format) writes, with or without the unit.
    pub fn parse(&self, s: &str) -> Option<f32> {
        let s = s.trim();
        let number: String = s
            .chars()
            .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
            .collect();
        number
            .trim_start_matches('+')
            .parse::<f32>()
            .ok()
            .filter(|v| v.is_finite())
    }

    /// The value-to-text callback for the host.
    pub fn value_to_string(self) -> Arc<dyn Fn(f32) -> String + Send + Sync> {
        Arc::new(move |v| self.format(v))
    }

    /// The text-to-value callback for the host.
    pub fn string_to_value(self) -> StringToValue {
        Arc::new(move |s| self.parse(s))
    }
}

/// Monotone map from an attribute value to the latent value that produces it, built from a
/// checkpoint's [`Calibration`] (quantiles of the attribute against the latent value).
#[derive(Clone, Debug, PartialEq)]
pub struct LatentMap {
    /// (attribute, latent) knots, attribute strictly increasing.
    knots: Vec<(f32, f32)>,
}

/// How far past the calibrated ends a target may push the latent, as a share of its span.
const EXTRAPOLATE: f32 = 0.25;

impl LatentMap {
    /// From a checkpoint's [`Calibration`]; see [`from_points`](Self::from_points).
    pub fn from_calibration(c: &Calibration) -> Option<Self> {
        Self::from_points(&c.points)
    }

    /// From (z, attribute) points in any order. The attribute is made non-decreasing in z
    /// (running maximum) and equal attribute values are merged at their mean z. `None` when
    /// fewer than two distinct attribute values remain.
    pub fn from_points(points: &[(f32, f32)]) -> Option<Self> {
        let mut pts: Vec<(f32, f32)> = points
            .iter()
            .copied()
            .filter(|(z, a)| z.is_finite() && a.is_finite())
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut run = f32::NEG_INFINITY;
        let mut knots: Vec<(f32, f32, u32)> = Vec::new(); // (attr, z sum, count)
        for (z, a) in pts {
            run = run.max(a);
            match knots.last_mut() {
                Some(k) if k.0 == run => {
                    k.1 += z;
                    k.2 += 1;
                }
                _ => knots.push((run, z, 1)),
            }
        }
        let knots: Vec<(f32, f32)> = knots
            .into_iter()
            .map(|(a, zs, n)| (a, zs / n as f32))
            .collect();
        (knots.len() >= 2).then_some(LatentMap { knots })
    }

    /// A linear stand-in for a checkpoint without calibration: the attribute's bounds over
    /// latent -2..2.
    pub fn fallback(attribute: Attribute) -> Self {
        let (lo, hi) = attribute.bounds();
        LatentMap {
            knots: vec![(lo, -2.0), (hi, 2.0)],
        }
    }

    /// Calibrated attribute range (lowest, highest).
    pub fn attribute_range(&self) -> (f32, f32) {
        (self.knots[0].0, self.knots[self.knots.len() - 1].0)
    }

    /// The calibration knots (attribute, latent).
    pub fn knots(&self) -> &[(f32, f32)] {
        &self.knots
    }

    /// The attribute value the map gives latent value `z`: the inverse of
    /// [`latent`](Self::latent) between the knots (whose latent values rise with the
    /// attribute, [`from_points`](Self::from_points)), the end values outside them.
    pub fn attribute(&self, z: f32) -> f32 {
        let k = &self.knots;
        let (first, last) = (k[0], k[k.len() - 1]);
        if !z.is_finite() {
            return (first.0 + last.0) / 2.0;
        }
        match k.partition_point(|&(_, kz)| kz <= z) {
            0 => first.0,
            i if i == k.len() => last.0,
            i => {
                let ((xa, za), (xb, zb)) = (k[i - 1], k[i]);
                xa + (z - za) / (zb - za).max(1e-9) * (xb - xa)
            }
        }
    }

    /// Latent value for an attribute target: piecewise linear between knots, linear past the
    /// ends up to a quarter of the calibrated latent span, then flat.
    pub fn latent(&self, target: f32) -> f32 {
        let k = &self.knots;
        let (a0, z0) = k[0];
        let (a1, z1) = k[k.len() - 1];
        let span = (z1 - z0).abs().max(1e-6);
        let slope = (z1 - z0) / (a1 - a0).max(1e-6);
        if !target.is_finite() {
            return (z0 + z1) / 2.0;
        }
        if target <= a0 {
            let dz = ((a0 - target) * slope).min(EXTRAPOLATE * span);
            return z0 - dz;
        }
        if target >= a1 {
            let dz = ((target - a1) * slope).min(EXTRAPOLATE * span);
            return z1 + dz;
        }
        let i = k
            .partition_point(|&(a, _)| a <= target)
            .clamp(1, k.len() - 1);
        let (xa, za) = k[i - 1];
        let (xb, zb) = k[i];
        za + (target - xa) / (xb - xa) * (zb - za)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_inverts_latent_between_the_knots() {
        let map =
            LatentMap::from_points(&[(-1.0, 0.0), (0.0, 0.1), (1.0, 0.3), (2.0, 0.4)]).unwrap();
        for t in [0.0, 0.05, 0.1, 0.2, 0.3, 0.35, 0.4] {
            assert!((map.attribute(map.latent(t)) - t).abs() < 1e-6, "{t}");
        }
        // z 0.5 lies halfway between the knots (0, 0.1) and (1, 0.3).
        assert!((map.attribute(0.5) - 0.2).abs() < 1e-6);
        // Past the knots: their end values.
        assert_eq!((map.attribute(-5.0), map.attribute(9.0)), (0.0, 0.4));
        assert_eq!(map.attribute(f32::NAN), 0.2);
    }

    #[test]
    fn formats_round_trip() {
        for k in KNOBS {
            for i in 0..=20 {
                let v = k.min + (k.max - k.min) * i as f32 / 20.0;
                let s = k.format(v);
                let back = k.parse(&s).unwrap();
                assert_eq!(k.format(back), s, "{}", k.label);
            }
        }
        assert_eq!(KNOBS[3].format(5.0), "+5.0");
        assert_eq!(KNOBS[3].describe(5.0), "+5.0 semitones");
        assert_eq!(KNOBS[0].describe(-0.01), "0 %");
        assert_eq!(KNOBS[3].parse("-3 st"), Some(-3.0));
        assert_eq!(KNOBS[2].parse("6 notes"), Some(6.0));
        assert_eq!(KNOBS[0].parse("abc"), None);
    }

    #[test]
    fn calibration_inverts_monotonically() {
        let c = Calibration {
            attribute: "note_density".into(),
            latent_dim: 2,
            points: vec![
                (-1.0, 0.1),
                (-0.5, 0.1),
                (0.0, 0.2),
                (0.5, 0.15), // noise: running max keeps 0.2
                (1.0, 0.4),
            ],
        };
        let m = LatentMap::from_calibration(&c).unwrap();
        assert_eq!(m.knots(), &[(0.1, -0.75), (0.2, 0.25), (0.4, 1.0)]);
        assert_eq!(m.latent(0.2), 0.25);
        assert!((m.latent(0.3) - 0.625).abs() < 1e-6);
        let mut last = f32::NEG_INFINITY;
        for i in 0..100 {
            let z = m.latent(i as f32 / 100.0);
            assert!(z >= last);
            last = z;
        }
        // Past the ends: at most a quarter of the span further.
        assert!((m.latent(5.0) - (1.0 + 0.25 * 1.75)).abs() < 1e-6);
        let flat = Calibration {
            points: vec![(0.0, 0.1), (1.0, 0.1)],
            ..c
        };
        assert!(LatentMap::from_calibration(&flat).is_none());
    }
}
