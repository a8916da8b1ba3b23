//! The encoder of one part of the batch: token embedding, a bidirectional GRU stack over the 24
//! ticks, its final states through the mean and log-std heads (Linear, SELU, Linear).
//!
//! Forward: [`Encoder::forward`] gives mu and log-std. Backward: [`Encoder::backward`] takes
//! their gradients and adds every encoder parameter's gradient.

use super::gru::{GruScratch, Seq};
use super::kernels::{selu, selu_backward};
use super::layers::{apply_mask, linear_backward, Model, Part, Scratch, T};
use crate::linalg::{colsum_add, gemm, linear, Mat};
use crate::music_model::MeasureVaeConfig;

/// The encoder's activations and gradient buffers for up to `cap` rows.
pub(super) struct Encoder {
    /// Per layer, the forward and the reverse direction.
    layers: Vec<[Seq; 2]>,
    /// Inputs of layers 1..: both directions' outputs side by side, after dropout
    /// (T, rows, 2H).
    x: Vec<Vec<f32>>,
    /// Gradient of such an input (T, rows, 2H).
    dx: Vec<f32>,
    /// Layer 0's input projection of every token, per direction (vocab, 3H).
    table: [Vec<f32>; 2],
    dtable: Vec<f32>,
    /// Final states in h_n order (l0-fwd, l0-bwd, l1-fwd, ...): (rows, 2·L·H).
    state: Vec<f32>,
    dstate: Vec<f32>,
    /// Hidden layer of the mean and the log-std head, before and after SELU (rows, head).
    head_a: [Vec<f32>; 2],
    head_s: [Vec<f32>; 2],
    dh1: Vec<f32>,
    dh2: Vec<f32>,
}

impl Encoder {
    pub fn new(cfg: &MeasureVaeConfig, cap: usize) -> Self {
        let (v, h, l, hh) = (cfg.vocab_size, cfg.hidden, cfg.layers, cfg.head_hidden);
        let g = 3 * h;
        let z = |n: usize| vec![0.0f32; n];
        Encoder {
            layers: (0..l)
                .map(|_| [Seq::new(T, cap, h), Seq::new(T, cap, h)])
                .collect(),
            x: (1..l).map(|_| z(T * cap * 2 * h)).collect(),
            dx: z(T * cap * 2 * h),
            table: [z(v * g), z(v * g)],
            dtable: z(v * g),
            state: z(cap * 2 * l * h),
            dstate: z(cap * 2 * l * h),
            head_a: [z(cap * hh), z(cap * hh)],
            head_s: [z(cap * hh), z(cap * hh)],
            dh1: z(cap * hh),
            dh2: z(cap * hh),
        }
    }

    /// Tokens to mu and log-std (rows, latent).
    pub fn forward(
        &mut self,
        m: &Model,
        part: &Part,
        mu: &mut [f32],
        ls: &mut [f32],
        sc: &mut GruScratch,
    ) {
        self.first_layer_forward(m, part, sc);
        for k in 1..m.cfg.layers {
            self.upper_layer_forward(m, part, k, sc);
        }
        self.gather_final_states(m.cfg, part.rows);
        self.heads_forward(m, part.rows, mu, ls);
    }

    /// Layer 0: gate inputs looked up per token in a projected embedding table, both directions.
    fn first_layer_forward(&mut self, m: &Model, part: &Part, sc: &mut GruScratch) {
        let (rows, v, e) = (part.rows, m.cfg.vocab_size, m.cfg.embedding);
        let g = 3 * m.cfg.hidden;
        let emb = m.w(m.lay.enc_emb, v * e);
        for d in 0..2 {
            let w = &m.lay.enc_rnn[0][d];
            linear(&mut self.table[d], emb, v, m.wih(w), m.bih(w), g);
            let seq = &mut self.layers[0][d];
            for t in 0..T {
                for b in 0..rows {
                    let tok = part.tokens[b * T + t] as usize;
                    let dst = (t * rows + b) * g;
                    seq.gi[dst..dst + g].copy_from_slice(&self.table[d][tok * g..(tok + 1) * g]);
                }
            }
            seq.forward(rows, d == 1, T, None, m.p, w, sc);
        }
    }

    /// Layer `k` ≥ 1: input = both directions of layer k-1 side by side, after dropout.
    fn upper_layer_forward(&mut self, m: &Model, part: &Part, k: usize, sc: &mut GruScratch) {
        let (rows, h) = (part.rows, m.cfg.hidden);
        let x = &mut self.x[k - 1];
        let (lower, upper) = self.layers.split_at_mut(k);
        let [f, r] = &lower[k - 1];
        for t in 0..T {
            for b in 0..rows {
                let (src, dst) = ((t * rows + b) * h, (t * rows + b) * 2 * h);
                x[dst..dst + h].copy_from_slice(&f.out[src..src + h]);
                x[dst + h..dst + 2 * h].copy_from_slice(&r.out[src..src + h]);
            }
            let n = rows * 2 * h;
            apply_mask(&mut x[t * n..(t + 1) * n], part.encoder_mask(k, t, h));
        }
        for (d, seq) in upper[0].iter_mut().enumerate() {
            let w = &m.lay.enc_rnn[k][d];
            linear(&mut seq.gi, x, T * rows, m.wih(w), m.bih(w), 3 * h);
            seq.forward(rows, d == 1, T, None, m.p, w, sc);
        }
    }

    /// Each layer's and direction's last state into `state`, in h_n order.
    fn gather_final_states(&mut self, cfg: &MeasureVaeConfig, rows: usize) {
        let (h, l) = (cfg.hidden, cfg.layers);
        let sw = 2 * l * h;
        for k in 0..l {
            for d in 0..2 {
                let t = if d == 0 { T - 1 } else { 0 };
                let out = &self.layers[k][d].out;
                for b in 0..rows {
                    let dst = b * sw + (2 * k + d) * h;
                    let src = (t * rows + b) * h;
                    self.state[dst..dst + h].copy_from_slice(&out[src..src + h]);
                }
            }
        }
    }

    /// The mean and log-std heads on the final states.
    fn heads_forward(&mut self, m: &Model, rows: usize, mu: &mut [f32], ls: &mut [f32]) {
        let (hh, zd) = (m.cfg.head_hidden, m.cfg.latent);
        for (i, head) in [&m.lay.mean, &m.lay.log_std].into_iter().enumerate() {
            let (w0, b0) = (m.lw(&head[0]), m.lb(&head[0]));
            linear(&mut self.head_a[i], &self.state, rows, w0, b0, hh);
            selu(
                &mut self.head_s[i][..rows * hh],
                &self.head_a[i][..rows * hh],
            );
            let out = if i == 0 { &mut *mu } else { &mut *ls };
            let (w1, b1) = (m.lw(&head[1]), m.lb(&head[1]));
            linear(out, &self.head_s[i], rows, w1, b1, zd);
        }
    }

    /// From d loss / d mu and d loss / d log-std (rows, latent): adds the gradients of the
    /// heads, every GRU layer and the embedding to `grads`.
    pub fn backward(
        &mut self,
        m: &Model,
        part: &Part,
        (dmu, dls): (&[f32], &[f32]),
        grads: &mut [f32],
        s: &mut Scratch,
    ) {
        self.heads_backward(m, part.rows, dmu, dls, grads);
        let l = m.cfg.layers;
        for k in (0..l).rev() {
            self.add_final_state_grads(m.cfg, part.rows, k);
            for d in 0..2 {
                let w = &m.lay.enc_rnn[k][d];
                let seq = &self.layers[k][d];
                let dgi = &mut s.dgi[d];
                seq.backward(part.rows, d == 1, T, None, m.p, w, grads, dgi, &mut s.gru);
            }
            if k > 0 {
                self.upper_input_backward(m, part, k, grads, &s.dgi);
            } else {
                self.embedding_backward(m, part, grads, &s.dgi);
            }
        }
    }

    /// The heads backward down to d loss / d state.
    fn heads_backward(
        &mut self,
        m: &Model,
        rows: usize,
        dmu: &[f32],
        dls: &[f32],
        grads: &mut [f32],
    ) {
        let (hh, sw) = (m.cfg.head_hidden, 2 * m.cfg.layers * m.cfg.hidden);
        self.dstate[..rows * sw].fill(0.0);
        for (i, head) in [&m.lay.mean, &m.lay.log_std].into_iter().enumerate() {
            let dout = if i == 0 { dmu } else { dls };
            let dh1 = Some((&mut self.dh1[..], false));
            linear_backward(m, &head[1], grads, dout, &self.head_s[i], rows, dh1);
            selu_backward(
                &mut self.dh2[..rows * hh],
                &self.dh1[..rows * hh],
                &self.head_a[i],
                &self.head_s[i],
            );
            let dstate = Some((&mut self.dstate[..], true));
            linear_backward(m, &head[0], grads, &self.dh2, &self.state, rows, dstate);
        }
    }

    /// Adds d loss / d state to the output gradient of layer `k`'s last step in each
    /// direction (the top layer's output gradients start at zero).
    fn add_final_state_grads(&mut self, cfg: &MeasureVaeConfig, rows: usize, k: usize) {
        let (h, l) = (cfg.hidden, cfg.layers);
        let (sw, bh) = (2 * l * h, rows * h);
        for d in 0..2 {
            let seq = &mut self.layers[k][d];
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
    }

    /// Layer `k` ≥ 1's input projection backward: its weight gradients, and the output
    /// gradients of both directions of layer k-1 through the dropout mask.
    fn upper_input_backward(
        &mut self,
        m: &Model,
        part: &Part,
        k: usize,
        grads: &mut [f32],
        dgi: &[Vec<f32>; 2],
    ) {
        let (rows, h) = (part.rows, m.cfg.hidden);
        let (g, n) = (3 * h, T * rows);
        let (x, dx) = (&self.x[k - 1], &mut self.dx);
        for (d, dgi) in dgi.iter().enumerate() {
            let w = &m.lay.enc_rnn[k][d];
            gemm(
                &mut grads[w.w_ih..w.w_ih + g * 2 * h],
                2 * h,
                Mat::rm(dgi, n, g).t(),
                Mat::rm(x, n, 2 * h),
                true,
            );
            colsum_add(&mut grads[w.b_ih..w.b_ih + g], dgi, n, g);
            let wih = Mat::rm(m.wih(w), g, 2 * h);
            gemm(dx, 2 * h, Mat::rm(dgi, n, g), wih, d == 1);
        }
        let [f, r] = &mut self.layers[k - 1];
        let (bh, bh2) = (rows * h, rows * 2 * h);
        for t in 0..T {
            let blk = &mut dx[t * bh2..(t + 1) * bh2];
            apply_mask(blk, part.encoder_mask(k, t, h));
            for b in 0..rows {
                let (src, dst) = (b * 2 * h, t * bh + b * h);
                f.dout[dst..dst + h].copy_from_slice(&blk[src..src + h]);
                r.dout[dst..dst + h].copy_from_slice(&blk[src + h..src + 2 * h]);
            }
        }
    }

    /// Layer 0's input backward: gate gradients summed per token into a table, then the
    /// gradients of W_ih, b_ih and the embedding, per direction.
    fn embedding_backward(
        &mut self,
        m: &Model,
        part: &Part,
        grads: &mut [f32],
        dgi: &[Vec<f32>; 2],
    ) {
        let (rows, v, e) = (part.rows, m.cfg.vocab_size, m.cfg.embedding);
        let (g, lay) = (3 * m.cfg.hidden, m.lay);
        let emb = m.w(lay.enc_emb, v * e);
        for (d, dgi) in dgi.iter().enumerate() {
            let w = &lay.enc_rnn[0][d];
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
            let dtable = Mat::rm(&self.dtable, v, g);
            colsum_add(&mut grads[w.b_ih..w.b_ih + g], &self.dtable, v, g);
            gemm(
                &mut grads[w.w_ih..w.w_ih + g * e],
                e,
                dtable.t(),
                Mat::rm(emb, v, e),
                true,
            );
            gemm(
                &mut grads[lay.enc_emb..lay.enc_emb + v * e],
                e,
                dtable,
                Mat::rm(m.wih(w), g, e),
                true,
            );
        }
    }
}
