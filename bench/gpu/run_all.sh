#!/usr/bin/env bash
# One-shot GPU session (H100, no internet): build mamba-ssm's selective-scan kernel (and
# causal-conv1d) for sm_90 only from the sdists in .device/sdist, then run the scan parity
# tests on CUDA, bench/scan.py --device cuda and, when present, bench/backbone.py --device cuda.
# Every step goes on after a failure of the one before; logs and JSON go to $OUT and the
# JSON also to bench/results/. Run from the repository root:  bash bench/gpu/run_all.sh
set -u
ROOT=$PWD
OUT=${OUT:-/tmp/dnadiff_gpu_out}
SDIST=${SDIST:-$ROOT/.device/sdist}
BUILD=${BUILD:-/tmp/dnadiff_build}
ARCH=${ARCH:-90}
JOBS=${MAX_JOBS:-16}
PY=${PYTHON:-python3}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-330}   # seconds for each pip build
WITH_CONV=${WITH_CONV:-1}             # 0: skip causal-conv1d (second priority)
SCAN_CASES=${SCAN_CASES:-}            # e.g. 8x1024,1x131072 (default: all of bench/scan.py)
mkdir -p "$OUT" "$BUILD" bench/results
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export PIP_BREAK_SYSTEM_PACKAGES=1   # the machine's Python may be marked externally managed (PEP 668)
# Pure-Python wheels the offline GPU machine may lack, if carried in .whl/; pip leaves the
# packages the machine already has alone.
if ls "$ROOT"/.whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install --no-index --no-deps --find-links "$ROOT/.whl" \
    omegaconf antlr4-python3-runtime pyfaidx einops packaging pytest pluggy iniconfig pygments >"$OUT/wheels.log" 2>&1
fi
T0=$(date +%s)
log() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/steps.log"; }

log "env: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
log "env: $($PY -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.is_available())' 2>&1)"
log "env: $(nvcc --version 2>&1 | tail -1); nproc $(nproc)"

# build_pkg NAME TARBALL ENVPREFIX LOG: unpack, restrict gencode to sm_$ARCH, pip install.
build_pkg() {
  local name=$1 tarball=$2 prefix=$3 logf=$4 jobs=$5 t=$(date +%s)
  [ -f "$tarball" ] || { log "$name: no sdist at $tarball"; return 1; }
  tar xzf "$tarball" -C "$BUILD" || return 1
  local src=$BUILD/$(basename "$tarball" .tar.gz)
  $PY "$ROOT/bench/gpu/patch_gencode.py" "$src/setup.py" "$ARCH" >>"$logf" 2>&1 || return 1
  ( cd "$src" && env "${prefix}_FORCE_BUILD=TRUE" MAX_JOBS=$jobs TORCH_CUDA_ARCH_LIST="${ARCH:0:1}.${ARCH:1}" \
      timeout $BUILD_TIMEOUT $PY -m pip install --no-build-isolation --no-deps --no-index -v . ) >>"$logf" 2>&1
  local rc=$?
  log "$name: pip install rc=$rc in $(( $(date +%s) - t ))s"
  return $rc
}

# 1. Builds: causal-conv1d (small, 4 jobs) in the background, mamba-ssm in the foreground.
CONV_PID=
if [ "$WITH_CONV" = 1 ]; then
  build_pkg causal-conv1d "$SDIST/causal_conv1d-1.7.0.tar.gz" CAUSAL_CONV1D "$OUT/build_causal_conv1d.log" 4 &
  CONV_PID=$!
fi
build_pkg mamba-ssm "$SDIST/mamba_ssm-2.3.2.post1.tar.gz" MAMBA "$OUT/build_mamba_ssm.log" "$JOBS"
[ -n "$CONV_PID" ] && wait $CONV_PID
if ! $PY -c "from mamba_ssm.ops.selective_scan_interface import selective_scan_fn" >>"$OUT/steps.log" 2>&1; then
  # mamba_ssm/__init__ imports every module (Mamba2/3, the LM head and their optional
  # dependencies); keep only the selective-scan import if one of those breaks.
  INIT=$($PY -c "import importlib.util as u; print(u.find_spec('mamba_ssm').submodule_search_locations[0])" 2>/dev/null)/__init__.py
  if [ -f "$INIT" ]; then
    log "mamba_ssm import failed; trimming $INIT to the selective-scan import"
    printf '__version__ = "2.3.2.post1"\nfrom mamba_ssm.ops.selective_scan_interface import selective_scan_fn, mamba_inner_fn\n' >"$INIT"
  fi
fi
log "backends: $($PY -c 'from dnadiff.models.kernels.scan import available_backends as a; print(a())' 2>&1 | tail -1)"
log "causal_conv1d: $($PY -c 'import causal_conv1d; print(causal_conv1d.__version__)' 2>&1 | tail -1)"

# 2. Parity tests: scan backends (cuda and torch-on-GPU vs ref), and the fused mamba_inner_fn
#    path of the whole model vs the ref scan.
timeout 150 $PY -m pytest tests/test_scan.py tests/test_mamba_ssm_parity.py -q -rs -p no:cacheprovider >"$OUT/pytest_scan.log" 2>&1
log "pytest tests/test_scan.py tests/test_mamba_ssm_parity.py rc=$?: $(tail -1 "$OUT/pytest_scan.log")"

# 3. Scan benchmark, cuda vs torch.
timeout 200 $PY bench/scan.py --device cuda --timeout 120 ${SCAN_CASES:+--cases $SCAN_CASES} --out "$OUT/scan_gpu.json" >"$OUT/bench_scan.log" 2>&1
log "bench/scan.py rc=$?"; cat "$OUT/bench_scan.log" >>"$OUT/steps.log"
cp "$OUT/scan_gpu.json" bench/results/ 2>/dev/null

# 4. Backbone benchmark (the model engineer's script), when the model code is there.
if [ -f bench/backbone.py ] && $PY -c "import dnadiff; dnadiff.build_model" >/dev/null 2>&1; then
  timeout 150 $PY bench/backbone.py --device cuda --out "$OUT/backbone_gpu.json" >"$OUT/bench_backbone.log" 2>&1
  log "bench/backbone.py rc=$?"; tail -30 "$OUT/bench_backbone.log" >>"$OUT/steps.log"
  cp "$OUT/backbone_gpu.json" bench/results/ 2>/dev/null
else
  log "bench/backbone.py skipped: script or dnadiff.build_model missing"
fi
for f in "$OUT"/build_*.log; do  # keep the logs small enough to come back
  [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 4000000 ] && tail -c 4000000 "$f" >"$f.tmp" && mv "$f.tmp" "$f"
done
log "done"
