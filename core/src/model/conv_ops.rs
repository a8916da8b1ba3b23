//! Fast CPU convolutions for the image VAEs: im2col / col2im on `gemm`, as candle custom ops
//! with their own backward passes.
//!
//! candle 0.11's CPU `conv_transpose2d` is a direct loop (a dot product over input channels per
//! output pixel and kernel tap), and the backward of `conv2d` calls it for the input gradient.
//! The MNIST VAE (64-channel 4x4 convolutions at 19-25 pixels) spends nearly all of its time
//! there: about 11 images/s training on this 2-core machine. Here every one of the three
//! products a convolution needs is one GEMM per image on unrolled patches:
//!
//! - forward `y_b = W · im2col(x_b)`, W viewed as (C_out, C_in·k·k);
//! - input gradient `dx_b = col2im(Wᵀ · dy_b)`, which is also the forward of the transposed
//!   convolution (PyTorch's `ConvTranspose2d` weight (C_in_t, C_out_t, k, k) is exactly the
//!   matching convolution's weight);
//! - weight gradient `dW = Σ_b dy_b · im2col(x_b)ᵀ`.
//!
//! Images are split over rayon's threads; weight gradients are summed per thread, then added.
//! [`conv2d`] and [`conv_transpose2d`] use these ops on CPU tensors and candle's own kernels on
//! other devices, so CUDA training is unchanged. Tests compare values and gradients with
//! candle's built-in convolutions.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::linalg::{gemm, Mat};

/// One square-kernel convolution's geometry (no dilation, no groups), seen from the
/// convolution's side: input (c_in, h_in, w_in) -> output (c_out, h_out, w_out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geom {
    c_in: usize,
    h_in: usize,
    w_in: usize,
    c_out: usize,
    h_out: usize,
    w_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Geom {
    /// Rows of the unrolled patch matrix (C_in·k·k).
    fn patch(&self) -> usize {
        self.c_in * self.k * self.k
    }
    fn in_len(&self) -> usize {
        self.c_in * self.h_in * self.w_in
    }
    fn out_pixels(&self) -> usize {
        self.h_out * self.w_out
    }
    fn out_len(&self) -> usize {
        self.c_out * self.out_pixels()
    }
    fn weight_len(&self) -> usize {
        self.c_out * self.patch()
    }

    /// For each output column `o` and kernel offset `kk`, the input column `o·s + kk - p`, if
    /// inside the image.
    #[inline(always)]
    fn src(pos: usize, kk: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
        (pos * stride + kk).checked_sub(pad).filter(|&i| i < size)
    }
}

/// The output columns `lo..hi` whose input column `o·s + kk - p` lies inside `0..size`.
#[inline(always)]
fn valid_range(kk: usize, stride: usize, pad: usize, size: usize, out: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(kk).div_ceil(stride);
    let hi = if pad + size > kk {
        (pad + size - kk).div_ceil(stride).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// `cols` (C_in·k·k, H_out·W_out) from one image `x` (C_in, H_in, W_in); zeros in the padding.
fn im2col(g: &Geom, x: &[f32], cols: &mut [f32]) {
    let np = g.out_pixels();
    for c in 0..g.c_in {
        let xc = &x[c * g.h_in * g.w_in..(c + 1) * g.h_in * g.w_in];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = (c * g.k + ky) * g.k + kx;
                let dst = &mut cols[row * np..(row + 1) * np];
                let (lo, hi) = valid_range(kx, g.stride, g.pad, g.w_in, g.w_out);
                for oy in 0..g.h_out {
                    let d = &mut dst[oy * g.w_out..(oy + 1) * g.w_out];
                    match Geom::src(oy, ky, g.stride, g.pad, g.h_in) {
                        None => d.fill(0.0),
                        Some(iy) => {
                            let xr = &xc[iy * g.w_in..(iy + 1) * g.w_in];
                            d[..lo].fill(0.0);
                            d[hi..].fill(0.0);
                            if lo < hi {
                                // Input column of output column `lo`.
                                let i0 = lo * g.stride + kx - g.pad;
                                if g.stride == 1 {
                                    d[lo..hi].copy_from_slice(&xr[i0..i0 + hi - lo]);
                                } else {
                                    for (v, &xv) in
                                        d[lo..hi].iter_mut().zip(xr[i0..].iter().step_by(g.stride))
                                    {
                                        *v = xv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: `x += ` every patch entry added back where it was read from.
fn col2im(g: &Geom, cols: &[f32], x: &mut [f32]) {
    let np = g.out_pixels();
    for c in 0..g.c_in {
        let xc = &mut x[c * g.h_in * g.w_in..(c + 1) * g.h_in * g.w_in];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = (c * g.k + ky) * g.k + kx;
                let src = &cols[row * np..(row + 1) * np];
                let (lo, hi) = valid_range(kx, g.stride, g.pad, g.w_in, g.w_out);
                if lo >= hi {
                    continue;
                }
                let i0 = lo * g.stride + kx - g.pad;
                for oy in 0..g.h_out {
                    let Some(iy) = Geom::src(oy, ky, g.stride, g.pad, g.h_in) else {
                        continue;
                    };
                    let s = &src[oy * g.w_out + lo..oy * g.w_out + hi];
                    let xr = &mut xc[iy * g.w_in..(iy + 1) * g.w_in];
                    if g.stride == 1 {
                        for (a, v) in xr[i0..i0 + hi - lo].iter_mut().zip(s) {
                            *a += v;
                        }
                    } else {
                        for (a, v) in xr[i0..].iter_mut().step_by(g.stride).zip(s) {
                            *a += v;
                        }
                    }
                }
            }
        }
    }
}

/// Images per rayon task: enough to amortize the scratch buffer, few enough to balance.
const CHUNK: usize = 4;

/// `y = conv(x, w)` for a batch: x (B, C_in, H_in, W_in), w (C_out, C_in·k·k) -> y (B, C_out, H_out, W_out).
fn forward(g: &Geom, x: &[f32], w: &[f32], batch: usize) -> Vec<f32> {
    let (il, ol, np) = (g.in_len(), g.out_len(), g.out_pixels());
    let mut y = vec![0.0f32; batch * ol];
    y.par_chunks_mut(CHUNK * ol)
        .zip(x.par_chunks(CHUNK * il))
        .for_each(|(yc, xc)| {
            let mut cols = vec![0.0f32; g.patch() * np];
            for (yb, xb) in yc.chunks_mut(ol).zip(xc.chunks(il)) {
                im2col(g, xb, &mut cols);
                gemm(
                    yb,
                    np,
                    Mat::rm(w, g.c_out, g.patch()),
                    Mat::rm(&cols, g.patch(), np),
                    false,
                );
            }
        });
    y
}

/// The input gradient of [`forward`] (= the transposed convolution): dy (B, C_out, H_out,
/// W_out), w (C_out, C_in·k·k) -> dx (B, C_in, H_in, W_in).
fn backward_data(g: &Geom, dy: &[f32], w: &[f32], batch: usize) -> Vec<f32> {
    let (il, ol, np) = (g.in_len(), g.out_len(), g.out_pixels());
    let mut dx = vec![0.0f32; batch * il];
    dx.par_chunks_mut(CHUNK * il)
        .zip(dy.par_chunks(CHUNK * ol))
        .for_each(|(dxc, dyc)| {
            let mut cols = vec![0.0f32; g.patch() * np];
            for (dxb, dyb) in dxc.chunks_mut(il).zip(dyc.chunks(ol)) {
                gemm(
                    &mut cols,
                    np,
                    Mat::rm(w, g.c_out, g.patch()).t(),
                    Mat::rm(dyb, g.c_out, np),
                    false,
                );
                col2im(g, &cols, dxb);
            }
        });
    dx
}

/// The weight gradient of [`forward`]: x (B, C_in, H_in, W_in), dy (B, C_out, H_out, W_out)
/// -> dw (C_out, C_in·k·k), summed over the batch.
fn backward_weight(g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (il, ol, np) = (g.in_len(), g.out_len(), g.out_pixels());
    let wl = g.weight_len();
    let parts: Vec<Vec<f32>> = x
        .par_chunks(CHUNK * il)
        .zip(dy.par_chunks(CHUNK * ol))
        .fold(
            || (vec![0.0f32; wl], vec![0.0f32; g.patch() * np]),
            |(mut dw, mut cols), (xc, dyc)| {
                for (xb, dyb) in xc.chunks(il).zip(dyc.chunks(ol)) {
                    im2col(g, xb, &mut cols);
                    gemm(
                        &mut dw,
                        g.patch(),
                        Mat::rm(dyb, g.c_out, np),
                        Mat::rm(&cols, g.patch(), np).t(),
                        true,
                    );
                }
                (dw, cols)
            },
        )
        .map(|(dw, _)| dw)
        .collect();
    let mut dw = vec![0.0f32; wl];
    for p in parts {
        for (a, b) in dw.iter_mut().zip(&p) {
            *a += b;
        }
    }
    dw
}

/// A contiguous f32 slice of a CPU storage, or an error naming the op.
fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("{op}: only f32 is supported");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: inputs must be contiguous"),
    }
}

/// Checks a 4-D shape against what the geometry expects.
fn check(op: &str, what: &str, got: &Shape, want: &[usize]) -> Result<()> {
    if got.dims() != want {
        candle_core::bail!("{op}: {what} has shape {:?}, expected {want:?}", got.dims());
    }
    Ok(())
}

/// Convolution: (x, w) with w (C_out, C_in, k, k).
struct ConvOp(Geom);
/// Transposed convolution: (x, w) with x shaped like [`ConvOp`]'s output and w (C_out, C_in,
/// k, k) of that convolution, i.e. PyTorch's ConvTranspose2d weight (C_in_t, C_out_t, k, k).
struct ConvTOp(Geom);
/// Weight gradient of [`ConvOp`]: (x, dy) -> dw (C_out, C_in, k, k).
struct ConvWeightGradOp(Geom);

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "arvae-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let b = l1.dims()[0];
        check(
            self.name(),
            "input",
            l1.shape(),
            &[b, g.c_in, g.h_in, g.w_in],
        )?;
        check(
            self.name(),
            "kernel",
            l2.shape(),
            &[g.c_out, g.c_in, g.k, g.k],
        )?;
        let x = slice(s1, l1, self.name())?;
        let w = slice(s2, l2, self.name())?;
        let y = forward(g, x, w, b);
        Ok((
            CpuStorage::F32(y),
            Shape::from((b, g.c_out, g.h_out, g.w_out)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = dy.apply_op2_no_bwd(w, &ConvTOp(self.0))?;
        let dw = x.apply_op2_no_bwd(&dy, &ConvWeightGradOp(self.0))?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp2 for ConvTOp {
    fn name(&self) -> &'static str {
        "arvae-conv-transpose2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let b = l1.dims()[0];
        check(
            self.name(),
            "input",
            l1.shape(),
            &[b, g.c_out, g.h_out, g.w_out],
        )?;
        check(
            self.name(),
            "kernel",
            l2.shape(),
            &[g.c_out, g.c_in, g.k, g.k],
        )?;
        let x = slice(s1, l1, self.name())?;
        let w = slice(s2, l2, self.name())?;
        let y = backward_data(g, x, w, b);
        Ok((CpuStorage::F32(y), Shape::from((b, g.c_in, g.h_in, g.w_in))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = dy.apply_op2_no_bwd(w, &ConvOp(self.0))?;
        let dw = dy.apply_op2_no_bwd(x, &ConvWeightGradOp(self.0))?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp2 for ConvWeightGradOp {
    fn name(&self) -> &'static str {
        "arvae-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let b = l1.dims()[0];
        check(
            self.name(),
            "input",
            l1.shape(),
            &[b, g.c_in, g.h_in, g.w_in],
        )?;
        check(
            self.name(),
            "gradient",
            l2.shape(),
            &[b, g.c_out, g.h_out, g.w_out],
        )?;
        let x = slice(s1, l1, self.name())?;
        let dy = slice(s2, l2, self.name())?;
        let dw = backward_weight(g, x, dy);
        Ok((
            CpuStorage::F32(dw),
            Shape::from((g.c_out, g.c_in, g.k, g.k)),
        ))
    }
}

fn out_size(size: usize, k: usize, stride: usize, pad: usize) -> Result<usize> {
    let padded = size + 2 * pad;
    if padded < k || stride == 0 {
        candle_core::bail!(
            "convolution of size {size} with kernel {k}, padding {pad}, stride {stride}"
        );
    }
    Ok((padded - k) / stride + 1)
}

/// `x.conv2d(w, pad, stride, 1, 1)` for x (B, C_in, H, W), w (C_out, C_in, k, k) with a square
/// kernel: the fast ops on CPU, candle's on other devices.
pub fn conv2d(x: &Tensor, w: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
        return x.conv2d(w, pad, stride, 1, 1);
    }
    let (_, c_in, h_in, w_in) = x.dims4()?;
    let (c_out, wc, k, k2) = w.dims4()?;
    if wc != c_in || k != k2 {
        candle_core::bail!(
            "conv2d: kernel {:?} does not fit input {:?}",
            w.dims(),
            x.dims()
        );
    }
    let g = Geom {
        c_in,
        h_in,
        w_in,
        c_out,
        h_out: out_size(h_in, k, stride, pad)?,
        w_out: out_size(w_in, k, stride, pad)?,
        k,
        stride,
        pad,
    };
    x.contiguous()?.apply_op2(&w.contiguous()?, ConvOp(g))
}

/// `x.conv_transpose2d(w, pad, 0, stride, 1)` for x (B, C_in, H, W), w (C_in, C_out, k, k)
/// (PyTorch's layout) with a square kernel: the fast ops on CPU, candle's elsewhere.
pub fn conv_transpose2d(x: &Tensor, w: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
        return x.conv_transpose2d(w, pad, 0, stride, 1);
    }
    let (_, c_in_t, h, wd) = x.dims4()?;
    let (wc, c_out_t, k, k2) = w.dims4()?;
    if wc != c_in_t || k != k2 {
        candle_core::bail!(
            "conv_transpose2d: kernel {:?} does not fit input {:?}",
            w.dims(),
            x.dims()
        );
    }
    let size = |s: usize| ((s - 1) * stride + k).checked_sub(2 * pad);
    let (Some(h_t), Some(w_t)) = (size(h), size(wd)) else {
        candle_core::bail!("conv_transpose2d: padding {pad} too large for kernel {k}");
    };
    // The matching convolution maps (C_out_t, h_t, w_t) back to (C_in_t, h, wd).
    let g = Geom {
        c_in: c_out_t,
        h_in: h_t,
        w_in: w_t,
        c_out: c_in_t,
        h_out: h,
        w_out: wd,
        k,
        stride,
        pad,
    };
    if out_size(h_t, k, stride, pad)? != h || out_size(w_t, k, stride, pad)? != wd {
        candle_core::bail!("conv_transpose2d: size {h}x{wd} does not round-trip");
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, ConvTOp(g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Values and both gradients against candle's own convolutions for every geometry the
    /// image VAEs use (and an odd one), through a loss that weights every output differently.
    fn compare(
        transposed: bool,
        shape: (usize, usize, usize, usize),
        co: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) {
        let dev = Device::Cpu;
        let (b, ci, h, w) = shape;
        let x0 = Tensor::randn(0f32, 1.0, (b, ci, h, w), &dev).unwrap();
        let wshape = if transposed {
            (ci, co, k, k)
        } else {
            (co, ci, k, k)
        };
        let w0 = Tensor::randn(0f32, 0.3, wshape, &dev).unwrap();
        let run = |fast: bool| {
            let x = Var::from_tensor(&x0).unwrap();
            let wv = Var::from_tensor(&w0).unwrap();
            let y = match (transposed, fast) {
                (false, true) => conv2d(x.as_tensor(), wv.as_tensor(), pad, stride),
                (false, false) => x.as_tensor().conv2d(wv.as_tensor(), pad, stride, 1, 1),
                (true, true) => conv_transpose2d(x.as_tensor(), wv.as_tensor(), pad, stride),
                (true, false) => x
                    .as_tensor()
                    .conv_transpose2d(wv.as_tensor(), pad, 0, stride, 1),
            }
            .unwrap();
            let weights = Tensor::arange(0f32, y.elem_count() as f32, &dev)
                .unwrap()
                .reshape(y.dims())
                .unwrap()
                .sin()
                .unwrap();
            let loss = (&y * &weights).unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap();
            (
                y,
                g.get(x.as_tensor()).unwrap().clone(),
                g.get(wv.as_tensor()).unwrap().clone(),
            )
        };
        let (y1, dx1, dw1) = run(true);
        let (y0, dx0, dw0) = run(false);
        assert_eq!(y1.dims(), y0.dims());
        assert!(
            max_diff(&y1, &y0) < 1e-4,
            "values differ by {}",
            max_diff(&y1, &y0)
        );
        assert!(
            max_diff(&dx1, &dx0) < 1e-4,
            "input grads differ by {}",
            max_diff(&dx1, &dx0)
        );
        assert!(
            max_diff(&dw1, &dw0) < 1e-3,
            "weight grads differ by {}",
            max_diff(&dw1, &dw0)
        );
    }

    #[test]
    fn valid_ranges_are_the_in_image_columns() {
        for stride in 1..4 {
            for pad in 0..4 {
                for size in 1..9 {
                    for kk in 0..5 {
                        for out in 0..12 {
                            let want: Vec<usize> = (0..out)
                                .filter(|&o| Geom::src(o, kk, stride, pad, size).is_some())
                                .collect();
                            let (lo, hi) = valid_range(kk, stride, pad, size, out);
                            assert_eq!(
                                (lo..hi).collect::<Vec<_>>(),
                                want,
                                "kk {kk} stride {stride} pad {pad} size {size} out {out}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn convolutions_match_candle_with_gradients() {
        // MNIST VAE: k4 s1 p0; dSprites VAE: k4 s2 p1; an uneven batch, odd sizes, k3 s2 p0.
        compare(false, (5, 3, 9, 9), 4, 4, 1, 0);
        compare(false, (6, 2, 8, 8), 3, 4, 2, 1);
        compare(false, (3, 2, 11, 7), 5, 3, 2, 0);
        compare(true, (5, 4, 6, 6), 3, 4, 1, 0);
        compare(true, (6, 3, 4, 4), 2, 4, 2, 1);
    }

    /// Hand-computed: a 3x3 image of 1..9 with a 2x2 kernel of ones sums each 2x2 window.
    #[test]
    fn a_hand_computed_convolution() {
        let dev = Device::Cpu;
        let x = Tensor::arange(1f32, 10.0, &dev)
            .unwrap()
            .reshape((1, 1, 3, 3))
            .unwrap();
        let w = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &dev).unwrap();
        let y = conv2d(&x, &w, 0, 1).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![12.0, 16.0, 24.0, 28.0]
        );
        // Transposed: every input pixel spreads over a 2x2 block; sums overlap in the middle.
        let t = conv_transpose2d(
            &Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &dev).unwrap(),
            &w,
            0,
            1,
        )
        .unwrap();
        assert_eq!(
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]
        );
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 2, 5, 5), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::zeros((3, 4, 3, 3), candle_core::DType::F32, &dev).unwrap();
        assert!(conv2d(&x, &w, 0, 1).is_err());
        let w = Tensor::zeros((3, 2, 7, 7), candle_core::DType::F32, &dev).unwrap();
        assert!(conv2d(&x, &w, 0, 1).is_err());
        let w = Tensor::zeros((3, 2, 3, 3), candle_core::DType::F32, &dev).unwrap();
        assert!(conv_transpose2d(&x, &w, 0, 1).is_err());
    }
}
