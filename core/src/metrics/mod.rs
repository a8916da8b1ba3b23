//! Disentanglement metrics as the AR-VAE reference computes them (`utils/evaluation.py`,
//! docs/architecture.md §7, reference-code.md §5). Candle-free.
//!
//! Mutual information is the KSG estimator of scikit-learn's `mutual_info_regression`
//! (k = 3, Chebyshev, unit-variance scaling, seeded 1e-10 jitter, clipped at 0), see [`ksg`].
//! From the MI matrix (codes × attributes) and the raw data:
//! - **Interpretability**: per attribute, dim* = argmax_d MI(z_d; a); score = R² of the 1-D
//!   least-squares fit a ~ z_dim* (= Pearson r², 0 for a constant column); mean.
//! - **MIG**: (top1 − top2 MI) / MI(a; a), the KSG self-MI of the jittered attribute
//!   (a fresh jitter on each side, as sklearn's `mutual_info_regression(a[:, None], a)`);
//!   0 if the denominator is 0; mean over attributes.
//! - **Modularity**: per code, 1 − (Σ_k MI² − max MI²)/(max MI² · (K − 1)), 0 if max = 0
//!   (1 if K = 1 and max > 0); mean over all codes.
//! - **SAP**: S[d,k] = cov²/(var_z · var_a) (ddof 1), 0 if var_z ≤ 1e-12 or var_a = 0;
//!   per attribute top1 − top2 over codes; mean.
//! - **SCC**: |Spearman ρ| (average ranks) if the two-sided Student-t p-value ≤ 0.05, else 0
//!   (0 for a constant column); max over codes; mean over attributes.
//!
//! With one code, top2 is taken as 0 (MIG, SAP). The jitter makes MI-based values depend on
//! the seed (by ~1e-3..1e-2 for heavily tied attributes); everything else is deterministic.

pub mod ksg;
pub mod stats;
pub mod synthetic;

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::npz::{self, NpyArray, NpzError};

/// Significance level of the SCC gate.
pub const SCC_P_THRESHOLD: f64 = 0.05;
/// SAP treats a code with variance at or below this as inactive.
pub const SAP_VAR_EPS: f64 = 1e-12;

/// Errors of the metrics computation.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Npz(#[from] NpzError),
    #[error("metrics: {0}")]
    Invalid(String),
}

/// A dense row-major matrix of f64 (rows = samples, cols = variables).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Matrix {
    /// A rows x cols matrix from row-major data.
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self, MetricsError> {
        if rows * cols != data.len() {
            return Err(MetricsError::Invalid(format!(
                "matrix {rows}x{cols} needs {} values, got {}",
                rows * cols,
                data.len()
            )));
        }
        Ok(Matrix { rows, cols, data })
    }

    /// A rows x cols matrix from row-major f32 data (exact conversion).
    pub fn from_f32(rows: usize, cols: usize, data: &[f32]) -> Result<Self, MetricsError> {
        Self::new(rows, cols, data.iter().map(|&v| v as f64).collect())
    }

    /// Element (row i, column j).
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    /// Column j as a vector.
    pub fn column(&self, j: usize) -> Vec<f64> {
        (0..self.rows)
            .map(|i| self.data[i * self.cols + j])
            .collect()
    }

    /// All columns.
    pub fn columns(&self) -> Vec<Vec<f64>> {
        (0..self.cols).map(|j| self.column(j)).collect()
    }
}

/// Settings of the metrics computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsConfig {
    /// k of the KSG estimator (the reference uses sklearn's default, 3).
    pub n_neighbors: usize,
    /// Seed of the jitter RNG.
    pub seed: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            n_neighbors: 3,
            seed: 0,
        }
    }
}

/// Per-attribute results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeMetrics {
    pub name: String,
    /// The latent dimension regularized for this attribute, if any.
    pub regularized_dim: Option<usize>,
    /// dim* = argmax MI over all codes.
    pub interpretability_dim: usize,
    /// R² of a ~ z_dim*.
    pub interpretability: f64,
    pub mig: f64,
    /// The codes with the highest and second-highest MI (the second is `None` with one code).
    pub mig_dims: (usize, Option<usize>),
    pub sap: f64,
    pub scc: f64,
    /// The code that attains the SCC maximum.
    pub scc_dim: usize,
    /// KSG self-MI of the attribute, MIG's denominator.
    pub self_mi: f64,
}

/// All metrics of one evaluation. Matrices are indexed `[code][attribute]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    pub n_samples: usize,
    pub n_dims: usize,
    pub n_attributes: usize,
    pub n_neighbors: usize,
    pub seed: u64,
    pub attributes: Vec<AttributeMetrics>,
    pub interpretability_mean: f64,
    pub mig_mean: f64,
    pub sap_mean: f64,
    pub scc_mean: f64,
    /// Mean of `modularity_per_code` over all codes.
    pub modularity: f64,
    pub modularity_per_code: Vec<f64>,
    /// KSG MI(z_d; a_k), D x K.
    pub mi_matrix: Vec<Vec<f64>>,
    /// SAP score matrix cov²/(var_z var_a), D x K.
    pub sap_matrix: Vec<Vec<f64>>,
    /// Spearman ρ, D x K (0 where undefined: a constant column).
    pub spearman_rho: Vec<Vec<f64>>,
    /// Two-sided p-value of ρ, D x K (1 where undefined).
    pub spearman_p: Vec<Vec<f64>>,
}

/// Latents, attributes and their description, as stored in a metrics `.npz`.
///
/// The file holds `z` (N x D, `<f4` or `<f8`, the sampled latents), optionally `z_mean`
/// (N x D), `attributes` (N x K), optionally `attribute_names` (K strings, `<U`) and
/// `regularized_dims` (K `<i8`, −1 for none).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsData {
    pub z: Matrix,
    pub z_mean: Option<Matrix>,
    pub attributes: Matrix,
    pub names: Vec<String>,
    pub regularized: Vec<Option<usize>>,
}

impl MetricsData {
    /// Checks shapes and finiteness.
    pub fn validate(&self) -> Result<(), MetricsError> {
        validate_inputs(&self.z, &self.attributes, &self.names, &self.regularized)?;
        if let Some(m) = &self.z_mean {
            if (m.rows, m.cols) != (self.z.rows, self.z.cols) {
                return Err(MetricsError::Invalid(format!(
                    "z_mean is {}x{}, z is {}x{}",
                    m.rows, m.cols, self.z.rows, self.z.cols
                )));
            }
        }
        Ok(())
    }

    /// Reads a metrics `.npz` (see the type's documentation).
    pub fn read_npz(path: &Path) -> Result<Self, MetricsError> {
        let f = npz::read_npz(path)?;
        let (n, d, zd) = f.matrix_f64("z")?;
        let z = Matrix::new(n, d, zd)?;
        let z_mean = if f.contains("z_mean") {
            f.expect_dim("z_mean", 0, n, "(N, D) like z")?;
            f.expect_dim("z_mean", 1, d, "(N, D) like z")?;
            let (r, c, v) = f.matrix_f64("z_mean")?;
            Some(Matrix::new(r, c, v)?)
        } else {
            None
        };
        f.expect_dim(
            "attributes",
            0,
            n,
            &format!("({n}, K): one row per row of z"),
        )?;
        let (_, k, ad) = f.matrix_f64("attributes")?;
        let attributes = Matrix::new(n, k, ad)?;
        let names = if f.contains("attribute_names") {
            f.expect_dim("attribute_names", 0, k, &format!("({k},)"))?;
            f.strings("attribute_names")?
        } else {
            (0..k).map(|i| format!("attr{i}")).collect()
        };
        let regularized = if f.contains("regularized_dims") {
            f.expect_dim("regularized_dims", 0, k, &format!("({k},)"))?;
            f.vector_i64("regularized_dims")?
                .into_iter()
                .map(|r| (r >= 0).then_some(r as usize))
                .collect()
        } else {
            vec![None; k]
        };
        let data = MetricsData {
            z,
            z_mean,
            attributes,
            names,
            regularized,
        };
        data.validate().map_err(|e| match e {
            MetricsError::Invalid(m) => MetricsError::Invalid(format!("{}: {m}", path.display())),
            e => e,
        })?;
        Ok(data)
    }

    /// Writes a metrics `.npz`. With `latents_f32` the latents are stored as `<f4`
    /// (rounded); attributes are always `<f8`.
    pub fn write_npz(&self, path: &Path, latents_f32: bool) -> Result<(), MetricsError> {
        self.validate()?;
        let lat = |m: &Matrix| {
            if latents_f32 {
                NpyArray::f32_2d(m.rows, m.cols, m.data.iter().map(|&v| v as f32).collect())
            } else {
                NpyArray::f64_2d(m.rows, m.cols, m.data.clone())
            }
        };
        let z = lat(&self.z);
        let zm = self.z_mean.as_ref().map(lat);
        let a = NpyArray::f64_2d(
            self.attributes.rows,
            self.attributes.cols,
            self.attributes.data.clone(),
        );
        let names = NpyArray::strings(self.names.clone());
        let reg = NpyArray::i64_1d(
            self.regularized
                .iter()
                .map(|r| r.map_or(-1, |v| v as i64))
                .collect(),
        );
        let mut arrays: Vec<(&str, &NpyArray)> = vec![("z", &z)];
        if let Some(zm) = &zm {
            arrays.push(("z_mean", zm));
        }
        arrays.extend([
            ("attributes", &a),
            ("attribute_names", &names),
            ("regularized_dims", &reg),
        ]);
        npz::write_npz(path, &arrays)?;
        Ok(())
    }

    /// All metrics on the sampled latents `z`.
    pub fn compute(&self, cfg: &MetricsConfig) -> Result<MetricsReport, MetricsError> {
        compute_metrics(
            &self.z,
            &self.attributes,
            &self.names,
            &self.regularized,
            cfg,
        )
    }
}

/// Checks that z (N x D) and the attributes (N x K) agree, that there are K names and K
/// regularized dims (each < D), and that every value is finite.
pub fn validate_inputs(
    z: &Matrix,
    attributes: &Matrix,
    names: &[String],
    regularized: &[Option<usize>],
) -> Result<(), MetricsError> {
    let (n, d, k) = (z.rows, z.cols, attributes.cols);
    if attributes.rows != n {
        return Err(MetricsError::Invalid(format!(
            "z has {n} rows but attributes have {}",
            attributes.rows
        )));
    }
    if d == 0 || k == 0 {
        return Err(MetricsError::Invalid(format!(
            "need at least one latent dim and one attribute (got D = {d}, K = {k})"
        )));
    }
    if names.len() != k || regularized.len() != k {
        return Err(MetricsError::Invalid(format!(
            "{k} attributes but {} names and {} regularized dims",
            names.len(),
            regularized.len()
        )));
    }
    if let Some(bad) = regularized.iter().flatten().find(|&&r| r >= d) {
        return Err(MetricsError::Invalid(format!(
            "regularized dim {bad} out of range for {d} latent dims"
        )));
    }
    for (what, m) in [("z", z), ("attributes", attributes)] {
        if let Some(pos) = m.data.iter().position(|v| !v.is_finite()) {
            return Err(MetricsError::Invalid(format!(
                "{what}[{}, {}] is not finite ({})",
                pos / m.cols,
                pos % m.cols,
                m.data[pos]
            )));
        }
    }
    Ok(())
}

/// Reads a metrics `.npz` and computes the report with the given jitter seed.
pub fn report_from_npz(path: &Path, seed: u64) -> Result<MetricsReport, MetricsError> {
    MetricsData::read_npz(path)?.compute(&MetricsConfig {
        seed,
        ..MetricsConfig::default()
    })
}

/// The KSG MI matrix (D x K, `[code][attribute]`) and the attributes' self-MI, as sklearn's
/// `mutual_info_regression(z, a[:, k])` and `mutual_info_regression(a[:, [k]], a[:, k])`.
///
/// Every column is scaled and jittered once, with its own ChaCha8 stream of `seed`: code d
/// stream d, attribute k stream D + k, and the second (feature-side) copy of attribute k for
/// its self-MI stream D + K + k. (sklearn draws fresh jitter for every call; the estimate does
/// not depend on which independent draw is used.) Independent of the number of threads.
pub fn mutual_info_matrix(
    z: &Matrix,
    a: &Matrix,
    k: usize,
    seed: u64,
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let (n, d_dims, k_attrs) = (z.rows, z.cols, a.cols);
    let z_cols = z.columns();
    let a_cols = a.columns();
    // all prepared columns: codes, attributes, attribute copies
    let sources: Vec<&Vec<f64>> = z_cols.iter().chain(&a_cols).chain(&a_cols).collect();
    let prepared: Vec<(Vec<f64>, ksg::SortedColumn)> = sources
        .par_iter()
        .enumerate()
        .map(|(stream, col)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream as u64);
            let x = ksg::prepare_column(col, &mut rng);
            let s = ksg::SortedColumn::new(&x);
            (x, s)
        })
        .collect();
    let psi = ksg::digamma_table(n);
    // jobs: (attribute, feature column index into `prepared`)
    let jobs: Vec<(usize, usize)> = (0..k_attrs)
        .flat_map(|ka| {
            (0..d_dims)
                .chain([d_dims + k_attrs + ka])
                .map(move |f| (ka, f))
        })
        .collect();
    let values: Vec<f64> = jobs
        .par_iter()
        .map(|&(ka, f)| {
            let (x, sx) = &prepared[f];
            let (y, sy) = &prepared[d_dims + ka];
            ksg::ksg_prepared(x, y, sx, sy, k, &psi)
        })
        .collect();
    let mut mi = vec![vec![0.0; k_attrs]; d_dims];
    let mut self_mi = vec![0.0; k_attrs];
    for (&(ka, f), v) in jobs.iter().zip(values) {
        if f < d_dims {
            mi[f][ka] = v;
        } else {
            self_mi[ka] = v;
        }
    }
    (mi, self_mi)
}

/// Indices of the largest and second-largest values (first index wins ties, like argmax).
fn top2(v: &[f64]) -> (usize, Option<usize>) {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    (order[0], order.get(1).copied())
}

/// Modularity score of one code's MI row.
pub fn modularity_of_code(mi_row: &[f64]) -> f64 {
    let sq: Vec<f64> = mi_row.iter().map(|v| v * v).collect();
    let max = sq.iter().copied().fold(0.0, f64::max);
    if max <= 0.0 {
        return 0.0;
    }
    if sq.len() < 2 {
        return 1.0;
    }
    let num = sq.iter().sum::<f64>() - max;
    1.0 - num / (max * (sq.len() - 1) as f64)
}

/// SAP score cov²/(var_z var_a) of one (code, attribute) pair.
pub fn sap_score(z: &[f64], a: &[f64]) -> f64 {
    let n = z.len();
    if n < 2 {
        return 0.0;
    }
    let (sxx, syy, sxy) = stats::centred_moments(z, a);
    let m = (n - 1) as f64;
    let (var_z, var_a, cov) = (sxx / m, syy / m, sxy / m);
    if var_z <= SAP_VAR_EPS || var_a <= 0.0 {
        return 0.0;
    }
    cov * cov / (var_z * var_a)
}

/// Computes every metric. `z` holds the (sampled) latents, N x D; `attributes` N x K.
pub fn compute_metrics(
    z: &Matrix,
    attributes: &Matrix,
    names: &[String],
    regularized: &[Option<usize>],
    cfg: &MetricsConfig,
) -> Result<MetricsReport, MetricsError> {
    validate_inputs(z, attributes, names, regularized)?;
    let (n, d_dims, k_attrs) = (z.rows, z.cols, attributes.cols);
    if n <= cfg.n_neighbors {
        return Err(MetricsError::Invalid(format!(
            "need more than n_neighbors = {} samples, got {n}",
            cfg.n_neighbors
        )));
    }
    if cfg.n_neighbors == 0 {
        return Err(MetricsError::Invalid(
            "n_neighbors must be at least 1".into(),
        ));
    }

    let (mi, self_mi) = mutual_info_matrix(z, attributes, cfg.n_neighbors, cfg.seed);

    let z_cols = z.columns();
    let a_cols = attributes.columns();
    let (z_ranks, a_ranks): (Vec<Vec<f64>>, Vec<Vec<f64>>) = rayon::join(
        || z_cols.par_iter().map(|c| stats::average_ranks(c)).collect(),
        || a_cols.par_iter().map(|c| stats::average_ranks(c)).collect(),
    );
    let pairs: Vec<(usize, usize)> = (0..d_dims)
        .flat_map(|d| (0..k_attrs).map(move |k| (d, k)))
        .collect();
    let pair_stats: Vec<(f64, f64, f64)> = pairs
        .par_iter()
        .map(|&(d, k)| {
            let sap = sap_score(&z_cols[d], &a_cols[k]);
            let (rho, p) = stats::spearman_ranked(&z_ranks[d], &a_ranks[k]).unwrap_or((0.0, 1.0));
            (sap, rho, p)
        })
        .collect();
    let mut sap_m = vec![vec![0.0; k_attrs]; d_dims];
    let mut rho_m = vec![vec![0.0; k_attrs]; d_dims];
    let mut p_m = vec![vec![1.0; k_attrs]; d_dims];
    for (&(d, k), &(s, r, p)) in pairs.iter().zip(&pair_stats) {
        sap_m[d][k] = s;
        rho_m[d][k] = r;
        p_m[d][k] = p;
    }

    let mut attrs = Vec::with_capacity(k_attrs);
    for k in 0..k_attrs {
        let mi_col: Vec<f64> = (0..d_dims).map(|d| mi[d][k]).collect();
        let (best, second) = top2(&mi_col);
        let interpretability = stats::r2_linear(&z_cols[best], &a_cols[k]);
        let gap = mi_col[best] - second.map_or(0.0, |s| mi_col[s]);
        let mig = if self_mi[k] > 0.0 {
            gap / self_mi[k]
        } else {
            0.0
        };

        let sap_col: Vec<f64> = (0..d_dims).map(|d| sap_m[d][k]).collect();
        let (s1, s2) = top2(&sap_col);
        let sap = sap_col[s1] - s2.map_or(0.0, |s| sap_col[s]);

        let scc_col: Vec<f64> = (0..d_dims)
            .map(|d| {
                if p_m[d][k] <= SCC_P_THRESHOLD {
                    rho_m[d][k].abs()
                } else {
                    0.0
                }
            })
            .collect();
        let (scc_dim, _) = top2(&scc_col);
        attrs.push(AttributeMetrics {
            name: names[k].clone(),
            regularized_dim: regularized[k],
            interpretability_dim: best,
            interpretability,
            mig,
            mig_dims: (best, second),
            sap,
            scc: scc_col[scc_dim],
            scc_dim,
            self_mi: self_mi[k],
        });
    }
    let modularity_per_code: Vec<f64> = mi.iter().map(|row| modularity_of_code(row)).collect();
    let mean_of =
        |f: fn(&AttributeMetrics) -> f64| stats::mean(&attrs.iter().map(f).collect::<Vec<_>>());
    Ok(MetricsReport {
        n_samples: n,
        n_dims: d_dims,
        n_attributes: k_attrs,
        n_neighbors: cfg.n_neighbors,
        seed: cfg.seed,
        interpretability_mean: mean_of(|a| a.interpretability),
        mig_mean: mean_of(|a| a.mig),
        sap_mean: mean_of(|a| a.sap),
        scc_mean: mean_of(|a| a.scc),
        modularity: stats::mean(&modularity_per_code),
        modularity_per_code,
        attributes: attrs,
        mi_matrix: mi,
        sap_matrix: sap_m,
        spearman_rho: rho_m,
        spearman_p: p_m,
    })
}

impl MetricsReport {
    /// A plain-text table of the per-attribute values and the means.
    pub fn to_table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "N = {}, D = {}, K = {}, KSG k = {}, seed = {}",
            self.n_samples, self.n_dims, self.n_attributes, self.n_neighbors, self.seed
        );
        let _ = writeln!(
            s,
            "{:<16} {:>4} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "attribute", "reg", "interp_d", "interp", "MIG", "SAP", "SCC", "H(a)"
        );
        for a in &self.attributes {
            let _ = writeln!(
                s,
                "{:<16} {:>4} {:>9} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4}",
                a.name,
                a.regularized_dim.map_or("-".to_string(), |d| d.to_string()),
                a.interpretability_dim,
                a.interpretability,
                a.mig,
                a.sap,
                a.scc,
                a.self_mi
            );
        }
        let _ = writeln!(
            s,
            "{:<16} {:>4} {:>9} {:>8.4} {:>8.4} {:>8.4} {:>8.4}",
            "mean", "", "", self.interpretability_mean, self.mig_mean, self.sap_mean, self.scc_mean
        );
        let _ = writeln!(
            s,
            "Modularity (mean over {} codes): {:.4}",
            self.n_dims, self.modularity
        );
        s
    }
}

#[cfg(test)]
mod tests;
