//! One GRU layer (one direction) over a sequence, with every activation kept per time step for
//! the backward pass. Buffers are allocated once for a capacity of rows and reused.
//!
//! Time steps may be grouped in segments whose first step starts from a given initial state
//! (the tick RNN restarts at every beat); step `t` otherwise continues from the previous step
//! in processing order (reverse order for the backward direction of the encoder).

use super::kernels::{gru_backward, gru_forward, GateSaved, GateState};
use super::params::GruP;
use crate::linalg::{colsum_add, fill_rows, gemm, Mat};

/// Activations of one layer over `steps` time steps, each a (rows, ·) block in time order.
pub(crate) struct Seq {
    pub steps: usize,
    pub h: usize,
    /// Gate inputs from the input side, W_i x + b_i (steps, rows, 3H).
    pub gi: Vec<f32>,
    pub r: Vec<f32>,
    pub z: Vec<f32>,
    pub n: Vec<f32>,
    pub ghn: Vec<f32>,
    /// The state each step started from (steps, rows, H).
    pub hp: Vec<f32>,
    /// Outputs (steps, rows, H).
    pub out: Vec<f32>,
    /// Gradient of the loss with respect to the outputs (steps, rows, H), filled by the caller.
    pub dout: Vec<f32>,
}

/// Where a step's previous state comes from.
pub(crate) enum Prev<'a> {
    Zero,
    Init(&'a [f32]),
    Step(usize),
}

/// Per-worker scratch shared by all layers.
pub(crate) struct GruScratch {
    /// W_h h + b_h of one step (rows, 3H).
    pub gh: Vec<f32>,
    /// Running gradient of the previous state (rows, H).
    pub carry: Vec<f32>,
    /// Hidden-side gate gradients of a whole sequence (steps, rows, 3H).
    pub dgh: Vec<f32>,
}

impl GruScratch {
    pub fn new(max_steps: usize, cap: usize, h: usize) -> Self {
        GruScratch {
            gh: vec![0.0; cap * 3 * h],
            carry: vec![0.0; cap * h],
            dgh: vec![0.0; max_steps * cap * 3 * h],
        }
    }
}

impl Seq {
    pub fn new(steps: usize, cap: usize, h: usize) -> Self {
        let n = steps * cap * h;
        Seq {
            steps,
            h,
            gi: vec![0.0; 3 * n],
            r: vec![0.0; n],
            z: vec![0.0; n],
            n: vec![0.0; n],
            ghn: vec![0.0; n],
            hp: vec![0.0; n],
            out: vec![0.0; n],
            dout: vec![0.0; n],
        }
    }

    /// The time step processed `step`-th, and the one before it.
    fn order(&self, step: usize, reverse: bool) -> (usize, usize) {
        if reverse {
            let t = self.steps - 1 - step;
            (t, t + 1)
        } else {
            (step, step.wrapping_sub(1))
        }
    }

    /// One forward step at time `t` for `rows` rows (gate inputs `gi[t]` already filled).
    pub fn forward_step(
        &mut self,
        rows: usize,
        t: usize,
        prev: Prev,
        p: &[f32],
        w: &GruP,
        sc: &mut GruScratch,
    ) {
        let h = self.h;
        let (g, bh) = (3 * h, rows * h);
        let hp = &mut self.hp[t * bh..(t + 1) * bh];
        let zero = matches!(prev, Prev::Zero);
        match prev {
            Prev::Zero => hp.fill(0.0),
            Prev::Init(x) => hp.copy_from_slice(&x[..bh]),
            Prev::Step(tp) => hp.copy_from_slice(&self.out[tp * bh..(tp + 1) * bh]),
        }
        let gh = &mut sc.gh[..rows * g];
        fill_rows(gh, &p[w.b_hh..w.b_hh + g], rows, g);
        if !zero {
            gemm(
                gh,
                g,
                Mat::rm(hp, rows, h),
                Mat::rm(&p[w.w_hh..w.w_hh + g * h], g, h).t(),
                true,
            );
        }
        let blk = t * bh..(t + 1) * bh;
        gru_forward(
            rows,
            h,
            &self.gi[t * rows * g..(t + 1) * rows * g],
            gh,
            hp,
            GateState {
                r: &mut self.r[blk.clone()],
                z: &mut self.z[blk.clone()],
                n: &mut self.n[blk.clone()],
                ghn: &mut self.ghn[blk.clone()],
            },
            &mut self.out[blk],
        );
    }

    /// Runs all steps; segments of `seg` steps start from `inits` (segment, rows, H), or from
    /// zeros without.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        rows: usize,
        reverse: bool,
        seg: usize,
        inits: Option<&[f32]>,
        p: &[f32],
        w: &GruP,
        sc: &mut GruScratch,
    ) {
        let bh = rows * self.h;
        for step in 0..self.steps {
            let (t, tp) = self.order(step, reverse);
            let prev = if step % seg == 0 {
                match inits {
                    Some(x) => Prev::Init(&x[(step / seg) * bh..]),
                    None => Prev::Zero,
                }
            } else {
                Prev::Step(tp)
            };
            self.forward_step(rows, t, prev, p, w, sc);
        }
    }

    /// Backward over all steps from the output gradients in `dout`: writes the input-side gate
    /// gradients to `dgi` (steps, rows, 3H), adds dW_hh and db_hh to `grads`, and writes the
    /// gradients of the segment initial states to `d_inits` (segment, rows, H) when given.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        rows: usize,
        reverse: bool,
        seg: usize,
        mut d_inits: Option<&mut [f32]>,
        p: &[f32],
        w: &GruP,
        grads: &mut [f32],
        dgi: &mut [f32],
        sc: &mut GruScratch,
    ) {
        let h = self.h;
        let (g, bh, bg) = (3 * h, rows * h, rows * 3 * h);
        let carry = &mut sc.carry[..bh];
        carry.fill(0.0);
        let w_hh = &p[w.w_hh..w.w_hh + g * h];
        for step in (0..self.steps).rev() {
            let (t, _) = self.order(step, reverse);
            let blk = t * bh..(t + 1) * bh;
            let gblk = t * bg..(t + 1) * bg;
            gru_backward(
                rows,
                h,
                &self.dout[blk.clone()],
                carry,
                GateSaved {
                    r: &self.r[blk.clone()],
                    z: &self.z[blk.clone()],
                    n: &self.n[blk.clone()],
                    ghn: &self.ghn[blk.clone()],
                    hp: &self.hp[blk],
                },
                &mut dgi[gblk.clone()],
                &mut sc.dgh[gblk.clone()],
            );
            let start = step % seg == 0;
            if !start || d_inits.is_some() {
                gemm(
                    carry,
                    h,
                    Mat::rm(&sc.dgh[gblk], rows, g),
                    Mat::rm(w_hh, g, h),
                    true,
                );
            }
            if start {
                if let Some(d) = d_inits.as_deref_mut() {
                    let s = (step / seg) * bh;
                    d[s..s + bh].copy_from_slice(carry);
                }
                carry.fill(0.0);
            }
        }
        let all = self.steps * rows;
        gemm(
            &mut grads[w.w_hh..w.w_hh + g * h],
            h,
            Mat::rm(&sc.dgh, all, g).t(),
            Mat::rm(&self.hp, all, h),
            true,
        );
        colsum_add(&mut grads[w.b_hh..w.b_hh + g], &sc.dgh, all, g);
    }
}
