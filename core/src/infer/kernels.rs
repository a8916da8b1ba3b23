//! Packed matrices, matrix-vector products and vectorizable activations for [`super`].
//!
//! One layout for every kernel ([`Packed`]: blocks of 64 output rows stored column by
//! column), three implementations of the products over it ([`Isa`]):
//! - generic Rust that LLVM vectorizes ([`Portable`], and [`GenericFma`] compiled for
//!   AVX2 + FMA: the old x86 path, kept as the benchmarks' baseline);
//! - hand-written x86-64 intrinsics, one body for AVX2 and AVX-512 (module `x86`), which also
//!   read f16 weights with the hardware conversion.
//!
//! Each is inlined into `#[target_feature]` entry points in [`super`], and the model picks the
//! best one the CPU supports at run time. The activations are shared, branch-free code that
//! vectorizes under whichever target features it is inlined into.

use crate::music::token::{HOLD, REST, START};

/// Rows per full block of a [`Packed`] matrix (the register tile of the matrix-vector kernels:
/// 4 AVX-512 or 8 AVX2 registers of accumulators).
const BLOCK: usize = 64;
/// Rows per tail block; every packed matrix is padded to a multiple of this.
const TAIL: usize = 16;

/// Which compiled variant of the kernels runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Generic Rust, baseline instructions of the target (SSE2 on x86-64, NEON on aarch64).
    Portable,
    /// The same generic Rust compiled for AVX2 + FMA (auto-vectorized). This was the only
    /// x86 kernel before the hand-written ones; kept so benchmarks can measure them against it.
    Avx2FmaAuto,
    /// Hand-written x86-64 AVX2 + FMA (+ F16C for f16 weights).
    Avx2Fma,
    /// Hand-written x86-64 AVX-512F.
    Avx512,
}

impl Kernel {
    /// Every kernel variant.
    pub const ALL: [Kernel; 4] = [
        Kernel::Portable,
        Kernel::Avx2FmaAuto,
        Kernel::Avx2Fma,
        Kernel::Avx512,
    ];

    /// The fastest variant this CPU supports.
    pub fn detect() -> Kernel {
        [Kernel::Avx512, Kernel::Avx2Fma]
            .into_iter()
            .find(|k| k.is_supported())
            .unwrap_or(Kernel::Portable)
    }

    /// Whether this CPU can run the variant.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2FmaAuto | Kernel::Avx2Fma => {
                std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
                    && std::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => std::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2FmaAuto | Kernel::Avx2Fma | Kernel::Avx512 => false,
        }
    }

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2FmaAuto => "avx2+fma auto-vectorized",
            Kernel::Avx2Fma => "avx2+fma",
            Kernel::Avx512 => "avx512",
        }
    }
}

/// How the weight matrices are stored (precomputed tables and biases are always f32, and all
/// arithmetic is f32 either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Weights {
    /// The checkpoint's f32 values: same results as candle up to float rounding.
    #[default]
    F32,
    /// Rounded to IEEE half precision (relative error up to 2^-11), halving the bytes that
    /// batch-1 decoding streams from cache on every tick. Logits move by about 1e-3, so greedy
    /// tokens can differ from candle's where the two best logits are that close.
    F16,
}

impl Weights {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Weights::F32 => "f32",
            Weights::F16 => "f16",
        }
    }
}

/// 64 bytes, 64-byte aligned: the storage unit of [`Packed`], so every block column starts on
/// a cache line (and clones keep that alignment).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A weight matrix (rows x cols, PyTorch's `(out, in)` layout) repacked for [`Isa::matvec`]:
/// rows are padded to a multiple of 16 and cut into blocks of 64 rows (then 16-row tail
/// blocks); inside a block the weights are stored column by column. Batch-1 decoding is bound
/// by the bytes streamed from L2, so the layout is made for one front-to-back pass over the
/// matrix while a block of outputs (one register tile) accumulates, with every x value
/// broadcast once per block. Values are f32 or f16 ([`Weights`]).
#[derive(Clone, Debug)]
pub(crate) struct Packed {
    rows: usize,
    cols: usize,
    padded: usize,
    half: bool,
    lines: Vec<Line>,
}

impl Packed {
    /// Packs `w` (row-major, `rows x cols`), optionally only the columns `col0..col0 + cols`
    /// of a wider matrix with `stride` columns.
    pub(crate) fn new(
        w: &[f32],
        rows: usize,
        cols: usize,
        col0: usize,
        stride: usize,
        format: Weights,
    ) -> Packed {
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
        let half = format == Weights::F16;
        let bytes: Vec<u8> = if half {
            data.iter()
                .flat_map(|&x| f32_to_f16(x).to_ne_bytes())
                .collect()
        } else {
            data.iter().flat_map(|&x| x.to_ne_bytes()).collect()
        };
        let mut lines = vec![Line([0; 64]); bytes.len().div_ceil(64)];
        for (line, chunk) in lines.iter_mut().zip(bytes.chunks(64)) {
            line.0[..chunk.len()].copy_from_slice(chunk);
        }
        Packed {
            rows,
            cols,
            padded,
            half,
            lines,
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

    /// The f32 values (empty when stored as f16).
    fn f32s(&self) -> &[f32] {
        let n = if self.half {
            0
        } else {
            self.padded * self.cols
        };
        // SAFETY: `lines` holds at least n * 4 initialised bytes, aligned to 64; every bit
        // pattern is a valid f32.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), n) }
    }

    /// The f16 bit patterns (empty when stored as f32).
    fn f16s(&self) -> &[u16] {
        let n = if self.half {
            self.padded * self.cols
        } else {
            0
        };
        // SAFETY: as in `f32s`, with n * 2 bytes.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), n) }
    }
}

/// A bias vector zero-padded to a packed matrix's padded row count.
pub(crate) fn padded_bias(b: &[f32], padded: usize) -> Vec<f32> {
    let mut out = vec![0.0; padded];
    out[..b.len()].copy_from_slice(b);
    out
}

/// f32 to IEEE half, rounding to nearest even (as F16C's `vcvtps2ph` with mode 0).
pub(crate) fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    // (kept bits, shift): normal numbers keep 10 mantissa bits, subnormals fewer.
    let (m, shift, base) = if e <= 0 {
        if e < -10 {
            return sign;
        }
        (man | 0x80_0000, (14 - e) as u32, 0u32)
    } else {
        (man, 13, (e as u32) << 10)
    };
    let kept = m >> shift;
    let rem = m & ((1 << shift) - 1);
    let halfway = 1 << (shift - 1);
    let round = u32::from(rem > halfway || (rem == halfway && kept & 1 == 1));
    // A carry out of the mantissa correctly bumps the exponent (up to infinity).
    sign | (base + kept + round) as u16
}

/// IEEE half to f32 (exact).
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    match exp {
        0 => sign * man as f32 * (1.0 / 16_777_216.0),
        0x1f => f32::from_bits((u32::from(h & 0x8000) << 16) | 0x7f80_0000 | (man << 13)),
        _ => f32::from_bits((u32::from(h & 0x8000) << 16) | ((exp + 112) << 23) | (man << 13)),
    }
}

/// One compiled variant of the kernels: the matrix products, the rest is shared.
pub(crate) trait Isa {
    /// `y[..m.padded()] = bias + W x` (x has `m.cols()` values).
    fn matvec(m: &Packed, bias: &[f32], x: &[f32], y: &mut [f32]);
    /// The same for `n` inputs at once: input `c` is `x[c * ldx..]`, its output `y[c * ldy..]`.
    fn matmul(m: &Packed, bias: &[f32], x: &[f32], ldx: usize, n: usize, y: &mut [f32], ldy: usize);
    /// [`gru_update`] with this variant's arithmetic (fused multiply-adds where it has them).
    fn gru(h: &mut [f32], gi: &[f32], gh: &[f32]);
    /// [`selu_in_place`] likewise.
    fn selu(v: &mut [f32]);
    /// [`matvec`](Self::matvec) of `n` inputs at once (input `c` is `x[c * ldx..]`, its
    /// output `y[c * ldy..]`), every output bit for bit what `matvec` gives for that input
    /// alone: the same sums in the same order, only the weights are read once for several
    /// inputs. (`matmul` sums in another order, so it is not a drop-in for `matvec`.)
    #[inline(always)]
    fn matvec_cols(
        m: &Packed,
        bias: &[f32],
        x: &[f32],
        ldx: usize,
        n: usize,
        y: &mut [f32],
        ldy: usize,
    ) {
        for c in 0..n {
            Self::matvec(m, bias, &x[c * ldx..], &mut y[c * ldy..]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generic kernels: plain Rust that LLVM vectorizes ([`Kernel::Portable`], [`Kernel::Avx2FmaAuto`]).

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

/// f16 weights in the generic kernels: one value at a time, converted in software. Correct
/// everywhere, slow; the hand-written kernels convert in hardware.
fn matmul_half_generic(
    m: &Packed,
    bias: &[f32],
    x: &[f32],
    ldx: usize,
    n: usize,
    y: &mut [f32],
    ldy: usize,
) {
    let (w, cols) = (m.f16s(), m.cols);
    for c in 0..n {
        let (x, y) = (
            &x[c * ldx..c * ldx + cols],
            &mut y[c * ldy..c * ldy + m.padded],
        );
        y.copy_from_slice(&bias[..m.padded]);
        let mut at = 0;
        let mut r0 = 0;
        while r0 < m.padded {
            let width = if m.padded - r0 >= BLOCK { BLOCK } else { TAIL };
            for (j, &xj) in x.iter().enumerate() {
                let wj = &w[at + j * width..at + (j + 1) * width];
                for (yk, &wk) in y[r0..r0 + width].iter_mut().zip(wj) {
                    *yk += f16_to_f32(wk) * xj;
                }
            }
            at += width * cols;
            r0 += width;
        }
    }
}

#[inline(always)]
fn matvec_with<const FMA: bool, const SPLIT: bool>(
    m: &Packed,
    bias: &[f32],
    x: &[f32],
    y: &mut [f32],
) {
    if m.half {
        return matmul_half_generic(m, bias, x, 0, 1, y, 0);
    }
    let data = m.f32s();
    let x = &x[..m.cols];
    let (bias, y) = (&bias[..m.padded], &mut y[..m.padded]);
    let mut at = 0;
    let mut r0 = 0;
    while r0 < m.padded {
        if m.padded - r0 >= BLOCK {
            block_matvec::<BLOCK, FMA, SPLIT>(&data[at..], &bias[r0..], x, &mut y[r0..]);
            at += BLOCK * m.cols;
            r0 += BLOCK;
        } else {
            block_matvec::<TAIL, FMA, true>(&data[at..], &bias[r0..], x, &mut y[r0..]);
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
    if m.half {
        return matmul_half_generic(m, bias, x, ldx, n, y, ldy);
    }
    let data = m.f32s();
    let cols = m.cols;
    let mut at = 0;
    let mut r0 = 0;
    while r0 < m.padded {
        let width = if m.padded - r0 >= BLOCK { BLOCK } else { TAIL };
        let w = &data[at..at + width * cols];
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
    fn gru(h: &mut [f32], gi: &[f32], gh: &[f32]) {
        gru_update::<{ cfg!(target_arch = "aarch64") }>(h, gi, gh)
    }
    #[inline(always)]
    fn selu(v: &mut [f32]) {
        selu_in_place::<{ cfg!(target_arch = "aarch64") }>(v)
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

/// The generic kernels with FMA (used only inside `#[target_feature(enable = "avx2,fma")]`
/// functions: [`Kernel::Avx2FmaAuto`]).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct GenericFma;

impl Isa for GenericFma {
    #[inline(always)]
    fn matvec(m: &Packed, bias: &[f32], x: &[f32], y: &mut [f32]) {
        matvec_with::<true, false>(m, bias, x, y)
    }
    #[inline(always)]
    fn gru(h: &mut [f32], gi: &[f32], gh: &[f32]) {
        gru_update::<true>(h, gi, gh)
    }
    #[inline(always)]
    fn selu(v: &mut [f32]) {
        selu_in_place::<true>(v)
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

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2Fma, Avx512};

/// Hand-written x86-64 kernels, one generic body over the vector width ([`Simd`]): 8 lanes
/// (AVX2) or 16 (AVX-512), f32 or f16 weights. Every function here is `#[inline(always)]`
/// and only ever inlined into the model's `#[target_feature]` entry points, which is where
/// the intrinsics get compiled.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Isa, Packed, BLOCK, TAIL};
    use std::arch::x86_64::*;

    /// How far ahead (bytes) [`block_mv`] prefetches the weight stream.
    const PF: usize = 4096;
    /// How many columns ahead [`tile_mv`] prefetches its rows (a block column is 256 bytes of
    /// f32, so 16 columns are [`PF`]).
    const PF_COLS: usize = 16;

    /// A vector of f32 lanes.
    pub(crate) trait Simd: Copy {
        const LANES: usize;
        /// Register tiles: `MV` vectors of rows per matrix-vector block (a full 64-row block),
        /// `MM` vectors x `MM_COLS` inputs for matrix products (as many as fit in registers).
        const MV_SPLIT: bool;
        const MM_COLS: usize;
        unsafe fn splat(x: f32) -> Self;
        unsafe fn load(p: *const f32) -> Self;
        unsafe fn load_half(p: *const u16) -> Self;
        unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self;
        unsafe fn add(a: Self, b: Self) -> Self;
        unsafe fn store(self, p: *mut f32);
    }

    /// A weight element: f32 or f16 bits.
    pub(crate) trait Elem: Copy {
        unsafe fn load<S: Simd>(p: *const Self) -> S;
    }
    impl Elem for f32 {
        #[inline(always)]
        unsafe fn load<S: Simd>(p: *const f32) -> S {
            S::load(p)
        }
    }
    impl Elem for u16 {
        #[inline(always)]
        unsafe fn load<S: Simd>(p: *const u16) -> S {
            S::load_half(p)
        }
    }

    #[derive(Clone, Copy)]
    pub(crate) struct V8(__m256);
    impl Simd for V8 {
        const LANES: usize = 8;
        // 8 accumulators per 64-row block already hide the FMA latency; splitting would need
        // 16 of the 16 registers.
        const MV_SPLIT: bool = false;
        const MM_COLS: usize = 6; // 2 x 6 accumulators + 2 weights + 1 broadcast
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            V8(_mm256_set1_ps(x))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            V8(_mm256_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn load_half(p: *const u16) -> Self {
            V8(_mm256_cvtph_ps(_mm_loadu_si128(p.cast())))
        }
        #[inline(always)]
        unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
            V8(_mm256_fmadd_ps(a.0, b.0, c.0))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            V8(_mm256_add_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self.0)
        }
    }

    #[derive(Clone, Copy)]
    pub(crate) struct V16(__m512);
    impl Simd for V16 {
        const LANES: usize = 16;
        // A 64-row block is only 4 registers: even and odd columns get separate
        // accumulators so 8 FMA chains are in flight.
        const MV_SPLIT: bool = true;
        const MM_COLS: usize = 12; // 2 x 12 accumulators + 2 weights + 1 broadcast
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            V16(_mm512_set1_ps(x))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            V16(_mm512_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn load_half(p: *const u16) -> Self {
            V16(_mm512_cvtph_ps(_mm256_loadu_si256(p.cast())))
        }
        #[inline(always)]
        unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
            V16(_mm512_fmadd_ps(a.0, b.0, c.0))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            V16(_mm512_add_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self.0)
        }
    }

    /// `y[..N * LANES] = bias + W x` for one block stored column by column (`x.len()` columns
    /// of `N * LANES` values at `w`). With `split`, even and odd columns accumulate apart.
    #[inline(always)]
    unsafe fn block_mv<S: Simd, E: Elem, const N: usize>(
        w: *const E,
        x: &[f32],
        bias: *const f32,
        y: *mut f32,
        split: bool,
    ) {
        let (l, r) = (S::LANES, N * S::LANES);
        let mut a: [S; N] = std::array::from_fn(|k| S::load(bias.add(k * l)));
        let (mut xp, mut p) = (x.as_ptr(), w);
        let mut left = x.len();
        if split {
            let mut b: [S; N] = [S::splat(0.0); N];
            while left >= 2 {
                let (x0, x1) = (S::splat(*xp), S::splat(*xp.add(1)));
                // Ask for the weights PF bytes ahead into L1: the stream comes from L2, and
                // the hardware prefetchers alone leave the loads waiting (measured: a few %,
                // more with f16). Prefetches past the end are harmless (they never fault).
                let ahead = p.cast::<u8>().wrapping_add(PF);
                for line in 0..2 * r * std::mem::size_of::<E>() / 64 {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line).cast());
                }
                for (k, ak) in a.iter_mut().enumerate() {
                    *ak = S::fmadd(E::load::<S>(p.add(k * l)), x0, *ak);
                }
                for (k, bk) in b.iter_mut().enumerate() {
                    *bk = S::fmadd(E::load::<S>(p.add(r + k * l)), x1, *bk);
                }
                (xp, p, left) = (xp.add(2), p.add(2 * r), left - 2);
            }
            for k in 0..N {
                a[k] = S::add(a[k], b[k]);
            }
        }
        while left > 0 {
            let xj = S::splat(*xp);
            for (k, ak) in a.iter_mut().enumerate() {
                *ak = S::fmadd(E::load::<S>(p.add(k * l)), xj, *ak);
            }
            (xp, p, left) = (xp.add(1), p.add(r), left - 1);
        }
        for (k, ak) in a.iter().enumerate() {
            ak.store(y.add(k * l));
        }
    }

    #[inline(always)]
    unsafe fn matvec<S: Simd, E: Elem>(
        m: &Packed,
        w: &[E],
        bias: &[f32],
        x: &[f32],
        y: &mut [f32],
    ) {
        let (x, bias, y) = (&x[..m.cols], &bias[..m.padded], &mut y[..m.padded]);
        debug_assert!(w.len() == m.padded * m.cols);
        let (w, b, yp) = (w.as_ptr(), bias.as_ptr(), y.as_mut_ptr());
        let mut r0 = 0;
        while r0 < m.padded {
            let wr = w.add(r0 * m.cols);
            if m.padded - r0 >= BLOCK {
                if S::LANES == 16 {
                    block_mv::<S, E, 4>(wr, x, b.add(r0), yp.add(r0), S::MV_SPLIT);
                } else {
                    block_mv::<S, E, 8>(wr, x, b.add(r0), yp.add(r0), S::MV_SPLIT);
                }
                r0 += BLOCK;
            } else {
                if S::LANES == 16 {
                    block_mv::<S, E, 1>(wr, x, b.add(r0), yp.add(r0), true);
                } else {
                    block_mv::<S, E, 2>(wr, x, b.add(r0), yp.add(r0), true);
                }
                r0 += TAIL;
            }
        }
    }

    /// `M` vectors of rows of a block (`stride` values per column, from `w`) times `C` inputs,
    /// with exactly [`block_mv`]'s arithmetic per input (bias into the even-column accumulator,
    /// odd columns apart when `split`, added at the end, then the odd last column), so the
    /// outputs equal `matvec`'s bit for bit whatever `M` and `C` are.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_mv<S: Simd, E: Elem, const M: usize, const C: usize>(
        w: *const E,
        stride: usize,
        bias: *const f32,
        x: *const f32,
        ldx: usize,
        cols: usize,
        y: *mut f32,
        ldy: usize,
        split: bool,
    ) {
        let l = S::LANES;
        let b0: [S; M] = std::array::from_fn(|k| S::load(bias.add(k * l)));
        let mut a: [[S; M]; C] = [b0; C];
        // Lines of this tile in one column, prefetched `PF_COLS` columns ahead.
        let lines = (M * l * std::mem::size_of::<E>()).div_ceil(64);
        let ahead = PF_COLS * stride;
        let mut j = 0;
        if split {
            let mut b: [[S; M]; C] = [[S::splat(0.0); M]; C];
            while j + 2 <= cols {
                let p = w.add(j * stride);
                for col in 0..2 {
                    let q = p.wrapping_add(ahead + col * stride).cast::<u8>();
                    for line in 0..lines {
                        _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(64 * line).cast());
                    }
                }
                let w0: [S; M] = std::array::from_fn(|k| E::load::<S>(p.add(k * l)));
                let w1: [S; M] = std::array::from_fn(|k| E::load::<S>(p.add(stride + k * l)));
                for c in 0..C {
                    let x0 = S::splat(*x.add(c * ldx + j));
                    let x1 = S::splat(*x.add(c * ldx + j + 1));
                    for k in 0..M {
                        a[c][k] = S::fmadd(w0[k], x0, a[c][k]);
                        b[c][k] = S::fmadd(w1[k], x1, b[c][k]);
                    }
                }
                j += 2;
            }
            for c in 0..C {
                for k in 0..M {
                    a[c][k] = S::add(a[c][k], b[c][k]);
                }
            }
        }
        while j < cols {
            let p = w.add(j * stride);
            let q = p.wrapping_add(ahead).cast::<u8>();
            for line in 0..lines {
                _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(64 * line).cast());
            }
            let wj: [S; M] = std::array::from_fn(|k| E::load::<S>(p.add(k * l)));
            for (c, ac) in a.iter_mut().enumerate() {
                let xj = S::splat(*x.add(c * ldx + j));
                for k in 0..M {
                    ac[k] = S::fmadd(wj[k], xj, ac[k]);
                }
            }
            j += 1;
        }
        for (c, ac) in a.iter().enumerate() {
            for (k, v) in ac.iter().enumerate() {
                v.store(y.add(c * ldy + k * l));
            }
        }
    }

    /// All `n` inputs for `M` vectors of rows: tiles of 4 inputs, then the rest.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows_mv<S: Simd, E: Elem, const M: usize>(
        w: *const E,
        stride: usize,
        bias: *const f32,
        x: *const f32,
        ldx: usize,
        n: usize,
        cols: usize,
        y: *mut f32,
        ldy: usize,
        split: bool,
    ) {
        let mut c0 = 0;
        while n - c0 >= 4 {
            let (xc, yc) = (x.add(c0 * ldx), y.add(c0 * ldy));
            tile_mv::<S, E, M, 4>(w, stride, bias, xc, ldx, cols, yc, ldy, split);
            c0 += 4;
        }
        let (xc, yc) = (x.add(c0 * ldx), y.add(c0 * ldy));
        match n - c0 {
            3 => tile_mv::<S, E, M, 3>(w, stride, bias, xc, ldx, cols, yc, ldy, split),
            2 => tile_mv::<S, E, M, 2>(w, stride, bias, xc, ldx, cols, yc, ldy, split),
            1 => tile_mv::<S, E, M, 1>(w, stride, bias, xc, ldx, cols, yc, ldy, split),
            _ => {}
        }
    }

    /// Checks that every input, bias and output a product over `n` inputs touches is in
    /// bounds and returns their pointers (`None` for no inputs).
    #[inline(always)]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn columns_in_bounds<'a, E>(
        m: &Packed,
        w: &[E],
        bias: &'a [f32],
        x: &[f32],
        ldx: usize,
        n: usize,
        y: &mut [f32],
        ldy: usize,
    ) -> Option<(*const f32, &'a [f32], *mut f32)> {
        if n == 0 {
            return None;
        }
        let x = &x[..(n - 1) * ldx + m.cols];
        let y = &mut y[..(n - 1) * ldy + m.padded];
        debug_assert!(w.len() == m.padded * m.cols);
        Some((x.as_ptr(), &bias[..m.padded], y.as_mut_ptr()))
    }

    /// [`Isa::matvec_cols`]: every block in sub-tiles of two vectors of rows (one where the
    /// block is one vector, or where two would not leave AVX2 registers for the split sums).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn matvec_cols<S: Simd, E: Elem>(
        m: &Packed,
        w: &[E],
        bias: &[f32],
        x: &[f32],
        ldx: usize,
        n: usize,
        y: &mut [f32],
        ldy: usize,
    ) {
        let Some((xp, bias, yp)) = columns_in_bounds(m, w, bias, x, ldx, n, y, ldy) else {
            return;
        };
        let l = S::LANES;
        let mut r0 = 0;
        while r0 < m.padded {
            let width = if m.padded - r0 >= BLOCK { BLOCK } else { TAIL };
            // The same split as `matvec` uses for this block.
            let split = width != BLOCK || S::MV_SPLIT;
            let two = width >= 2 * l && !(split && l == 8);
            let wb = w.as_ptr().add(r0 * m.cols);
            let mut s0 = 0;
            while s0 < width {
                let (ws, bs, ys) = (wb.add(s0), bias.as_ptr().add(r0 + s0), yp.add(r0 + s0));
                if two {
                    rows_mv::<S, E, 2>(ws, width, bs, xp, ldx, n, m.cols, ys, ldy, split);
                    s0 += 2 * l;
                } else {
                    rows_mv::<S, E, 1>(ws, width, bs, xp, ldx, n, m.cols, ys, ldy, split);
                    s0 += l;
                }
            }
            r0 += width;
        }
    }

    /// `N * LANES` rows of a block (`stride` values per column, from `w`) times `C` inputs.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_mm<S: Simd, E: Elem, const N: usize, const C: usize>(
        w: *const E,
        stride: usize,
        bias: *const f32,
        x: *const f32,
        ldx: usize,
        cols: usize,
        y: *mut f32,
        ldy: usize,
    ) {
        let l = S::LANES;
        let mut acc: [[S; N]; C] = [std::array::from_fn(|k| S::load(bias.add(k * l))); C];
        for j in 0..cols {
            let wj: [S; N] = std::array::from_fn(|k| E::load::<S>(w.add(j * stride + k * l)));
            for (c, ac) in acc.iter_mut().enumerate() {
                let xc = S::splat(*x.add(c * ldx + j));
                for k in 0..N {
                    ac[k] = S::fmadd(wj[k], xc, ac[k]);
                }
            }
        }
        for (c, ac) in acc.iter().enumerate() {
            for (k, v) in ac.iter().enumerate() {
                v.store(y.add(c * ldy + k * l));
            }
        }
    }

    /// All columns for `N * LANES` rows: tiles of `MM_COLS`, then 4, then 1 column.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows_mm<S: Simd, E: Elem, const N: usize, const C: usize>(
        w: *const E,
        stride: usize,
        bias: *const f32,
        x: *const f32,
        ldx: usize,
        n: usize,
        cols: usize,
        y: *mut f32,
        ldy: usize,
    ) {
        let mut c0 = 0;
        while n - c0 >= C {
            let (xc, yc) = (x.add(c0 * ldx), y.add(c0 * ldy));
            tile_mm::<S, E, N, C>(w, stride, bias, xc, ldx, cols, yc, ldy);
            c0 += C;
        }
        while n - c0 >= 4 {
            let (xc, yc) = (x.add(c0 * ldx), y.add(c0 * ldy));
            tile_mm::<S, E, N, 4>(w, stride, bias, xc, ldx, cols, yc, ldy);
            c0 += 4;
        }
        while c0 < n {
            let (xc, yc) = (x.add(c0 * ldx), y.add(c0 * ldy));
            tile_mm::<S, E, N, 1>(w, stride, bias, xc, ldx, cols, yc, ldy);
            c0 += 1;
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn matmul<S: Simd, E: Elem, const C: usize>(
        m: &Packed,
        w: &[E],
        bias: &[f32],
        x: &[f32],
        ldx: usize,
        n: usize,
        y: &mut [f32],
        ldy: usize,
    ) {
        let Some((xp, bias, yp)) = columns_in_bounds(m, w, bias, x, ldx, n, y, ldy) else {
            return;
        };
        let mut r0 = 0;
        while r0 < m.padded {
            let width = if m.padded - r0 >= BLOCK { BLOCK } else { TAIL };
            let wb = w.as_ptr().add(r0 * m.cols);
            // Two vectors of rows per tile where the block has them.
            let two = 2 * S::LANES;
            let mut s0 = 0;
            while s0 < width {
                let (ws, bs, ys) = (wb.add(s0), bias.as_ptr().add(r0 + s0), yp.add(r0 + s0));
                if width - s0 >= two {
                    rows_mm::<S, E, 2, C>(ws, width, bs, xp, ldx, n, m.cols, ys, ldy);
                    s0 += two;
                } else {
                    rows_mm::<S, E, 1, C>(ws, width, bs, xp, ldx, n, m.cols, ys, ldy);
                    s0 += S::LANES;
                }
            }
            r0 += width;
        }
    }

    macro_rules! isa {
        ($name:ident, $simd:ty, $doc:literal) => {
            #[doc = $doc]
            pub(crate) struct $name;

            impl Isa for $name {
                #[inline(always)]
                fn gru(h: &mut [f32], gi: &[f32], gh: &[f32]) {
                    super::gru_update::<true>(h, gi, gh)
                }
                #[inline(always)]
                fn selu(v: &mut [f32]) {
                    super::selu_in_place::<true>(v)
                }
                #[inline(always)]
                fn matvec(m: &Packed, bias: &[f32], x: &[f32], y: &mut [f32]) {
                    // SAFETY: slices are bounds-checked above the raw loops; the caller is
                    // a `#[target_feature]` function whose features were checked at run time.
                    unsafe {
                        if m.half {
                            matvec::<$simd, u16>(m, m.f16s(), bias, x, y)
                        } else {
                            matvec::<$simd, f32>(m, m.f32s(), bias, x, y)
                        }
                    }
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
                    const C: usize = <$simd as Simd>::MM_COLS;
                    // SAFETY: as in `matvec`.
                    unsafe {
                        if m.half {
                            matmul::<$simd, u16, C>(m, m.f16s(), bias, x, ldx, n, y, ldy)
                        } else {
                            matmul::<$simd, f32, C>(m, m.f32s(), bias, x, ldx, n, y, ldy)
                        }
                    }
                }
                #[inline(always)]
                fn matvec_cols(
                    m: &Packed,
                    bias: &[f32],
                    x: &[f32],
                    ldx: usize,
                    n: usize,
                    y: &mut [f32],
                    ldy: usize,
                ) {
                    // SAFETY: as in `matvec`.
                    unsafe {
                        if m.half {
                            matvec_cols::<$simd, u16>(m, m.f16s(), bias, x, ldx, n, y, ldy)
                        } else {
                            matvec_cols::<$simd, f32>(m, m.f32s(), bias, x, ldx, n, y, ldy)
                        }
                    }
                }
            }
        };
    }

    isa!(
        Avx2Fma,
        V8,
        "AVX2 + FMA + F16C kernels (only inside `#[target_feature(enable = \"avx2,fma,f16c\")]`)."
    );
    isa!(
        Avx512,
        V16,
        "AVX-512F kernels (only inside `#[target_feature(enable = \"avx512f\")]`)."
    );
}

// ---------------------------------------------------------------------------------------------
// Activations: branch-free so the loops over a hidden state vectorize.

/// SELU's α and λ as PyTorch.
pub(crate) const SELU_ALPHA: f32 = 1.673_263_2;
/// SELU's scale λ.
pub(crate) const SELU_LAMBDA: f32 = 1.050_701;

/// e^x to about 1 ulp for x in [-87, 88] (clamped outside), Cephes' polynomial; vectorizes.
/// With `FMA` (only inside functions compiled with FMA) the reduction and the polynomial use
/// fused multiply-adds: fewer instructions, one rounding less per step.
#[inline(always)]
pub(crate) fn exp<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let t = fmadd::<FMA>(x, LOG2E, ROUND);
    let n = t - ROUND;
    let ni = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = fmadd::<FMA>(-n, LN2_HI, x);
    let r = fmadd::<FMA>(-n, LN2_LO, r);
    let mut p = 1.987_569_1e-4f32;
    p = fmadd::<FMA>(p, r, 1.398_199_9e-3);
    p = fmadd::<FMA>(p, r, 8.333_452e-3);
    p = fmadd::<FMA>(p, r, 4.166_579_6e-2);
    p = fmadd::<FMA>(p, r, 1.666_666_5e-1);
    p = fmadd::<FMA>(p, r, 0.5);
    let p = fmadd::<FMA>(p, r * r, r) + 1.0;
    p * f32::from_bits(((ni + 127) << 23) as u32)
}

/// The logistic function 1 / (1 + e^-x).
#[inline(always)]
pub(crate) fn sigmoid<const FMA: bool>(x: f32) -> f32 {
    1.0 / (1.0 + exp::<FMA>(-x))
}

/// tanh(x) = (e^2x - 1) / (e^2x + 1); absolute error about 1e-7.
#[inline(always)]
pub(crate) fn tanh<const FMA: bool>(x: f32) -> f32 {
    let e = exp::<FMA>(2.0 * x);
    (e - 1.0) / (e + 1.0)
}

/// SELU as PyTorch: λ x for x >= 0, λ α (e^x - 1) otherwise.
#[inline(always)]
pub(crate) fn selu<const FMA: bool>(x: f32) -> f32 {
    let neg = SELU_ALPHA * (exp::<FMA>(x) - 1.0);
    SELU_LAMBDA * if x >= 0.0 { x } else { neg }
}

/// SELU over a slice in place.
#[inline(always)]
pub(crate) fn selu_in_place<const FMA: bool>(v: &mut [f32]) {
    for x in v.iter_mut() {
        *x = selu::<FMA>(*x);
    }
}

/// One PyTorch GRU update in place: `gi` holds the input-side gate pre-activations with the
/// r and z hidden biases folded in, `gh` the hidden-side ones `W_hh h` (+ `b_hn` on n).
/// r = σ(gi_r + gh_r), z = σ(gi_z + gh_z), n = tanh(gi_n + r gh_n), h' = n + z (h - n).
#[inline(always)]
pub(crate) fn gru_update<const FMA: bool>(h: &mut [f32], gi: &[f32], gh: &[f32]) {
    let hs = h.len();
    let (gi_r, gi) = gi.split_at(hs);
    let (gi_z, gi_n) = gi.split_at(hs);
    let (gh_r, gh) = gh.split_at(hs);
    let (gh_z, gh_n) = gh.split_at(hs);
    let gi_n = &gi_n[..hs];
    let gh_n = &gh_n[..hs];
    for i in 0..hs {
        let r = sigmoid::<FMA>(gi_r[i] + gh_r[i]);
        let z = sigmoid::<FMA>(gi_z[i] + gh_z[i]);
        let n = tanh::<FMA>(gi_n[i] + r * gh_n[i]);
        h[i] = n + z * (h[i] - n);
    }
}

/// [`argmax`] over the tokens a bar in the middle of a melody may hold: the pitch tokens
/// `lo..=hi`, `REST`, `HOLD`, and `START` only where the bar has had nothing else yet
/// (`leading`: the first tick, or a `START` before it). The data's grammar is `START*` music
/// `END*` (a tune's padding inside its first and last bars), so a pad after music is never
/// music, and the endless melody composing plays never ends. With `None` (no range: the
/// decoding training and `eval` measure) it is [`argmax`] over every token.
#[inline]
pub(crate) fn argmax_pitches(v: &[f32], pitches: Option<(u8, u8)>, leading: bool) -> usize {
    let Some((lo, hi)) = pitches else {
        return argmax(v);
    };
    let mut best = lo as usize;
    let mut val = v[best];
    let last = if leading { START } else { HOLD } as usize;
    for i in (lo as usize + 1..=hi as usize).chain(REST as usize..=last) {
        if val < v[i] {
            best = i;
            val = v[i];
        }
    }
    best
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
        for &(rows, cols) in &[
            (384, 128),
            (132, 128),
            (32, 256),
            (24, 10),
            (3, 1),
            (256, 5),
            (80, 7),
            (48, 3),
        ] {
            let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f32> = (0..rows).map(|_| lcg(&mut seed)).collect();
            for format in [Weights::F32, Weights::F16] {
                // The f16 kernels must equal f32 arithmetic on the f16-rounded weights.
                let wr: Vec<f32> = match format {
                    Weights::F32 => w.clone(),
                    Weights::F16 => w.iter().map(|&v| f16_to_f32(f32_to_f16(v))).collect(),
                };
                for n in [1, 2, 3, 4, 6, 7, 13, 24] {
                    let x: Vec<f32> = (0..n * cols).map(|_| lcg(&mut seed)).collect();
                    let p = Packed::new(&w, rows, cols, 0, cols, format);
                    let bias = padded_bias(&b, p.padded());
                    let mut y = vec![f32::NAN; p.padded()];
                    I::matvec(&p, &bias, &x, &mut y);
                    let want = naive(&wr, rows, cols, &b, &x);
                    for r in 0..rows {
                        assert!(
                            (y[r] as f64 - want[r]).abs() < 1e-4,
                            "matvec {rows}x{cols} {format:?} row {r}"
                        );
                    }
                    assert!(y[rows..].iter().all(|&v| v == 0.0), "padding rows");
                    // matvec_cols equals matvec on every input, bit for bit, with strides
                    // wider than the rows (as the decoder's per-stream hidden states).
                    let (ldx, ldy) = (cols + 5, p.padded() + 7);
                    let xs: Vec<f32> = (0..n * ldx).map(|_| lcg(&mut seed)).collect();
                    let mut yc = vec![f32::NAN; (n - 1) * ldy + p.padded()];
                    I::matvec_cols(&p, &bias, &xs, ldx, n, &mut yc, ldy);
                    for c in 0..n {
                        let mut alone = vec![f32::NAN; p.padded()];
                        I::matvec(&p, &bias, &xs[c * ldx..c * ldx + cols], &mut alone);
                        let got = &yc[c * ldy..c * ldy + p.padded()];
                        assert!(
                            got.iter()
                                .zip(&alone)
                                .all(|(a, b)| a.to_bits() == b.to_bits()),
                            "matvec_cols {rows}x{cols} {format:?} n {n} input {c}"
                        );
                    }
                    let ldy = p.padded() + 3;
                    let mut ym = vec![f32::NAN; (n - 1) * ldy + p.padded()];
                    I::matmul(&p, &bias, &x, cols, n, &mut ym, ldy);
                    for c in 0..n {
                        let want = naive(&wr, rows, cols, &b, &x[c * cols..]);
                        for r in 0..rows {
                            assert!(
                                (ym[c * ldy + r] as f64 - want[r]).abs() < 1e-4,
                                "matmul {rows}x{cols} {format:?} n {n} col {c} row {r}"
                            );
                        }
                    }
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
    fn x86_products_match_naive() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn auto() {
            check::<GenericFma>();
        }
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn avx2() {
            check::<Avx2Fma>();
        }
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512() {
            check::<Avx512>();
        }
        // SAFETY: each runs only where the CPU supports its features.
        if Kernel::Avx2Fma.is_supported() {
            unsafe { auto() };
            unsafe { avx2() };
        }
        if Kernel::Avx512.is_supported() {
            unsafe { avx512() };
        }
    }

    #[test]
    fn half_conversion_is_exact_and_rounds_to_nearest_even() {
        // Every f16 value converts to f32 exactly and back to itself.
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            if f.is_nan() {
                assert_eq!(f32_to_f16(f) & 0x7c00, 0x7c00);
                continue;
            }
            assert_eq!(f32_to_f16(f), h, "{h:#06x} -> {f}");
        }
        // Ties round to even, including into the subnormal range and up to infinity.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0);
        assert_eq!(f32_to_f16(3.0 * 2f32.powi(-25)), 2);
        assert_eq!(f32_to_f16(65520.0), 0x7c00);
        assert_eq!(f32_to_f16(-1e9), 0xfc00);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("f16c") {
            #[target_feature(enable = "f16c")]
            unsafe fn hw(x: f32) -> u16 {
                use std::arch::x86_64::*;
                _mm_extract_epi16::<0>(_mm_cvtps_ph::<0>(_mm_set1_ps(x))) as u16
            }
            let mut seed = 3u64;
            for i in 0..200_000 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Finite f32 bit patterns across the whole exponent range.
                let mut x = f32::from_bits((seed >> 32) as u32);
                if !x.is_finite() {
                    x = i as f32;
                }
                // SAFETY: F16C checked above.
                assert_eq!(f32_to_f16(x), unsafe { hw(x) }, "{x:e}");
            }
        }
    }

    #[test]
    fn column_slice_packing() {
        // Packing columns 2..5 of a 3 x 6 matrix equals packing that sub-matrix.
        let w: Vec<f32> = (0..18).map(|i| i as f32).collect();
        let sub: Vec<f32> = (0..3)
            .flat_map(|r| (2..5).map(move |c| (r * 6 + c) as f32))
            .collect();
        let (a, b) = (
            Packed::new(&w, 3, 3, 2, 6, Weights::F32),
            Packed::new(&sub, 3, 3, 0, 3, Weights::F32),
        );
        assert_eq!(a.f32s(), b.f32s());
        assert_eq!(a.lines.as_ptr() as usize % 64, 0);
        assert_eq!((a.rows(), a.cols, a.padded()), (3, 3, 16));
    }

    /// Both variants (with and without fused multiply-adds; `mul_add` is exact either way).
    fn check_activations<const FMA: bool>() {
        let mut worst = [0.0f64; 4];
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.005;
            let xd = x as f64;
            let e = if xd.abs() <= 87.0 {
                ((exp::<FMA>(x) as f64) - xd.exp()).abs() / xd.exp()
            } else {
                0.0
            };
            let s = (sigmoid::<FMA>(x) as f64 - 1.0 / (1.0 + (-xd).exp())).abs();
            let t = (tanh::<FMA>(x) as f64 - xd.tanh()).abs();
            let want = if xd >= 0.0 {
                1.0507009873554805 * xd
            } else {
                1.0507009873554805 * 1.6732632423543772 * xd.exp_m1()
            };
            let u = (selu::<FMA>(x) as f64 - want).abs() / want.abs().max(1.0);
            for (w, v) in worst.iter_mut().zip([e, s, t, u]) {
                *w = w.max(v);
            }
        }
        assert!(
            worst[0] < 3e-7,
            "FMA {FMA}: exp relative error {}",
            worst[0]
        );
        assert!(worst[1] < 2e-7, "FMA {FMA}: sigmoid error {}", worst[1]);
        assert!(worst[2] < 3e-7, "FMA {FMA}: tanh error {}", worst[2]);
        assert!(worst[3] < 5e-7, "FMA {FMA}: selu error {}", worst[3]);
        assert!(exp::<FMA>(-1000.0) >= 0.0 && exp::<FMA>(1000.0).is_finite());
        assert_eq!(tanh::<FMA>(1000.0), 1.0);
        assert_eq!(tanh::<FMA>(-1000.0), -1.0);
        assert!(sigmoid::<FMA>(-1000.0) >= 0.0 && sigmoid::<FMA>(1000.0) == 1.0);
    }

    #[test]
    fn activations_are_accurate() {
        check_activations::<false>();
        check_activations::<true>();
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[0.0, 0.0]), 0);
        let mut v = vec![0.0f32; 132];
        v[10] = 9.0; // out of range
        v[60] = 2.0;
        v[70] = 3.0;
        v[129] = 1.0;
        assert_eq!(argmax_pitches(&v, None, false), 10);
        assert_eq!(argmax_pitches(&v, Some((55, 84)), false), 70);
        assert_eq!(argmax_pitches(&v, Some((55, 65)), false), 60);
        v[130] = 5.0; // START: only while the bar has had nothing else
        assert_eq!(argmax_pitches(&v, Some((55, 65)), true), 130);
        assert_eq!(argmax_pitches(&v, Some((55, 65)), false), 60);
        assert_eq!(argmax_pitches(&v, None, false), 10);
        v[131] = 6.0; // END: never, in a range
        assert_eq!(argmax_pitches(&v, Some((55, 65)), true), 130);
        v[128] = 4.0;
        assert_eq!(argmax_pitches(&v, Some((55, 65)), false), 128);
        v[129] = 4.5;
        assert_eq!(argmax_pitches(&v, Some((55, 84)), false), 129);
        // The whole MIDI range is a range too: the pad grammar still holds.
        assert_eq!(argmax_pitches(&v, Some((0, 127)), false), 10);
        v[10] = 0.0;
        assert_eq!(argmax_pitches(&v, Some((0, 127)), false), 129);
        assert_eq!(argmax_pitches(&v, None, false), 131);
    }
}
