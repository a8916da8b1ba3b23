//! The randomness of one step (dropout masks, eps), drawn in exactly the order the candle
//! model draws it, so the same seeded RNG gives both engines identical masks and samples.

use rand::{Rng, RngCore};

use crate::music::token::{BEATS_PER_MEASURE, TICKS_PER_MEASURE};
use crate::music_model::MeasureVaeConfig;
use crate::random::standard_normal;

/// Dropout masks (0 or 1/(1-p)) and reparameterization noise for one batch.
///
/// Layouts (B = batch, H = hidden, L = layers, T = 24 ticks): `encoder` (L-1, T, B, 2H),
/// `eps` (B, latent), `beat` (L-1, 4, B, H), `tick` (T, L-1, B, H). The mask vectors are empty
/// when there is no dropout (evaluation, or p = 0).
#[derive(Clone, Debug, Default)]
pub struct StepNoise {
    /// Rows of the batch.
    pub batch: usize,
    /// Encoder inter-layer masks.
    pub encoder: Vec<f32>,
    /// Samples of N(0, 1) for z = mu + exp(log_std) · eps.
    pub eps: Vec<f32>,
    /// Beat RNN inter-layer masks.
    pub beat: Vec<f32>,
    /// Tick RNN inter-layer masks.
    pub tick: Vec<f32>,
}

fn mask(rng: &mut dyn RngCore, p: f32, n: usize, out: &mut Vec<f32>) {
    let keep = 1.0 / (1.0 - p);
    out.extend((0..n).map(|_| if rng.gen::<f32>() >= p { keep } else { 0.0 }));
}

impl StepNoise {
    /// Draws the noise of one batch of `batch` rows from `rng`: with `train`, dropout masks as
    /// the candle model's training forward draws them (encoder masks, eps, beat masks, then per
    /// tick the tick masks); without, eps only.
    pub fn draw(cfg: &MeasureVaeConfig, batch: usize, train: bool, rng: &mut dyn RngCore) -> Self {
        let mut s = StepNoise::default();
        s.redraw(cfg, batch, train, rng);
        s
    }

    /// [`StepNoise::draw`] into these buffers (no allocation once they are large enough).
    pub fn redraw(
        &mut self,
        cfg: &MeasureVaeConfig,
        batch: usize,
        train: bool,
        rng: &mut dyn RngCore,
    ) {
        let (h, l, t) = (cfg.hidden, cfg.layers, TICKS_PER_MEASURE);
        let dropout = train && cfg.dropout > 0.0;
        let s = self;
        s.batch = batch;
        s.encoder.clear();
        s.eps.clear();
        s.beat.clear();
        s.tick.clear();
        if dropout {
            for _ in 1..l {
                mask(rng, cfg.dropout, t * batch * 2 * h, &mut s.encoder);
            }
        }
        s.eps
            .extend((0..batch * cfg.latent).map(|_| standard_normal(rng) as f32));
        if dropout {
            for _ in 1..l {
                mask(rng, cfg.dropout, BEATS_PER_MEASURE * batch * h, &mut s.beat);
            }
            for _ in 0..t {
                for _ in 1..l {
                    mask(rng, cfg.dropout, batch * h, &mut s.tick);
                }
            }
        }
    }

    /// Whether dropout masks are present.
    pub fn has_dropout(&self) -> bool {
        !self.encoder.is_empty() || !self.beat.is_empty() || !self.tick.is_empty()
    }
}
