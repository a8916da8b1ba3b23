//! The native MeasureVAE engine: forward, loss and backward by hand on preallocated buffers,
//! then Adam.
//!
//! A step runs in three phases. The batch is split into parts of contiguous rows: two halves
//! run side by side on two threads (`rayon::join`) when two threads are allowed and the batch
//! has at least [`MIN_SPLIT_ROWS`] rows, else one part. Each part has its own [`Work`]
//! (buffers, single-threaded GEMMs, its own gradient vector).
//!
//! 1. [`Work::reconstruct`] (per part): encoder forward, z, decoder forward, cross-entropy and
//!    the decoder's backward pass down to d reconstruction / d z.
//! 2. [`latent_loss`] (whole batch, serial): KL and the AR loss over all B x B pairs of the
//!    sampled z need every row at once; they give the loss values and each part's
//!    d loss / d mu and d loss / d log-std.
//! 3. [`Work::backprop_encoder`] (per part): heads and encoder backward; then the second
//!    part's gradients are added to the first's, which Adam reads.
//!
//! Recurrences run layer by layer over whole sequences where the inputs are known (encoder,
//! beat RNN, tick RNN with teacher forcing, every backward pass), so input projections and
//! weight gradients are single GEMMs over all time steps; greedy decoding runs tick by tick.

use rand::RngCore;

use super::adam::NativeAdam;
use super::layers::{Model, Part, T};
use super::loss::{batch_loss, latent_gradients, BatchLatent, NativeLoss, StepValues, ATTRIBUTES};
use super::noise::StepNoise;
use super::params::ParamLayout;
use super::work::Work;
use crate::checkpoint::NamedTensors;
use crate::music_model::MeasureVaeConfig;

/// The native training engine: parameters, gradients, Adam state and work buffers.
pub struct NativeEngine {
    cfg: MeasureVaeConfig,
    layout: ParamLayout,
    params: Vec<f32>,
    works: Vec<Work>,
    adam: NativeAdam,
    /// 1 or 2: parts a batch is split into (see [`NativeEngine::set_threads`]).
    threads: usize,
    /// Reused by [`NativeEngine::train_step`] and [`NativeEngine::eval_step`].
    noise: StepNoise,
}

impl std::fmt::Debug for NativeEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeEngine")
            .field("cfg", &self.cfg)
            .field("threads", &self.threads)
            .finish()
    }
}

/// Rows below which a batch is not split between threads.
const MIN_SPLIT_ROWS: usize = 16;

/// The most threads the engine uses: a batch is split into at most two halves.
const MAX_THREADS: usize = 2;

impl NativeEngine {
    /// An engine for `cfg` with parameter values `tensors` (every parameter, exact shapes) and
    /// fresh Adam state with learning rate `lr`. It uses two threads when rayon has at least
    /// two (`RAYON_NUM_THREADS`, all cores by default), else one; see
    /// [`NativeEngine::set_threads`].
    pub fn new(cfg: &MeasureVaeConfig, tensors: &NamedTensors, lr: f64) -> Result<Self, String> {
        cfg.validate()?;
        let layout = ParamLayout::new(cfg);
        let params = layout.flatten(tensors)?;
        Ok(NativeEngine {
            cfg: cfg.clone(),
            adam: NativeAdam::new(layout.total, lr),
            layout,
            params,
            works: Vec::new(),
            threads: rayon::current_num_threads().clamp(1, MAX_THREADS),
            noise: StepNoise::default(),
        })
    }

    /// Threads per step, clamped to 1 or 2: with 2, a batch of at least 16 rows runs as two
    /// halves side by side; more threads are not used (each half's GEMMs are single-threaded).
    /// One and two threads give the same step up to float rounding (the halves' gradients are
    /// summed in another order), not bit for bit.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.clamp(1, MAX_THREADS);
    }

    /// The config.
    pub fn config(&self) -> &MeasureVaeConfig {
        &self.cfg
    }

    /// The parameters by name.
    pub fn to_tensors(&self) -> NamedTensors {
        self.layout.unflatten(&self.params, "")
    }

    /// The gradients of the last [`NativeEngine::forward_backward`] by parameter name.
    pub fn grad_tensors(&self) -> NamedTensors {
        match self.works.first() {
            Some(w) => self.layout.unflatten(&w.grads, ""),
            None => self.layout.unflatten(&vec![0.0; self.layout.total], ""),
        }
    }

    /// Adam's state (`adam.m.*`, `adam.v.*`), as `model::Adam::state_tensors` names it.
    pub fn adam_state_tensors(&self) -> NamedTensors {
        self.adam.state_tensors(&self.layout)
    }

    /// Restores Adam's step count and moments (from a checkpoint written by either engine).
    pub fn load_adam_state(&mut self, step: u64, tensors: &NamedTensors) -> Result<(), String> {
        self.adam.load_state(&self.layout, step, tensors)
    }

    /// Adam steps taken.
    pub fn adam_step_count(&self) -> u64 {
        self.adam.step_count()
    }

    /// The optimizer (learning rate and moments).
    pub fn adam_mut(&mut self) -> &mut NativeAdam {
        &mut self.adam
    }

    /// (first row, rows) of each part of a batch of `batch` rows.
    fn split(&self, batch: usize) -> Vec<(usize, usize)> {
        if self.threads > 1 && batch >= MIN_SPLIT_ROWS {
            let a = batch.div_ceil(2);
            vec![(0, a), (a, batch - a)]
        } else {
            vec![(0, batch)]
        }
    }

    /// A [`Work`] per part, large enough for its rows.
    fn ensure_work(&mut self, parts: &[(usize, usize)]) {
        for (i, &(_, rows)) in parts.iter().enumerate() {
            if self.works.len() <= i {
                self.works
                    .push(Work::new(&self.cfg, self.layout.total, rows.max(1)));
            } else if self.works[i].cap < rows {
                self.works[i] = Work::new(&self.cfg, self.layout.total, rows);
            }
        }
    }

    /// Panics unless tokens are (B, 24) in the vocabulary, attributes (B, 4), the noise drawn
    /// for B rows and the regularized pairs in range; returns B.
    fn check_batch(
        &self,
        tokens: &[u32],
        attributes: &[f32],
        noise: &StepNoise,
        loss: &NativeLoss,
    ) -> usize {
        let batch = tokens.len() / T;
        assert!(
            batch > 0 && tokens.len() == batch * T,
            "tokens must be (B, 24)"
        );
        assert_eq!(
            attributes.len(),
            batch * ATTRIBUTES,
            "attributes must be (B, 4)"
        );
        assert_eq!(noise.batch, batch, "noise drawn for another batch size");
        let vmax = tokens.iter().copied().max().unwrap_or(0) as usize;
        assert!(
            vmax < self.cfg.vocab_size,
            "token {vmax} out of the vocabulary"
        );
        for &(attr, dim) in &loss.regularized {
            assert!(
                attr < ATTRIBUTES && dim < self.cfg.latent,
                "regularized pair ({attr}, {dim}) out of range"
            );
        }
        batch
    }

    /// Forward pass and loss of tokens (B, 24) and attributes (B, 4) with the randomness in
    /// `noise` (dropout when it has masks); with `backward`, the gradients too (read them
    /// with [`NativeEngine::grad_tensors`]). Three phases: per part of the batch, forward and
    /// back through the decoder to the latent code; over the whole batch, KL and the AR loss;
    /// per part, back through the encoder.
    pub fn forward_backward(
        &mut self,
        tokens: &[u32],
        attributes: &[f32],
        teacher: bool,
        noise: &StepNoise,
        loss: &NativeLoss,
        backward: bool,
    ) -> StepValues {
        let batch = self.check_batch(tokens, attributes, noise, loss);
        let ranges = self.split(batch);
        self.ensure_work(&ranges);
        let model = Model {
            cfg: &self.cfg,
            lay: &self.layout,
            p: &self.params,
        };
        let parts: Vec<Part> = ranges
            .iter()
            .map(|&(r0, rows)| Part {
                r0,
                rows,
                batch,
                tokens: &tokens[r0 * T..(r0 + rows) * T],
                noise,
                teacher,
                backward,
            })
            .collect();
        let works = &mut self.works;
        on_parts(works, &parts, |w, p| w.reconstruct(&model, p));
        let values = latent_loss(works, &parts, attributes, loss, self.cfg.latent);
        if backward {
            on_parts(works, &parts, |w, p| w.backprop_encoder(&model, p));
            if parts.len() == 2 {
                let (a, b) = works.split_at_mut(1);
                for (x, y) in a[0].grads.iter_mut().zip(&b[0].grads) {
                    *x += y;
                }
            }
        }
        values
    }

    /// Applies one Adam update from the gradients of the last backward pass.
    pub fn adam_step(&mut self) {
        let grads = &self.works.first().expect("a backward pass ran").grads;
        self.adam.step(&mut self.params, grads);
    }

    /// Applies one Adam update from explicit gradients (flat, in checkpoint order).
    pub fn adam_step_with(&mut self, grads: &[f32]) {
        assert_eq!(grads.len(), self.params.len(), "one gradient per parameter");
        self.adam.step(&mut self.params, grads);
    }

    /// One training step as `model::train_step`: draws the step's noise from `rng` in the
    /// candle model's order, forward, backward, Adam.
    pub fn train_step(
        &mut self,
        tokens: &[u32],
        attributes: &[f32],
        loss: &NativeLoss,
        teacher_forcing: bool,
        rng: &mut dyn RngCore,
    ) -> StepValues {
        let mut noise = std::mem::take(&mut self.noise);
        noise.redraw(&self.cfg, tokens.len() / T, true, rng);
        let v = self.forward_backward(tokens, attributes, teacher_forcing, &noise, loss, true);
        self.noise = noise;
        self.adam_step();
        v
    }

    /// Evaluation as `model::eval_step`: no dropout, greedy decoding, z sampled with `rng`.
    pub fn eval_step(
        &mut self,
        tokens: &[u32],
        attributes: &[f32],
        loss: &NativeLoss,
        rng: &mut dyn RngCore,
    ) -> StepValues {
        let mut noise = std::mem::take(&mut self.noise);
        noise.redraw(&self.cfg, tokens.len() / T, false, rng);
        let v = self.forward_backward(tokens, attributes, false, &noise, loss, false);
        self.noise = noise;
        v
    }
}

/// Runs `f` on each part with its work: two parts side by side on two threads, one inline.
fn on_parts<F>(works: &mut [Work], parts: &[Part], f: F)
where
    F: Fn(&mut Work, &Part) + Sync,
{
    match (works, parts) {
        ([a, b, ..], [pa, pb]) => {
            rayon::join(|| f(a, pa), || f(b, pb));
        }
        ([a, ..], [pa]) => f(a, pa),
        _ => unreachable!("one or two parts, each with its work"),
    }
}

/// Phase 2, KL and attribute regularization over the whole batch: gathers the parts' latent
/// codes (`zd` dimensions) and cross-entropy sums, computes the loss values and, when
/// training, sets each part's `latent.dmu` and `latent.dls`.
fn latent_loss(
    works: &mut [Work],
    parts: &[Part],
    attributes: &[f32],
    loss: &NativeLoss,
    zd: usize,
) -> StepValues {
    let batch = parts[0].batch;
    let mut mu = Vec::with_capacity(batch * zd);
    let mut ls = Vec::with_capacity(batch * zd);
    let mut z = Vec::with_capacity(batch * zd);
    let (mut ce, mut correct) = (0.0f64, 0usize);
    for (w, p) in works.iter().zip(parts) {
        mu.extend_from_slice(&w.latent.mu[..p.rows * zd]);
        ls.extend_from_slice(&w.latent.ls[..p.rows * zd]);
        z.extend_from_slice(&w.latent.z[..p.rows * zd]);
        ce += w.ce_sum;
        correct += w.correct;
    }
    let lat = BatchLatent {
        mu: &mu,
        ls: &ls,
        z: &z,
        batch,
        latent: zd,
    };
    let (values, dz_ar) = batch_loss(&lat, attributes, loss, (ce, correct));
    if parts[0].backward {
        for (w, p) in works.iter_mut().zip(parts) {
            let n = p.rows * zd;
            let l = &mut w.latent;
            let d = (&mut l.dmu[..n], &mut l.dls[..n]);
            latent_gradients(&lat, &p.noise.eps, loss.beta, p.r0, &l.dz, &dz_ar, d);
        }
    }
    values
}
