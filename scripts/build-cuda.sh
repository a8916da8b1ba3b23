#!/usr/bin/env bash
# Builds the CUDA trainer (target/release/arvae-trainer with --features cuda) on a machine that
# has only Python 3, Rust and the package registries: no system CUDA toolkit, no GPU, no driver.
#
#   scripts/build-cuda.sh                    # build target/release/arvae-trainer
#   scripts/build-cuda.sh -- test --release -p arvae-trainer -p arvae-core --features cuda \
#       --test cuda_parity -- --nocapture     # the GPU parity test (SKIPPED without a GPU)
#   eval "$(scripts/build-cuda.sh --print-env)"   # run-time library path for `--device cuda`
#
# What it does, and why:
#
# 1. The CUDA toolkit comes from PyPI (NVIDIA's `cuda-toolkit` wheels: nvcc, cudart, CCCL headers,
#    cuBLAS, cuRAND, NVRTC) into a local venv (.cuda/ by default, git-ignored), once per version.
#    The default, 13.0.x, is what a 580-series driver runs (a driver runs the CUDA versions up to
#    its own; cudarc 0.19.10 knows CUDA up to 13.4). The PyPI `nvidia-cuda-nvcc-cu12` wheel holds
#    no nvcc, so CUDA 12 is not an option this way.
# 2. candle-kernels compiles its kernels with nvcc (through `cudaforge`) at build time: nvcc goes
#    on PATH and into NVCC, the wheel's folder into CUDA_ROOT/CUDA_PATH/CUDA_HOME, and the GPU
#    generation into CUDA_COMPUTE_CAP (no nvidia-smi here to ask; default 90, the H100/H200).
#    CUDARC_CUDA_VERSION tells cudarc (and our own library probe, core/src/cuda.rs) the version.
# 3. One binary for CPU and GPU. candle-core 0.11.1 asks cudarc for "dynamic-linking": the binary
#    then needs libcuda.so (the driver's, absent without a GPU) and libcublas etc. to link, and
#    libcuda.so.1, libcublas.so.13, ... to even start (`--help` fails on a machine without them).
#    cudarc can instead "dynamic-loading": it dlopen()s the libraries on first use. Its build.rs
#    refuses both features together, so our crates cannot simply add the second one. Instead this
#    script copies candle-core from the cargo registry into $CARGO_TARGET_DIR/cuda-patch/ and
#    changes only that one feature name in the copy's Cargo.toml. candle-kernels likewise links
#    `-lcudart` (a shared library the wheels ship only as libcudart.so.13, so linking fails); its
#    copy links NVIDIA's static libcudart_static.a instead, which loads the driver only when a
#    kernel of its own runs. Both copies are used through `cargo --config patch.crates-io...`, so
#    nothing fetched is committed. Cargo rewrites Cargo.lock for a patched build (a path package
#    has no checksum); Cargo.lock is saved first and put back on exit, failure and Ctrl-C included.
#    Our code probes the libraries itself before it touches candle (core/src/cuda.rs), so a
#    missing library is a clear error and never cudarc's panic.
#
# The result trains on the CPU anywhere and on the GPU where a driver (libcuda.so.1, 580 series
# for CUDA 13.0) and the CUDA libraries (cuBLAS, cuRAND: --print-env puts this venv's on
# LD_LIBRARY_PATH) are present. CI never builds this variant.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/build-cuda.sh [options] [-- CARGO_ARGS...]

Builds arvae-trainer with CUDA (cargo build --release -p arvae-trainer --features cuda), with
the CUDA toolkit from PyPI in a local venv and cudarc loading the CUDA libraries at run time, so
the binary also starts and trains on the CPU on machines without CUDA.

Options:
  --cuda-version V   cuda-toolkit wheel version from PyPI (default 13.0.3.0; 13.0.x fits a
                     580-series driver; `pip index versions cuda-toolkit` lists them)
  --compute-cap N    GPU compute capability to compile kernels for (default 90: H100/H200;
                     80 A100, 89 L4/RTX 40xx, 120 RTX 50xx)
  --venv DIR         where the toolkit wheels go (default .cuda in the repository)
  --print-env        print `export` lines that put the venv's CUDA libraries on
                     LD_LIBRARY_PATH (for running with --device cuda) and exit; installs
                     the toolkit first if needed, builds nothing
  -h, --help         this text
  -- CARGO_ARGS...   run this cargo command instead of the default build, in the same
                     environment and with the same patches, e.g.
                     -- test --release -p arvae-trainer -p arvae-core --features cuda \
                        --test cuda_parity -- --nocapture
                     -- clippy --release -p arvae-trainer -p arvae-core --features cuda \
                        --all-targets -- -D warnings

Environment: CARGO_TARGET_DIR (default target/) holds the build and the patched candle copies.
The first build compiles candle's CUDA kernels with nvcc: 11 to 31 minutes on a shared 2-core
machine (49 minutes for the whole first build there). Cargo compiles them again for each new
set of build features: the test and clippy commands above share one set, the build another.
EOF
}

cuda_version=13.0.3.0
compute_cap=90
venv=
print_env=0
cargo_args=(build --release -p arvae-trainer --features cuda)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cuda-version) cuda_version=${2:?--cuda-version needs a value}; shift 2 ;;
    --compute-cap) compute_cap=${2:?--compute-cap needs a value}; shift 2 ;;
    --venv) venv=${2:?--venv needs a value}; shift 2 ;;
    --print-env) print_env=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; cargo_args=("$@"); break ;;
    *) echo "build-cuda.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [[ ! $cuda_version =~ ^([0-9]+)\.([0-9]+)(\.[0-9]+)*$ ]]; then
  echo "build-cuda.sh: --cuda-version '$cuda_version' is not a version like 13.0.3.0" >&2
  exit 2
fi
cuda_major=${BASH_REMATCH[1]}
cuda_minor=${BASH_REMATCH[2]}
if [[ ! $compute_cap =~ ^[0-9]+[a-z]?$ ]]; then
  echo "build-cuda.sh: --compute-cap '$compute_cap' is not a number like 90" >&2
  exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Relative paths are the caller's, not the repository's.
[[ -z $venv || $venv == /* ]] || venv=$PWD/$venv
[[ -z ${CARGO_TARGET_DIR:-} || $CARGO_TARGET_DIR == /* ]] || CARGO_TARGET_DIR=$PWD/$CARGO_TARGET_DIR
cd "$root"
venv=${venv:-$root/.cuda}
log() { echo "build-cuda.sh: $*" >&2; }

# 1. The toolkit wheels.
installed=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("cuda-toolkit"))' 2>/dev/null || true)
if [[ $installed != "$cuda_version" ]]; then
  log "installing cuda-toolkit $cuda_version from PyPI into $venv${installed:+ (has $installed)}"
  [[ -x $venv/bin/pip ]] || python3 -m venv "$venv"
  start=$SECONDS
  "$venv/bin/pip" install --disable-pip-version-check \
    "cuda-toolkit[nvcc,cudart,cccl,cublas,curand,nvrtc]==$cuda_version"
  log "toolkit installed in $((SECONDS - start)) s"
fi
cuda_root=
for d in "$venv"/lib/python3*/site-packages/nvidia/cu"$cuda_major"; do
  [[ -x $d/bin/nvcc ]] && cuda_root=$d
done
if [[ -z $cuda_root ]]; then
  log "no nvcc under $venv/lib/python3*/site-packages/nvidia/cu$cuda_major/bin after installing cuda-toolkit $cuda_version"
  exit 1
fi

if [[ $print_env == 1 ]]; then
  echo "export LD_LIBRARY_PATH=\"$cuda_root/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
  exit 0
fi

# 2. The build environment.
export CUDA_ROOT=$cuda_root CUDA_PATH=$cuda_root CUDA_HOME=$cuda_root
export NVCC=$cuda_root/bin/nvcc
export PATH=$cuda_root/bin:$PATH
export CUDA_COMPUTE_CAP=$compute_cap
export CUDARC_CUDA_VERSION=${cuda_major}0${cuda_minor}0
nvcc_release=$("$NVCC" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
if [[ $nvcc_release != "$cuda_major.$cuda_minor" ]]; then
  log "$NVCC is release '$nvcc_release', expected $cuda_major.$cuda_minor"
  exit 1
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
patch_dir=$CARGO_TARGET_DIR/cuda-patch
mkdir -p "$patch_dir"

# 3. Cargo.lock back as committed, whatever happens.
cp Cargo.lock "$patch_dir/Cargo.lock.committed"
restore_lock() { cp "$patch_dir/Cargo.lock.committed" "$root/Cargo.lock"; }
trap restore_lock EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 4. The patched copies of the locked candle-core and candle-kernels.
manifest() { # crate name -> its Cargo.toml in the cargo registry (downloaded if needed)
  cargo metadata --format-version 1 --locked --features arvae-trainer/cuda |
    python3 -c 'import json, sys
name = sys.argv[1]
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == name and (p["source"] or "").startswith("registry+"):
        print(p["manifest_path"])
        break' "$1"
}
stage=$patch_dir/.stage
copy_crate() { # name -> prints the folder of a fresh copy to patch (timestamps kept)
  local src
  src=$(manifest "$1")
  if [[ -z $src ]]; then
    log "$1 is not a registry package in Cargo.lock"
    exit 1
  fi
  mkdir -p "$stage"
  rm -rf "${stage:?}/$1"
  cp -Rp "$(dirname "$src")" "$stage/$1"
  chmod -R u+w "$stage/$1"
  echo "$stage/$1"
}
install_copy() { # name -> prints the copy's folder; the patched copy replaces the previous one
  # only if they differ, since cargo rebuilds path packages (and reruns candle-kernels' nvcc
  # step) when their files' timestamps change
  if ! diff -rq "$stage/$1" "$patch_dir/$1" >/dev/null 2>&1; then
    rm -rf "${patch_dir:?}/$1"
    mv "$stage/$1" "$patch_dir/$1"
  fi
  rm -rf "${stage:?}/$1"
  echo "$patch_dir/$1"
}
core_copy=$(copy_crate candle-core)
# Only the cudarc feature: "dynamic-linking" -> "dynamic-loading".
sed -i 's/^\( *\)"dynamic-linking",$/\1"dynamic-loading",/' "$core_copy/Cargo.toml"
if grep -q '"dynamic-linking"' "$core_copy/Cargo.toml" || ! grep -q '"dynamic-loading"' "$core_copy/Cargo.toml"; then
  log "$core_copy/Cargo.toml: could not switch cudarc to dynamic-loading (has candle-core changed?)"
  exit 1
fi
core_copy=$(install_copy candle-core)
kernels_copy=$(copy_crate candle-kernels)
# Only the cudart link: the static library from CUDA_ROOT/lib instead of -lcudart.
link='    println!("cargo:rustc-link-lib=dylib=cudart");'
if ! grep -qxF "$link" "$kernels_copy/build.rs"; then
  log "$kernels_copy/build.rs: no '-lcudart' line to replace (has candle-kernels changed?)"
  exit 1
fi
python3 - "$kernels_copy/build.rs" "$link" <<'EOF'
import sys
path, link = sys.argv[1], sys.argv[2]
static = """    // arvae (scripts/build-cuda.sh): the static CUDA runtime, so the binary needs no libcudart.
    println!("cargo:rerun-if-env-changed=CUDA_ROOT");
    let cuda_root = std::env::var("CUDA_ROOT").expect("CUDA_ROOT (set by scripts/build-cuda.sh)");
    println!("cargo:rustc-link-search=native={cuda_root}/lib");
    println!("cargo:rustc-link-lib=static=cudart_static");
    println!("cargo:rustc-link-lib=dylib=rt");
    println!("cargo:rustc-link-lib=dylib=dl");
    println!("cargo:rustc-link-lib=dylib=pthread");"""
text = open(path).read()
open(path, "w").write(text.replace(link, static, 1))
EOF
kernels_copy=$(install_copy candle-kernels)

patches=(
  --config "patch.crates-io.candle-core.path=\"$core_copy\""
  --config "patch.crates-io.candle-kernels.path=\"$kernels_copy\""
)
# No other crate may ask cudarc for dynamic-linking (the two features cannot be combined).
linking=$(cargo "${patches[@]}" tree -p arvae-trainer --features cuda -e features -i cudarc 2>/dev/null |
  grep -F 'cudarc feature "dynamic-linking"' || true)
if [[ -n $linking ]]; then
  log "a crate still enables cudarc's dynamic-linking; patch it like candle-core:"
  cargo "${patches[@]}" tree -p arvae-trainer --features cuda -e features -i cudarc >&2
  exit 1
fi

log "CUDA $nvcc_release ($cuda_root), compute capability $compute_cap, target $CARGO_TARGET_DIR"
log "cargo ${cargo_args[*]}"
start=$SECONDS
cargo "${patches[@]}" "${cargo_args[@]}"
log "cargo finished in $((SECONDS - start)) s"
if [[ ${cargo_args[*]} == "build --release -p arvae-trainer --features cuda" ]]; then
  bin=$CARGO_TARGET_DIR/release/arvae-trainer
  log "built $bin ($(du -h "$bin" | cut -f1)); it trains on the CPU anywhere; for --device cuda:"
  log "  eval \"\$(scripts/build-cuda.sh --print-env)\"   # the venv's cuBLAS/cuRAND on LD_LIBRARY_PATH"
fi
