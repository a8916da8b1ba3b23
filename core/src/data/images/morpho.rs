//! Morpho-MNIST morphometrics (Castro et al. 2019) in plain Rust: area, length, thickness,
//! slant, width and height of a handwritten digit, as `morphomnist.measure.measure_image`
//! computes them (threshold 0.5, scale 4, bound fraction 0.02).
//!
//! The pipeline follows the Python code step by step (reference/data-sources.md §3):
//! 1. upsample x4 as skimage's `pyramid_expand(order=3)`: cubic B-spline zoom (scipy `zoom`,
//!    `mirror` boundary, `grid_mode`), clipped to the input range, then a Gaussian blur
//!    (sigma 4/3, truncate 4, scipy `reflect` boundary), stored as `(255 v) as u8`;
//! 2. binarise at the middle of the grey range;
//! 3. exact Euclidean distance to the background (Felzenszwalb-Huttenlocher);
//! 4. skimage's `medial_axis`: one pass in order of distance, then cornerness, with a lookup
//!    table of 3x3 patterns. skimage breaks the remaining ties with a random permutation from
//!    NumPy's PCG64 (seed 42); we use a ChaCha8 permutation (seed 42), so a few skeleton pixels
//!    differ and the length moves by a few percent (see the tests for the measured agreement);
//! 5. the measures: area and skeleton length and thickness from the binary image, slant and
//!    the bounding parallelogram from the grey hi-res image's moments.
//!
//! [`plain_image`] makes Morpho-MNIST's "plain" digits: the binarised hi-res digit blurred
//! and zoomed back to 28 x 28 (`ImageMorphology.downscale`).

/// Upscaling factor of the hi-res analysis.
pub const SCALE: usize = 4;
/// Relative binarisation threshold.
pub const THRESHOLD: f64 = 0.5;
/// Fraction of the mass left out of the bounding parallelogram (both sides together).
pub const BOUND_FRAC: f64 = 0.02;

/// Names of the six measures, in [`Morphometrics::to_array`] order.
pub const NAMES: [&str; 6] = ["area", "length", "thickness", "slant", "width", "height"];

/// The six Morpho-MNIST measures of one digit, in pixels of the original image (slant in radians).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Morphometrics {
    /// Stroke area (binary hi-res pixels / 16).
    pub area: f64,
    /// Skeleton length.
    pub length: f64,
    /// Mean stroke thickness along the skeleton.
    pub thickness: f64,
    /// Horizontal shear angle, radians (positive leans right).
    pub slant: f64,
    /// Width of the de-slanted bounding parallelogram.
    pub width: f64,
    /// Height of the bounding parallelogram.
    pub height: f64,
}

impl Morphometrics {
    /// The measures in [`NAMES`] order.
    pub fn to_array(&self) -> [f64; 6] {
        [
            self.area,
            self.length,
            self.thickness,
            self.slant,
            self.width,
            self.height,
        ]
    }
}

/// A row-major f64 image.
#[derive(Clone, Debug)]
struct Grid {
    h: usize,
    w: usize,
    v: Vec<f64>,
}

/// Cubic B-spline.
fn bspline3(t: f64) -> f64 {
    let a = t.abs();
    if a < 1.0 {
        2.0 / 3.0 - a * a + a * a * a / 2.0
    } else if a < 2.0 {
        let b = 2.0 - a;
        b * b * b / 6.0
    } else {
        0.0
    }
}

/// In-place cubic B-spline prefilter of one line, scipy's `mirror` boundary (exact closed form).
fn prefilter_mirror(c: &mut [f64]) {
    let n = c.len();
    if n < 2 {
        return;
    }
    let z = 3f64.sqrt() - 2.0;
    let gain = (1.0 - z) * (1.0 - 1.0 / z);
    for x in c.iter_mut() {
        *x *= gain;
    }
    // Causal initialisation (scipy `_init_causal_mirror`).
    let z_n_1 = z.powi(n as i32 - 1);
    let mut z_i = z;
    let mut c0 = c[0] + z_n_1 * c[n - 1];
    for i in 1..n - 1 {
        c0 += z_i * (c[i] + z_n_1 * c[n - 1 - i]);
        z_i *= z;
    }
    c[0] = c0 / (1.0 - z_n_1 * z_n_1);
    for i in 1..n {
        c[i] += z * c[i - 1];
    }
    // Anti-causal initialisation (scipy `_init_anticausal_mirror`).
    c[n - 1] = (z * c[n - 2] + c[n - 1]) * z / (z * z - 1.0);
    for i in (0..n - 1).rev() {
        c[i] = z * (c[i + 1] - c[i]);
    }
}

/// Mirror an index into 0..n (whole-sample symmetric: -1 -> 1, n -> n-2).
fn mirror_index(i: i64, n: usize) -> usize {
    let n = n as i64;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut k = i.rem_euclid(period);
    if k >= n {
        k = period - k;
    }
    k as usize
}

/// Mirror a coordinate into [0, n-1].
fn mirror_coord(x: f64, n: usize) -> f64 {
    let last = (n - 1) as f64;
    if n == 1 {
        return 0.0;
    }
    let period = 2.0 * last;
    let mut k = x.rem_euclid(period);
    if k > last {
        k = period - k;
    }
    k
}

/// Values of the spline with coefficients `c` at output samples `o = 0..out` of a grid-mode
/// zoom (`in = (o + 0.5) * n / out - 0.5`).
fn spline_resample_line(c: &[f64], out: usize) -> Vec<f64> {
    let n = c.len();
    let step = n as f64 / out as f64;
    (0..out)
        .map(|o| {
            let x = mirror_coord((o as f64 + 0.5) * step - 0.5, n);
            let start = x.floor() as i64 - 1;
            let mut s = 0.0;
            for j in start..start + 4 {
                s += c[mirror_index(j, n)] * bspline3(x - j as f64);
            }
            s
        })
        .collect()
}

/// skimage `resize(order=3, mode='reflect', anti_aliasing=False)`: cubic spline zoom to
/// `oh x ow`, then clipped to the input's range.
fn resize_cubic(g: &Grid, oh: usize, ow: usize) -> Grid {
    // Prefilter along rows and columns.
    let mut c = g.v.clone();
    for r in 0..g.h {
        prefilter_mirror(&mut c[r * g.w..(r + 1) * g.w]);
    }
    let mut col = vec![0.0; g.h];
    for x in 0..g.w {
        for r in 0..g.h {
            col[r] = c[r * g.w + x];
        }
        prefilter_mirror(&mut col);
        for r in 0..g.h {
            c[r * g.w + x] = col[r];
        }
    }
    // Resample along columns (width), then rows (height).
    let mut tmp = vec![0.0; g.h * ow];
    for r in 0..g.h {
        let line = spline_resample_line(&c[r * g.w..(r + 1) * g.w], ow);
        tmp[r * ow..(r + 1) * ow].copy_from_slice(&line);
    }
    let mut out = vec![0.0; oh * ow];
    for x in 0..ow {
        for r in 0..g.h {
            col[r] = tmp[r * ow + x];
        }
        let line = spline_resample_line(&col, oh);
        for (o, v) in line.into_iter().enumerate() {
            out[o * ow + x] = v;
        }
    }
    let lo = g.v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = g.v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for v in &mut out {
        *v = v.clamp(lo, hi);
    }
    Grid {
        h: oh,
        w: ow,
        v: out,
    }
}

/// Reflect an index into 0..n, scipy `reflect` (half-sample symmetric: -1 -> 0, n -> n-1).
fn reflect_index(i: i64, n: usize) -> usize {
    let n = n as i64;
    let period = 2 * n;
    let mut k = i.rem_euclid(period);
    if k >= n {
        k = period - 1 - k;
    }
    k as usize
}

/// scipy `gaussian_filter(sigma, mode='reflect', truncate=4)`, axis 0 then axis 1.
fn gaussian_reflect(g: &Grid, sigma: f64) -> Grid {
    let radius = (4.0 * sigma + 0.5) as i64;
    let mut k: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp())
        .collect();
    let s: f64 = k.iter().sum();
    k.iter_mut().for_each(|x| *x /= s);
    let (h, w) = (g.h, g.w);
    let mut a = vec![0.0; h * w];
    for r in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (t, kv) in k.iter().enumerate() {
                let rr = reflect_index(r as i64 + t as i64 - radius, h);
                acc += kv * g.v[rr * w + x];
            }
            a[r * w + x] = acc;
        }
    }
    let mut b = vec![0.0; h * w];
    for r in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (t, kv) in k.iter().enumerate() {
                let xx = reflect_index(x as i64 + t as i64 - radius, w);
                acc += kv * a[r * w + xx];
            }
            b[r * w + x] = acc;
        }
    }
    Grid { h, w, v: b }
}

/// The grey hi-res digit (`ImageMorphology.hires_image`): `(255 * pyramid_expand(x/255)) as u8`.
pub fn hires_image(img: &[u8], h: usize, w: usize) -> Vec<u8> {
    assert_eq!(img.len(), h * w, "image size");
    let g = Grid {
        h,
        w,
        v: img.iter().map(|&p| p as f64 / 255.0).collect(),
    };
    let up = resize_cubic(&g, h * SCALE, w * SCALE);
    let sm = gaussian_reflect(&up, 2.0 * SCALE as f64 / 6.0);
    sm.v.iter().map(|&v| (255.0 * v) as u8).collect()
}

/// Binarises the hi-res image at the middle of its range.
pub fn binarise(hires: &[u8]) -> Vec<bool> {
    let lo = *hires.iter().min().unwrap_or(&0) as f64;
    let hi = *hires.iter().max().unwrap_or(&0) as f64;
    let t = lo + (hi - lo) * THRESHOLD;
    hires.iter().map(|&p| p as f64 >= t).collect()
}

/// 1-D squared distance transform (Felzenszwalb & Huttenlocher) of `f`, in place.
fn edt_1d(f: &mut [f64], v: &mut [usize], z: &mut [f64], d: &mut [f64]) {
    let n = f.len();
    let mut k = 0usize;
    v[0] = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    let mut started = f[0].is_finite();
    let mut first = 0usize;
    if !started {
        // Skip leading infinite entries: parabolas at +inf never win.
        while first < n && !f[first].is_finite() {
            first += 1;
        }
        if first == n {
            return;
        }
        v[0] = first;
        started = true;
    }
    debug_assert!(started);
    for q in first + 1..n {
        if !f[q].is_finite() {
            continue;
        }
        loop {
            let p = v[k];
            let s =
                ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64)) / (2.0 * (q as f64 - p as f64));
            if s <= z[k] {
                if k == 0 {
                    // Replace the only parabola.
                    v[0] = q;
                    z[0] = f64::NEG_INFINITY;
                    z[1] = f64::INFINITY;
                    break;
                }
                k -= 1;
                continue;
            }
            k += 1;
            v[k] = q;
            z[k] = s;
            z[k + 1] = f64::INFINITY;
            break;
        }
    }
    k = 0;
    for (q, dq) in d.iter_mut().enumerate().take(n) {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        let dx = q as f64 - p as f64;
        *dq = dx * dx + f[p];
    }
    f.copy_from_slice(&d[..n]);
}

/// Exact Euclidean distance of every foreground pixel to the nearest background pixel
/// (scipy `distance_transform_edt`); background pixels get 0.
pub fn distance_transform(mask: &[bool], h: usize, w: usize) -> Vec<f64> {
    let n = h.max(w);
    let mut v = vec![0usize; n];
    let mut z = vec![0.0; n + 1];
    let mut d = vec![0.0; n];
    let mut f: Vec<f64> = mask
        .iter()
        .map(|&m| if m { f64::INFINITY } else { 0.0 })
        .collect();
    let mut col = vec![0.0; h];
    for x in 0..w {
        for r in 0..h {
            col[r] = f[r * w + x];
        }
        edt_1d(&mut col, &mut v, &mut z, &mut d);
        for r in 0..h {
            f[r * w + x] = col[r];
        }
    }
    for r in 0..h {
        edt_1d(&mut f[r * w..(r + 1) * w], &mut v, &mut z, &mut d);
    }
    f.into_iter().map(f64::sqrt).collect()
}

/// The 3x3 pattern of a 9-bit index (bit 0 top-left, row-major, bit 4 the centre).
fn pattern(index: usize) -> [bool; 9] {
    std::array::from_fn(|b| index & (1 << b) != 0)
}

/// Number of 8-connected components of a 3x3 pattern.
fn components(p: &[bool; 9]) -> usize {
    let mut seen = [false; 9];
    let mut count = 0;
    for s in 0..9 {
        if !p[s] || seen[s] {
            continue;
        }
        count += 1;
        let mut stack = vec![s];
        seen[s] = true;
        while let Some(c) = stack.pop() {
            let (cr, cc) = ((c / 3) as i32, (c % 3) as i32);
            for n in 0..9 {
                let (nr, nc) = ((n / 3) as i32, (n % 3) as i32);
                if p[n] && !seen[n] && (nr - cr).abs() <= 1 && (nc - cc).abs() <= 1 {
                    seen[n] = true;
                    stack.push(n);
                }
            }
        }
    }
    count
}

/// skimage's medial-axis lookup table: keep the centre iff it is set and removing it changes
/// the number of 8-connected components or fewer than 3 pixels are set.
fn medial_axis_table() -> [bool; 512] {
    std::array::from_fn(|index| {
        let p = pattern(index);
        if !p[4] {
            return false;
        }
        let mut without = p;
        without[4] = false;
        components(&p) != components(&without) || p.iter().filter(|&&b| b).count() < 3
    })
}

/// The 9-bit neighbourhood index of (r, c) in `img` (zero outside).
fn neighbourhood<T: Copy + Into<bool>>(img: &[T], h: usize, w: usize, r: usize, c: usize) -> usize {
    let mut idx = 0;
    for dr in 0..3 {
        for dc in 0..3 {
            let (rr, cc) = (r as i64 + dr as i64 - 1, c as i64 + dc as i64 - 1);
            if rr >= 0
                && cc >= 0
                && (rr as usize) < h
                && (cc as usize) < w
                && img[rr as usize * w + cc as usize].into()
            {
                idx |= 1 << (dr * 3 + dc);
            }
        }
    }
    idx
}

/// skimage `medial_axis`: the skeleton of `mask` given its distance transform.
pub fn medial_axis(mask: &[bool], dist: &[f64], h: usize, w: usize) -> Vec<bool> {
    let table = medial_axis_table();
    // Ties are broken by a seeded random permutation of the foreground pixels, as skimage does
    // (with NumPy's PCG64 there, ChaCha8 here, so the order differs but is as unbiased).
    let fg: Vec<usize> = (0..h * w).filter(|&i| mask[i]).collect();
    let mut tiebreak: Vec<u32> = (0..fg.len() as u32).collect();
    {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        tiebreak.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(42));
    }
    let mut pixels: Vec<(f64, u32, u32, usize)> = fg
        .iter()
        .zip(&tiebreak)
        .map(|(&i, &t)| {
            let corner = 9 - neighbourhood(mask, h, w, i / w, i % w).count_ones();
            (dist[i], corner, t, i)
        })
        .collect();
    pixels.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut result = mask.to_vec();
    for &(_, _, _, i) in &pixels {
        let idx = neighbourhood(&result, h, w, i / w, i % w) | 16;
        result[i] = table[idx];
    }
    result
}

/// `np.interp(x, xp, fp)` for non-decreasing `xp`.
fn interp(x: f64, xp: &[f64], fp: &[f64]) -> f64 {
    let n = xp.len();
    if x < xp[0] {
        return fp[0];
    }
    if x > xp[n - 1] {
        return fp[n - 1];
    }
    // Last j with xp[j] <= x.
    let j = xp.partition_point(|&v| v <= x) - 1;
    if j == n - 1 || xp[j] == x {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    slope * (x - xp[j]) + fp[j]
}

/// Skeleton length and mean stroke thickness along the skeleton, in original pixels.
fn skeleton_measures(skel: &[bool], dist: &[f64], hh: usize, hw: usize) -> (f64, f64) {
    let s = SCALE as f64;
    let at = |r: i64, c: i64| -> f64 {
        if r >= 0
            && c >= 0
            && (r as usize) < hh
            && (c as usize) < hw
            && skel[r as usize * hw + c as usize]
        {
            1.0
        } else {
            0.0
        }
    };
    let mut length = 0.0;
    let mut dsum = 0.0;
    let mut nskel = 0usize;
    for r in 0..hh as i64 {
        for c in 0..hw as i64 {
            if !skel[r as usize * hw + c as usize] {
                continue;
            }
            length += at(r, c + 1)
                + at(r + 1, c)
                + std::f64::consts::SQRT_2 * (at(r + 1, c - 1) + at(r + 1, c + 1));
            dsum += dist[r as usize * hw + c as usize];
            nskel += 1;
        }
    }
    let thickness = if nskel > 0 {
        2.0 * (dsum / nskel as f64) / s
    } else {
        0.0
    };
    (length / s, thickness)
}

/// Raw moments `(m00, m10, m01, m11, m02)` of the grey hi-res image (x = column, y = row).
fn raw_moments(hires: &[u8], hh: usize, hw: usize) -> (f64, f64, f64, f64, f64) {
    let (mut m00, mut m10, mut m01, mut m11, mut m02) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for r in 0..hh {
        for c in 0..hw {
            let v = hires[r * hw + c] as f64;
            let (x, y) = (c as f64, r as f64);
            m00 += v;
            m10 += x * v;
            m01 += y * v;
            m11 += x * y * v;
            m02 += y * y * v;
        }
    }
    (m00, m10, m01, m11, m02)
}

/// Mass of the hi-res image bucketed by sheared column (`hw + 1` buckets) and by row
/// (`hh + 1` buckets, row r in bucket r + 1); `cy` is the centroid row the shear pivots on.
fn sheared_mass_buckets(
    hires: &[u8],
    hh: usize,
    hw: usize,
    shear: f64,
    cy: f64,
) -> (Vec<f64>, Vec<f64>) {
    let mut hbucket = vec![0.0; hw + 1];
    let mut vbucket = vec![0.0; hh + 1];
    for r in 0..hh {
        let sh = shear * (r as f64 - cy);
        for c in 0..hw {
            let v = hires[r * hw + c] as f64;
            if v == 0.0 {
                continue;
            }
            let lhs = c as f64 + 0.5;
            // Smallest integer t with lhs < t + sh.
            let mut t = (lhs - sh).floor() as i64 - 1;
            while lhs >= t as f64 + sh {
                // sh and lhs are finite: >= is the exact negation
                t += 1;
            }
            let t = t.clamp(0, hw as i64) as usize;
            hbucket[t] += v;
            // y < t for t > r.
            vbucket[r + 1] += v;
        }
    }
    (hbucket, vbucket)
}

/// Extent between the `BOUND_FRAC / 2` and `1 - BOUND_FRAC / 2` quantiles of the mass in
/// the first `n` buckets (total mass `m00`), in bucket units.
fn quantile_extent(bucket: &[f64], n: usize, m00: f64) -> f64 {
    let mut acc = 0.0;
    let cdf: Vec<f64> = (0..n)
        .map(|t| {
            acc += bucket[t];
            acc / m00
        })
        .collect();
    let loc: Vec<f64> = (0..n).map(|t| t as f64).collect();
    let f = BOUND_FRAC / 2.0;
    interp(1.0 - f, &cdf, &loc) - interp(f, &cdf, &loc)
}

/// Slant (radians) and the width and height of the de-slanted bounding parallelogram (in
/// original pixels) from the grey hi-res image's moments; all zero for a blank image.
fn slant_and_bounds(hires: &[u8], hh: usize, hw: usize) -> (f64, f64, f64) {
    let (m00, m10, m01, m11, m02) = raw_moments(hires, hh, hw);
    if m00 == 0.0 {
        return (0.0, 0.0, 0.0);
    }
    let (m10, m01, m11, m02) = (m10 / m00, m01 / m00, m11 / m00, m02 / m00);
    let u11 = m11 - m10 * m01;
    let u02 = m02 - m01 * m01;
    let shear = u11 / u02;
    let slant = (-shear).atan();

    // Bounding parallelogram: mass CDFs across the sheared columns and across rows.
    let (hbucket, vbucket) = sheared_mass_buckets(hires, hh, hw, shear, m01);
    let s = SCALE as f64;
    let width = quantile_extent(&hbucket, hw, m00) / s;
    let height = quantile_extent(&vbucket, hh, m00) / s;
    (slant, width, height)
}

/// Measures one digit (`h x w` grey pixels, 0 background, 255 ink).
pub fn measure(img: &[u8], h: usize, w: usize) -> Morphometrics {
    let (hh, hw) = (h * SCALE, w * SCALE);
    let hires = hires_image(img, h, w);
    let bin = binarise(&hires);
    let dist = distance_transform(&bin, hh, hw);
    let skel = medial_axis(&bin, &dist, hh, hw);
    let s = SCALE as f64;
    let area = bin.iter().filter(|&&b| b).count() as f64 / (s * s);
    let (length, thickness) = skeleton_measures(&skel, &dist, hh, hw);
    let (slant, width, height) = slant_and_bounds(&hires, hh, hw);
    Morphometrics {
        area,
        length,
        thickness,
        slant,
        width,
        height,
    }
}

/// Morpho-MNIST's "plain" digit: the binarised hi-res digit blurred (sigma 4/3) and zoomed
/// back to `h x w` with a cubic spline (skimage `pyramid_reduce`), as u8.
pub fn plain_image(img: &[u8], h: usize, w: usize) -> Vec<u8> {
    let hires = hires_image(img, h, w);
    let bin = binarise(&hires);
    let g = Grid {
        h: h * SCALE,
        w: w * SCALE,
        v: bin.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect(),
    };
    let sm = gaussian_reflect(&g, 2.0 * SCALE as f64 / 6.0);
    let down = resize_cubic(&sm, h, w);
    down.v.iter().map(|&v| (255.0 * v) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A filled axis-aligned rectangle: area, width, height and slant are known in closed form.
    #[test]
    fn rectangle_measures() {
        let (h, w) = (28, 28);
        let mut img = vec![0u8; h * w];
        for r in 6..22 {
            for c in 10..16 {
                img[r * w + c] = 255;
            }
        }
        let m = measure(&img, h, w);
        assert!((m.area - 96.0).abs() < 4.0, "{m:?}");
        assert!(m.slant.abs() < 1e-9, "{m:?}");
        // The blur widens the bar a little; 2% of the mass is left out of the box.
        assert!((m.width - 6.0).abs() < 1.0, "{m:?}");
        assert!((m.height - 16.0).abs() < 1.0, "{m:?}");
        assert!((m.thickness - 6.0).abs() < 1.0, "{m:?}");
        // The medial axis of a bar: its long axis plus short branches into the corners.
        assert!(m.length > 9.0 && m.length < 25.0, "{m:?}");
    }

    #[test]
    fn distance_transform_is_exact() {
        let (h, w) = (7, 9);
        let mut mask = vec![true; h * w];
        mask[0] = false;
        mask[3 * w + 8] = false;
        let d = distance_transform(&mask, h, w);
        for r in 0..h {
            for c in 0..w {
                let a = ((r * r + c * c) as f64).sqrt();
                let b = (((r as f64 - 3.0).powi(2)) + ((c as f64 - 8.0).powi(2))).sqrt();
                assert!((d[r * w + c] - a.min(b)).abs() < 1e-12, "{r} {c}");
            }
        }
    }

    #[test]
    fn medial_axis_table_matches_skimage_examples() {
        let t = medial_axis_table();
        // Isolated centre: kept (fewer than 3 pixels).
        assert!(t[16]);
        // Centre bridging left and right: kept.
        assert!(t[8 | 16 | 32]);
        // Centre inside a full block: removed.
        assert!(!t[511]);
        // Centre with one full row above: removable end of a blob.
        assert!(!t[1 | 2 | 4 | 16]);
    }

    /// The reference values were produced by the original Python code (see the JSON's
    /// `produced_by`); the digits come from `data/mnist` (`arvae-trainer data fetch --mnist`).
    /// Skipped, with a note, when the MNIST files are not there.
    #[test]
    fn agrees_with_original_morpho_mnist_within_5_percent() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
        let (tr, te) = (
            root.join("train-images.idx3-ubyte"),
            root.join("t10k-images.idx3-ubyte"),
        );
        if !tr.is_file() || !te.is_file() {
            if std::env::var("ARVAE_REQUIRE_CORPUS").as_deref() == Ok("1") {
                panic!(
                    "ARVAE_REQUIRE_CORPUS=1 but {} is missing: run `arvae-trainer data fetch --mnist`",
                    tr.display()
                );
            }
            eprintln!(
                "SKIPPED: {} not found (arvae-trainer data fetch --mnist)",
                tr.display()
            );
            return;
        }
        let tr = crate::data::images::idx::read_idx(&tr).unwrap();
        let te = crate::data::images::idx::read_idx(&te).unwrap();
        let reference: serde_json::Value =
            serde_json::from_str(include_str!("morpho_reference.json")).unwrap();
        let digits = reference["digits"].as_array().unwrap();
        assert!(digits.len() >= 20);
        let mut worst = [0f64; 6];
        let mut mean = [0f64; 6];
        for d in digits {
            let src = if d["split"] == "train" { &tr } else { &te };
            let i = d["index"].as_u64().unwrap() as usize;
            let img = &src.data[i * 784..(i + 1) * 784];
            let got = measure(img, 28, 28).to_array();
            for k in 0..6 {
                let want = d["values"][k].as_f64().unwrap();
                // Slant is an angle near 0: compare it relative to 1 radian at least.
                let rel = (got[k] - want).abs() / want.abs().max(if k == 3 { 1.0 } else { 1e-9 });
                worst[k] = worst[k].max(rel);
                mean[k] += rel / digits.len() as f64;
            }
        }
        eprintln!("{} digits; relative difference per measure {NAMES:?}\n  worst {worst:.5?}\n  mean  {mean:.5?}", digits.len());
        for k in 0..6 {
            assert!(worst[k] < 0.05, "{}: {:.4}", NAMES[k], worst[k]);
        }
    }
}
