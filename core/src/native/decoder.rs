//! The decoder of one part of the batch, forward and backward:
//!
//! - beat RNN: z → Linear → SELU gives one initial state per layer; a GRU stack runs 4 beats
//!   on a learned constant input;
//! - per beat, its output → Linear → SELU gives the tick RNN's initial states, and another
//!   Linear → SELU a context that is part of every tick's input;
//! - tick RNN: a GRU stack over the 24 ticks, restarting from the beat's states every 6 ticks;
//!   layer 0's input is the context and the previous token's embedding (a learned start input
//!   at tick 0): the target's previous token with teacher forcing, else the argmax of the
//!   previous logits (greedy, tick by tick);
//! - output Linear (optional ReLU) → logits (T, rows, vocab).
//!
//! Layer 0's input projection is split in two: the context's part is one GEMM per beat, the
//! token's part a table over the vocabulary (plus the start input), looked up per tick.

use super::gru::{GruScratch, Prev, Seq};
use super::kernels::{argmax, selu, selu_backward_in_place};
use super::layers::{join_layers, linear_backward, split_layers, Model, Part, Scratch, NB, T, TPB};
use super::stack::Stack;
use crate::linalg::{colsum_add, fill_rows, gemm, linear, Mat};
use crate::music_model::MeasureVaeConfig;

/// Marks the start of a previous token: the learned start input.
const START: u32 = u32::MAX;

/// The decoder's activations and gradient buffers for up to `cap` rows. Per-layer states are
/// (L, ·, rows, H); per-row ones (·, rows, L·H).
pub(super) struct Decoder {
    /// z → beat RNN initial states, before and after SELU (rows, L·H), and per layer.
    hb_pre: Vec<f32>,
    hb: Vec<f32>,
    dhb: Vec<f32>,
    beat_init: Vec<f32>,
    d_beat_init: Vec<f32>,
    /// Beat RNN per layer, and its layer inputs 1.. after dropout (NB, rows, H).
    beat: Vec<Seq>,
    beat_x: Vec<Vec<f32>>,
    /// Beat outputs → tick RNN initial states, before and after SELU (NB, rows, L·H), and per
    /// layer (L, NB, rows, H).
    th_pre: Vec<f32>,
    th: Vec<f32>,
    dth: Vec<f32>,
    tick_init: Vec<f32>,
    d_tick_init: Vec<f32>,
    /// Beat outputs → context, before and after SELU (NB, rows, H), and its share of tick
    /// layer 0's gate inputs, b_ih included (NB, rows, 3H).
    ctx_pre: Vec<f32>,
    ctx: Vec<f32>,
    dctx: Vec<f32>,
    ctx_gi: Vec<f32>,
    dctx_gi: Vec<f32>,
    /// The token's share of tick layer 0's gate inputs per token (vocab, 3H) and for the start
    /// input (3H).
    tok_table: Vec<f32>,
    dtok_table: Vec<f32>,
    start_proj: Vec<f32>,
    dstart_proj: Vec<f32>,
    /// Previous token per tick (T, rows), or [`START`].
    prev: Vec<u32>,
    /// Tick RNN per layer, and its layer inputs 1.. after dropout (T, rows, H).
    tick: Vec<Seq>,
    tick_x: Vec<Vec<f32>>,
    /// Logits before and after the optional ReLU, and d loss / d logits (T, rows, vocab).
    pub logits_pre: Vec<f32>,
    pub logits: Vec<f32>,
    pub dlogits: Vec<f32>,
}

impl Decoder {
    pub fn new(cfg: &MeasureVaeConfig, cap: usize) -> Self {
        let (v, h, l) = (cfg.vocab_size, cfg.hidden, cfg.layers);
        let g = 3 * h;
        let z = |n: usize| vec![0.0f32; n];
        Decoder {
            hb_pre: z(cap * l * h),
            hb: z(cap * l * h),
            dhb: z(cap * l * h),
            beat_init: z(l * cap * h),
            d_beat_init: z(l * cap * h),
            beat: (0..l).map(|_| Seq::new(NB, cap, h)).collect(),
            beat_x: (1..l).map(|_| z(NB * cap * h)).collect(),
            th_pre: z(NB * cap * l * h),
            th: z(NB * cap * l * h),
            dth: z(NB * cap * l * h),
            tick_init: z(l * NB * cap * h),
            d_tick_init: z(l * NB * cap * h),
            ctx_pre: z(NB * cap * h),
            ctx: z(NB * cap * h),
            dctx: z(NB * cap * h),
            ctx_gi: z(NB * cap * g),
            dctx_gi: z(NB * cap * g),
            tok_table: z(v * g),
            dtok_table: z(v * g),
            start_proj: z(g),
            dstart_proj: z(g),
            prev: vec![START; T * cap],
            tick: (0..l).map(|_| Seq::new(T, cap, h)).collect(),
            tick_x: (1..l).map(|_| z(T * cap * h)).collect(),
            logits_pre: z(T * cap * v),
            logits: z(T * cap * v),
            dlogits: z(T * cap * v),
        }
    }

    /// z (rows, latent) to logits.
    pub fn forward(&mut self, m: &Model, part: &Part, z: &[f32], sc: &mut GruScratch) {
        self.beat_forward(m, part, z, sc);
        self.beat_to_tick(m, part.rows);
        self.tick_input_tables(m, part.rows);
        if part.teacher {
            self.tick_forward_teacher(m, part, sc);
        } else {
            for t in 0..T {
                self.tick_step_greedy(m, part, t, sc);
            }
        }
    }

    /// The beat RNN from z.
    fn beat_forward(&mut self, m: &Model, part: &Part, z: &[f32], sc: &mut GruScratch) {
        let (rows, h, l) = (part.rows, m.cfg.hidden, m.cfg.layers);
        let (g, lh, lay) = (3 * h, l * h, m.lay);
        let (w, b) = (m.lw(&lay.z_to_beat), m.lb(&lay.z_to_beat));
        linear(&mut self.hb_pre, z, rows, w, b, lh);
        selu(&mut self.hb[..rows * lh], &self.hb_pre[..rows * lh]);
        split_layers(&mut self.beat_init, &self.hb, rows, l, h);
        // Layer 0's input is one learned number: the same gate inputs at every beat.
        let w = &lay.beat_rnn[0];
        let x = m.p[lay.beat_input];
        let (wi, bi) = (m.wih(w), m.bih(w));
        let row: Vec<f32> = (0..g).map(|j| x * wi[j] + bi[j]).collect();
        fill_rows(&mut self.beat[0].gi, &row, NB * rows, g);
        let init = Some(&self.beat_init[..rows * h]);
        self.beat[0].forward(rows, false, NB, init, m.p, w, sc);
        Stack::new(&mut self.beat, &mut self.beat_x, &lay.beat_rnn, NB, rows).forward_upper(
            m,
            &self.beat_init,
            |k, t| part.beat_mask(k, t, h),
            sc,
        );
    }

    /// Per beat, from the beat RNN's top output: the tick RNN's initial states and the context.
    fn beat_to_tick(&mut self, m: &Model, rows: usize) {
        let (h, l, lay) = (m.cfg.hidden, m.cfg.layers, m.lay);
        let (n, lh) = (NB * rows, l * h);
        let beats = &self.beat[l - 1].out;
        let (bt_h, bt_i) = (&lay.beat_to_tick_hidden, &lay.beat_to_tick_input);
        linear(&mut self.th_pre, beats, n, m.lw(bt_h), m.lb(bt_h), lh);
        selu(&mut self.th[..n * lh], &self.th_pre[..n * lh]);
        split_layers(&mut self.tick_init, &self.th, n, l, h);
        linear(&mut self.ctx_pre, beats, n, m.lw(bt_i), m.lb(bt_i), h);
        selu(&mut self.ctx[..n * h], &self.ctx_pre[..n * h]);
    }

    /// Tick layer 0's gate inputs in parts: the context's per beat (with b_ih), the token's
    /// per vocabulary entry, the start input's.
    fn tick_input_tables(&mut self, m: &Model, rows: usize) {
        let (h, e, v, lay) = (m.cfg.hidden, m.cfg.embedding, m.cfg.vocab_size, m.lay);
        let g = 3 * h;
        let w0 = &lay.tick_rnn[0];
        let in0 = w0.input; // embedding + hidden
        let wih0 = m.wih(w0);
        fill_rows(&mut self.ctx_gi, m.bih(w0), NB * rows, g);
        let ctx_w = Mat::ld(&wih0[e..], g, h, in0).t();
        let ctx = Mat::rm(&self.ctx, NB * rows, h);
        gemm(&mut self.ctx_gi, g, ctx, ctx_w, true);
        let tok_w = Mat::ld(wih0, g, e, in0).t();
        let emb = Mat::rm(m.w(lay.dec_emb, v * e), v, e);
        gemm(&mut self.tok_table, g, emb, tok_w, false);
        let start = Mat::rm(m.w(lay.start_input, e), 1, e);
        gemm(&mut self.start_proj, g, start, tok_w, false);
    }

    /// The tick RNN with teacher forcing: layer by layer over all 24 ticks.
    fn tick_forward_teacher(&mut self, m: &Model, part: &Part, sc: &mut GruScratch) {
        let (rows, h, l, v) = (part.rows, m.cfg.hidden, m.cfg.layers, m.cfg.vocab_size);
        let lay = m.lay;
        for t in 0..T {
            for b in 0..rows {
                self.prev[t * rows + b] = if t == 0 {
                    START
                } else {
                    part.tokens[b * T + t - 1]
                };
            }
            self.tick_layer0_input(rows, 3 * h, t);
        }
        let init = Some(&self.tick_init[..NB * rows * h]);
        self.tick[0].forward(rows, false, TPB, init, m.p, &lay.tick_rnn[0], sc);
        Stack::new(&mut self.tick, &mut self.tick_x, &lay.tick_rnn, TPB, rows).forward_upper(
            m,
            &self.tick_init,
            |k, t| part.tick_mask(k, t, h, l),
            sc,
        );
        let o = &lay.output;
        let top = &self.tick[l - 1].out;
        linear(&mut self.logits_pre, top, T * rows, m.lw(o), m.lb(o), v);
        self.activate(m.cfg, 0..T * rows * v);
    }

    /// Greedy decoding of tick `t`: the previous tick's argmax as input, every layer one step,
    /// the logits of tick t.
    fn tick_step_greedy(&mut self, m: &Model, part: &Part, t: usize, sc: &mut GruScratch) {
        let (rows, h, l, v) = (part.rows, m.cfg.hidden, m.cfg.layers, m.cfg.vocab_size);
        let (g, bh, lay) = (3 * h, rows * h, m.lay);
        for b in 0..rows {
            self.prev[t * rows + b] = if t == 0 {
                START
            } else {
                let row = &self.logits[((t - 1) * rows + b) * v..((t - 1) * rows + b + 1) * v];
                argmax(row) as u32
            };
        }
        self.tick_layer0_input(rows, g, t);
        for k in 0..l {
            let w = &lay.tick_rnn[k];
            if k > 0 {
                let mut stack =
                    Stack::new(&mut self.tick, &mut self.tick_x, &lay.tick_rnn, TPB, rows);
                stack.layer_input(k, t, |k, t| part.tick_mask(k, t, h, l));
                let x = &self.tick_x[k - 1][t * bh..(t + 1) * bh];
                let gi = &mut self.tick[k].gi[t * rows * g..(t + 1) * rows * g];
                linear(gi, x, rows, m.wih(w), m.bih(w), g);
            }
            let prev = if t.is_multiple_of(TPB) {
                let s = k * NB * bh + (t / TPB) * bh;
                Prev::Init(&self.tick_init[s..s + bh])
            } else {
                Prev::Step(t - 1)
            };
            self.tick[k].forward_step(rows, t, prev, m.p, w, sc);
        }
        let o = &lay.output;
        let top = &self.tick[l - 1].out[t * bh..(t + 1) * bh];
        let blk = t * rows * v..(t + 1) * rows * v;
        linear(
            &mut self.logits_pre[blk.clone()],
            top,
            rows,
            m.lw(o),
            m.lb(o),
            v,
        );
        self.activate(m.cfg, blk);
    }

    /// Logits after the optional ReLU.
    fn activate(&mut self, cfg: &MeasureVaeConfig, range: std::ops::Range<usize>) {
        let (dst, src) = (&mut self.logits[range.clone()], &self.logits_pre[range]);
        if cfg.logit_relu {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = s.max(0.0);
            }
        } else {
            dst.copy_from_slice(src);
        }
    }

    /// Gate inputs of tick layer 0 at tick t: beat context + previous token (or start).
    fn tick_layer0_input(&mut self, rows: usize, g: usize, t: usize) {
        let beat = t / TPB;
        let gi = &mut self.tick[0].gi;
        for b in 0..rows {
            let ctx = &self.ctx_gi[(beat * rows + b) * g..(beat * rows + b + 1) * g];
            let p = self.prev[t * rows + b];
            let tok = if p == START {
                &self.start_proj[..g]
            } else {
                &self.tok_table[p as usize * g..(p as usize + 1) * g]
            };
            let dst = &mut gi[(t * rows + b) * g..(t * rows + b + 1) * g];
            for ((d, c), k) in dst.iter_mut().zip(ctx).zip(tok) {
                *d = c + k;
            }
        }
    }

    /// From d loss / d logits (`dlogits`) back to d loss / d z (rows, latent) in `dz`, adding
    /// every decoder parameter's gradient to `grads`; `z` is the forward's input.
    pub fn backward(
        &mut self,
        m: &Model,
        part: &Part,
        z: &[f32],
        dz: &mut [f32],
        grads: &mut [f32],
        s: &mut Scratch,
    ) {
        let (rows, h, l) = (part.rows, m.cfg.hidden, m.cfg.layers);
        let lay = m.lay;
        let top = &mut self.tick[l - 1];
        let dtop = Some((&mut top.dout[..], false));
        linear_backward(
            m,
            &lay.output,
            grads,
            &self.dlogits,
            &top.out,
            T * rows,
            dtop,
        );
        let dgi = &mut s.dgi[0];
        Stack::new(&mut self.tick, &mut self.tick_x, &lay.tick_rnn, TPB, rows).backward(
            m,
            &mut self.d_tick_init,
            |k, t| part.tick_mask(k, t, h, l),
            grads,
            dgi,
            &mut s.gru,
        );
        self.scatter_tick_input_grads(rows, 3 * h, dgi);
        self.tick_input_backward(m, rows, grads);
        self.beat_to_tick_backward(m, rows, grads);
        Stack::new(&mut self.beat, &mut self.beat_x, &lay.beat_rnn, NB, rows).backward(
            m,
            &mut self.d_beat_init,
            |k, t| part.beat_mask(k, t, h),
            grads,
            dgi,
            &mut s.gru,
        );
        beat_input_backward(m, rows, grads, dgi);
        self.beat_init_backward(m, rows, z, dz, grads);
    }

    /// Tick layer 0's gate gradients `dgi` (T, rows, 3H) summed into their sources: the
    /// context's per beat, the token table's per previous token, the start input's.
    fn scatter_tick_input_grads(&mut self, rows: usize, g: usize, dgi: &[f32]) {
        self.dctx_gi[..NB * rows * g].fill(0.0);
        self.dtok_table.fill(0.0);
        self.dstart_proj.fill(0.0);
        for t in 0..T {
            let beat = t / TPB;
            for b in 0..rows {
                let src = &dgi[(t * rows + b) * g..(t * rows + b + 1) * g];
                let dst = &mut self.dctx_gi[(beat * rows + b) * g..(beat * rows + b + 1) * g];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += s;
                }
                let p = self.prev[t * rows + b];
                let dst = if p == START {
                    &mut self.dstart_proj[..g]
                } else {
                    &mut self.dtok_table[p as usize * g..(p as usize + 1) * g]
                };
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += s;
                }
            }
        }
    }

    /// From the three gate-gradient sources: tick layer 0's W_ih and b_ih, the embedding and
    /// start input gradients, and d loss / d context (`dctx`).
    fn tick_input_backward(&mut self, m: &Model, rows: usize, grads: &mut [f32]) {
        let (h, e, v, lay) = (m.cfg.hidden, m.cfg.embedding, m.cfg.vocab_size, m.lay);
        let (g, nb) = (3 * h, NB * rows);
        let w0 = &lay.tick_rnn[0];
        let in0 = w0.input;
        let wih0 = m.wih(w0);
        let dctx_gi = Mat::rm(&self.dctx_gi, nb, g);
        let dtok = Mat::rm(&self.dtok_table, v, g);
        let dstart = Mat::rm(&self.dstart_proj, 1, g);
        colsum_add(&mut grads[w0.b_ih..w0.b_ih + g], &self.dctx_gi, nb, g);
        let gw = &mut grads[w0.w_ih..w0.w_ih + g * in0];
        gemm(
            &mut gw[e..],
            in0,
            dctx_gi.t(),
            Mat::rm(&self.ctx, nb, h),
            true,
        );
        let dec_emb = Mat::rm(m.w(lay.dec_emb, v * e), v, e);
        gemm(gw, in0, dtok.t(), dec_emb, true);
        gemm(
            gw,
            in0,
            dstart.t(),
            Mat::rm(m.w(lay.start_input, e), 1, e),
            true,
        );
        let tok_w = Mat::ld(wih0, g, e, in0);
        gemm(
            &mut grads[lay.dec_emb..lay.dec_emb + v * e],
            e,
            dtok,
            tok_w,
            true,
        );
        let d_start = &mut grads[lay.start_input..lay.start_input + e];
        gemm(d_start, e, dstart, tok_w, true);
        let ctx_w = Mat::ld(&wih0[e..], g, h, in0);
        gemm(&mut self.dctx, h, dctx_gi, ctx_w, false);
    }

    /// The context and the tick initial states back to the beat RNN's top output gradients.
    fn beat_to_tick_backward(&mut self, m: &Model, rows: usize, grads: &mut [f32]) {
        let (h, l, lay) = (m.cfg.hidden, m.cfg.layers, m.lay);
        let n = NB * rows;
        selu_backward_in_place(&mut self.dctx[..n * h], &self.ctx_pre, &self.ctx);
        join_layers(&mut self.dth, &self.d_tick_init, n, l, h);
        selu_backward_in_place(&mut self.dth[..n * l * h], &self.th_pre, &self.th);
        let top = &mut self.beat[l - 1];
        let dtop = Some((&mut top.dout[..], false));
        linear_backward(
            m,
            &lay.beat_to_tick_input,
            grads,
            &self.dctx,
            &top.out,
            n,
            dtop,
        );
        let dtop = Some((&mut top.dout[..], true));
        linear_backward(
            m,
            &lay.beat_to_tick_hidden,
            grads,
            &self.dth,
            &top.out,
            n,
            dtop,
        );
    }

    /// The beat RNN's initial-state gradients back through SELU and the z Linear to `dz`.
    fn beat_init_backward(
        &mut self,
        m: &Model,
        rows: usize,
        z: &[f32],
        dz: &mut [f32],
        grads: &mut [f32],
    ) {
        let (h, l) = (m.cfg.hidden, m.cfg.layers);
        join_layers(&mut self.dhb, &self.d_beat_init, rows, l, h);
        selu_backward_in_place(&mut self.dhb[..rows * l * h], &self.hb_pre, &self.hb);
        let dz = Some((dz, false));
        linear_backward(m, &m.lay.z_to_beat, grads, &self.dhb, z, rows, dz);
    }
}

/// Beat layer 0's input backward from its gate gradients `dgi` (NB, rows, 3H): the input is
/// the one learned number `beat_input`, so W_ih and b_ih get the gates' column sums.
fn beat_input_backward(m: &Model, rows: usize, grads: &mut [f32], dgi: &[f32]) {
    let (w, g, lay) = (&m.lay.beat_rnn[0], 3 * m.cfg.hidden, m.lay);
    let mut gsum = vec![0.0f32; g];
    colsum_add(&mut gsum, dgi, NB * rows, g);
    let x = m.p[lay.beat_input];
    let wi = m.wih(w);
    let mut dx = 0.0f32;
    for j in 0..g {
        grads[w.b_ih + j] += gsum[j];
        grads[w.w_ih + j] += gsum[j] * x;
        dx += gsum[j] * wi[j];
    }
    grads[lay.beat_input] += dx;
}
