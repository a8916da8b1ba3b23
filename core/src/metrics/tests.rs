use super::ksg;
use super::stats;
use super::*;
use crate::random::standard_normal;
use rand::SeedableRng;

fn gaussians(n: usize, rho: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let a = standard_normal(&mut rng);
        let b = standard_normal(&mut rng);
        x.push(a);
        y.push(rho * a + (1.0 - rho * rho).sqrt() * b);
    }
    (x, y)
}

/// sklearn-style MI of two raw columns: prepare both with the seeded jitter, then KSG.
fn mi(x: &[f64], y: &[f64], seed: u64) -> f64 {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let px = ksg::prepare_column(x, &mut r);
    let py = ksg::prepare_column(y, &mut r);
    ksg::ksg(&px, &py, 3)
}

fn matrix_from_cols(cols: &[Vec<f64>]) -> Matrix {
    let n = cols[0].len();
    let mut data = Vec::with_capacity(n * cols.len());
    for i in 0..n {
        for c in cols {
            data.push(c[i]);
        }
    }
    Matrix::new(n, cols.len(), data).unwrap()
}

fn names(k: usize) -> Vec<String> {
    (0..k).map(|i| format!("a{i}")).collect()
}

fn assert_report_finite(r: &MetricsReport) {
    let mut all = vec![
        r.interpretability_mean,
        r.mig_mean,
        r.sap_mean,
        r.scc_mean,
        r.modularity,
    ];
    all.extend(&r.modularity_per_code);
    for m in [&r.mi_matrix, &r.sap_matrix, &r.spearman_rho, &r.spearman_p] {
        all.extend(m.iter().flatten());
    }
    for a in &r.attributes {
        all.extend([a.interpretability, a.mig, a.sap, a.scc, a.self_mi]);
    }
    assert!(
        all.iter().all(|v| v.is_finite()),
        "non-finite value in {r:?}"
    );
}

#[test]
fn mi_independent_is_near_zero() {
    for seed in 0..3 {
        let (x, y) = gaussians(3000, 0.0, seed);
        let v = mi(&x, &y, 100 + seed);
        assert!(v < 0.02, "seed {seed}: MI of independent = {v}");
    }
}

#[test]
fn mi_correlated_gaussians_matches_analytic() {
    for (rho, seed) in [(0.5, 1u64), (0.9, 2), (0.99, 3)] {
        let (x, y) = gaussians(4000, rho, seed);
        let v = mi(&x, &y, seed);
        // analytic MI at the sample correlation (sampling error of ρ̂ dominates otherwise)
        let r = stats::pearson(&x, &y).unwrap();
        let truth = -0.5 * (1.0 - r * r).ln();
        assert!(
            (v - truth).abs() < 0.03,
            "rho {rho}: KSG {v} vs analytic {truth}"
        );
    }
}

#[test]
fn mi_of_identical_variables_is_large() {
    let (x, _) = gaussians(2000, 0.0, 9);
    let v = mi(&x, &x, 9);
    // ψ(N) − ψ(k) for points on the diagonal (≈ 6.7 at N = 2000)
    assert!(v > 5.0, "MI(x, x) = {v}");
}

#[test]
fn mi_constant_column_is_zero_not_nan() {
    let (x, _) = gaussians(1000, 0.0, 4);
    for c in [0.0, 3.5, -1e6] {
        let v = mi(&vec![c; 1000], &x, 5);
        assert!(v.is_finite() && v < 0.02, "constant {c}: {v}");
    }
}

#[test]
fn exact_interpretability_sap_scc() {
    let (a0, noise) = gaussians(500, 0.0, 11);
    let a1: Vec<f64> = noise.iter().map(|v| v * 2.0 + 1.0).collect();
    // z0 = a0 exactly, z1 = exp(a1) (monotone non-linear), z2 constant.
    let z0 = a0.clone();
    let z1: Vec<f64> = a1.iter().map(|v| v.exp()).collect();
    let z2 = vec![0.25; 500];
    let z = matrix_from_cols(&[z0.clone(), z1.clone(), z2]);
    let a = matrix_from_cols(&[a0.clone(), a1.clone()]);
    let r = compute_metrics(
        &z,
        &a,
        &names(2),
        &[Some(0), Some(1)],
        &MetricsConfig::default(),
    )
    .unwrap();
    assert_report_finite(&r);
    let at0 = &r.attributes[0];
    assert_eq!(at0.interpretability_dim, 0);
    assert!((at0.interpretability - 1.0).abs() < 1e-12);
    assert!((at0.scc - 1.0).abs() < 1e-12 && at0.scc_dim == 0);
    // SAP: top1 = r²(z0, a0) = 1, top2 = max(r²(z1, a0), 0 for the constant code)
    let expect_sap0 = 1.0 - sap_score(&z1, &a0);
    assert!((at0.sap - expect_sap0).abs() < 1e-12);
    let at1 = &r.attributes[1];
    assert_eq!(at1.interpretability_dim, 1);
    assert!((at1.scc - 1.0).abs() < 1e-12 && at1.scc_dim == 1);
    assert!((at1.interpretability - stats::r2_linear(&z1, &a1)).abs() < 1e-12);
    // constant code: SAP 0, ρ undefined → 0 with p = 1, modularity 0 (MI 0)
    assert_eq!(r.sap_matrix[2], vec![0.0, 0.0]);
    assert_eq!(r.spearman_rho[2], vec![0.0, 0.0]);
    assert_eq!(r.spearman_p[2], vec![1.0, 1.0]);
    assert!(r.mi_matrix[2].iter().all(|&v| v < 0.05));
    // MIG of a0: MI(z0; a0) is MI(a0; a0) up to the jitter → close to 1
    assert!(at0.mig > 0.9, "MIG = {}", at0.mig);
}

#[test]
fn sap_single_code_and_constant_attribute() {
    let (a0, _) = gaussians(300, 0.0, 12);
    let z = matrix_from_cols(&[a0.iter().map(|v| 2.0 * v - 1.0).collect()]);
    let a = matrix_from_cols(&[a0.clone(), vec![1.0; 300]]);
    let r = compute_metrics(&z, &a, &names(2), &[None, None], &MetricsConfig::default()).unwrap();
    assert_report_finite(&r);
    assert!((r.attributes[0].sap - 1.0).abs() < 1e-12);
    assert_eq!(r.attributes[1].sap, 0.0);
    assert_eq!(r.attributes[1].scc, 0.0);
    assert_eq!(r.attributes[1].interpretability, 0.0);
    assert_eq!(r.attributes[1].mig_dims, (0, None));
}

#[test]
fn ties_and_constants_give_no_nan() {
    let data = synthetic::synthetic(600, 6, 5);
    let r = data.compute(&MetricsConfig::default()).unwrap();
    assert_report_finite(&r);
    // the collapsed code (last) has no information
    assert!(
        r.mi_matrix[5].iter().all(|&v| v < 0.05),
        "{:?}",
        r.mi_matrix[5]
    );
    assert_eq!(r.sap_matrix[5], vec![0.0; 4]);
    // the regularized codes are found by MI
    for k in 0..3 {
        assert_eq!(
            r.attributes[k].interpretability_dim, k,
            "{:?}",
            r.attributes[k]
        );
    }
    // self-MI of heavily tied attributes is large but finite
    for a in &r.attributes {
        assert!(a.self_mi > 1.0 && a.self_mi < 10.0, "{a:?}");
    }
    // every attribute constant: still finite
    let z = data.z.clone();
    let a = Matrix::new(600, 1, vec![2.0; 600]).unwrap();
    let r = compute_metrics(&z, &a, &names(1), &[None], &MetricsConfig::default()).unwrap();
    assert_report_finite(&r);
}

#[test]
fn spearman_p_values_match_scipy() {
    // values from scipy 1.17.1 scipy.stats.spearmanr
    let x: Vec<f64> = (1..=10).map(|v| v as f64).collect();
    let y = [2.0, 1.0, 4.0, 3.0, 7.0, 5.0, 6.0, 9.0, 10.0, 8.0];
    let (r, p) = stats::spearman(&x, &y).unwrap();
    assert!((r - 0.903_030_303_030_302_8).abs() < 1e-12);
    assert!((p - 0.000_343_612_197_763_282_4).abs() < 1e-12 * 1e3 * p);

    let x = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 6.0, 7.0, 8.0, 9.0];
    let y = [3.0, 1.0, 2.0, 5.0, 4.0, 4.0, 8.0, 7.0, 6.0, 9.0, 9.0, 2.0];
    let (r, p) = stats::spearman(&x, &y).unwrap();
    assert!((r - 0.540_783_541_982_559_1).abs() < 1e-12);
    assert!((p - 0.069_451_942_096_357_38).abs() < 1e-10);

    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let y = [6.0, 5.0, 4.0, 3.0, 1.0, 2.0];
    let (r, p) = stats::spearman(&x, &y).unwrap();
    assert!((r + 0.942_857_142_857_143).abs() < 1e-12);
    assert!((p - 0.004_804_664_723_032_055).abs() < 1e-12);

    // Student-t tails: 2*scipy.stats.t.sf(t, df)
    for (t, df, want) in [
        (1.96, 19998.0, 0.050_009_656_385_040_846),
        (5.0, 19998.0, 5.781_519_012_877_396e-7),
        (0.3, 3.0, 0.783_763_292_039_919),
        (12.0, 1.0, 0.052_929_352_119_179_755),
    ] {
        let got = stats::student_t_two_sided(t, df);
        assert!(
            (got - want).abs() <= 1e-9 * want.max(1e-3),
            "t={t} df={df}: {got} vs {want}"
        );
    }
}

#[test]
fn modularity_known_rows() {
    assert_eq!(modularity_of_code(&[1.0, 0.0]), 1.0);
    assert_eq!(modularity_of_code(&[1.0, 1.0]), 0.0);
    assert_eq!(modularity_of_code(&[0.0, 0.0]), 0.0);
    assert!((modularity_of_code(&[2.0, 1.0, 0.0]) - 0.875).abs() < 1e-15);
    assert_eq!(modularity_of_code(&[0.7]), 1.0);
}

#[test]
fn report_is_deterministic_per_seed() {
    let data = synthetic::synthetic(400, 6, 3);
    let a = data.compute(&MetricsConfig::default()).unwrap();
    let b = data.compute(&MetricsConfig::default()).unwrap();
    assert_eq!(a, b);
    let c = data
        .compute(&MetricsConfig {
            seed: 1,
            ..Default::default()
        })
        .unwrap();
    assert_ne!(a.mi_matrix, c.mi_matrix);
    // deterministic metrics do not depend on the jitter
    assert_eq!(a.sap_matrix, c.sap_matrix);
    assert_eq!(a.scc_mean, c.scc_mean);
}

#[test]
fn npz_round_trip_of_metrics_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.npz");
    let data = synthetic::synthetic(200, 5, 8);
    data.write_npz(&p, true).unwrap();
    let back = MetricsData::read_npz(&p).unwrap();
    assert_eq!(back, data); // synthetic latents are f32-exact
    let r = report_from_npz(&p, 0).unwrap();
    assert_eq!(r, data.compute(&MetricsConfig::default()).unwrap());
    let json = serde_json::to_string(&r).unwrap();
    let r2: MetricsReport = serde_json::from_str(&json).unwrap();
    // serde_json parses floats to within an ulp unless its `float_roundtrip` feature is on
    assert_eq!(r.attributes.len(), r2.attributes.len());
    assert!((r.mig_mean - r2.mig_mean).abs() < 1e-15);
    assert!((r.mi_matrix[1][1] - r2.mi_matrix[1][1]).abs() < 1e-15);
}

#[test]
fn npz_missing_or_mismatched_arrays_are_named() {
    use crate::data::npz::{write_npz, NpyArray};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.npz");
    let z = NpyArray::f64_2d(3, 2, vec![0.0; 6]);
    write_npz(&p, &[("z", &z)]).unwrap();
    let e = MetricsData::read_npz(&p).unwrap_err().to_string();
    assert!(e.contains("bad.npz") && e.contains("'attributes'"), "{e}");
    let a = NpyArray::f64_2d(4, 1, vec![0.0; 4]);
    write_npz(&p, &[("z", &z), ("attributes", &a)]).unwrap();
    let e = MetricsData::read_npz(&p).unwrap_err().to_string();
    assert!(e.contains("'attributes'") && e.contains("[4, 1]"), "{e}");
    let a = NpyArray::i64_1d(vec![0; 3]);
    write_npz(&p, &[("z", &z), ("attributes", &a)]).unwrap();
    let e = MetricsData::read_npz(&p).unwrap_err().to_string();
    assert!(e.contains("'attributes'") && e.contains("shape"), "{e}");
}

fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/metrics")
}

/// The committed fixture is what `synthetic(400, 8, 1)` writes, and its committed report
/// (written by `examples/metrics_npz.rs`, checked against scikit-learn by
/// `scripts/check_metrics.py`) is reproduced.
#[test]
fn committed_fixture_reproduces() {
    let npz = fixture_dir().join("synthetic_n400_d8.npz");
    let data = MetricsData::read_npz(&npz).unwrap();
    let fresh = synthetic::synthetic(400, 8, 1);
    assert_eq!(data.names, fresh.names);
    assert_eq!(data.regularized, fresh.regularized);
    for (u, v) in data.z.data.iter().zip(&fresh.z.data) {
        assert!((u - v).abs() < 1e-6);
    }
    let report = data.compute(&MetricsConfig::default()).unwrap();
    let json =
        std::fs::read_to_string(fixture_dir().join("synthetic_n400_d8.report.json")).unwrap();
    let stored: MetricsReport = serde_json::from_str(&json).unwrap();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(close(report.mig_mean, stored.mig_mean));
    assert!(close(report.modularity, stored.modularity));
    assert!(close(report.sap_mean, stored.sap_mean));
    assert!(close(report.scc_mean, stored.scc_mean));
    assert!(close(
        report.interpretability_mean,
        stored.interpretability_mean
    ));
    for (r, s) in report
        .mi_matrix
        .iter()
        .flatten()
        .zip(stored.mi_matrix.iter().flatten())
    {
        assert!(close(*r, *s));
    }
}

/// A file written by NumPy itself (`np.savez`: stored members, `<f4` latents, a
/// Fortran-order `<f8` attribute matrix, `<U11` names, `<i8` regularized dims).
#[test]
fn reads_numpy_written_npz() {
    let data = MetricsData::read_npz(&fixture_dir().join("numpy_written.npz")).unwrap();
    assert_eq!((data.z.rows, data.z.cols), (5, 3));
    assert_eq!(data.z.get(4, 2), 14.0 / 4.0);
    assert_eq!(data.attributes.column(0), vec![1.0, 2.0, 2.0, 3.0, 4.0]);
    assert_eq!(data.attributes.column(1), vec![0.5, 0.25, 0.125, -1.0, 0.0]);
    assert_eq!(data.names, vec!["pitch_range", "contour"]);
    assert_eq!(data.regularized, vec![Some(2), None]);
}
