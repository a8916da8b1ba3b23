//! Packed matrices, matrix-vector products and vectorizable activations for [`super`].
//!
//! Everything here is plain Rust written so that LLVM vectorizes it: fixed-width blocks of
//! output rows held in registers while the input is streamed. The same generic code is
//! compiled once per instruction set ([`Kernel`]) by inlining it into functions with
//! `#[target_feature]`, and the model picks the best one the CPU supports at run time.

/// Rows per full block of a [`Packed`] matrix (the register tile of the matrix-vector kernel).
const BLOCK: usize = 64;
/// Rows per tail block; every packed matrix is padded to a multiple of this.
const TAIL: usize = 16;

/// Which compiled variant of the kernels runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Baseline instructions of the target (SSE2 on x86-64, NEON on aarch64).
    Portable,
    /// x86-64 AVX2 with fused multiply-add.
    Avx2Fma,
}

impl Kernel {
    /// Every kernel variant.
    pub const ALL: [Kernel; 2] = [Kernel::Portable, Kernel::Avx2Fma];

    /// The fastest variant this CPU supports.
    pub fn detect() -> Kernel {
        if Kernel::Avx2Fma.is_supported() {
            Kernel::Avx2Fma
        } else {
            Kernel::Portable
        }
    }

    /// Whether this CPU can run the variant.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2Fma => false,
        }
    }

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2Fma => "avx2+fma",
        }
    }
}

/// A weight matrix (rows x cols, PyTorch's `(out, in)` layout) repacked for [`Isa::matvec`]:
/// rows are padded to a multiple of 16 and cut into blocks of 64 rows (then 16-row tail
/// blocks); inside a block the weights are stored column by column, so the kernel reads the
/// whole matrix once, front to back, while a block of outputs stays in registers.
#[derive(Clone, Debug)]
pub(crate) struct Packed {
    rows: usize,
    cols: usize,
    padded: usize,
    data: Vec<f32>,
}

impl Packed {
    /// Packs `w` (row-major, `rows x cols`), optionally only the columns `col0..col0 + cols`
    /// of a wider matrix with `stride` columns.
    pub(crate) fn new(w: &[f32], rows: usize, cols: usize, col0: usize, stride: usize) -> Packed {
        debug_assert!(col0 + cols <= stride && w.len() == rows * stride);
        let padded = rows.div_ceil(TAIL) * TAIL;
        let mut data = vec![0.0; padded * cols];
        let mut at = 0;
        let mut r0 = 0;
        while r0 < padded {
            let width = if padded - r0 >= BLOCK { BLOCK } else { TAIL };
            for j in 0..cols {
                for k in 0..width {
                    let r = r0 + k;
                    if r < rows {
                        data[at + j * width + k] = w[r * stride + col0 + j];
                    }
                }
            }
            at += width * cols;
            r0 += width;
        }
        Packed {
            rows,
            cols,
            padded,
            data,
        }
    }

    /// Output rows (without padding).
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Output rows including padding: the length the output and bias slices must have.
    pub(crate) fn padded(&self) -> usize {
        self.padded
    }
}

/// A bias vector zero-padded to a packed matrix's padded row count.
pub(crate) fn padded_bias(b: &[f32], padded: usize) -> Vec<f32> {
    let mut out = vec![0.0; padded];
    out[..b.len()].copy_from_slice(b);
    out
}

#[inline(always)]
fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// y[0..R] = bias + W_block x for one block of R rows; `w` is the block (cols x R).
/// `SPLIT` keeps two accumulator sets (even and odd columns) for more independent FMAs.
#[inline(always)]
fn block_matvec<const R: usize, const FMA: bool, const SPLIT: bool>(
    w: &[f32],
    bias: &[f32],
    x: &[f32],
    y: &mut [f32],
) {
    let w = &w[..x.len() * R];
    let mut acc = [0.0f32; R];
    acc.copy_from_slice(&bias[..R]);
    if SPLIT {
        let mut acc2 = [0.0f32; R];
        let mut pairs = w.chunks_exact(2 * R);
        let mut xs = x.chunks_exact(2);
        for (wj, xj) in (&mut pairs).zip(&mut xs) {
            let (x0, x1) = (xj[0], xj[1]);
            for k in 0..R {
                acc[k] = fmadd::<FMA>(wj[k], x0, acc[k]);
                acc2[k] = fmadd::<FMA>(wj[R + k], x1, acc2[k]);
            }
        }
        if let [x0] = xs.remainder() {
            let wj = &pairs.remainder()[..R];
            for k in 0..R {
                acc[k] = fmadd::<FMA>(wj[k], *x0, acc[k]);
            }
        }
        for k in 0..R {
            acc[k] += acc2[k];
        }
    } else {
        for (wj, &xj) in w.chunks_exact(R).zip(x) {
            for k in 0..R {
                acc[k] = fmadd::<FMA>(wj[k], xj, acc[k]);
            }
        }
    }
    y[..R].copy_from_slice(&acc);
}

/// Rows `s0..s0 + S` of one block (stride `R`) times `C` input columns at once:
/// `y[c * ldy + s0 + k] = bias[s0 + k] + sum_j w[j * R + s0 + k] * x[c * ldx + j]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block_matmul<const S: usize, const C: usize, const FMA: bool>(
    w: &[f32],
    stride: usize,
    s0: usize,
    bias: &[f32],
    x: &[f32],
    ldx: usize,
    cols: usize,
    y: &mut [f32],
    ldy: usize,
) {
    let mut acc = [[0.0f32; S]; C];
    for a in acc.iter_mut() {
        a.copy_from_slice(&bias[s0..s0 + S]);
    }
    let xs: [&[f32]; C] = std::array::from_fn(|c| &x[c * ldx..c * ldx + cols]);
    for j in 0..cols {
        let wj = &w[j * stride + s0..j * stride + s0 + S];
        for c in 0..C {
            let xc = xs[c][j];
            for k in 0..S {
                acc[c][k] = fmadd::<FMA>(wj[k], xc, acc[c][k]);
            }
        }
    }
    for (c, a) in acc.iter().enumerate() {
        y[c * ldy + s0..c * ldy + s0 + S].copy_from_slice(a);
    }
}

/// One compiled variant of the kernels: the matrix products, the rest is shared.
pub(crate) trait Isa {
    /// `y[..m.padded()] = bias + W x` (x has `m.cols()` values).
    fn matvec(m: &Packed, bias: &[f32], x: &[f32], y: &mut [f32]);
    /// The same for `n` inputs at once: input `c` is `x[c * ldx..]`, its output `y[c * ldy..]`.
    fn matmul(m: &Packed, bias: &[f32], x: &[f32], ldx: usize, n: usize, y: &mut [f32], ldy: usize);
}

#[inline(always)]
fn matvec_with<const FMA: bool, const SPLIT: bool>(
    m: &Packed,
    bias: &[f32],
    x: &[f32],
    y: &mut [f32],
) {
    let x = &x[..m.cols];
    let (bias, y) = (&bias[..m.padded], &mut y[..m.padded]);
    let mut at = 0;
    let mut r0 = 0;
    while r0 < m.padded {
        if m.padded - r0 >= BLOCK {
            block_matvec::<BLOCK, FMA, SPLIT>(&m.data[at..], &bias[r0..], x, &mut y[r0..]);
            at += BLOCK * m.cols;
            r0 += BLOCK;
        } else {
            block_matvec::<TAIL, FMA, true>(&m.data[at..], &bias[r0..], x, &mut y[r0..]);
            at += TAIL * m.cols;
            r0 += TAIL;
        }
    }
}

/// Matrix times `n` columns with register tiles of 16 rows x `C` columns (then 2, then 1).
#[inline(always)]
fn matmul_with<const C: usize, const FMA: bool>(
    m: &Packed,
    bias: &[f32],
    x: &[f32],
    ldx: usize,
    n: usize,
    y: &mut [f32],
    ldy: usize,
) {
    let cols = m.cols;
    let mut at = 0;
    let mut r0 = 0;
    while r0 < m.padded {
        let width = if m.padded - r0 >= BLOCK { BLOCK } else { TAIL };
        let w = &m.data[at..at + width * cols];
        let b = &bias[r0..r0 + width];
        let mut s0 = 0;
        while s0 < width {
            let mut c0 = 0;
            while n - c0 >= C {
                let (xc, yc) = (&x[c0 * ldx..], &mut y[c0 * ldy + r0..]);
                block_matmul::<TAIL, C, FMA>(w, width, s0, b, xc, ldx, cols, yc, ldy);
                c0 += C;
            }
            while n - c0 >= 2 {
                let (xc, yc) = (&x[c0 * ldx..], &mut y[c0 * ldy + r0..]);
                block_matmul::<TAIL, 2, FMA>(w, width, s0, b, xc, ldx, cols, yc, ldy);
                c0 += 2;
            }
            if c0 < n {
                let (xc, yc) = (&x[c0 * ldx..], &mut y[c0 * ldy + r0..]);
                block_matmul::<TAIL, 1, FMA>(w, width, s0, b, xc, ldx, cols, yc, ldy);
            }
            s0 += TAIL;
        }
        at += width * cols;
        r0 += width;
    }
}

/// Baseline kernels (no target features beyond the target's default).
pub(crate) struct Portable;

impl Isa for Portable {
    #[inline(always)]
    fn matvec(m: &Packed, bias: &[f32], x: &[f32], y: &mut [f32]) {
        matvec_with::<{ cfg!(target_arch = "aarch64") }, false>(m, bias, x, y)
    }
    #[inline(always)]
    fn matmul(
        m: &Packed,
        bias: &[f32],
        x: &[f32],
        ldx: usize,
        n: usize,
        y: &mut [f32],
        ldy: usize,
    ) {
        matmul_with::<2, { cfg!(target_arch = "aarch64") }>(m, bias, x, ldx, n, y, ldy)
    }
}

/// AVX2 + FMA kernels (used only inside `#[target_feature(enable = "avx2,fma")]` functions).
pub(crate) struct Avx2Fma;

impl Isa for Avx2Fma {
    #[inline(always)]
    fn matvec(m: &Packed, bias: &[f32], x: &[f32], y: &mut [f32]) {
        matvec_with::<true, false>(m, bias, x, y)
    }
    #[inline(always)]
    fn matmul(
        m: &Packed,
        bias: &[f32],
        x: &[f32],
        ldx: usize,
        n: usize,
        y: &mut [f32],
        ldy: usize,
    ) {
        matmul_with::<6, true>(m, bias, x, ldx, n, y, ldy)
    }
}

// ---------------------------------------------------------------------------------------------
// Activations: branch-free so the loops over a hidden state vectorize.

/// SELU's α and λ as PyTorch.
pub(crate) const SELU_ALPHA: f32 = 1.673_263_2;
/// SELU's scale λ.
pub(crate) const SELU_LAMBDA: f32 = 1.050_701;

/// e^x to about 1 ulp for x in [-87, 88] (clamped outside), Cephes' polynomial; vectorizes.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let ni = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = x - n * LN2_HI;
    let r = r - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let p = p * (r * r) + r + 1.0;
    p * f32::from_bits(((ni + 127) << 23) as u32)
}

/// The logistic function 1 / (1 + e^-x).
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// tanh(x) = (e^2x - 1) / (e^2x + 1); absolute error about 1e-7.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let e = exp(2.0 * x);
    (e - 1.0) / (e + 1.0)
}

/// SELU as PyTorch: λ x for x >= 0, λ α (e^x - 1) otherwise.
#[inline(always)]
pub(crate) fn selu(x: f32) -> f32 {
    let neg = SELU_ALPHA * (exp(x) - 1.0);
    SELU_LAMBDA * if x >= 0.0 { x } else { neg }
}

/// SELU over a slice in place.
#[inline(always)]
pub(crate) fn selu_in_place(v: &mut [f32]) {
    for x in v.iter_mut() {
        *x = selu(*x);
    }
}

/// One PyTorch GRU update in place: `gi` holds the input-side gate pre-activations with the
/// r and z hidden biases folded in, `gh` the hidden-side ones `W_hh h` (+ `b_hn` on n).
/// r = σ(gi_r + gh_r), z = σ(gi_z + gh_z), n = tanh(gi_n + r gh_n), h' = n + z (h - n).
#[inline(always)]
pub(crate) fn gru_update(h: &mut [f32], gi: &[f32], gh: &[f32]) {
    let hs = h.len();
    let (gi_r, gi) = gi.split_at(hs);
    let (gi_z, gi_n) = gi.split_at(hs);
    let (gh_r, gh) = gh.split_at(hs);
    let (gh_z, gh_n) = gh.split_at(hs);
    let gi_n = &gi_n[..hs];
    let gh_n = &gh_n[..hs];
    for i in 0..hs {
        let r = sigmoid(gi_r[i] + gh_r[i]);
        let z = sigmoid(gi_z[i] + gh_z[i]);
        let n = tanh(gi_n[i] + r * gh_n[i]);
        h[i] = n + z * (h[i] - n);
    }
}

/// Index of the first maximum (candle's and torch's argmax on ties); 0 if all are NaN.
#[inline]
pub(crate) fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    let mut val = v[0];
    for (i, &x) in v.iter().enumerate().skip(1) {
        if val < x {
            best = i;
            val = x;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(w: &[f32], rows: usize, cols: usize, b: &[f32], x: &[f32]) -> Vec<f64> {
        (0..rows)
            .map(|r| {
                b[r] as f64
                    + (0..cols)
                        .map(|j| w[r * cols + j] as f64 * x[j] as f64)
                        .sum::<f64>()
            })
            .collect()
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn check<I: Isa>() {
        let mut seed = 7;
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn tick(ms: &[Packed], b: &[f32], x: &mut [f32], y: &mut [f32], gate: bool) {
                for _ in 0..24 {
                    for m in ms {
                        Avx2Fma::matvec(m, b, x, y);
                        if gate && m.rows == 384 {
                            gru_update(&mut x[..128], &y[..384], &b[..384]);
                        }
                        x[0] = y[1] * 1e-9;
                    }
                }
            }
            let mk = |rows: usize| {
                let w: Vec<f32> = (0..rows * 128)
                    .map(|i| (i as f32 * 0.001).sin() * 0.1)
                    .collect();
                Packed::new(&w, rows, 128, 0, 128)
            };
            let ms = [mk(384), mk(384), mk(384), mk(132)];
            let b = vec![0.0; 384];
            let mut x = vec![0.5; 128];
            let mut y = vec![0.0; 384];
            for gate in [false, true] {
                let mut best = f64::MAX;
                for _ in 0..200 {
                    let t = std::time::Instant::now();
                    unsafe { tick(&ms, &b, &mut x, &mut y, gate) };
                    best = best.min(t.elapsed().as_secs_f64() * 1e6);
                }
                println!("24 ticks gate={gate}: {best:.1} us");
            }
        }
        for &(rows, cols) in &[
            (384, 128),
            (132, 128),
            (32, 256),
            (24, 10),
            (3, 1),
            (256, 5),
            (80, 7),
        ] {
            let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f32> = (0..rows).map(|_| lcg(&mut seed)).collect();
            let n = 7;
            let x: Vec<f32> = (0..n * cols).map(|_| lcg(&mut seed)).collect();
            let p = Packed::new(&w, rows, cols, 0, cols);
            let bias = padded_bias(&b, p.padded());
            let mut y = vec![f32::NAN; p.padded()];
            I::matvec(&p, &bias, &x, &mut y);
            let want = naive(&w, rows, cols, &b, &x);
            for r in 0..rows {
                assert!(
                    (y[r] as f64 - want[r]).abs() < 1e-4,
                    "matvec {rows}x{cols} row {r}"
                );
            }
            let ldy = p.padded() + 3;
            let mut ym = vec![f32::NAN; n * ldy];
            I::matmul(&p, &bias, &x, cols, n, &mut ym, ldy);
            for c in 0..n {
                let want = naive(&w, rows, cols, &b, &x[c * cols..]);
                for r in 0..rows {
                    assert!(
                        (ym[c * ldy + r] as f64 - want[r]).abs() < 1e-4,
                        "matmul {rows}x{cols} col {c} row {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn portable_products_match_naive() {
        check::<Portable>();
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_products_match_naive() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn run() {
            check::<Avx2Fma>();
        }
        if Kernel::Avx2Fma.is_supported() {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            unsafe { run() }
        }
    }

    #[test]
    fn column_slice_packing() {
        // Packing columns 2..5 of a 3 x 6 matrix equals packing that sub-matrix.
        let w: Vec<f32> = (0..18).map(|i| i as f32).collect();
        let sub: Vec<f32> = (0..3)
            .flat_map(|r| (2..5).map(move |c| (r * 6 + c) as f32))
            .collect();
        let (a, b) = (Packed::new(&w, 3, 3, 2, 6), Packed::new(&sub, 3, 3, 0, 3));
        assert_eq!(a.data, b.data);
        assert_eq!((a.rows(), a.cols, a.padded()), (3, 3, 16));
    }

    #[test]
    fn activations_are_accurate() {
        let mut worst = [0.0f64; 4];
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.005;
            let xd = x as f64;
            let e = if xd.abs() <= 87.0 {
                ((exp(x) as f64) - xd.exp()).abs() / xd.exp()
            } else {
                0.0
            };
            let s = (sigmoid(x) as f64 - 1.0 / (1.0 + (-xd).exp())).abs();
            let t = (tanh(x) as f64 - xd.tanh()).abs();
            let want = if xd >= 0.0 {
                1.0507009873554805 * xd
            } else {
                1.0507009873554805 * 1.6732632423543772 * xd.exp_m1()
            };
            let u = (selu(x) as f64 - want).abs() / want.abs().max(1.0);
            for (w, v) in worst.iter_mut().zip([e, s, t, u]) {
                *w = w.max(v);
            }
        }
        assert!(worst[0] < 3e-7, "exp relative error {}", worst[0]);
        assert!(worst[1] < 2e-7, "sigmoid error {}", worst[1]);
        assert!(worst[2] < 3e-7, "tanh error {}", worst[2]);
        assert!(worst[3] < 5e-7, "selu error {}", worst[3]);
        assert!(exp(-1000.0) >= 0.0 && exp(1000.0).is_finite());
        assert_eq!(tanh(1000.0), 1.0);
        assert_eq!(tanh(-1000.0), -1.0);
        assert!(sigmoid(-1000.0) >= 0.0 && sigmoid(1000.0) == 1.0);
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[0.0, 0.0]), 0);
    }
}
