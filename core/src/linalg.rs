//! Strided single-threaded f32 GEMM on the `gemm` crate, plus the small row/column helpers the
//! engine needs. Every matrix is a view with row and column strides, so transposes are free.

/// A read-only strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows` x `cols` matrix at the start of `data`.
    pub fn rm(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::ld(data, rows, cols, cols)
    }

    /// A row-major `rows` x `cols` block whose rows are `ld` apart (a column block of a wider
    /// matrix when `data` starts at its first column).
    pub fn ld(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> Self {
        let m = Mat {
            data,
            rows,
            cols,
            rs: ld,
            cs: 1,
        };
        m.check();
        m
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Mat {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            assert!(
                (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len(),
                "matrix view {}x{} (strides {}, {}) exceeds its {} elements",
                self.rows,
                self.cols,
                self.rs,
                self.cs,
                self.data.len()
            );
        }
    }
}

/// `dst = a · b` (or `dst += a · b` with `accumulate`); `dst` is row-major with rows `ldd` apart.
pub(crate) fn gemm(dst: &mut [f32], ldd: usize, a: Mat, b: Mat, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ldd >= n && (m - 1) * ldd + n <= dst.len(),
        "gemm destination too small"
    );
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * ldd..r * ldd + n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the views and the destination were bounds-checked above for every index the
    // product touches; `dst` does not alias `a` or `b` (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ldd as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `dst[j] += Σ_r src[r * cols + j]` over `rows` rows.
pub(crate) fn colsum_add(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    let dst = &mut dst[..cols];
    for row in src[..rows * cols].chunks_exact(cols) {
        for (d, s) in dst.iter_mut().zip(row) {
            *d += s;
        }
    }
}

/// Every one of `rows` rows of `dst` (width `cols`) set to `bias`.
pub(crate) fn fill_rows(dst: &mut [f32], bias: &[f32], rows: usize, cols: usize) {
    for row in dst[..rows * cols].chunks_exact_mut(cols) {
        row.copy_from_slice(&bias[..cols]);
    }
}

/// `y = x · Wᵀ + b` for x (rows, in) and W (out, in) row-major.
pub(crate) fn linear(y: &mut [f32], x: &[f32], rows: usize, w: &[f32], b: &[f32], out: usize) {
    let input = w.len() / out;
    fill_rows(y, b, rows, out);
    gemm(
        y,
        out,
        Mat::rm(x, rows, input),
        Mat::rm(w, out, input).t(),
        true,
    );
}
