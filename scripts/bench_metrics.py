#!/usr/bin/env python3
"""Time arvae's metrics (Rust, release) against scikit-learn/scipy on the same .npz.

    python scripts/bench_metrics.py [FILE.npz] [--n 20000 --d 32] [--repeat 3] [--check]

Without FILE.npz a synthetic file (N x D latents, 4 tied music-like attributes) is written
with the example's `--write-synthetic` to /tmp. The Rust side runs
`target/release/examples/metrics_npz FILE.npz --json OUT.json --repeat R` (build it first:
`cargo build --release -p arvae-core --no-default-features --example metrics_npz`; set
CARGO_TARGET_DIR or --bin to find it) and reports both its internal time (best of R, the
metrics only) and the wall time of the whole process (read + metrics + JSON). The Python
side times the reference computation of `check_metrics.reference_metrics`.
With --check, the check script is run on the produced report as well.
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_metrics import load_npz, reference_metrics  # noqa: E402


def find_bin(explicit):
    if explicit:
        return explicit
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    return os.path.join(target, "release", "examples", "metrics_npz")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz", nargs="?")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bin", default=None, help="path of the metrics_npz example binary")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    exe = find_bin(args.bin)
    if not os.path.exists(exe):
        sys.exit(f"{exe} not found: build it with cargo build --release --example metrics_npz")
    npz = args.npz
    if npz is None:
        npz = f"/tmp/arvae_metrics_bench_n{args.n}_d{args.d}.npz"
        subprocess.run([exe, "--write-synthetic", npz, "--n", str(args.n), "--d", str(args.d),
                        "--seed", str(args.seed)], check=True)
    out_json = os.path.splitext(npz)[0] + ".report.json"

    walls = []
    internal = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        p = subprocess.run([exe, npz, "--json", out_json], check=True, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        for line in p.stdout.splitlines():
            if line.startswith("time:"):
                t = float(line.split("metrics")[1].split("s")[0])
                internal = t if internal is None else min(internal, t)

    z, a, _ = load_npz(npz)
    ref = reference_metrics(z, a)
    print(f"{npz}: N={z.shape[0]} D={z.shape[1]} K={a.shape[1]}, {os.cpu_count()} CPUs")
    print(f"{'':<28} {'seconds':>9}")
    print(f"{'arvae metrics (best of %d)' % args.repeat:<28} {internal:>9.3f}")
    print(f"{'arvae process wall (best)':<28} {min(walls):>9.3f}")
    print(f"{'sklearn+scipy all metrics':<28} {ref['t_all']:>9.3f}")
    print(f"{'  of which KSG MI':<28} {ref['t_mi']:>9.3f}")
    print(f"speed-up (metrics): {ref['t_all'] / internal:.1f}x")
    if args.check:
        rc = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "check_metrics.py"),
                             npz, out_json]).returncode
        return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
