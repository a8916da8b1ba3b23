//! The native MeasureVAE engine: forward, loss and backward by hand on preallocated buffers.
//!
//! A batch is split in two halves, one per core (rayon::join); each half runs on its own
//! [`Work`] space with single-threaded GEMMs and its own gradient vector:
//! 1. (both halves) encoder forward, heads, z, decoder forward, cross-entropy and decoder
//!    backward down to dz;
//! 2. (serial) KL and the AR loss over all B x B pairs of the sampled z, giving d mu, d log-std;
//! 3. (both halves) heads and encoder backward; then the two gradient vectors are summed.
//!
//! Recurrences run layer by layer over whole sequences where the inputs are known (encoder,
//! beat RNN, tick RNN with teacher forcing, every backward pass), so input projections and
//! weight gradients are single GEMMs over all time steps; greedy decoding runs tick by tick.

use rand::RngCore;

use super::adam::NativeAdam;
use super::gru::{GruScratch, Prev, Seq};
use super::kernels::{exp, selu, selu_backward};
use super::noise::StepNoise;
use super::params::{GruP, LinP, ParamLayout};
use crate::checkpoint::{MeasureVaeConfig, NamedTensors};
use crate::linalg::{colsum_add, fill_rows, gemm, linear, Mat};
use crate::music::token::{BEATS_PER_MEASURE, TICKS_PER_BEAT, TICKS_PER_MEASURE};

const T: usize = TICKS_PER_MEASURE;
const NB: usize = BEATS_PER_MEASURE;
const TPB: usize = TICKS_PER_BEAT;

/// Loss weights (the same meaning as `model::LossConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct NativeLoss {
    /// KL weight.
    pub beta: f64,
    /// AR weight (0: β-VAE; the AR terms are still reported).
    pub gamma: f64,
    /// tanh sharpness of the AR loss.
    pub delta: f64,
    /// (attribute column, latent dimension) pairs.
    pub regularized: Vec<(usize, usize)>,
}

/// Loss parts of one batch (the same meaning as `model::LossValues`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepValues {
    /// recon + beta · kl + gamma · Σ ar.
    pub total: f32,
    /// Cross-entropy, mean over B x 24 tokens.
    pub reconstruction: f32,
    /// KL divergence, mean over the batch.
    pub kl: f32,
    /// AR loss per regularized attribute.
    pub ar: Vec<f32>,
    /// Share of tokens whose argmax is the target.
    pub accuracy: f32,
}

/// Read-only model data shared by the halves.
struct Model<'a> {
    cfg: &'a MeasureVaeConfig,
    lay: &'a ParamLayout,
    p: &'a [f32],
}

impl Model<'_> {
    fn w(&self, off: usize, n: usize) -> &[f32] {
        &self.p[off..off + n]
    }
    fn lw(&self, l: &LinP) -> &[f32] {
        self.w(l.w, l.input * l.output)
    }
    fn lb(&self, l: &LinP) -> &[f32] {
        self.w(l.b, l.output)
    }
    fn wih(&self, g: &GruP) -> &[f32] {
        self.w(g.w_ih, 3 * self.cfg.hidden * g.input)
    }
    fn bih(&self, g: &GruP) -> &[f32] {
        self.w(g.b_ih, 3 * self.cfg.hidden)
    }
}

/// What one half of the batch sees of the step.
struct Part<'a> {
    /// First row of this half in the batch.
    r0: usize,
    rows: usize,
    batch: usize,
    /// Tokens of this half (rows, 24).
    tokens: &'a [u32],
    noise: &'a StepNoise,
    teacher: bool,
    backward: bool,
}

/// y (rows, out) += dy · W → dx; dW += dyᵀ x; db += Σ dy.
fn linear_backward(
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

/// The buffers of one half of a batch, for up to `cap` rows.
pub(crate) struct Work {
    cap: usize,
    rows: usize,
    grads: Vec<f32>,
    sc: GruScratch,
    dgi: [Vec<f32>; 2],
    // Encoder.
    enc: Vec<[Seq; 2]>,
    enc_x: Vec<Vec<f32>>,
    enc_dx: Vec<f32>,
    table: [Vec<f32>; 2],
    dtable: Vec<f32>,
    state: Vec<f32>,
    dstate: Vec<f32>,
    head_a: [Vec<f32>; 2],
    head_s: [Vec<f32>; 2],
    dh1: Vec<f32>,
    dh2: Vec<f32>,
    pub(crate) mu: Vec<f32>,
    pub(crate) ls: Vec<f32>,
    pub(crate) z: Vec<f32>,
    /// d loss / d z from the decoder (rows, latent).
    pub(crate) dz: Vec<f32>,
    /// Set between the phases: gradients of mu and log-std.
    pub(crate) dmu: Vec<f32>,
    pub(crate) dls: Vec<f32>,
    // Decoder.
    hb_pre: Vec<f32>,
    hb: Vec<f32>,
    dhb: Vec<f32>,
    beat: Vec<Seq>,
    beat_x: Vec<Vec<f32>>,
    beat_init: Vec<f32>,
    d_beat_init: Vec<f32>,
    th_pre: Vec<f32>,
    th: Vec<f32>,
    dth: Vec<f32>,
    tick_init: Vec<f32>,
    d_tick_init: Vec<f32>,
    ctx_pre: Vec<f32>,
    ctx: Vec<f32>,
    dctx: Vec<f32>,
    ctx_gi: Vec<f32>,
    dctx_gi: Vec<f32>,
    tok_table: Vec<f32>,
    dtok_table: Vec<f32>,
    start_proj: Vec<f32>,
    dstart_proj: Vec<f32>,
    prev: Vec<u32>,
    tick: Vec<Seq>,
    tick_x: Vec<Vec<f32>>,
    logits_pre: Vec<f32>,
    logits: Vec<f32>,
    dlogits: Vec<f32>,
    // Results of phase 1.
    pub(crate) ce_sum: f64,
    pub(crate) correct: usize,
}

/// Marks the start of a previous token: the learned start input.
const START: u32 = u32::MAX;

impl Work {
    fn new(cfg: &MeasureVaeConfig, total: usize, cap: usize) -> Self {
        let (v, h, l, zd, hh) = (
            cfg.vocab_size,
            cfg.hidden,
            cfg.layers,
            cfg.latent,
            cfg.head_hidden,
        );
        let g = 3 * h;
        let z = |n: usize| vec![0.0f32; n];
        Work {
            cap,
            rows: 0,
            grads: z(total),
            sc: GruScratch::new(T, cap, h),
            dgi: [z(T * cap * g), z(T * cap * g)],
            enc: (0..l)
                .map(|_| [Seq::new(T, cap, h), Seq::new(T, cap, h)])
                .collect(),
            enc_x: (1..l).map(|_| z(T * cap * 2 * h)).collect(),
            enc_dx: z(T * cap * 2 * h),
            table: [z(v * g), z(v * g)],
            dtable: z(v * g),
            state: z(cap * 2 * l * h),
            dstate: z(cap * 2 * l * h),
            head_a: [z(cap * hh), z(cap * hh)],
            head_s: [z(cap * hh), z(cap * hh)],
            dh1: z(cap * hh),
            dh2: z(cap * hh),
            mu: z(cap * zd),
            ls: z(cap * zd),
            z: z(cap * zd),
            dz: z(cap * zd),
            dmu: z(cap * zd),
            dls: z(cap * zd),
            hb_pre: z(cap * l * h),
            hb: z(cap * l * h),
            dhb: z(cap * l * h),
            beat: (0..l).map(|_| Seq::new(NB, cap, h)).collect(),
            beat_x: (1..l).map(|_| z(NB * cap * h)).collect(),
            beat_init: z(l * cap * h),
            d_beat_init: z(l * cap * h),
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
            ce_sum: 0.0,
            correct: 0,
        }
    }

    /// Phase 1: everything up to d loss / d z for this half.
    fn phase_one(&mut self, m: &Model, part: &Part) {
        self.rows = part.rows;
        if part.backward {
            self.grads.fill(0.0);
        }
        self.encoder_forward(m, part);
        self.decoder_forward(m, part);
        self.reconstruction(m, part);
        if part.backward {
            self.decoder_backward(m, part);
        }
    }

    fn encoder_forward(&mut self, m: &Model, part: &Part) {
        let cfg = m.cfg;
        let (rows, h, l, e) = (part.rows, cfg.hidden, cfg.layers, cfg.embedding);
        let (g, v) = (3 * h, cfg.vocab_size);
        let emb = m.w(m.lay.enc_emb, v * e);
        for d in 0..2 {
            let w = &m.lay.enc_rnn[0][d];
            linear(&mut self.table[d], emb, v, m.wih(w), m.bih(w), g);
            let seq = &mut self.enc[0][d];
            for t in 0..T {
                for b in 0..rows {
                    let tok = part.tokens[b * T + t] as usize;
                    let dst = (t * rows + b) * g;
                    seq.gi[dst..dst + g].copy_from_slice(&self.table[d][tok * g..(tok + 1) * g]);
                }
            }
            seq.forward(rows, d == 1, T, None, m.p, w, &mut self.sc);
        }
        for k in 1..l {
            let x = &mut self.enc_x[k - 1];
            let (lower, upper) = self.enc.split_at_mut(k);
            let [f, r] = &lower[k - 1];
            for t in 0..T {
                for b in 0..rows {
                    let (src, dst) = ((t * rows + b) * h, (t * rows + b) * 2 * h);
                    x[dst..dst + h].copy_from_slice(&f.out[src..src + h]);
                    x[dst + h..dst + 2 * h].copy_from_slice(&r.out[src..src + h]);
                }
                if !part.noise.encoder.is_empty() {
                    let n = rows * 2 * h;
                    let base =
                        (k - 1) * T * part.batch * 2 * h + (t * part.batch + part.r0) * 2 * h;
                    let mask = &part.noise.encoder[base..base + n];
                    for (x, mk) in x[t * n..(t + 1) * n].iter_mut().zip(mask) {
                        *x *= mk;
                    }
                }
            }
            for (d, seq) in upper[0].iter_mut().enumerate() {
                let w = &m.lay.enc_rnn[k][d];
                linear(&mut seq.gi, x, T * rows, m.wih(w), m.bih(w), g);
                seq.forward(rows, d == 1, T, None, m.p, w, &mut self.sc);
            }
        }
        // Final states in h_n order: l0-fwd, l0-bwd, l1-fwd, ...
        let sw = 2 * l * h;
        for k in 0..l {
            for d in 0..2 {
                let t = if d == 0 { T - 1 } else { 0 };
                let out = &self.enc[k][d].out;
                for b in 0..rows {
                    let dst = b * sw + (2 * k + d) * h;
                    let src = (t * rows + b) * h;
                    self.state[dst..dst + h].copy_from_slice(&out[src..src + h]);
                }
            }
        }
        let (hh, zd) = (cfg.head_hidden, cfg.latent);
        for (i, head) in [&m.lay.mean, &m.lay.log_std].into_iter().enumerate() {
            linear(
                &mut self.head_a[i],
                &self.state,
                rows,
                m.lw(&head[0]),
                m.lb(&head[0]),
                hh,
            );
            selu(
                &mut self.head_s[i][..rows * hh],
                &self.head_a[i][..rows * hh],
            );
            let out = if i == 0 { &mut self.mu } else { &mut self.ls };
            linear(
                out,
                &self.head_s[i],
                rows,
                m.lw(&head[1]),
                m.lb(&head[1]),
                zd,
            );
        }
        let eps = &part.noise.eps[part.r0 * zd..(part.r0 + rows) * zd];
        for (((z, &mu), &ls), &e) in self.z.iter_mut().zip(&self.mu).zip(&self.ls).zip(eps) {
            *z = mu + ls.exp() * e;
        }
    }

    fn decoder_forward(&mut self, m: &Model, part: &Part) {
        let cfg = m.cfg;
        let (rows, h, l, e, v) = (
            part.rows,
            cfg.hidden,
            cfg.layers,
            cfg.embedding,
            cfg.vocab_size,
        );
        let (g, lh, bh) = (3 * h, cfg.layers * cfg.hidden, part.rows * cfg.hidden);
        let lay = m.lay;
        // Beat RNN from z.
        linear(
            &mut self.hb_pre,
            &self.z,
            rows,
            m.lw(&lay.z_to_beat),
            m.lb(&lay.z_to_beat),
            lh,
        );
        selu(&mut self.hb[..rows * lh], &self.hb_pre[..rows * lh]);
        for k in 0..l {
            for b in 0..rows {
                let dst = k * bh + b * h;
                self.beat_init[dst..dst + h]
                    .copy_from_slice(&self.hb[b * lh + k * h..b * lh + (k + 1) * h]);
            }
        }
        {
            let w = &lay.beat_rnn[0];
            let x = m.p[lay.beat_input];
            let (wi, bi) = (m.wih(w), m.bih(w));
            let row: Vec<f32> = (0..g).map(|j| x * wi[j] + bi[j]).collect();
            fill_rows(&mut self.beat[0].gi, &row, NB * rows, g);
            self.beat[0].forward(
                rows,
                false,
                NB,
                Some(&self.beat_init[..bh]),
                m.p,
                w,
                &mut self.sc,
            );
        }
        for k in 1..l {
            let w = &lay.beat_rnn[k];
            let x = &mut self.beat_x[k - 1];
            let (lower, upper) = self.beat.split_at_mut(k);
            x[..NB * bh].copy_from_slice(&lower[k - 1].out[..NB * bh]);
            if !part.noise.beat.is_empty() {
                for t in 0..NB {
                    let base = ((k - 1) * NB + t) * part.batch * h + part.r0 * h;
                    let mask = &part.noise.beat[base..base + bh];
                    for (x, mk) in x[t * bh..(t + 1) * bh].iter_mut().zip(mask) {
                        *x *= mk;
                    }
                }
            }
            let seq = &mut upper[0];
            linear(&mut seq.gi, x, NB * rows, m.wih(w), m.bih(w), g);
            seq.forward(
                rows,
                false,
                NB,
                Some(&self.beat_init[k * bh..]),
                m.p,
                w,
                &mut self.sc,
            );
        }
        // Per beat: tick RNN initial states and context.
        let beats = &self.beat[l - 1].out;
        let (bt_h, bt_i) = (&lay.beat_to_tick_hidden, &lay.beat_to_tick_input);
        linear(
            &mut self.th_pre,
            beats,
            NB * rows,
            m.lw(bt_h),
            m.lb(bt_h),
            lh,
        );
        selu(
            &mut self.th[..NB * rows * lh],
            &self.th_pre[..NB * rows * lh],
        );
        for k in 0..l {
            for r in 0..NB * rows {
                let dst = k * NB * bh + r * h;
                self.tick_init[dst..dst + h]
                    .copy_from_slice(&self.th[r * lh + k * h..r * lh + (k + 1) * h]);
            }
        }
        linear(
            &mut self.ctx_pre,
            beats,
            NB * rows,
            m.lw(bt_i),
            m.lb(bt_i),
            h,
        );
        selu(&mut self.ctx[..NB * bh], &self.ctx_pre[..NB * bh]);
        let w0 = &lay.tick_rnn[0];
        let in0 = w0.input; // embedding + hidden
        let wih0 = m.wih(w0);
        fill_rows(&mut self.ctx_gi, m.bih(w0), NB * rows, g);
        gemm(
            &mut self.ctx_gi,
            g,
            Mat::rm(&self.ctx, NB * rows, h),
            Mat::ld(&wih0[e..], g, h, in0).t(),
            true,
        );
        let tok_w = Mat::ld(wih0, g, e, in0).t();
        gemm(
            &mut self.tok_table,
            g,
            Mat::rm(m.w(lay.dec_emb, v * e), v, e),
            tok_w,
            false,
        );
        gemm(
            &mut self.start_proj,
            g,
            Mat::rm(m.w(lay.start_input, e), 1, e),
            tok_w,
            false,
        );
        if part.teacher {
            for t in 0..T {
                for b in 0..rows {
                    self.prev[t * rows + b] = if t == 0 {
                        START
                    } else {
                        part.tokens[b * T + t - 1]
                    };
                }
                self.tick_layer0_input(rows, g, t);
            }
            self.tick[0].forward(
                rows,
                false,
                TPB,
                Some(&self.tick_init[..NB * bh]),
                m.p,
                w0,
                &mut self.sc,
            );
            for k in 1..l {
                self.tick_dropout(part, k, 0..T);
                let w = &lay.tick_rnn[k];
                let seq = &mut self.tick[k];
                linear(
                    &mut seq.gi,
                    &self.tick_x[k - 1],
                    T * rows,
                    m.wih(w),
                    m.bih(w),
                    g,
                );
                seq.forward(
                    rows,
                    false,
                    TPB,
                    Some(&self.tick_init[k * NB * bh..]),
                    m.p,
                    w,
                    &mut self.sc,
                );
            }
            let o = &lay.output;
            linear(
                &mut self.logits_pre,
                &self.tick[l - 1].out,
                T * rows,
                m.lw(o),
                m.lb(o),
                v,
            );
            self.activate(cfg, 0..T * rows * v);
        } else {
            for t in 0..T {
                for b in 0..rows {
                    self.prev[t * rows + b] = if t == 0 {
                        START
                    } else {
                        let row =
                            &self.logits[((t - 1) * rows + b) * v..((t - 1) * rows + b + 1) * v];
                        argmax(row) as u32
                    };
                }
                self.tick_layer0_input(rows, g, t);
                for k in 0..l {
                    let w = &lay.tick_rnn[k];
                    if k > 0 {
                        self.tick_dropout(part, k, t..t + 1);
                        let x = &self.tick_x[k - 1][t * bh..(t + 1) * bh];
                        let gi = &mut self.tick[k].gi[t * rows * g..(t + 1) * rows * g];
                        linear(gi, x, rows, m.wih(w), m.bih(w), g);
                    }
                    let prev = if t % TPB == 0 {
                        let s = k * NB * bh + (t / TPB) * bh;
                        Prev::Init(&self.tick_init[s..s + bh])
                    } else {
                        Prev::Step(t - 1)
                    };
                    self.tick[k].forward_step(rows, t, prev, m.p, w, &mut self.sc);
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
                self.activate(cfg, blk);
            }
        }
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

    /// Input of tick layer k at the given ticks: layer k-1's output times its dropout mask.
    fn tick_dropout(&mut self, part: &Part, k: usize, ticks: std::ops::Range<usize>) {
        let (h, l) = (self.tick[0].h, self.tick.len());
        let bh = part.rows * h;
        for t in ticks {
            let x = &mut self.tick_x[k - 1][t * bh..(t + 1) * bh];
            x.copy_from_slice(&self.tick[k - 1].out[t * bh..(t + 1) * bh]);
            if !part.noise.tick.is_empty() {
                let base = ((t * (l - 1) + k - 1) * part.batch + part.r0) * h;
                for (x, mk) in x.iter_mut().zip(&part.noise.tick[base..base + bh]) {
                    *x *= mk;
                }
            }
        }
    }

    /// Cross-entropy sum, correct tokens and (when training) d loss / d logits.
    fn reconstruction(&mut self, m: &Model, part: &Part) {
        let (rows, v) = (part.rows, m.cfg.vocab_size);
        let scale = 1.0 / (part.batch * T) as f32;
        let (mut ce, mut correct) = (0.0f64, 0usize);
        for t in 0..T {
            for b in 0..rows {
                let i = (t * rows + b) * v;
                let row = &self.logits[i..i + v];
                let target = part.tokens[b * T + t] as usize;
                let best = argmax(row);
                let max = row[best];
                correct += (best == target) as usize;
                let sum: f32 = row.iter().map(|&x| exp(x - max)).sum();
                ce += (sum.ln() + max - row[target]) as f64;
                if part.backward {
                    let d = &mut self.dlogits[i..i + v];
                    let k = scale / sum;
                    for (d, &x) in d.iter_mut().zip(row) {
                        *d = exp(x - max) * k;
                    }
                    d[target] -= scale;
                    if m.cfg.logit_relu {
                        for (d, &x) in d.iter_mut().zip(&self.logits_pre[i..i + v]) {
                            if x < 0.0 {
                                *d = 0.0;
                            }
                        }
                    }
                }
            }
        }
        self.ce_sum = ce;
        self.correct = correct;
    }

    fn decoder_backward(&mut self, m: &Model, part: &Part) {
        let cfg = m.cfg;
        let (rows, h, l, e, v) = (
            part.rows,
            cfg.hidden,
            cfg.layers,
            cfg.embedding,
            cfg.vocab_size,
        );
        let (g, lh, bh) = (3 * h, l * h, rows * h);
        let lay = m.lay;
        let grads = &mut self.grads;
        // Output layer over all ticks at once.
        {
            let top = &mut self.tick[l - 1];
            linear_backward(
                m,
                &lay.output,
                grads,
                &self.dlogits,
                &top.out,
                T * rows,
                Some((&mut top.dout, false)),
            );
        }
        let dgi = &mut self.dgi[0];
        for k in (0..l).rev() {
            let w = &lay.tick_rnn[k];
            let d_init = &mut self.d_tick_init[k * NB * bh..(k + 1) * NB * bh];
            self.tick[k].backward(
                rows,
                false,
                TPB,
                Some(d_init),
                m.p,
                w,
                grads,
                dgi,
                &mut self.sc,
            );
            if k > 0 {
                let x = &self.tick_x[k - 1];
                gemm(
                    &mut grads[w.w_ih..w.w_ih + g * h],
                    h,
                    Mat::rm(dgi, T * rows, g).t(),
                    Mat::rm(x, T * rows, h),
                    true,
                );
                colsum_add(&mut grads[w.b_ih..w.b_ih + g], dgi, T * rows, g);
                let lower = &mut self.tick[k - 1].dout;
                gemm(
                    lower,
                    h,
                    Mat::rm(dgi, T * rows, g),
                    Mat::rm(m.wih(w), g, h),
                    false,
                );
                if !part.noise.tick.is_empty() {
                    for t in 0..T {
                        let base = ((t * (l - 1) + k - 1) * part.batch + part.r0) * h;
                        let mask = &part.noise.tick[base..base + bh];
                        for (d, mk) in lower[t * bh..(t + 1) * bh].iter_mut().zip(mask) {
                            *d *= mk;
                        }
                    }
                }
            }
        }
        // Layer 0's gate inputs: beat context + previous-token table + start.
        let w0 = &lay.tick_rnn[0];
        let in0 = w0.input;
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
        let wih0 = m.wih(w0);
        colsum_add(
            &mut grads[w0.b_ih..w0.b_ih + g],
            &self.dctx_gi,
            NB * rows,
            g,
        );
        let gw = &mut grads[w0.w_ih..w0.w_ih + g * in0];
        gemm(
            &mut gw[e..],
            in0,
            Mat::rm(&self.dctx_gi, NB * rows, g).t(),
            Mat::rm(&self.ctx, NB * rows, h),
            true,
        );
        let dec_emb = m.w(lay.dec_emb, v * e);
        let start = m.w(lay.start_input, e);
        gemm(
            gw,
            in0,
            Mat::rm(&self.dtok_table, v, g).t(),
            Mat::rm(dec_emb, v, e),
            true,
        );
        gemm(
            gw,
            in0,
            Mat::rm(&self.dstart_proj, 1, g).t(),
            Mat::rm(start, 1, e),
            true,
        );
        let tok_w = Mat::ld(wih0, g, e, in0);
        gemm(
            &mut grads[lay.dec_emb..lay.dec_emb + v * e],
            e,
            Mat::rm(&self.dtok_table, v, g),
            tok_w,
            true,
        );
        gemm(
            &mut grads[lay.start_input..lay.start_input + e],
            e,
            Mat::rm(&self.dstart_proj, 1, g),
            tok_w,
            true,
        );
        gemm(
            &mut self.dctx,
            h,
            Mat::rm(&self.dctx_gi, NB * rows, g),
            Mat::ld(&wih0[e..], g, h, in0),
            false,
        );
        // Context and tick initial states back to the beat outputs.
        let nbh = NB * bh;
        {
            let dctx = &mut self.dctx[..nbh];
            for ((d, &x), &y) in dctx.iter_mut().zip(&self.ctx_pre).zip(&self.ctx) {
                let s = if x > 0.0 {
                    super::kernels::SELU_LAMBDA
                } else {
                    y + super::kernels::SELU_LAMBDA * super::kernels::SELU_ALPHA
                };
                *d *= s;
            }
        }
        for k in 0..l {
            for r in 0..NB * rows {
                let src = k * nbh + r * h;
                self.dth[r * lh + k * h..r * lh + (k + 1) * h]
                    .copy_from_slice(&self.d_tick_init[src..src + h]);
            }
        }
        {
            let n = NB * rows * lh;
            let dth = &mut self.dth[..n];
            for ((d, &x), &y) in dth.iter_mut().zip(&self.th_pre).zip(&self.th) {
                let s = if x > 0.0 {
                    super::kernels::SELU_LAMBDA
                } else {
                    y + super::kernels::SELU_LAMBDA * super::kernels::SELU_ALPHA
                };
                *d *= s;
            }
        }
        {
            let top = &mut self.beat[l - 1];
            linear_backward(
                m,
                &lay.beat_to_tick_input,
                grads,
                &self.dctx,
                &top.out,
                NB * rows,
                Some((&mut top.dout, false)),
            );
            linear_backward(
                m,
                &lay.beat_to_tick_hidden,
                grads,
                &self.dth,
                &top.out,
                NB * rows,
                Some((&mut top.dout, true)),
            );
        }
        // Beat RNN.
        for k in (0..l).rev() {
            let w = &lay.beat_rnn[k];
            let d_init = &mut self.d_beat_init[k * bh..(k + 1) * bh];
            self.beat[k].backward(
                rows,
                false,
                NB,
                Some(d_init),
                m.p,
                w,
                grads,
                dgi,
                &mut self.sc,
            );
            if k > 0 {
                let x = &self.beat_x[k - 1];
                gemm(
                    &mut grads[w.w_ih..w.w_ih + g * h],
                    h,
                    Mat::rm(dgi, NB * rows, g).t(),
                    Mat::rm(x, NB * rows, h),
                    true,
                );
                colsum_add(&mut grads[w.b_ih..w.b_ih + g], dgi, NB * rows, g);
                let lower = &mut self.beat[k - 1].dout;
                gemm(
                    lower,
                    h,
                    Mat::rm(dgi, NB * rows, g),
                    Mat::rm(m.wih(w), g, h),
                    false,
                );
                if !part.noise.beat.is_empty() {
                    for t in 0..NB {
                        let base = ((k - 1) * NB + t) * part.batch * h + part.r0 * h;
                        let mask = &part.noise.beat[base..base + bh];
                        for (d, mk) in lower[t * bh..(t + 1) * bh].iter_mut().zip(mask) {
                            *d *= mk;
                        }
                    }
                }
            } else {
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
        }
        for k in 0..l {
            for b in 0..rows {
                let src = k * bh + b * h;
                self.dhb[b * lh + k * h..b * lh + (k + 1) * h]
                    .copy_from_slice(&self.d_beat_init[src..src + h]);
            }
        }
        {
            let dhb = &mut self.dhb[..rows * lh];
            for ((d, &x), &y) in dhb.iter_mut().zip(&self.hb_pre).zip(&self.hb) {
                let s = if x > 0.0 {
                    super::kernels::SELU_LAMBDA
                } else {
                    y + super::kernels::SELU_LAMBDA * super::kernels::SELU_ALPHA
                };
                *d *= s;
            }
        }
        linear_backward(
            m,
            &lay.z_to_beat,
            grads,
            &self.dhb,
            &self.z,
            rows,
            Some((&mut self.dz, false)),
        );
    }

    /// Phase 3: heads and encoder backward from `dmu` and `dls`.
    fn phase_three(&mut self, m: &Model, part: &Part) {
        let cfg = m.cfg;
        let (rows, h, l, e, v) = (
            part.rows,
            cfg.hidden,
            cfg.layers,
            cfg.embedding,
            cfg.vocab_size,
        );
        let (g, hh, sw, bh) = (3 * h, cfg.head_hidden, 2 * l * h, rows * h);
        let lay = m.lay;
        let grads = &mut self.grads;
        self.dstate[..rows * sw].fill(0.0);
        for (i, head) in [&lay.mean, &lay.log_std].into_iter().enumerate() {
            let dout = if i == 0 { &self.dmu } else { &self.dls };
            linear_backward(
                m,
                &head[1],
                grads,
                dout,
                &self.head_s[i],
                rows,
                Some((&mut self.dh1, false)),
            );
            selu_backward(
                &mut self.dh2[..rows * hh],
                &self.dh1[..rows * hh],
                &self.head_a[i],
                &self.head_s[i],
            );
            linear_backward(
                m,
                &head[0],
                grads,
                &self.dh2,
                &self.state,
                rows,
                Some((&mut self.dstate, true)),
            );
        }
        for k in (0..l).rev() {
            for d in 0..2 {
                let seq = &mut self.enc[k][d];
                if k == l - 1 {
                    seq.dout[..T * bh].fill(0.0);
                }
                let t = if d == 0 { T - 1 } else { 0 };
                for b in 0..rows {
                    let src = b * sw + (2 * k + d) * h;
                    let dst = &mut seq.dout[t * bh + b * h..t * bh + (b + 1) * h];
                    for (x, s) in dst.iter_mut().zip(&self.dstate[src..src + h]) {
                        *x += s;
                    }
                }
            }
            for d in 0..2 {
                let w = &lay.enc_rnn[k][d];
                self.enc[k][d].backward(
                    rows,
                    d == 1,
                    T,
                    None,
                    m.p,
                    w,
                    grads,
                    &mut self.dgi[d],
                    &mut self.sc,
                );
            }
            if k > 0 {
                let x = &self.enc_x[k - 1];
                let dx = &mut self.enc_dx;
                for d in 0..2 {
                    let w = &lay.enc_rnn[k][d];
                    let dgi = &self.dgi[d];
                    gemm(
                        &mut grads[w.w_ih..w.w_ih + g * 2 * h],
                        2 * h,
                        Mat::rm(dgi, T * rows, g).t(),
                        Mat::rm(x, T * rows, 2 * h),
                        true,
                    );
                    colsum_add(&mut grads[w.b_ih..w.b_ih + g], dgi, T * rows, g);
                    gemm(
                        dx,
                        2 * h,
                        Mat::rm(dgi, T * rows, g),
                        Mat::rm(m.wih(w), g, 2 * h),
                        d == 1,
                    );
                }
                let [f, r] = &mut self.enc[k - 1];
                for t in 0..T {
                    let n = rows * 2 * h;
                    let blk = &mut dx[t * n..(t + 1) * n];
                    if !part.noise.encoder.is_empty() {
                        let base =
                            (k - 1) * T * part.batch * 2 * h + (t * part.batch + part.r0) * 2 * h;
                        for (x, mk) in blk.iter_mut().zip(&part.noise.encoder[base..base + n]) {
                            *x *= mk;
                        }
                    }
                    for b in 0..rows {
                        let src = b * 2 * h;
                        let dst = t * bh + b * h;
                        f.dout[dst..dst + h].copy_from_slice(&blk[src..src + h]);
                        r.dout[dst..dst + h].copy_from_slice(&blk[src + h..src + 2 * h]);
                    }
                }
            } else {
                let emb = m.w(lay.enc_emb, v * e);
                for d in 0..2 {
                    let w = &lay.enc_rnn[0][d];
                    let dgi = &self.dgi[d];
                    self.dtable.fill(0.0);
                    for t in 0..T {
                        for b in 0..rows {
                            let tok = part.tokens[b * T + t] as usize;
                            let src = &dgi[(t * rows + b) * g..(t * rows + b + 1) * g];
                            for (x, s) in self.dtable[tok * g..(tok + 1) * g].iter_mut().zip(src) {
                                *x += s;
                            }
                        }
                    }
                    colsum_add(&mut grads[w.b_ih..w.b_ih + g], &self.dtable, v, g);
                    gemm(
                        &mut grads[w.w_ih..w.w_ih + g * e],
                        e,
                        Mat::rm(&self.dtable, v, g).t(),
                        Mat::rm(emb, v, e),
                        true,
                    );
                    gemm(
                        &mut grads[lay.enc_emb..lay.enc_emb + v * e],
                        e,
                        Mat::rm(&self.dtable, v, g),
                        Mat::rm(m.wih(w), g, e),
                        true,
                    );
                }
            }
        }
    }
}

/// Index of the first maximum (candle's argmax).
fn argmax(row: &[f32]) -> usize {
    let (mut best, mut val) = (0, row[0]);
    for (i, &x) in row.iter().enumerate().skip(1) {
        if x > val {
            best = i;
            val = x;
        }
    }
    best
}

/// The native training engine: parameters, gradients, Adam state and work buffers.
pub struct NativeEngine {
    cfg: MeasureVaeConfig,
    layout: ParamLayout,
    params: Vec<f32>,
    works: Vec<Work>,
    adam: NativeAdam,
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

impl NativeEngine {
    /// An engine for `cfg` with parameter values `tensors` (every parameter, exact shapes) and
    /// fresh Adam state with learning rate `lr`.
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
            threads: rayon::current_num_threads().clamp(1, 2),
            noise: StepNoise::default(),
        })
    }

    /// Splits batches over at most `threads` threads (1 or 2).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.clamp(1, 2);
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

    /// Forward pass and loss of tokens (B, 24) and attributes (B, 4) with the randomness in
    /// `noise` (dropout when it has masks); with `backward`, the gradients too (read them
    /// with [`NativeEngine::grad_tensors`]).
    pub fn forward_backward(
        &mut self,
        tokens: &[u32],
        attributes: &[f32],
        teacher: bool,
        noise: &StepNoise,
        loss: &NativeLoss,
        backward: bool,
    ) -> StepValues {
        let batch = tokens.len() / T;
        assert!(
            batch > 0 && tokens.len() == batch * T,
            "tokens must be (B, 24)"
        );
        assert_eq!(attributes.len(), batch * 4, "attributes must be (B, 4)");
        assert_eq!(noise.batch, batch, "noise drawn for another batch size");
        let vmax = tokens.iter().copied().max().unwrap_or(0) as usize;
        assert!(
            vmax < self.cfg.vocab_size,
            "token {vmax} out of the vocabulary"
        );
        let parts: Vec<(usize, usize)> = if self.threads > 1 && batch >= MIN_SPLIT_ROWS {
            let a = batch.div_ceil(2);
            vec![(0, a), (a, batch - a)]
        } else {
            vec![(0, batch)]
        };
        self.ensure_work(&parts);
        let zd = self.cfg.latent;
        let model = Model {
            cfg: &self.cfg,
            lay: &self.layout,
            p: &self.params,
        };
        let part = |(r0, rows): (usize, usize)| Part {
            r0,
            rows,
            batch,
            tokens: &tokens[r0 * T..(r0 + rows) * T],
            noise,
            teacher,
            backward,
        };
        let works = &mut self.works;
        if parts.len() == 2 {
            let (a, b) = works.split_at_mut(1);
            let (pa, pb) = (part(parts[0]), part(parts[1]));
            rayon::join(
                || a[0].phase_one(&model, &pa),
                || b[0].phase_one(&model, &pb),
            );
        } else {
            works[0].phase_one(&model, &part(parts[0]));
        }
        // Phase 2: KL and AR over the whole batch.
        let mut mu = Vec::with_capacity(batch * zd);
        let mut ls = Vec::with_capacity(batch * zd);
        let mut z = Vec::with_capacity(batch * zd);
        let (mut ce, mut correct) = (0.0f64, 0usize);
        for (w, &(_, rows)) in works.iter().zip(&parts) {
            mu.extend_from_slice(&w.mu[..rows * zd]);
            ls.extend_from_slice(&w.ls[..rows * zd]);
            z.extend_from_slice(&w.z[..rows * zd]);
            ce += w.ce_sum;
            correct += w.correct;
        }
        let bf = batch as f64;
        let mut kl = 0.0f64;
        for (&m, &l) in mu.iter().zip(&ls) {
            kl += 0.5 * (((2.0 * l).exp() + m * m - 1.0) as f64) - l as f64;
        }
        let kl = kl / bf;
        let mut dz_ar = vec![0.0f32; batch * zd];
        let ar: Vec<f32> = loss
            .regularized
            .iter()
            .map(|&(attr, dim)| {
                ar_term(
                    &z,
                    attributes,
                    batch,
                    zd,
                    dim,
                    attr,
                    loss.delta,
                    (loss.gamma != 0.0).then_some((loss.gamma, &mut dz_ar[..])),
                )
            })
            .collect();
        let recon = ce / (bf * T as f64);
        let mut total = recon + loss.beta * kl;
        if loss.gamma != 0.0 {
            total += loss.gamma * ar.iter().map(|&x| x as f64).sum::<f64>();
        }
        let values = StepValues {
            total: total as f32,
            reconstruction: recon as f32,
            kl: kl as f32,
            ar,
            accuracy: correct as f32 / (batch * T) as f32,
        };
        if !backward {
            return values;
        }
        let beta = loss.beta as f32;
        let inv_b = 1.0 / batch as f32;
        for (w, &(r0, rows)) in works.iter_mut().zip(&parts) {
            for i in 0..rows * zd {
                let gi = r0 * zd + i;
                let dz = w.dz[i] + dz_ar[gi];
                let (m, l) = (mu[gi], ls[gi]);
                w.dmu[i] = dz + beta * m * inv_b;
                w.dls[i] = dz * l.exp() * noise.eps[gi] + beta * ((2.0 * l).exp() - 1.0) * inv_b;
            }
        }
        if parts.len() == 2 {
            let (a, b) = works.split_at_mut(1);
            let (pa, pb) = (part(parts[0]), part(parts[1]));
            rayon::join(
                || a[0].phase_three(&model, &pa),
                || b[0].phase_three(&model, &pb),
            );
            let (a, b) = works.split_at_mut(1);
            for (x, y) in a[0].grads.iter_mut().zip(&b[0].grads) {
                *x += y;
            }
        } else {
            works[0].phase_three(&model, &part(parts[0]));
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

/// AR loss of one attribute over all B x B pairs on latent column `dim`; with `grad`
/// (gamma, dz), adds gamma · d AR / d z to dz. Matches candle's autograd including |x|' = 1
/// at 0 (the two orders of each pair cancel there).
#[allow(clippy::too_many_arguments)]
fn ar_term(
    z: &[f32],
    attributes: &[f32],
    batch: usize,
    zd: usize,
    dim: usize,
    attr: usize,
    delta: f64,
    grad: Option<(f64, &mut [f32])>,
) -> f32 {
    let delta32 = delta as f32;
    let n2 = (batch * batch) as f32;
    let mut sum = 0.0f64;
    let mut dz = vec![0.0f32; batch];
    for i in 0..batch {
        let (zi, ai) = (z[i * zd + dim], attributes[i * 4 + attr]);
        for j in 0..batch {
            let (zj, aj) = (z[j * zd + dim], attributes[j * 4 + attr]);
            let u = ((zi - zj) * delta32).tanh();
            let da = ai - aj;
            let s = if da > 0.0 {
                1.0
            } else if da < 0.0 {
                -1.0
            } else {
                0.0
            };
            let arg = u - s;
            sum += arg.abs() as f64;
            let sg = if arg >= 0.0 { 1.0 } else { -1.0 };
            let gij = sg * (1.0 - u * u) * delta32 / n2;
            dz[i] += gij;
            dz[j] -= gij;
        }
    }
    if let Some((gamma, out)) = grad {
        for (i, d) in dz.iter().enumerate() {
            out[i * zd + dim] += gamma as f32 * d;
        }
    }
    (sum / (batch * batch) as f64) as f32
}
