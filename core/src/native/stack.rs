//! A stack of unidirectional GRU layers, the shape the decoder's beat RNN and tick RNN share:
//! layer k ≥ 1 reads layer k-1's outputs through a dropout mask, and every layer restarts
//! from given initial states at each segment of `seg` steps (the beat RNN: one segment of 4
//! beats; the tick RNN: a segment of 6 ticks per beat).
//!
//! Layer 0's input differs between the two RNNs, so its gate inputs are the caller's work in
//! both directions: [`Stack::forward_upper`] runs the layers above it, [`Stack::backward`] goes
//! down all layers and leaves layer 0's input-side gate gradients for the caller.

use super::gru::{GruScratch, Seq};
use super::layers::{apply_mask, Model};
use super::params::GruP;
use crate::linalg::{colsum_add, gemm, linear, Mat};

/// The layers of one stack in one part of the batch.
pub(super) struct Stack<'s> {
    /// Activations per layer (each over the same steps).
    seqs: &'s mut [Seq],
    /// Inputs of layers 1.. after dropout, (steps, rows, H) each.
    xs: &'s mut [Vec<f32>],
    /// Weights per layer.
    weights: &'s [GruP],
    /// Steps per segment.
    seg: usize,
    /// Rows of the part.
    rows: usize,
}

impl<'s> Stack<'s> {
    /// The stack of `weights` over `seqs` with layer inputs `xs`, segments of `seg` steps.
    pub fn new(
        seqs: &'s mut [Seq],
        xs: &'s mut [Vec<f32>],
        weights: &'s [GruP],
        seg: usize,
        rows: usize,
    ) -> Self {
        Stack {
            seqs,
            xs,
            weights,
            seg,
            rows,
        }
    }

    /// Segments per layer.
    fn segments(&self) -> usize {
        self.seqs[0].steps / self.seg
    }

    /// Sets the input of layer `k` ≥ 1 at step `t`: layer k-1's output there times
    /// `mask(k, t)`.
    pub fn layer_input<'m>(
        &mut self,
        k: usize,
        t: usize,
        mask: impl Fn(usize, usize) -> Option<&'m [f32]>,
    ) {
        let bh = self.rows * self.seqs[0].h;
        let x = &mut self.xs[k - 1][t * bh..(t + 1) * bh];
        x.copy_from_slice(&self.seqs[k - 1].out[t * bh..(t + 1) * bh]);
        apply_mask(x, mask(k, t));
    }

    /// Forward of layers 1.. over all steps, once layer 0 has run: per layer, its input
    /// (dropout on the layer below), the input projection as one GEMM over all steps, the
    /// recurrence from the segment initial states `inits` (L, segments, rows, H).
    pub fn forward_upper<'m>(
        &mut self,
        m: &Model,
        inits: &[f32],
        mask: impl Fn(usize, usize) -> Option<&'m [f32]> + Copy,
        sc: &mut GruScratch,
    ) {
        let (steps, h, rows) = (self.seqs[0].steps, self.seqs[0].h, self.rows);
        let per_layer = self.segments() * rows * h;
        for k in 1..self.seqs.len() {
            for t in 0..steps {
                self.layer_input(k, t, mask);
            }
            let w = &self.weights[k];
            let seq = &mut self.seqs[k];
            linear(
                &mut seq.gi,
                &self.xs[k - 1],
                steps * rows,
                m.wih(w),
                m.bih(w),
                3 * h,
            );
            seq.forward(
                rows,
                false,
                self.seg,
                Some(&inits[k * per_layer..]),
                m.p,
                w,
                sc,
            );
        }
    }

    /// Backward of all layers from the top layer's `dout`, top to bottom: each layer's
    /// recurrence (hidden-side weight gradients, initial-state gradients into `d_inits`
    /// (L, segments, rows, H)), then for k ≥ 1 its input weight gradients and the gradient of
    /// the layer below's outputs through the dropout mask. Leaves layer 0's input-side gate
    /// gradients (steps, rows, 3H) in `dgi`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<'m>(
        &mut self,
        m: &Model,
        d_inits: &mut [f32],
        mask: impl Fn(usize, usize) -> Option<&'m [f32]>,
        grads: &mut [f32],
        dgi: &mut [f32],
        sc: &mut GruScratch,
    ) {
        let (rows, seg) = (self.rows, self.seg);
        let per_layer = self.segments() * rows * self.seqs[0].h;
        for k in (0..self.seqs.len()).rev() {
            let w = &self.weights[k];
            let d_init = &mut d_inits[k * per_layer..(k + 1) * per_layer];
            self.seqs[k].backward(rows, false, seg, Some(d_init), m.p, w, grads, dgi, sc);
            if k > 0 {
                self.input_backward(m, k, &mask, grads, dgi);
            }
        }
    }

    /// Backward of layer `k`'s input projection (k ≥ 1) from its gate gradients `dgi`:
    /// dW_ih, db_ih, and the gradient of layer k-1's outputs (dropout mask applied).
    fn input_backward<'m>(
        &mut self,
        m: &Model,
        k: usize,
        mask: &impl Fn(usize, usize) -> Option<&'m [f32]>,
        grads: &mut [f32],
        dgi: &[f32],
    ) {
        let (steps, h, rows) = (self.seqs[0].steps, self.seqs[0].h, self.rows);
        let (w, g, n, bh) = (&self.weights[k], 3 * h, steps * rows, rows * h);
        gemm(
            &mut grads[w.w_ih..w.w_ih + g * h],
            h,
            Mat::rm(dgi, n, g).t(),
            Mat::rm(&self.xs[k - 1], n, h),
            true,
        );
        colsum_add(&mut grads[w.b_ih..w.b_ih + g], dgi, n, g);
        let lower = &mut self.seqs[k - 1].dout;
        gemm(lower, h, Mat::rm(dgi, n, g), Mat::rm(m.wih(w), g, h), false);
        for t in 0..steps {
            apply_mask(&mut lower[t * bh..(t + 1) * bh], mask(k, t));
        }
    }
}
