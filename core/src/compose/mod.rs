//! From one bar to music: the layer between MeasureVAE and the producer, shared by the plugin's
//! decode worker and `arvae-trainer generate` (same model, settings, seed and bar index: the
//! same bar). See `docs/architecture.md`, "From one bar to music".
//!
//! - **Prior** ([`crate::prior`]): the free latent dimensions are drawn from the model's own
//!   distribution of codes (stored in the checkpoint), not from N(0, I).
//! - **Range**: the decoder never chooses a pitch outside the range the model was trained on.
//! - **Knobs** ([`knobs`]): targets in musical units (notes per bar, semitones, percent) map to
//!   the regularized dimensions through a calibration measured through the decoder; target
//!   matching ([`steer`]) then searches those dimensions for the bar nearest the knobs.
//! - **Key** ([`key`]): every bar is transposed whole into the key (the shift that fits the
//!   scale best, nearest the bar before, inside the trained range).
//! - **Motion and phrase**: bar k of a phrase moves from bar k-1 by `motion` in the free
//!   dimensions (z_k = r z_(k-1) + sqrt(1 - r^2) e_k in the prior's standard coordinates, so the
//!   prior's spread is kept); after `phrase` bars the phrase comes back, varied by `variation`.
//!
//! Every bar is a pure function of (model, settings, bar index): a phrase is decoded whole from
//! its own seeds, so loops, jumps and bounces replay exactly and bars can be decoded ahead.

pub mod key;
pub mod knobs;
pub mod score;

use crate::checkpoint::{Calibration, Checkpoint};
use crate::infer::steer::{match_unit, steer_with, SteerTarget};
use crate::infer::{InferError, InferModel};
use crate::music::attributes::rhythm_bounds;
use crate::music::token::Measure;
use crate::music::Attribute;

use crate::prior::{CodePrior, FreeSampler};
use crate::random::{mix, normals};
use key::{fit_shift, outside_any_key, transposed, Key, Register, Scale};
use knobs::{LatentMap, KNOBS};

/// Longest phrase, in bars.
pub const MAX_PHRASE: usize = 8;

/// Target-matching passes per bar: at most 1 + 3 * (4 * 6 + 16) = 121 decodes.
pub const MATCH_PASSES: usize = 3;

/// The MIDI range assumed for a checkpoint that records none: the window every data set is
/// transposed into (`data build`).
pub const DEFAULT_PITCH_RANGE: (u8, u8) = (55, 84);

/// Everything besides the model that decides a bar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Knob targets in musical units, [`KNOBS`] order: rhythmic complexity (%), pitch range
    /// (semitones), note density (notes per bar), contour (semitones first to last note).
    pub knobs: [f32; 4],
    /// Seed of the free dimensions (the plugin's Variation).
    pub seed: u32,
    /// How far the free dimensions move from one bar to the next: 0 the same melody every bar,
    /// 1 a new melody every bar.
    pub motion: f32,
    /// Bars after which the phrase comes back (1..=8).
    pub phrase: u32,
    /// How different a returning phrase is: 0 the same bars, 1 a new phrase.
    pub variation: f32,
    /// Key every bar is moved into ([`key::Scale::Any`]: none).
    pub key: Key,
    /// Search the regularized dimensions for the bar nearest the knobs.
    pub match_targets: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            knobs: KNOBS.map(|k| k.default),
            seed: 0,
            motion: 0.35,
            phrase: 4,
            variation: 0.25,
            key: Key::default(),
            match_targets: true,
        }
    }
}

impl Settings {
    /// Phrase length in bars, clamped to 1..=[`MAX_PHRASE`].
    pub fn phrase_len(&self) -> usize {
        (self.phrase as usize).clamp(1, MAX_PHRASE)
    }

    /// Knob targets in attribute units, made consistent where one knob rules out another
    /// (target matching would otherwise split the difference and reach neither):
    /// - a bar of one note has no range and no contour, so a note-density knob below two
    ///   notes scales the range and contour targets down with it (to zero at one note);
    /// - a bar's contour can't exceed its pitch range, so a contour knob past the range knob
    ///   raises the range target to it (the contour knob asks for that leap);
    /// - a bar of n notes has a rhythmic complexity between its n lightest and n heaviest tick
    ///   weights ([`rhythm_bounds`]), so the rhythm target is kept inside what a bar within
    ///   one note of the density knob allows (n - 1 lightest .. n + 1 heaviest): the number
    ///   of notes is what a listener hears first.
    pub fn targets(&self) -> [f32; 4] {
        let mut t: [f32; 4] = std::array::from_fn(|i| KNOBS[i].to_attribute(self.knobs[i]));
        let (range, contour) = (Attribute::PitchRange.index(), Attribute::Contour.index());
        let notes = self.knobs[Attribute::NoteDensity.index()];
        let (rlo, rhi) = (rhythm_bounds(notes - 1.0).0, rhythm_bounds(notes + 1.0).1);
        let rhythm = Attribute::RhythmicComplexity.index();
        t[rhythm] = t[rhythm].clamp(rlo, rhi);
        let room = (notes - 1.0).clamp(0.0, 1.0);
        t[range] *= room;
        t[contour] *= room;
        t[range] = t[range].max(t[contour].abs());
        t
    }
}

/// Cost of one note that no transposition brings into the key, in target matching (one unit
/// is an audible step of one attribute, squared). Measured with `arvae-trainer score` (64 bars
/// x 8 seeds, 4-bar key fit / knob fidelity): 0.5 gives folk 0.927, 1.0 gives 0.947 and 1.5
/// gives 0.977 (real folk 0.993), with the knob fidelity unchanged within noise.
const KEY_WEIGHT: f32 = 1.5;

/// Stream id of the phrase-independent noise (shared by every return of a phrase).
const SHARED: i64 = i64::MIN;
/// Seed of the decoder calibration's codes.
const CALIBRATION_SEED: u64 = 0xCA11_B4A7;
/// Latent values per attribute and codes per value in the decoder calibration.
const CAL_GRID: usize = 17;
const CAL_CODES: usize = 12;

/// The checkpoint's calibration of attribute `a` on latent dimension `dim`.
fn calibration(ck: &Checkpoint, a: Attribute, dim: usize) -> Option<&Calibration> {
    ck.meta
        .calibration
        .iter()
        .find(|c| c.attribute == a.name() && c.latent_dim == dim)
}

/// The 5-95 % span of `a` in the training data, from the checkpoint's calibration (21
/// quantiles: the second and the second-to-last).
fn data_span(ck: &Checkpoint, a: Attribute, dim: usize) -> Option<(f32, f32)> {
    let p = &calibration(ck, a, dim)?.points;
    (p.len() >= 3).then(|| (p[1].1, p[p.len() - 2].1))
}

/// The median of `a` in the training data (knob units, inside the knob's range), from the
/// checkpoint's calibration (its middle quantile).
fn data_median(ck: &Checkpoint, a: Attribute, dim: usize) -> Option<f32> {
    let p = &calibration(ck, a, dim)?.points;
    let k = KNOBS[a.index()];
    (!p.is_empty()).then(|| k.from_attribute(p[p.len() / 2].1).clamp(k.min, k.max))
}

/// A model ready to compose: decoder, prior, pitch range and knob maps; see the module docs.
pub struct Composer {
    model: InferModel,
    dims: [usize; 4],
    maps: [LatentMap; 4],
    sampler: FreeSampler,
    /// Prior mean of each regularized dimension.
    regularized_mean: [f32; 4],
    /// What each knob reaches (attribute units), see [`Composer::reach`].
    reach: [(f32, f32); 4],
    /// The knobs where the model's data sits, see [`Composer::typical_knobs`].
    typical: [f32; 4],
    prior_stored: bool,
    u: Vec<f32>,
    e: Vec<f32>,
    own: Vec<f32>,
    z: Vec<f32>,
}

impl Composer {
    /// The composer of a MeasureVAE checkpoint: its prior (N(0, I) when it stores none), its
    /// pitch range ([`DEFAULT_PITCH_RANGE`] when it records none) and knob maps measured through
    /// its decoder (about 800 decodes).
    pub fn from_checkpoint(ck: &Checkpoint) -> Result<Self, String> {
        let mut model = InferModel::from_checkpoint(ck).map_err(|e| e.to_string())?;
        let meta = &ck.meta;
        let d = model.latent();
        let mut dims = [0usize; 4];
        for (i, a) in Attribute::ALL.iter().enumerate() {
            let dim = meta
                .attributes
                .iter()
                .find(|x| x.name == a.name())
                .map(|x| x.latent_dim)
                .ok_or_else(|| format!("attribute {} is not regularized", a.name()))?;
            if dim >= d {
                return Err(format!("latent dimension {dim} out of range"));
            }
            dims[i] = dim;
        }
        let (lo, hi) = meta.pitch_range.unwrap_or(DEFAULT_PITCH_RANGE);
        model.set_pitch_range(lo, hi).map_err(|e| e.to_string())?;
        let prior = meta.prior.clone().unwrap_or_else(|| CodePrior::standard(d));
        let sampler = FreeSampler::new(&prior, &dims)?;
        let encoder_maps = Attribute::ALL.map(|a| {
            calibration(ck, a, dims[a.index()])
                .and_then(LatentMap::from_calibration)
                .unwrap_or_else(|| LatentMap::fallback(a))
        });
        let mut c = Composer {
            model,
            dims,
            maps: encoder_maps.clone(),
            sampler,
            regularized_mean: dims.map(|i| prior.mean[i]),
            reach: [(0.0, 0.0); 4],
            typical: Attribute::ALL
                .map(|a| data_median(ck, a, dims[a.index()]).unwrap_or(KNOBS[a.index()].default)),
            prior_stored: meta.prior.is_some(),
            u: vec![0.0; d],
            e: vec![0.0; d],
            own: vec![0.0; d],
            z: vec![0.0; d],
        };
        for i in 0..4 {
            if let Some(m) = c.decoder_map(i, &encoder_maps[i]) {
                c.maps[i] = m;
            }
            let (lo, hi) = c.maps[i].attribute_range();
            let (dlo, dhi) = data_span(ck, Attribute::ALL[i], dims[i]).unwrap_or((lo, hi));
            c.reach[i] = (lo.min(dlo), hi.max(dhi));
        }
        Ok(c)
    }

    /// The knob map of attribute `i` measured through the decoder: [`CAL_GRID`] values of its
    /// dimension over the encoder calibration's latent span and half of it again either side,
    /// each decoded with [`CAL_CODES`] codes from the prior (the other regularized dimensions at
    /// their prior mean); the median attribute per value, made monotone.
    fn decoder_map(&mut self, i: usize, around: &LatentMap) -> Option<LatentMap> {
        let k = around.knots();
        let (z0, z1) = (k[0].1.min(k[k.len() - 1].1), k[0].1.max(k[k.len() - 1].1));
        let span = (z1 - z0).max(1.0);
        let (from, to) = (z0 - 0.5 * span, z1 + 0.5 * span);
        let mut codes = self.probe_codes();
        let points = (0..CAL_GRID)
            .map(|g| {
                let zv = from + (to - from) * g as f32 / (CAL_GRID - 1) as f32;
                Some((
                    zv,
                    self.decoded_attribute(i, zv, &mut codes)?[CAL_CODES / 2],
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        LatentMap::from_points(&points)
    }

    /// [`CAL_CODES`] codes from the prior with the regularized dimensions at their prior mean:
    /// what the decoder is measured with.
    fn probe_codes(&mut self) -> Vec<f32> {
        let mut codes = vec![0f32; CAL_CODES * self.z.len()];
        for (s, code) in codes.chunks_mut(self.z.len()).enumerate() {
            normals(mix(CALIBRATION_SEED, s as i64, 0), &mut self.u);
            self.sampler.write(&self.u, code);
            for (j, &dim) in self.dims.iter().enumerate() {
                code[dim] = self.regularized_mean[j];
            }
        }
        codes
    }

    /// Attribute `i` of the decodes of `codes` with its dimension set to `zv`, sorted.
    fn decoded_attribute(
        &mut self,
        i: usize,
        zv: f32,
        codes: &mut [f32],
    ) -> Option<[f32; CAL_CODES]> {
        let mut values = [0f32; CAL_CODES];
        let mut m = Measure::rest();
        for (s, code) in codes.chunks_mut(self.z.len()).enumerate() {
            code[self.dims[i]] = zv;
            self.model.decode(code, &mut m).ok()?;
            values[s] = Attribute::ALL[i].of(&m);
        }
        values.sort_by(f32::total_cmp);
        Some(values)
    }

    /// What the decoder plays for each of `targets` (attribute units) of attribute `i` when
    /// `map` turns them into its latent value: the mean over the probe codes. With the
    /// checkpoint's own calibration as `map`, this is the knob response a fine-tuning run must
    /// keep monotone.
    pub fn response(&mut self, i: usize, map: &LatentMap, targets: &[f32]) -> Option<Vec<f32>> {
        let mut codes = self.probe_codes();
        targets
            .iter()
            .map(|&t| {
                let v = self.decoded_attribute(i, map.latent(t), &mut codes)?;
                Some(v.iter().sum::<f32>() / CAL_CODES as f32)
            })
            .collect()
    }

    /// The decoder (for encoding a captured bar, or decoding a code directly).
    pub fn model(&mut self) -> &mut InferModel {
        &mut self.model
    }

    /// Latent dimensions of a code.
    pub fn latent(&self) -> usize {
        self.z.len()
    }

    /// The pitches the decoder may play (MIDI, inclusive).
    pub fn pitch_range(&self) -> (u8, u8) {
        self.model.pitch_range()
    }

    /// Whether the checkpoint stores its own prior (else N(0, I) stands in).
    pub fn has_prior(&self) -> bool {
        self.prior_stored
    }

    /// Knob map of each attribute ([`Attribute::ALL`] order).
    pub fn maps(&self) -> &[LatentMap; 4] {
        &self.maps
    }

    /// What knob `i` reaches, in knob units (lowest, highest): the range of its knob map
    /// (the median bar through the decoder with the knob alone moving its dimension), widened to
    /// the 5-95 % span of the attribute in the training data, which target matching reaches
    /// by moving all four dimensions (`arvae-trainer score` measures how near it gets).
    pub fn reach(&self, i: usize) -> (f32, f32) {
        let (lo, hi) = self.reach[i];
        (KNOBS[i].from_attribute(lo), KNOBS[i].from_attribute(hi))
    }

    /// Knob values ([`KNOBS`] order, knob units) at the median of the model's training data
    /// (the plugin's defaults for a checkpoint without calibration): what `generate` plays for
    /// a knob not given, so a folk model sounds like folk tunes (8 notes a bar) and a Bach
    /// model like chorales (4).
    pub fn typical_knobs(&self) -> [f32; 4] {
        self.typical
    }

    /// Steering targets for `settings`' knobs: one unit of error per attribute from
    /// [`match_unit`] and the reach, the largest search step the map's latent span.
    pub fn steer_targets(&self, settings: &Settings) -> [SteerTarget; 4] {
        let t = settings.targets();
        std::array::from_fn(|i| {
            let map = &self.maps[i];
            let (lo, hi) = map.attribute_range();
            let k = map.knots();
            SteerTarget {
                attribute: Attribute::ALL[i],
                dim: self.dims[i],
                target: t[i],
                scale: match_unit(Attribute::ALL[i], hi - lo),
                step: (k[k.len() - 1].1 - k[0].1).abs().max(0.5),
            }
        })
    }

    /// The bars of phrase `q` (bars `q * P .. q * P + P` for P = `settings.phrase_len()`) into
    /// `out[..P]`; returns P.
    pub fn phrase(
        &mut self,
        settings: &Settings,
        q: i64,
        out: &mut [Measure],
    ) -> Result<usize, InferError> {
        let p = settings.phrase_len().min(out.len());
        let v = settings.variation.clamp(0.0, 1.0) * std::f32::consts::FRAC_PI_2;
        let m = settings.motion.clamp(0.0, 1.0) * std::f32::consts::FRAC_PI_2;
        let seed = settings.seed as u64;
        let mut before = None;
        for (k, bar) in out[..p].iter_mut().enumerate() {
            // e_k = cos(v) A_k + sin(v) B_(q,k): A is the same for every return of the phrase.
            normals(mix(seed, k as i64, SHARED), &mut self.e);
            normals(mix(seed, k as i64, q), &mut self.own);
            for (e, b) in self.e.iter_mut().zip(&self.own) {
                *e = v.cos() * *e + v.sin() * b;
            }
            for (u, e) in self.u.iter_mut().zip(&self.e) {
                *u = if k == 0 {
                    *e
                } else {
                    m.cos() * *u + m.sin() * e
                };
            }
            self.sampler.write(&self.u, &mut self.z);
            *bar = self.finish(settings, before)?;
            before = Register::of(bar);
        }
        Ok(p)
    }

    /// Bar `bar` (its phrase is decoded whole; use [`phrase`](Self::phrase) to keep the rest).
    pub fn bar(&mut self, settings: &Settings, bar: i64) -> Result<Measure, InferError> {
        let p = settings.phrase_len() as i64;
        let mut out = [Measure::rest(); MAX_PHRASE];
        self.phrase(settings, bar.div_euclid(p), &mut out)?;
        Ok(out[bar.rem_euclid(p) as usize])
    }

    /// A bar whose free dimensions are `source` (a captured bar's posterior mean; transform
    /// mode), with the knobs, matching and key of `settings`.
    pub fn transform(
        &mut self,
        settings: &Settings,
        source: &[f32],
    ) -> Result<Measure, InferError> {
        if source.len() != self.z.len() {
            return Err(InferError::Length {
                what: "source",
                expected: self.z.len(),
                got: source.len(),
            });
        }
        self.z.copy_from_slice(source);
        self.finish(settings, None)
    }

    /// Sets the regularized dimensions of `self.z` from the knobs, decodes (matching when
    /// asked) and moves the bar into the key.
    fn finish(
        &mut self,
        settings: &Settings,
        before: Option<Register>,
    ) -> Result<Measure, InferError> {
        for ((dim, map), t) in self.dims.iter().zip(&self.maps).zip(settings.targets()) {
            self.z[*dim] = map.latent(t);
        }
        let targets = self.steer_targets(settings);
        let passes = if settings.match_targets {
            MATCH_PASSES
        } else {
            0
        };
        let mut m = Measure::rest();
        // With a key, matching also prefers bars that some transposition puts wholly in it.
        let scale = settings.key.scale;
        let penalty = move |m: &Measure| match scale {
            Scale::Any => 0.0,
            s => KEY_WEIGHT * outside_any_key(m, s) as f32,
        };
        steer_with(
            &mut self.model,
            &mut self.z,
            &targets,
            passes,
            &mut m,
            &penalty,
        )?;
        let range = self.pitch_range();
        let anchor = (range.0 as f32 + range.1 as f32) / 2.0;
        let shift = fit_shift(&m, settings.key, range, before, anchor);
        Ok(transposed(&m, shift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contour_past_the_range_knob_raises_the_range_target() {
        let mut s = Settings {
            knobs: [10.0, 5.0, 4.0, -12.0],
            ..Settings::default()
        };
        let t = s.targets();
        assert_eq!(t[1], 12.0 / 26.0);
        assert_eq!(t[3], -12.0 / 26.0);
        assert_eq!(t[2], 4.0 / 24.0);
        s.knobs[3] = 3.0;
        assert_eq!(s.targets()[1], 5.0 / 26.0);
    }

    #[test]
    fn the_density_knob_bounds_the_rhythm_target() {
        let mut s = Settings {
            knobs: [0.0, 5.0, 8.0, 0.0],
            ..Settings::default()
        };
        // Eight notes, give or take one: at least the seven lightest tick weights (3.12 of
        // 27.79); five notes: at most the six heaviest (12.0).
        assert!((s.targets()[0] - 3.12 / 27.79).abs() < 1e-6);
        s.knobs[0] = 50.0;
        s.knobs[2] = 5.0;
        assert!((s.targets()[0] - 12.0 / 27.79).abs() < 1e-6);
        s.knobs[2] = 8.0;
        // Inside the bounds the knob is the target.
        s.knobs[0] = 30.0;
        assert_eq!(s.targets()[0], 0.3);
    }

    #[test]
    fn one_note_a_bar_has_no_range_or_contour() {
        let mut s = Settings {
            knobs: [10.0, 6.0, 1.0, 4.0],
            ..Settings::default()
        };
        // (10 % rhythmic complexity is within what two notes can have.)
        assert_eq!(s.targets(), [0.1, 0.0, 1.0 / 24.0, 0.0]);
        // Halfway between one and two notes: half the range and contour asked for.
        s.knobs[2] = 1.5;
        let t = s.targets();
        assert!((t[1] - 3.0 / 26.0).abs() < 1e-6 && (t[3] - 2.0 / 26.0).abs() < 1e-6);
        // Two notes or more: the knobs as set.
        s.knobs[2] = 2.0;
        assert_eq!(s.targets()[1], 6.0 / 26.0);
        assert_eq!(s.targets()[3], 4.0 / 26.0);
    }

    #[test]
    #[cfg(feature = "builtin-models")]
    fn phrases_are_pure_and_return() {
        let ck = Checkpoint::from_bytes(crate::builtin::BUILTINS[0].bytes, "bach").unwrap();
        let mut c = Composer::from_checkpoint(&ck).unwrap();
        assert!(c.has_prior());
        let s = Settings {
            variation: 0.0,
            seed: 4,
            ..Settings::default()
        };
        let (mut a, mut b) = ([Measure::rest(); MAX_PHRASE], [Measure::rest(); MAX_PHRASE]);
        c.phrase(&s, 0, &mut a).unwrap();
        c.phrase(&s, 5, &mut b).unwrap();
        // Variation 0: phrase 5 is phrase 0 again; bar() agrees with phrase().
        assert_eq!(a[..4], b[..4]);
        assert_eq!(c.bar(&s, 22).unwrap(), a[2]);
        // Motion 0: one bar; motion 1: several.
        let still = Settings { motion: 0.0, ..s };
        c.phrase(&still, 0, &mut a).unwrap();
        assert!(a[..4].iter().all(|m| *m == a[0]));
        let moving = Settings { motion: 1.0, ..s };
        c.phrase(&moving, 0, &mut a).unwrap();
        assert!(a[..4].windows(2).any(|w| w[0] != w[1]));
        // Variation 1: a returning phrase is new.
        let varied = Settings {
            variation: 1.0,
            ..moving
        };
        c.phrase(&varied, 0, &mut a).unwrap();
        c.phrase(&varied, 1, &mut b).unwrap();
        assert_ne!(a[..4], b[..4]);
        // Every bar stays inside the trained range and, in C major, mostly in the scale.
        let key = Key::default();
        let notes: Vec<u8> = a[..4]
            .iter()
            .chain(&b[..4])
            .flat_map(|m| m.tokens().iter().copied().filter(|&t| t < 128))
            .collect();
        assert!(notes.iter().all(|&p| (55..=84).contains(&p)), "{notes:?}");
        let inside = notes.iter().filter(|&&p| key.contains(p as i32)).count();
        assert!(
            inside * 10 >= notes.len() * 8,
            "{inside} of {}",
            notes.len()
        );
    }
}
