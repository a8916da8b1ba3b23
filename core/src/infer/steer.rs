//! Target matching: decode a latent code whose bar has the attributes asked for.
//!
//! Setting a regularized dimension to its calibrated value (the paper's attribute manipulation)
//! orders the decoded attribute, but one code gives one bar, and that bar's attribute can land
//! well away from the target: the calibration maps the *encoder's* means to attribute values,
//! and the decoder also listens to the other 28 dimensions. [`steer`] starts from that code and
//! searches the regularized dimensions only (coordinate descent over a few offsets per
//! dimension, every candidate decoded and measured exactly), keeping the code whose bar is
//! nearest the targets. The free dimensions, and so the melody's identity, stay as drawn.
//! Among bars equally near, the code nearest the start wins, so a target the first bar already
//! meets changes nothing. Allocation-free: candidates are decoded into a stack `Measure`.

use super::{InferError, InferModel};
use crate::music::attributes::PITCH_SCALE;
use crate::music::token::Measure;
use crate::music::Attribute;

/// One attribute to match.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SteerTarget {
    /// The attribute.
    pub attribute: Attribute,
    /// Its regularized latent dimension.
    pub dim: usize,
    /// Target value (attribute units).
    pub target: f32,
    /// Attribute distance that counts as one unit of error (e.g. its calibrated range).
    pub scale: f32,
    /// Latent distance of the largest search offset (e.g. the calibrated latent span).
    pub step: f32,
}

/// Largest unit of error per attribute in [`Attribute::ALL`] order (attribute units): 5 % of
/// rhythmic complexity, 2 semitones of pitch range, one note, 2 semitones of contour; see
/// [`match_unit`].
pub const MATCH_UNITS: [f32; 4] = [0.05, 2.0 / PITCH_SCALE, 1.0 / 24.0, 2.0 / PITCH_SCALE];

/// The unit of error of `attribute` for a model whose calibration covers `span` (attribute
/// units, lowest to highest): an audible step ([`MATCH_UNITS`]), or an eighth of the span where
/// that is smaller. Musical steps rather than spreads of the data decide which attribute wins
/// when targets conflict (contour can't exceed pitch range); the eighth keeps a knob that
/// covers a narrow range (rhythmic complexity 0-17 % in Bach) from counting for nothing.
pub fn match_unit(attribute: Attribute, span: f32) -> f32 {
    let unit = MATCH_UNITS[attribute.index()];
    if span.is_finite() && span > 0.0 {
        unit.min(span / 8.0).max(1e-4)
    } else {
        unit
    }
}

/// Search offsets per pass, as shares of [`SteerTarget::step`].
pub const OFFSETS: [f32; 6] = [-0.8, -0.4, -0.15, 0.15, 0.4, 0.8];

/// Weight of the distance from the start code (tie-break: prefer the smallest change).
const STAY: f32 = 1e-3;

/// Squared, scaled distance of `m`'s attributes from the targets.
pub fn attribute_error(m: &Measure, targets: &[SteerTarget]) -> f32 {
    targets
        .iter()
        .map(|t| {
            let d = (t.attribute.of(m) - t.target) / t.scale.max(1e-6);
            d * d
        })
        .sum()
}

fn cost(
    m: &Measure,
    z: &[f32],
    start: &[f32; 8],
    targets: &[SteerTarget],
    penalty: &dyn Fn(&Measure) -> f32,
) -> f32 {
    let moved: f32 = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let d = (z[t.dim] - start[i]) / t.step.max(1e-6);
            d * d
        })
        .sum();
    attribute_error(m, targets) + STAY * moved + penalty(m)
}

/// Joint candidates per pass (moves of all regularized dimensions at once, which coordinate
/// moves cannot make when two attributes are tied, like contour and pitch range).
pub const JOINT: usize = 16;

/// The `k`-th point of a 4-D Kronecker (additive recurrence) sequence, mapped to [-1, 1]^8;
/// deterministic and well spread without a random generator.
fn joint_offset(k: usize, i: usize) -> f32 {
    // Fractional parts of the powers of the plastic-like number for 8 dimensions.
    const ALPHA: [f64; 8] = [
        0.8566748838545029,
        0.733891856627126,
        0.6287067210378087,
        0.5386034119236234,
        0.4614116731781519,
        0.3952818021495868,
        0.3386305018340611,
        0.2900980985212298,
    ];
    let x = (0.5 + ALPHA[i] * (k + 1) as f64).fract();
    (2.0 * x - 1.0) as f32
}

/// Decodes `z`, then moves its regularized dimensions (at most 8 targets) so the bar's
/// attributes approach the targets. Each of the `passes` passes tries [`OFFSETS`] on one
/// dimension at a time, then [`JOINT`] moves of all of them together; the offsets halve from
/// one pass to the next. On return `z` is the code chosen and `out` its bar; returns the
/// attribute error of `out` ([`attribute_error`]). `passes == 0` is a plain decode. At most
/// `1 + passes * (targets * 6 + 16)` decodes.
pub fn steer(
    model: &mut InferModel,
    z: &mut [f32],
    targets: &[SteerTarget],
    passes: usize,
    out: &mut Measure,
) -> Result<f32, InferError> {
    steer_with(model, z, targets, passes, out, &|_| 0.0)
}

/// [`steer`] with `penalty` added to every candidate's cost (for example notes that no
/// transposition brings into the key); the result is still the attribute error alone.
pub fn steer_with(
    model: &mut InferModel,
    z: &mut [f32],
    targets: &[SteerTarget],
    passes: usize,
    out: &mut Measure,
    penalty: &dyn Fn(&Measure) -> f32,
) -> Result<f32, InferError> {
    assert!(targets.len() <= 8, "at most 8 steering targets");
    if let Some(t) = targets.iter().find(|t| t.dim >= z.len()) {
        return Err(InferError::Dimension {
            dim: t.dim,
            latent: z.len(),
        });
    }
    model.decode(z, out)?;
    let mut start = [0f32; 8];
    for (i, t) in targets.iter().enumerate() {
        start[i] = z[t.dim];
    }
    let mut best = cost(out, z, &start, targets, penalty);
    let mut cand = Measure::rest();
    let mut here = [0f32; 8];
    let mut k = 0;
    for pass in 0..passes {
        let size = 0.5f32.powi(pass as i32);
        for t in targets {
            let center = z[t.dim];
            let mut best_v = center;
            for o in OFFSETS {
                z[t.dim] = center + size * o * t.step;
                model.decode(z, &mut cand)?;
                let c = cost(&cand, z, &start, targets, penalty);
                if c < best - 1e-7 {
                    best = c;
                    best_v = z[t.dim];
                    *out = cand;
                }
            }
            z[t.dim] = best_v;
        }
        for _ in 0..JOINT {
            for (i, t) in targets.iter().enumerate() {
                here[i] = z[t.dim];
                z[t.dim] += size * 0.3 * t.step * joint_offset(k, i);
            }
            k += 1;
            model.decode(z, &mut cand)?;
            let c = cost(&cand, z, &start, targets, penalty);
            if c < best - 1e-7 {
                best = c;
                *out = cand;
            } else {
                for (i, t) in targets.iter().enumerate() {
                    z[t.dim] = here[i];
                }
            }
        }
    }
    Ok(attribute_error(out, targets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::music::token::{HOLD, REST};
    use crate::music_model::MeasureVaeConfig;

    fn targets(values: [f32; 4]) -> [SteerTarget; 4] {
        std::array::from_fn(|i| SteerTarget {
            attribute: Attribute::ALL[i],
            dim: i,
            target: values[i],
            scale: [0.5, 0.5, 0.25, 0.5][i],
            step: 4.0,
        })
    }

    #[test]
    fn error_is_the_scaled_squared_distance() {
        // C4 on the downbeat held 6 ticks, E4 on tick 6, G4 on tick 12, rest from tick 18.
        let mut t = [HOLD; 24];
        t[0] = 60;
        t[6] = 64;
        t[12] = 67;
        t[18] = REST;
        let m = Measure(t);
        // Attributes: rhythm (0.2 + 0.67 + 0.25) / 27.79, range 7/26, density 3/24, contour 7/26.
        let rc = (0.2 + 0.67 + 0.25) / 27.79;
        let ts = targets([rc, 0.0, 3.0 / 24.0, 0.0]);
        let want = (7.0f32 / 26.0 / 0.5).powi(2) * 2.0;
        assert!((attribute_error(&m, &ts) - want).abs() < 1e-5);
        assert!(attribute_error(&m, &targets([rc, 7.0 / 26.0, 0.125, 7.0 / 26.0])) < 1e-10);
    }

    #[test]
    fn steering_never_does_worse_and_keeps_the_free_dimensions() {
        let ck = Checkpoint::untrained(&MeasureVaeConfig::default(), 21);
        let mut model = InferModel::from_checkpoint(&ck).unwrap();
        let (mut plain_total, mut steered_total) = (0.0, 0.0);
        for case in 0..12u32 {
            let z0: Vec<f32> = (0..32)
                .map(|j| ((case * 32 + j) as f32 * 0.61).sin() * 1.5)
                .collect();
            let ts = targets([0.1 + 0.05 * (case % 4) as f32, 0.3, 0.2, -0.1]);
            let mut plain = Measure::rest();
            model.decode(&z0, &mut plain).unwrap();
            let e0 = attribute_error(&plain, &ts);

            // Zero passes is a plain decode.
            let mut z = z0.clone();
            let mut out = Measure::rest();
            let e = steer(&mut model, &mut z, &ts, 0, &mut out).unwrap();
            assert_eq!((out, e), (plain, e0));
            assert_eq!(z, z0);

            let e = steer(&mut model, &mut z, &ts, 2, &mut out).unwrap();
            assert!(e <= e0 + 1e-6, "case {case}: {e} > {e0}");
            assert!((attribute_error(&out, &ts) - e).abs() < 1e-6);
            // `out` is what `z` decodes to, and only the regularized dimensions moved.
            let mut again = Measure::rest();
            model.decode(&z, &mut again).unwrap();
            assert_eq!(again, out);
            assert_eq!(z[4..], z0[4..]);
            plain_total += e0;
            steered_total += e;
        }
        assert!(
            steered_total < 0.8 * plain_total,
            "steering barely helps: {steered_total} vs {plain_total}"
        );
    }

    #[test]
    fn a_dimension_out_of_range_is_an_error() {
        let ck = Checkpoint::untrained(&MeasureVaeConfig::default(), 2);
        let mut model = InferModel::from_checkpoint(&ck).unwrap();
        let mut ts = targets([0.0; 4]);
        ts[2].dim = 32;
        let mut z = vec![0.0; 32];
        let e = steer(&mut model, &mut z, &ts, 1, &mut Measure::rest()).unwrap_err();
        assert!(e.to_string().contains("latent dimension 32"), "{e}");
    }
}
