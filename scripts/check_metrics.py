#!/usr/bin/env python3
"""Check arvae's disentanglement metrics against scikit-learn / scipy.

    python scripts/check_metrics.py FILE.npz REPORT.json [--mi-tol 0.02] [--det-tol 1e-3]

FILE.npz is what arvae writes for the metrics (`z` N x D sampled latents, optional `z_mean`,
`attributes` N x K, optional `attribute_names`, `regularized_dims`); REPORT.json is the
report our Rust code computed from it (`cargo run --release -p arvae-core --example
metrics_npz -- FILE.npz --json REPORT.json`).

Everything is recomputed as the reference (`utils/evaluation.py`) does it:
`mutual_info_regression(z, a_k, n_neighbors=3, random_state=0)`, the self-MI
`mutual_info_regression(a_k[:, None], a_k, ...)`, `LinearRegression` R^2, `np.cov` SAP,
`scipy.stats.spearmanr` SCC, and compared:
  - KSG MI (matrix and self-MI): within --mi-tol (0.02) absolute;
  - SAP, SCC, Spearman rho, Interpretability R^2 (for the same dim): within --det-tol (1e-3);
  - MIG, Modularity: within --mi-tol. Where the estimate is decided by the 1e-10 jitter
    itself (the self-MI of a tied attribute, a code with tied/constant values), sklearn's
    own results scatter with random_state; such entries also pass when ours lies within
    --mi-tol of the range of sklearn's estimates over --seeds random states (marked OK*).
    Interpretability's dim may differ where two dims have
    MI within --mi-tol; Modularity is compared per code only where the code's largest MI is
    above --mod-floor (0.1): below it the per-code score is decided by estimator noise
    (e.g. a collapsed code), for sklearn with another random_state as much as for us.
Prints a table and exits 1 on any failure.
"""
import argparse
import json
import sys
import time

import numpy as np
from scipy.stats import spearmanr
from sklearn.feature_selection import mutual_info_regression
from sklearn.linear_model import LinearRegression


def load_npz(path):
    d = np.load(path, allow_pickle=False)
    z = np.asarray(d["z"], dtype=np.float64)
    a = np.asarray(d["attributes"], dtype=np.float64)
    names = [str(s) for s in d["attribute_names"]] if "attribute_names" in d else None
    return z, a, names


def reference_metrics(z, a, random_state=0):
    """All metrics as the reference computes them (sklearn / scipy / numpy)."""
    n, dims = z.shape
    k = a.shape[1]
    t0 = time.perf_counter()
    mi = np.zeros((dims, k))
    self_mi = np.zeros(k)
    for j in range(k):
        mi[:, j] = mutual_info_regression(z, a[:, j], n_neighbors=3, random_state=random_state)
        self_mi[j] = mutual_info_regression(
            a[:, j].reshape(-1, 1), a[:, j], n_neighbors=3, random_state=random_state
        )[0]
    t_mi = time.perf_counter() - t0

    interp_dim = np.argmax(mi, axis=0)
    interp = np.array(
        [
            LinearRegression().fit(z[:, [interp_dim[j]]], a[:, j]).score(z[:, [interp_dim[j]]], a[:, j])
            for j in range(k)
        ]
    )
    smi = np.sort(mi, axis=0)[::-1]
    second = smi[1] if dims > 1 else np.zeros(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        mig = np.where(self_mi > 0, (smi[0] - second) / self_mi, 0.0)

    sq = mi**2
    mx = sq.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if k > 1:
            mod = 1.0 - (sq.sum(axis=1) - mx) / (mx * (k - 1))
        else:
            mod = np.ones(dims)
    mod[mx == 0] = 0.0

    sap_m = np.zeros((dims, k))
    for d in range(dims):
        for j in range(k):
            c = np.cov(z[:, d], a[:, j], ddof=1)
            if c[0, 0] > 1e-12 and c[1, 1] > 0:
                sap_m[d, j] = c[0, 1] ** 2 / (c[0, 0] * c[1, 1])
    ss = np.sort(sap_m, axis=0)[::-1]
    sap = ss[0] - (ss[1] if dims > 1 else 0.0)

    rho = np.zeros((dims, k))
    pval = np.ones((dims, k))
    for d in range(dims):
        for j in range(k):
            r, p = spearmanr(z[:, d], a[:, j])
            if np.isfinite(r):
                rho[d, j], pval[d, j] = r, p
    gated = np.where(pval <= 0.05, np.abs(rho), 0.0)
    scc = gated.max(axis=0)
    t_all = time.perf_counter() - t0
    return dict(
        mi=mi, self_mi=self_mi, interp_dim=interp_dim, interp=interp, mig=mig, mod=mod,
        sap_m=sap_m, sap=sap, rho=rho, pval=pval, scc=scc, t_mi=t_mi, t_all=t_all,
    )


def r2_for_dim(z, a, d, j):
    x = z[:, [d]]
    return LinearRegression().fit(x, a[:, j]).score(x, a[:, j])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz")
    ap.add_argument("report")
    ap.add_argument("--mi-tol", type=float, default=0.02)
    ap.add_argument("--det-tol", type=float, default=1e-3)
    ap.add_argument("--mod-floor", type=float, default=0.1)
    ap.add_argument("--random-state", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=10,
                    help="random states for the jitter-sensitive entries' sklearn range")
    args = ap.parse_args()

    z, a, names = load_npz(args.npz)
    with open(args.report) as f:
        rep = json.load(f)
    if "metrics" in rep:  # `arvae-trainer eval --json` wraps the report with the accuracy
        rep = rep["metrics"]
    n, dims = z.shape
    k = a.shape[1]
    assert (rep["n_samples"], rep["n_dims"], rep["n_attributes"]) == (n, dims, k), "report/npz shape mismatch"
    names = names or [at["name"] for at in rep["attributes"]]
    ref = reference_metrics(z, a, args.random_state)
    print(f"{args.npz}: N={n} D={dims} K={k}; sklearn/scipy took {ref['t_all']:.2f} s (MI {ref['t_mi']:.2f} s)")

    ours_mi = np.array(rep["mi_matrix"])
    # jitter-sensitive entries: codes with many repeated values (> 1%: a collapsed or
    # quantized code; f32 latents repeat a few values by chance), and every self-MI
    tied_codes = [d for d in range(dims) if len(np.unique(z[:, d])) < 0.99 * n]
    seeds = range(args.random_state, args.random_state + args.seeds)
    mi_range = {}  # (d, j) -> (lo, hi); d = None for the self-MI
    for j in range(k):
        vals = [mutual_info_regression(a[:, [j]], a[:, j], n_neighbors=3, random_state=s)[0] for s in seeds]
        mi_range[(None, j)] = (min(vals), max(vals))
        if tied_codes:
            v = np.array([mutual_info_regression(z[:, tied_codes], a[:, j], n_neighbors=3, random_state=s)
                          for s in seeds])
            for c, d in enumerate(tied_codes):
                mi_range[(d, j)] = (v[:, c].min(), v[:, c].max())
    rows = []  # (metric, ours, ref, diff, tol, ok, note)

    def add(metric, ours, theirs, tol, note=""):
        diff = abs(ours - theirs)
        rows.append((metric, ours, theirs, diff, tol, diff <= tol, note))

    def add_mi(metric, ours, theirs, key):
        diff = abs(ours - theirs)
        ok, note = diff <= args.mi_tol, ""
        if key in mi_range:
            lo, hi = mi_range[key]
            note = f"sklearn over {args.seeds} seeds: [{lo:.4f}, {hi:.4f}]"
            if not ok and lo - args.mi_tol <= ours <= hi + args.mi_tol:
                ok, note = "OK*", note
        rows.append((metric, ours, theirs, diff, args.mi_tol, ok, note))

    # MI matrix: summarize by its maximum deviation, plus every element that fails
    dmi = np.abs(ours_mi - ref["mi"])
    clean = np.ones_like(dmi, dtype=bool)
    clean[tied_codes, :] = False
    if clean.any():
        dm = np.where(clean, dmi, -1)
        w = np.unravel_index(np.argmax(dm), dm.shape)
        add(f"MI max|diff| other codes (z{w[0]},{names[w[1]]})", ours_mi[w], ref["mi"][w], args.mi_tol)
    for d in tied_codes:
        for j in range(k):
            add_mi(f"MI z{d} (tied/constant),{names[j]}", ours_mi[d, j], ref["mi"][d, j], (d, j))

    for j, at in enumerate(rep["attributes"]):
        nm = names[j]
        add_mi(f"self-MI {nm}", at["self_mi"], ref["self_mi"][j], (None, j))
        # Interpretability: same dim, or a dim whose MI is within tolerance of the best
        od, rd = at["interpretability_dim"], int(ref["interp_dim"][j])
        note = ""
        if od != rd:
            gap = ref["mi"][rd, j] - ref["mi"][od, j]
            ok_dim = gap <= args.mi_tol
            rows.append((f"interp dim {nm}", od, rd, gap, args.mi_tol, ok_dim, "MI gap (sklearn)"))
            note = f"R2 at our dim {od}"
        add(f"interp {nm}", at["interpretability"], r2_for_dim(z, a, od, j), args.det_tol, note)
        add(f"MIG {nm}", at["mig"], ref["mig"][j], args.mi_tol)
        add(f"SAP {nm}", at["sap"], ref["sap"][j], args.det_tol)
        add(f"SCC {nm}", at["scc"], ref["scc"][j], args.det_tol)

    add("SAP matrix max|diff|", 0.0, float(np.abs(np.array(rep["sap_matrix"]) - ref["sap_m"]).max()), args.det_tol)
    add("Spearman rho max|diff|", 0.0, float(np.abs(np.array(rep["spearman_rho"]) - ref["rho"]).max()), args.det_tol)
    ours_p, ref_p = np.array(rep["spearman_p"]), ref["pval"]
    # gate decisions must agree (unless p is within 1e-9 relative of the threshold)
    gate_diff = ((ours_p <= 0.05) != (ref_p <= 0.05)) & (np.abs(ref_p - 0.05) > 1e-9 * 0.05)
    mask = ref_p > 1e-300
    prel = float(np.max(np.abs(ours_p[mask] - ref_p[mask]) / ref_p[mask])) if mask.any() else 0.0
    rows.append(("Spearman p max rel diff", prel, 0.0, prel, 1e-6, prel <= 1e-6, f"gate mismatches: {int(gate_diff.sum())}"))
    if gate_diff.any():
        rows.append(("SCC gate decisions", int(gate_diff.sum()), 0, int(gate_diff.sum()), 0, False, ""))

    add("mean interpretability", rep["interpretability_mean"],
        float(np.mean([r2_for_dim(z, a, at["interpretability_dim"], j) for j, at in enumerate(rep["attributes"])])),
        args.det_tol, "R2 at our dims")
    add("mean MIG", rep["mig_mean"], float(ref["mig"].mean()), args.mi_tol)
    add("mean SAP", rep["sap_mean"], float(ref["sap"].mean()), args.det_tol)
    add("mean SCC", rep["scc_mean"], float(ref["scc"].mean()), args.det_tol)

    ours_mod = np.array(rep["modularity_per_code"])
    decided = ref["mi"].max(axis=1) > args.mod_floor
    rows.append(("Modularity (all codes)", rep["modularity"], float(ref["mod"].mean()),
                 abs(rep["modularity"] - float(ref["mod"].mean())), None, True,
                 f"info only; {int((~decided).sum())} codes with max MI <= {args.mod_floor}"))
    if decided.any():
        add(f"Modularity ({int(decided.sum())} codes, max MI > {args.mod_floor})",
            float(ours_mod[decided].mean()), float(ref["mod"][decided].mean()), args.mi_tol)
        dm = np.abs(ours_mod - ref["mod"])[decided]
        add("Modularity per-code max|diff|", 0.0, float(dm.max()), args.mi_tol)

    print(f"{'metric':<44} {'ours':>12} {'sklearn':>12} {'|diff|':>10} {'tol':>8}  ok")
    fails = 0
    for metric, o, t, dif, tol, ok, note in rows:
        fails += not ok
        tol_s = "-" if tol is None else f"{tol:g}"
        status = ok if isinstance(ok, str) else ("OK" if ok else "FAIL")
        print(f"{metric:<44} {o:>12.6g} {t:>12.6g} {dif:>10.3g} {tol_s:>8}  {status}"
              + (f"  ({note})" if note else ""))
    max_clean = float(dmi[clean].max()) if clean.any() else 0.0
    max_tied = float(dmi[~clean].max()) if (~clean).any() else 0.0
    max_self = float(np.max(np.abs(np.array([at['self_mi'] for at in rep['attributes']]) - ref['self_mi'])))
    print(f"max |MI diff|: other codes {max_clean:.3g}, tied/constant codes {max_tied:.3g}, "
          f"self-MI {max_self:.3g} (vs sklearn random_state={args.random_state})")
    print("PASS" if fails == 0 else f"FAIL ({fails} checks)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
