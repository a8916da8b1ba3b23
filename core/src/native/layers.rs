//! What the encoder and the decoder share: the sequence sizes, the read-only view of the
//! parameters ([`Model`]), the rows of the batch one worker handles ([`Part`]) with their
//! dropout masks, the backward pass of a linear layer, and the reshapes between per-row
//! (rows, L·H) and per-layer (L, rows, H) states.

use super::gru::GruScratch;
use super::noise::StepNoise;
use super::params::{GruP, LinP, ParamLayout};
use crate::linalg::{colsum_add, gemm, Mat};
use crate::music::token::{BEATS_PER_MEASURE, TICKS_PER_BEAT, TICKS_PER_MEASURE};
use crate::music_model::MeasureVaeConfig;

/// Ticks of a measure: steps of the encoder and of the tick RNN.
pub(super) const T: usize = TICKS_PER_MEASURE;
/// Beats of a measure: steps of the beat RNN.
pub(super) const NB: usize = BEATS_PER_MEASURE;
/// Ticks per beat: the tick RNN restarts from a beat's initial state every `TPB` ticks.
pub(super) const TPB: usize = TICKS_PER_BEAT;

/// Read-only model data shared by the parts of a batch: the config, where each tensor lies in
/// the flat parameter vector, and that vector.
pub(super) struct Model<'a> {
    pub cfg: &'a MeasureVaeConfig,
    pub lay: &'a ParamLayout,
    pub p: &'a [f32],
}

impl Model<'_> {
    /// `n` parameters from offset `off`.
    pub fn w(&self, off: usize, n: usize) -> &[f32] {
        &self.p[off..off + n]
    }
    /// A linear layer's weight (out, in).
    pub fn lw(&self, l: &LinP) -> &[f32] {
        self.w(l.w, l.input * l.output)
    }
    /// A linear layer's bias (out).
    pub fn lb(&self, l: &LinP) -> &[f32] {
        self.w(l.b, l.output)
    }
    /// A GRU cell's input weight W_ih (3H, input).
    pub fn wih(&self, g: &GruP) -> &[f32] {
        self.w(g.w_ih, 3 * self.cfg.hidden * g.input)
    }
    /// A GRU cell's input bias b_ih (3H).
    pub fn bih(&self, g: &GruP) -> &[f32] {
        self.w(g.b_ih, 3 * self.cfg.hidden)
    }
}

/// What one part of the batch (a contiguous run of rows) sees of the step.
pub(super) struct Part<'a> {
    /// First row of this part in the batch.
    pub r0: usize,
    /// Rows of this part.
    pub rows: usize,
    /// Rows of the whole batch (the noise and the loss means are over all of them).
    pub batch: usize,
    /// Tokens of this part (rows, 24).
    pub tokens: &'a [u32],
    /// The step's noise for the whole batch.
    pub noise: &'a StepNoise,
    /// Teacher forcing (else greedy decoding).
    pub teacher: bool,
    /// Whether gradients are computed.
    pub backward: bool,
}

impl<'a> Part<'a> {
    /// This part's rows of a whole-batch mask of `width` values per row that starts at `base`
    /// (the offset of row 0); `None` without dropout.
    fn mask(&self, masks: &'a [f32], base: usize, width: usize) -> Option<&'a [f32]> {
        let start = base + self.r0 * width;
        (!masks.is_empty()).then(|| &masks[start..start + self.rows * width])
    }

    /// Dropout mask (rows, 2H) of the encoder's layer-`k` input at tick `t` (k ≥ 1).
    pub fn encoder_mask(&self, k: usize, t: usize, h: usize) -> Option<&'a [f32]> {
        let w = 2 * h;
        self.mask(&self.noise.encoder, ((k - 1) * T + t) * self.batch * w, w)
    }

    /// Dropout mask (rows, H) of the beat RNN's layer-`k` input at beat `t` (k ≥ 1).
    pub fn beat_mask(&self, k: usize, t: usize, h: usize) -> Option<&'a [f32]> {
        self.mask(&self.noise.beat, ((k - 1) * NB + t) * self.batch * h, h)
    }

    /// Dropout mask (rows, H) of the tick RNN's layer-`k` input at tick `t` (k ≥ 1) in a stack
    /// of `l` layers.
    pub fn tick_mask(&self, k: usize, t: usize, h: usize, l: usize) -> Option<&'a [f32]> {
        self.mask(&self.noise.tick, (t * (l - 1) + k - 1) * self.batch * h, h)
    }
}

/// Scratch one worker's passes share: the GRU step buffers and the input-side gate gradients
/// of one layer (two for the encoder's two directions).
pub(super) struct Scratch {
    pub gru: GruScratch,
    /// (T, rows, 3H) each.
    pub dgi: [Vec<f32>; 2],
}

impl Scratch {
    pub fn new(cfg: &MeasureVaeConfig, cap: usize) -> Self {
        let n = T * cap * 3 * cfg.hidden;
        Scratch {
            gru: GruScratch::new(T, cap, cfg.hidden),
            dgi: [vec![0.0; n], vec![0.0; n]],
        }
    }
}

/// x ← x · mask, element-wise (nothing without a mask).
pub(super) fn apply_mask(x: &mut [f32], mask: Option<&[f32]>) {
    if let Some(mask) = mask {
        for (x, mk) in x.iter_mut().zip(mask) {
            *x *= mk;
        }
    }
}

/// Backward of y (rows, out) = x Wᵀ + b: dW += dyᵀ x and db += Σ dy into `grads`; with `dx`
/// = (buffer, accumulate), dx = dy W (or dx += dy W).
pub(super) fn linear_backward(
    m: &Model,
    l: &LinP,
    grads: &mut [f32],
    dy: &[f32],
    x: &[f32],
    rows: usize,
    dx: Option<(&mut [f32], bool)>,
) {
    let (i, o) = (l.input, l.output);
    gemm(
        &mut grads[l.w..l.w + i * o],
        i,
        Mat::rm(dy, rows, o).t(),
        Mat::rm(x, rows, i),
        true,
    );
    colsum_add(&mut grads[l.b..l.b + o], dy, rows, o);
    if let Some((dx, acc)) = dx {
        gemm(dx, i, Mat::rm(dy, rows, o), Mat::rm(m.lw(l), o, i), acc);
    }
}

/// Per-row states (n, L·H) to per-layer states (L, n, H): the initial states of a GRU stack.
pub(super) fn split_layers(dst: &mut [f32], src: &[f32], n: usize, l: usize, h: usize) {
    let lh = l * h;
    for k in 0..l {
        for r in 0..n {
            let d = k * n * h + r * h;
            dst[d..d + h].copy_from_slice(&src[r * lh + k * h..r * lh + (k + 1) * h]);
        }
    }
}

/// Per-layer states (L, n, H) to per-row states (n, L·H): the inverse of [`split_layers`].
pub(super) fn join_layers(dst: &mut [f32], src: &[f32], n: usize, l: usize, h: usize) {
    let lh = l * h;
    for k in 0..l {
        for r in 0..n {
            let s = k * n * h + r * h;
            dst[r * lh + k * h..r * lh + (k + 1) * h].copy_from_slice(&src[s..s + h]);
        }
    }
}
