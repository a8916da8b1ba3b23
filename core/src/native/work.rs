//! One worker's share of a training step: the buffers of one part of the batch (encoder,
//! latent code, decoder, scratch, its own gradient vector) and the two passes that run on a
//! part alone, before and after the whole-batch latent loss (see `engine`).

use super::decoder::Decoder;
use super::encoder::Encoder;
use super::layers::{Model, Part, Scratch};
use super::loss::{cross_entropy, Logits};
use crate::music_model::MeasureVaeConfig;

/// The latent code of one part: mean, log-std, the sample z = mu + exp(ls) · eps, and the
/// gradients (rows, latent) each.
pub(super) struct Latent {
    pub mu: Vec<f32>,
    pub ls: Vec<f32>,
    pub z: Vec<f32>,
    /// d loss / d z from the decoder (reconstruction only).
    pub dz: Vec<f32>,
    /// d loss / d mu and d loss / d log-std of the whole loss, set by the latent loss.
    pub dmu: Vec<f32>,
    pub dls: Vec<f32>,
}

impl Latent {
    fn new(cap: usize, latent: usize) -> Self {
        let z = || vec![0.0f32; cap * latent];
        Latent {
            mu: z(),
            ls: z(),
            z: z(),
            dz: z(),
            dmu: z(),
            dls: z(),
        }
    }

    /// z = mu + exp(ls) · eps (this part's rows of eps).
    fn sample(&mut self, eps: &[f32]) {
        for (((z, &mu), &ls), &e) in self.z.iter_mut().zip(&self.mu).zip(&self.ls).zip(eps) {
            *z = mu + ls.exp() * e;
        }
    }
}

/// The buffers of one part of a batch, for up to `cap` rows.
pub(super) struct Work {
    pub cap: usize,
    /// Gradients of every parameter (flat, checkpoint order) from this part's rows.
    pub grads: Vec<f32>,
    scratch: Scratch,
    encoder: Encoder,
    pub latent: Latent,
    decoder: Decoder,
    /// Cross-entropy summed over this part's tokens, by [`Work::reconstruct`].
    pub ce_sum: f64,
    /// Tokens whose argmax is the target, by [`Work::reconstruct`].
    pub correct: usize,
}

impl Work {
    pub fn new(cfg: &MeasureVaeConfig, total: usize, cap: usize) -> Self {
        Work {
            cap,
            grads: vec![0.0; total],
            scratch: Scratch::new(cfg, cap),
            encoder: Encoder::new(cfg, cap),
            latent: Latent::new(cap, cfg.latent),
            decoder: Decoder::new(cfg, cap),
            ce_sum: 0.0,
            correct: 0,
        }
    }

    /// Phase 1, up to the latent code and back to it: encoder forward to mu and log-std,
    /// z sampled, decoder forward to the logits, cross-entropy; when training, the gradients
    /// are reset and the decoder's backward pass gives its parameters' gradients and
    /// d reconstruction / d z (`latent.dz`).
    pub fn reconstruct(&mut self, m: &Model, part: &Part) {
        if part.backward {
            self.grads.fill(0.0);
        }
        let (lat, sc) = (&mut self.latent, &mut self.scratch.gru);
        self.encoder.forward(m, part, &mut lat.mu, &mut lat.ls, sc);
        let zd = m.cfg.latent;
        lat.sample(&part.noise.eps[part.r0 * zd..(part.r0 + part.rows) * zd]);
        self.decoder.forward(m, part, &lat.z, sc);
        let dec = &mut self.decoder;
        let logits = Logits {
            logits: &dec.logits,
            pre: &dec.logits_pre,
            relu: m.cfg.logit_relu,
            tokens: part.tokens,
            rows: part.rows,
            vocab: m.cfg.vocab_size,
        };
        let dlogits = part.backward.then_some(&mut dec.dlogits[..]);
        (self.ce_sum, self.correct) = cross_entropy(&logits, part.batch, dlogits);
        if part.backward {
            let (z, dz) = (&lat.z[..], &mut lat.dz[..]);
            dec.backward(m, part, z, dz, &mut self.grads, &mut self.scratch);
        }
    }

    /// Phase 3, back from the latent code: from `latent.dmu` and `latent.dls` through the
    /// heads and the encoder, adding to the decoder's gradients.
    pub fn backprop_encoder(&mut self, m: &Model, part: &Part) {
        let d = (&self.latent.dmu[..], &self.latent.dls[..]);
        let (grads, scratch) = (&mut self.grads, &mut self.scratch);
        self.encoder.backward(m, part, d, grads, scratch);
    }
}
