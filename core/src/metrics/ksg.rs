//! KSG mutual information between two continuous variables, as scikit-learn's
//! `mutual_info_regression` (`_estimate_mi` + `_compute_mi_cc`):
//!
//! 1. each column is divided by its standard deviation (ddof 0; a column whose std is below
//!    10·eps is left unscaled), then `1e-10 · max(1, mean|col|) · N(0,1)` jitter is added
//!    ([`prepare_column`], seeded);
//! 2. r_i = the Chebyshev distance to the k-th nearest other point in the joint (x, y) plane,
//!    r'_i = nextafter(r_i, 0);
//! 3. n_x(i) = #{j ≠ i : |x_j − x_i| ≤ r'_i}, n_y likewise;
//! 4. MI = ψ(N) + ψ(k) − ⟨ψ(n_x + 1)⟩ − ⟨ψ(n_y + 1)⟩, clipped at 0.
//!
//! The joint k-NN uses a 2-D k-d tree; the marginal counts use binary searches on the sorted
//! marginals with exactly the comparison sklearn's `KDTree.query_radius` makes, so for the
//! same (jittered) input columns the counts, and the estimate, are identical to sklearn's.

use rand_chacha::ChaCha8Rng;

use super::stats::digamma;
use crate::random::standard_normal;

/// Scales a column to unit variance (ddof 0, as `sklearn.preprocessing.scale(with_mean=False)`)
/// and adds the Kraskov jitter `1e-10 · max(1, mean|x|) · N(0,1)` from `rng`.
pub fn prepare_column(col: &[f64], rng: &mut ChaCha8Rng) -> Vec<f64> {
    let n = col.len().max(1) as f64;
    let m = col.iter().sum::<f64>() / n;
    let var = col.iter().map(|&v| (v - m) * (v - m)).sum::<f64>() / n;
    let mut sd = var.sqrt();
    if sd.is_nan() || sd < 10.0 * f64::EPSILON {
        // sklearn's _handle_zeros_in_scale: (near-)constant columns are left unscaled
        sd = 1.0;
    }
    let mut out: Vec<f64> = col.iter().map(|&v| v / sd).collect();
    let amp = 1e-10 * (out.iter().map(|v| v.abs()).sum::<f64>() / n).max(1.0);
    for v in &mut out {
        *v += amp * standard_normal(rng);
    }
    out
}

/// A column sorted ascending (NaN-free input assumed) with each point's position in it,
/// for the marginal counts.
pub struct SortedColumn {
    sorted: Vec<f64>,
    /// rank[i] = position of original point i in `sorted`
    rank: Vec<u32>,
    /// first and last position of the run of (near-)tied values that holds each position:
    /// jittered ties differ by ~1e-10, and counts usually take in the whole run
    run_first: Vec<u32>,
    run_last: Vec<u32>,
}

impl SortedColumn {
    pub fn new(col: &[f64]) -> Self {
        let n = col.len();
        let mut pairs: Vec<(f64, u32)> = col
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, i as u32))
            .collect();
        pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let sorted: Vec<f64> = pairs.iter().map(|p| p.0).collect();
        let mut rank = vec![0u32; n];
        for (pos, p) in pairs.iter().enumerate() {
            rank[p.1 as usize] = pos as u32;
        }
        let mut run_first = vec![0u32; n];
        let mut run_last = vec![0u32; n];
        let mut start = 0;
        for p in 0..n {
            let ends = p + 1 == n || {
                let (a, b) = (sorted[p], sorted[p + 1]);
                b - a > 1e-8 * a.abs().max(1.0)
            };
            if ends {
                for q in start..=p {
                    run_first[q] = start as u32;
                    run_last[q] = p as u32;
                }
                start = p + 1;
            }
        }
        SortedColumn {
            sorted,
            rank,
            run_first,
            run_last,
        }
    }

    /// #{j : |s_j − c| ≤ r}, with |s_j − c| evaluated as sklearn's Chebyshev distance.
    /// (For s_j ≥ c the difference s_j − c is monotone in s_j, and c − s_j for s_j ≤ c.)
    pub fn count_within(&self, c: f64, r: f64) -> usize {
        let s = &self.sorted;
        let lo = s.partition_point(|&v| c - v > r);
        let hi = s.partition_point(|&v| v - c <= r);
        hi.saturating_sub(lo)
    }

    /// Position of original point `i` in the sorted column.
    #[inline]
    pub fn rank(&self, i: usize) -> usize {
        self.rank[i] as usize
    }

    /// [`Self::count_within`] for c = the value of original point `i`.
    pub fn count_within_point(&self, i: usize, r: f64) -> usize {
        self.count_within_rank(self.rank[i] as usize, r)
    }

    /// [`Self::count_within`] for c = the value at sorted position `p`: starts at the edges of
    /// its run of ties, then gallops outwards (O(log count) instead of O(log n)).
    #[inline]
    pub fn count_within_rank(&self, p: usize, r: f64) -> usize {
        let s = &self.sorted;
        let n = s.len();
        let c = s[p];
        // upper end: first index with s_j − c > r (s[p] − c = 0 ≤ r)
        let e = self.run_last[p] as usize;
        let hi = if s[e] - c <= r {
            let mut step = 1;
            let mut last_ok = e;
            while e + step < n && s[e + step] - c <= r {
                last_ok = e + step;
                step *= 2;
            }
            let end = (e + step).min(n);
            last_ok + 1 + s[last_ok + 1..end].partition_point(|&v| v - c <= r)
        } else {
            p + 1 + s[p + 1..e].partition_point(|&v| v - c <= r)
        };
        // lower end: first index with c − s_j ≤ r
        let b = self.run_first[p] as usize;
        let lo = if c - s[b] <= r {
            let mut step = 1;
            let mut first_ok = b;
            while step <= b && c - s[b - step] <= r {
                first_ok = b - step;
                step *= 2;
            }
            let start = b.saturating_sub(step);
            start + s[start..first_ok].partition_point(|&v| c - v > r)
        } else {
            b + 1 + s[b + 1..p].partition_point(|&v| c - v > r)
        };
        hi - lo
    }
}

/// ψ(1..=n+1) as a table: `psi[m] = ψ(m)` for m ≥ 1 (index 0 unused).
pub fn digamma_table(n: usize) -> Vec<f64> {
    let mut t = vec![0.0; n + 2];
    for (m, v) in t.iter_mut().enumerate().skip(1) {
        *v = digamma(m as f64);
    }
    t
}

const LEAF: usize = 12;
const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Node {
    lo: [f64; 2],
    hi: [f64; 2],
    start: u32,
    end: u32,
    /// children; `NONE` for a leaf
    left: u32,
    right: u32,
    parent: u32,
}

#[derive(Clone, Copy)]
struct Pt {
    c: [f64; 2],
    i: u32,
}

/// A static 2-D k-d tree over points (x_i, y_i) for Chebyshev k-NN queries of its own points.
///
/// Nodes split at the median of their wider coordinate; bounding boxes are tight. Every
/// point's search starts in its own leaf and climbs towards the root, visiting a sibling
/// subtree only if it can hold a closer point, and stops as soon as the k-NN ball lies inside
/// the current node's box (points outside a node are beyond its box edge in the split
/// coordinate, so they cannot be closer).
pub struct KdTree2 {
    /// coordinates in tree order
    xs: Vec<f64>,
    ys: Vec<f64>,
    /// original index of each point in tree order
    idx: Vec<u32>,
    nodes: Vec<Node>,
    leaves: Vec<u32>,
}

impl KdTree2 {
    pub fn new(x: &[f64], y: &[f64]) -> Self {
        assert_eq!(x.len(), y.len());
        let n = x.len();
        let mut pts: Vec<Pt> = (0..n)
            .map(|i| Pt {
                c: [x[i], y[i]],
                i: i as u32,
            })
            .collect();
        let mut nodes = Vec::with_capacity(4 * n / LEAF + 2);
        let mut leaves = Vec::with_capacity(2 * n / LEAF + 1);
        if n > 0 {
            Self::build(&mut pts, 0, n, NONE, &mut nodes, &mut leaves);
        }
        KdTree2 {
            xs: pts.iter().map(|p| p.c[0]).collect(),
            ys: pts.iter().map(|p| p.c[1]).collect(),
            idx: pts.iter().map(|p| p.i).collect(),
            nodes,
            leaves,
        }
    }

    fn build(
        pts: &mut [Pt],
        start: usize,
        end: usize,
        parent: u32,
        nodes: &mut Vec<Node>,
        leaves: &mut Vec<u32>,
    ) -> u32 {
        let mut lo = [f64::INFINITY; 2];
        let mut hi = [f64::NEG_INFINITY; 2];
        for p in &pts[start..end] {
            lo[0] = lo[0].min(p.c[0]);
            hi[0] = hi[0].max(p.c[0]);
            lo[1] = lo[1].min(p.c[1]);
            hi[1] = hi[1].max(p.c[1]);
        }
        let id = nodes.len() as u32;
        nodes.push(Node {
            lo,
            hi,
            start: start as u32,
            end: end as u32,
            left: NONE,
            right: NONE,
            parent,
        });
        let spread = [hi[0] - lo[0], hi[1] - lo[1]];
        if end - start <= LEAF || (spread[0] <= 0.0 && spread[1] <= 0.0) {
            leaves.push(id);
            return id;
        }
        let axis = usize::from(spread[0] < spread[1]);
        let mid = (start + end) / 2;
        pts[start..end].select_nth_unstable_by(mid - start, |a, b| a.c[axis].total_cmp(&b.c[axis]));
        let l = Self::build(pts, start, mid, id, nodes, leaves);
        let r = Self::build(pts, mid, end, id, nodes, leaves);
        nodes[id as usize].left = l;
        nodes[id as usize].right = r;
        id
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.xs.len()
    }

    /// True if the tree has no points.
    pub fn is_empty(&self) -> bool {
        self.xs.is_empty()
    }

    #[inline]
    fn min_dist(node: &Node, qx: f64, qy: f64) -> f64 {
        let dx = (node.lo[0] - qx).max(qx - node.hi[0]).max(0.0);
        let dy = (node.lo[1] - qy).max(qy - node.hi[1]).max(0.0);
        dx.max(dy)
    }

    /// True if every point outside `node` is at Chebyshev distance ≥ r from (qx, qy).
    #[inline]
    fn ball_inside(node: &Node, qx: f64, qy: f64, r: f64) -> bool {
        qx - node.lo[0] >= r && node.hi[0] - qx >= r && qy - node.lo[1] >= r && node.hi[1] - qy >= r
    }

    #[inline]
    fn scan(&self, node: &Node, skip: usize, qx: f64, qy: f64, best: &mut [f64]) {
        let k = best.len();
        let (s, e) = (node.start as usize, node.end as usize);
        for (off, (&px, &py)) in self.xs[s..e].iter().zip(&self.ys[s..e]).enumerate() {
            let d = (qx - px).abs().max((qy - py).abs());
            if d < best[k - 1] && s + off != skip {
                let mut j = k - 1;
                while j > 0 && best[j - 1] > d {
                    best[j] = best[j - 1];
                    j -= 1;
                }
                best[j] = d;
            }
        }
    }

    /// Searches the subtree of `root` (top-down, nearer child first).
    fn search(&self, root: u32, qx: f64, qy: f64, best: &mut [f64], stack: &mut Vec<(u32, f64)>) {
        let k = best.len();
        stack.clear();
        stack.push((root, Self::min_dist(&self.nodes[root as usize], qx, qy)));
        while let Some((nid, md)) = stack.pop() {
            if md >= best[k - 1] {
                continue;
            }
            let node = &self.nodes[nid as usize];
            if node.left == NONE {
                self.scan(node, usize::MAX, qx, qy, best);
            } else {
                let dl = Self::min_dist(&self.nodes[node.left as usize], qx, qy);
                let dr = Self::min_dist(&self.nodes[node.right as usize], qx, qy);
                if dl <= dr {
                    stack.push((node.right, dr));
                    stack.push((node.left, dl));
                } else {
                    stack.push((node.left, dl));
                    stack.push((node.right, dr));
                }
            }
        }
    }

    /// Original index of the point at tree position `pos`.
    #[inline]
    pub fn original_index(&self, pos: usize) -> usize {
        self.idx[pos] as usize
    }

    /// For every point, calls `f(tree_position, r_k)` where r_k is the
    /// Chebyshev distance to its k-th nearest other point. Requires n > k.
    pub fn for_each_kth_distance<F: FnMut(usize, f64)>(&self, k: usize, mut f: F) {
        assert!(k >= 1 && self.len() > k, "k-NN needs more than k points");
        let mut best = vec![f64::INFINITY; k];
        let mut stack: Vec<(u32, f64)> = Vec::with_capacity(64);
        for &leaf in &self.leaves {
            let ln = self.nodes[leaf as usize];
            for pos in ln.start as usize..ln.end as usize {
                let (qx, qy) = (self.xs[pos], self.ys[pos]);
                best.iter_mut().for_each(|b| *b = f64::INFINITY);
                self.scan(&ln, pos, qx, qy, &mut best);
                let mut cur = leaf;
                loop {
                    let node = &self.nodes[cur as usize];
                    if node.parent == NONE || Self::ball_inside(node, qx, qy, best[k - 1]) {
                        break;
                    }
                    let parent = &self.nodes[node.parent as usize];
                    let sib = if parent.left == cur {
                        parent.right
                    } else {
                        parent.left
                    };
                    if Self::min_dist(&self.nodes[sib as usize], qx, qy) < best[k - 1] {
                        self.search(sib, qx, qy, &mut best, &mut stack);
                    }
                    cur = node.parent;
                }
                f(pos, best[k - 1]);
            }
        }
    }
}

/// KSG MI of two already prepared (scaled and jittered) columns, exactly as sklearn's
/// `_compute_mi_cc`. `sx`/`sy` are the sorted columns and `psi` a [`digamma_table`] of at
/// least n + 1 entries past index 0. Returns 0 for fewer than k + 1 points.
pub fn ksg_prepared(
    x: &[f64],
    y: &[f64],
    sx: &SortedColumn,
    sy: &SortedColumn,
    k: usize,
    psi: &[f64],
) -> f64 {
    let n = x.len();
    if n <= k {
        return 0.0;
    }
    let tree = KdTree2::new(x, y);
    // marginal positions in tree order: one gather here instead of random loads per query
    let ranks: Vec<(u32, u32)> = (0..n)
        .map(|pos| {
            let i = tree.original_index(pos);
            (sx.rank(i) as u32, sy.rank(i) as u32)
        })
        .collect();
    let mut sum = 0.0;
    tree.for_each_kth_distance(k, |pos, r| {
        let r = next_toward_zero(r);
        let (px, py) = ranks[pos];
        // counts include the point itself; sklearn subtracts 1, then uses ψ(n + 1)
        let nx = sx.count_within_rank(px as usize, r);
        let ny = sy.count_within_rank(py as usize, r);
        sum += psi[nx] + psi[ny];
    });
    let mi = digamma(n as f64) + digamma(k as f64) - sum / n as f64;
    mi.max(0.0)
}

/// Convenience: KSG MI of two prepared columns (sorts them itself).
pub fn ksg(x: &[f64], y: &[f64], k: usize) -> f64 {
    let psi = digamma_table(x.len());
    ksg_prepared(x, y, &SortedColumn::new(x), &SortedColumn::new(y), k, &psi)
}

/// `np.nextafter(r, 0)` for r ≥ 0.
#[inline]
pub fn next_toward_zero(r: f64) -> f64 {
    if r > 0.0 && r.is_finite() {
        f64::from_bits(r.to_bits() - 1)
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Brute-force reference of the same estimator.
    fn ksg_brute(x: &[f64], y: &[f64], k: usize) -> f64 {
        let n = x.len();
        let mut sum = 0.0;
        for i in 0..n {
            let mut d: Vec<f64> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (x[i] - x[j]).abs().max((y[i] - y[j]).abs()))
                .collect();
            d.sort_by(f64::total_cmp);
            let r = next_toward_zero(d[k - 1]);
            let nx = (0..n).filter(|&j| (x[i] - x[j]).abs() <= r).count();
            let ny = (0..n).filter(|&j| (y[i] - y[j]).abs() <= r).count();
            sum += digamma(nx as f64) + digamma(ny as f64);
        }
        (digamma(n as f64) + digamma(k as f64) - sum / n as f64).max(0.0)
    }

    #[test]
    fn tree_matches_brute_force_with_ties_and_clusters() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for case in 0..6 {
            let n = 300 + 37 * case;
            let raw_x: Vec<f64> = (0..n)
                .map(|i| match case % 3 {
                    0 => standard_normal(&mut rng),
                    1 => (i % 5) as f64,
                    _ => (standard_normal(&mut rng) * 2.0).round(),
                })
                .collect();
            let raw_y: Vec<f64> = raw_x
                .iter()
                .map(|&v| ((v + 0.5 * standard_normal(&mut rng)) * 1.5).round())
                .collect();
            let x = prepare_column(&raw_x, &mut rng);
            let y = prepare_column(&raw_y, &mut rng);
            let a = ksg(&x, &y, 3);
            let b = ksg_brute(&x, &y, 3);
            assert!((a - b).abs() < 1e-12, "case {case}: {a} vs {b}");
        }
    }

    #[test]
    fn count_within_matches_linear_scan() {
        let v = [0.0, 0.1, 0.1, 0.2, 0.30000000000000004, 0.3, 1.0];
        let s = SortedColumn::new(&v);
        for &c in &v {
            for r in [0.0, 0.1, 0.2, next_toward_zero(0.2), 5.0] {
                let lin = v.iter().filter(|&&w| (c - w).abs() <= r).count();
                assert_eq!(s.count_within(c, r), lin, "c={c} r={r}");
            }
        }
        for (i, &c) in v.iter().enumerate() {
            for r in [0.0, 0.1, 0.2, next_toward_zero(0.2), 0.7, 5.0] {
                let lin = v.iter().filter(|&&w| (c - w).abs() <= r).count();
                assert_eq!(s.count_within_point(i, r), lin, "i={i} r={r}");
            }
        }
    }
}
