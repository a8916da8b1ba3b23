//! Element-wise kernels: a branch-free `exp` that vectorizes, the GRU gate math forward and
//! backward in single passes, SELU, argmax.

/// SELU's λ (PyTorch).
pub(crate) const SELU_LAMBDA: f32 = 1.050_700_987_355_480_5_f64 as f32;
/// SELU's α (PyTorch).
pub(crate) const SELU_ALPHA: f32 = 1.673_263_242_354_377_3_f64 as f32;

/// e^x to about 2 ulp (Cephes' polynomial, range reduction by rounding with a magic constant),
/// branch-free so that loops over it vectorize. Inputs are clamped to [-87, 88].
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((ni + 127) << 23) as u32)
}

#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// y = selu(x), element-wise.
pub(crate) fn selu(y: &mut [f32], x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        let neg = SELU_ALPHA * (exp(x) - 1.0);
        *y = SELU_LAMBDA * if x > 0.0 { x } else { neg };
    }
}

/// dx = dy · selu'(x), from the SELU output y (as candle: λ for x > 0, y + λα otherwise).
pub(crate) fn selu_backward(dx: &mut [f32], dy: &[f32], x: &[f32], y: &[f32]) {
    for (((dx, &dy), &x), &y) in dx.iter_mut().zip(dy).zip(x).zip(y) {
        let d = if x > 0.0 {
            SELU_LAMBDA
        } else {
            y + SELU_LAMBDA * SELU_ALPHA
        };
        *dx = dy * d;
    }
}

/// d ← d · selu'(x) in place, from the SELU input x and output y (the same factor as
/// [`selu_backward`]).
pub(crate) fn selu_backward_in_place(d: &mut [f32], x: &[f32], y: &[f32]) {
    for ((d, &x), &y) in d.iter_mut().zip(x).zip(y) {
        let s = if x > 0.0 {
            SELU_LAMBDA
        } else {
            y + SELU_LAMBDA * SELU_ALPHA
        };
        *d *= s;
    }
}

/// Index of the first maximum (candle's argmax).
pub(crate) fn argmax(row: &[f32]) -> usize {
    let (mut best, mut val) = (0, row[0]);
    for (i, &x) in row.iter().enumerate().skip(1) {
        if x > val {
            best = i;
            val = x;
        }
    }
    best
}

/// Saved activations of one GRU step for `rows` rows of width h, written by [`gru_forward`].
pub(crate) struct GateState<'a> {
    pub r: &'a mut [f32],
    pub z: &'a mut [f32],
    pub n: &'a mut [f32],
    /// W_hn h + b_hn (needed by the r gradient).
    pub ghn: &'a mut [f32],
}

/// Whether the AVX2 copies of the kernels can run (checked once; the loops are the same code,
/// compiled 8 lanes wide; no FMA contraction, so results equal the portable build).
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| std::is_x86_feature_detected!("avx2"))
}

/// PyTorch's GRU cell for `rows` rows: gi and gh are (rows, 3h) with gates r, z, n; gh holds
/// W_h h + b_h. Writes the gates and the new state `out` = n + z (h − n).
pub(crate) fn gru_forward(
    rows: usize,
    h: usize,
    gi: &[f32],
    gh: &[f32],
    hp: &[f32],
    s: GateState,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU supports AVX2 (checked above).
        return unsafe { gru_forward_avx2(rows, h, gi, gh, hp, s, out) };
    }
    gru_forward_impl(rows, h, gi, gh, hp, s, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gru_forward_avx2(
    rows: usize,
    h: usize,
    gi: &[f32],
    gh: &[f32],
    hp: &[f32],
    s: GateState,
    out: &mut [f32],
) {
    gru_forward_impl(rows, h, gi, gh, hp, s, out)
}

#[inline(always)]
fn gru_forward_impl(
    rows: usize,
    h: usize,
    gi: &[f32],
    gh: &[f32],
    hp: &[f32],
    s: GateState,
    out: &mut [f32],
) {
    let g = 3 * h;
    for b in 0..rows {
        let gi = &gi[b * g..(b + 1) * g];
        let gh = &gh[b * g..(b + 1) * g];
        let o = b * h;
        let (hp, out) = (&hp[o..o + h], &mut out[o..o + h]);
        let (r, z) = (&mut s.r[o..o + h], &mut s.z[o..o + h]);
        let (n, ghn) = (&mut s.n[o..o + h], &mut s.ghn[o..o + h]);
        let (gir, giz, gin) = (&gi[..h], &gi[h..2 * h], &gi[2 * h..g]);
        let (ghr, ghz, ghnn) = (&gh[..h], &gh[h..2 * h], &gh[2 * h..g]);
        for j in 0..h {
            let rj = sigmoid(gir[j] + ghr[j]);
            let zj = sigmoid(giz[j] + ghz[j]);
            let nj = tanh(gin[j] + rj * ghnn[j]);
            r[j] = rj;
            z[j] = zj;
            n[j] = nj;
            ghn[j] = ghnn[j];
            out[j] = nj + zj * (hp[j] - nj);
        }
    }
}

/// Saved activations of one GRU step, read by [`gru_backward`].
pub(crate) struct GateSaved<'a> {
    pub r: &'a [f32],
    pub z: &'a [f32],
    pub n: &'a [f32],
    pub ghn: &'a [f32],
    pub hp: &'a [f32],
}

/// Backward of one GRU step for `rows` rows. The gradient of the new state is `dh + carry`;
/// writes the gate gradients on the input side `dgi` and on the hidden side `dgh` (rows, 3h)
/// and leaves the direct part of the previous state's gradient, (dh + carry) · z, in `carry`.
pub(crate) fn gru_backward(
    rows: usize,
    h: usize,
    dh: &[f32],
    carry: &mut [f32],
    s: GateSaved,
    dgi: &mut [f32],
    dgh: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU supports AVX2 (checked above).
        return unsafe { gru_backward_avx2(rows, h, dh, carry, s, dgi, dgh) };
    }
    gru_backward_impl(rows, h, dh, carry, s, dgi, dgh)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gru_backward_avx2(
    rows: usize,
    h: usize,
    dh: &[f32],
    carry: &mut [f32],
    s: GateSaved,
    dgi: &mut [f32],
    dgh: &mut [f32],
) {
    gru_backward_impl(rows, h, dh, carry, s, dgi, dgh)
}

#[inline(always)]
fn gru_backward_impl(
    rows: usize,
    h: usize,
    dh: &[f32],
    carry: &mut [f32],
    s: GateSaved,
    dgi: &mut [f32],
    dgh: &mut [f32],
) {
    let g = 3 * h;
    for b in 0..rows {
        let o = b * h;
        let (dh, carry) = (&dh[o..o + h], &mut carry[o..o + h]);
        let (r, z, n) = (&s.r[o..o + h], &s.z[o..o + h], &s.n[o..o + h]);
        let (ghn, hp) = (&s.ghn[o..o + h], &s.hp[o..o + h]);
        let (dgi_r, rest) = dgi[b * g..(b + 1) * g].split_at_mut(h);
        let (dgi_z, dgi_n) = rest.split_at_mut(h);
        let (dgh_r, rest) = dgh[b * g..(b + 1) * g].split_at_mut(h);
        let (dgh_z, dgh_n) = rest.split_at_mut(h);
        for j in 0..h {
            let d = dh[j] + carry[j];
            let (rj, zj, nj) = (r[j], z[j], n[j]);
            let dn = d * (1.0 - zj) * (1.0 - nj * nj);
            let dz = d * (hp[j] - nj) * zj * (1.0 - zj);
            let dr = dn * ghn[j] * rj * (1.0 - rj);
            dgi_r[j] = dr;
            dgi_z[j] = dz;
            dgi_n[j] = dn;
            dgh_r[j] = dr;
            dgh_z[j] = dz;
            dgh_n[j] = dn * rj;
            carry[j] = d * zj;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_tanh_sigmoid_are_accurate() {
        let mut worst = [0.0f64; 3];
        let mut x = -30.0f32;
        while x < 30.0 {
            let e = (x as f64).exp();
            worst[0] = worst[0].max(((exp(x) as f64) - e).abs() / e);
            worst[1] = worst[1].max(((tanh(x) as f64) - (x as f64).tanh()).abs());
            let s = 1.0 / (1.0 + (-x as f64).exp());
            worst[2] = worst[2].max(((sigmoid(x) as f64) - s).abs());
            x += 0.001;
        }
        assert!(worst[0] < 5e-7, "exp relative error {}", worst[0]);
        assert!(worst[1] < 3e-7, "tanh absolute error {}", worst[1]);
        assert!(worst[2] < 2e-7, "sigmoid absolute error {}", worst[2]);
        assert_eq!(exp(-200.0), exp(-87.0));
        assert!(exp(200.0).is_finite());
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(-50.0), -1.0);
    }
}
