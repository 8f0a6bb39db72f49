#!/usr/bin/env bash
# The checks that need a GPU, as one script for a lent GPU machine (CI has none):
# build with CUDA, the CUDA tests, the compare CLI on CUDA, compute-sanitizer memcheck and
# racecheck on the CUDA op tests, the CUDA benchmarks, a CUDA memory trace of one NACA step.
# Every phase has its own time limit and log, so a slow phase cannot hide the others' results.
#   OUT=/some/dir bash .ci/gpu_check.sh     (logs and benchmark files go to $OUT)
# Budgets (seconds) can be changed with BUILD_S, TEST_S, BENCH_S, MEMTRACE_S, MEMCHECK_S, RACECHECK_S,
# COMPARE_S; TOTAL_S (default 570) caps the whole script, so it ends inside one 600 s device call:
# each phase gets at most what is left (a phase past the deadline reports rc=124).
# Order: what resolves the most per second first (build, CUDA tests, compare, sanitizers),
# then the benchmarks and the memory trace.
# SpikingJelly rows: first `pip download --no-deps -d .whl spikingjelly loguru` where there is
# network, and bring .whl/ along (it is git-ignored).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
status() { echo "[gpu_check] $*" | tee -a "$OUT/summary.txt"; }
DEADLINE=$((SECONDS + ${TOTAL_S:-570}))
# budget WANT: WANT seconds, or what is left before the deadline; at least 1 (timeout 0
# would mean no limit), so a phase past the deadline is killed at once (rc 124).
budget() { local left=$((DEADLINE - SECONDS - 3)); ((left < 1)) && left=1; echo $(($1 < left ? $1 : left)); }

nvidia-smi -L | tee -a "$OUT/summary.txt"
$PY -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])" | tee -a "$OUT/summary.txt"

# SpikingJelly for the benchmark's comparison rows, where its wheels were carried in .whl/
# (no network there): spikingjelly and loguru, --no-deps (the image has its other needs).
if ls .whl/spikingjelly-*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/naca_site .whl/*.whl &&
    export PYTHONPATH=$PWD:/tmp/naca_site${PYTHONPATH:+:$PYTHONPATH}
fi

# Some GPU images default to a compiler wrapper (/opt/gcc) with which every
# TORCH_CHECK that formats a number crashed the built extension: use the system gcc.
if [ -x /usr/bin/g++ ]; then export CXX=/usr/bin/g++ CC=/usr/bin/gcc; fi
t0=$SECONDS
TORCH_PLUGIN_CUDA=1 MAX_JOBS=${MAX_JOBS:-16} timeout "$(budget "${BUILD_S:-240}")" \
  $PY setup.py build_ext --inplace >"$OUT/build.log" 2>&1
rc=$?; status "build rc=$rc in $((SECONDS - t0)) s"
[ $rc -eq 0 ] && rm -f "$OUT/build.log"   # kept only when it failed
$PY -c "import torch_plugin; assert torch_plugin.built_with_cuda(), 'CUDA kernels not built'" 2>&1 |
  tee -a "$OUT/summary.txt" || exit 1

t0=$SECONDS
# The CUDA tests in 8 processes (pytest-xdist); CI runs the CPU ones. (The whole
# suite under xdist ran every test but did not exit within 120 s on an H200.)
timeout "$(budget "${TEST_S:-120}")" $PY -m pytest tests -q -p no:cacheprovider -n 8 -k "cuda and not cuda_emu" >"$OUT/pytest.log" 2>&1
status "pytest -k cuda rc=$? in $((SECONDS - t0)) s: $(tail -n 1 "$OUT/pytest.log")"

# The comparison CLI on the GPU (tiny digits runs: MLP with BP, NACA, SBP; SNN with NACA, SBP, BPTT;
# class-incremental MLP with the gate and the authors' loop options).
t0=$SECONDS
{ timeout "$(budget "${COMPARE_S:-90}")" $PY -m torch_plugin.compare --dataset digits --device cuda --epochs 2 \
    --methods bp,naca,sbp --quiet --no-plots --out /tmp/naca_compare_mlp &&
  timeout "$(budget "${COMPARE_S:-90}")" $PY -m torch_plugin.compare --dataset digits --device cuda --model snn --hidden 200 \
    --epochs 2 --methods naca,sbp,bp-surrogate --quiet --no-plots --out /tmp/naca_compare_snn &&
  timeout "$(budget "${COMPARE_S:-90}")" $PY -m torch_plugin.compare --dataset digits --device cuda --scenario class-incremental \
    --tasks-classes 1 --gate --epochs 1 --methods bp,naca --restore-best --stop-metric eval --quiet --no-plots \
    --out /tmp/naca_compare_ci &&
  cat /tmp/naca_compare_mlp/results.md /tmp/naca_compare_snn/results.md /tmp/naca_compare_ci/results.md; } >"$OUT/compare.log" 2>&1
status "compare --device cuda rc=$? in $((SECONDS - t0)) s"

# The op tests on CUDA, float32, under the sanitizers (slow: a few hundred kernels).
SAN_TESTS="tests/test_naca_ops.py tests/test_snn.py tests/test_stdp.py tests/test_sbp.py tests/test_stp.py"
t0=$SECONDS
timeout "$(budget "${MEMCHECK_S:-90}")" compute-sanitizer --tool memcheck --error-exitcode 9 \
  $PY -m pytest $SAN_TESTS -q -p no:cacheprovider -k "cuda and not float64 and not bfloat16 and not float16" \
  >"$OUT/memcheck.log" 2>&1
status "memcheck rc=$? in $((SECONDS - t0)) s: $(grep -h 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -n 1) $(grep -hE '[0-9]+ passed' "$OUT/memcheck.log" | tail -n 1)"

t0=$SECONDS
timeout "$(budget "${RACECHECK_S:-60}")" compute-sanitizer --tool racecheck --error-exitcode 9 \
  $PY -m pytest tests/test_naca_ops.py tests/test_snn.py tests/test_stp.py -q -p no:cacheprovider -k "cuda and not float64 and not bfloat16 and not float16" \
  >"$OUT/racecheck.log" 2>&1
status "racecheck rc=$? in $((SECONDS - t0)) s: $(grep -hE 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/racecheck.log" | tail -n 1) $(grep -hE '[0-9]+ passed' "$OUT/racecheck.log" | tail -n 1)"

t0=$SECONDS
timeout "$(budget "${BENCH_S:-200}")" $PY -m torch_plugin.bench --device cuda \
  --out "$OUT/bench" >"$OUT/bench.log" 2>&1
rc=$?; status "bench rc=$rc in $((SECONDS - t0)) s"
[ $rc -eq 0 ] && rm -f "$OUT/bench.log"   # the results are in $OUT/bench

# Where one NACA step's CUDA peak comes from (MLP, batch 256 and 1024), into the summary.
PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} timeout "$(budget "${MEMTRACE_S:-60}")" $PY .ci/gpu_memtrace.py 2>&1 | tail -n 60 | tee -a "$OUT/summary.txt"
status "done in $SECONDS s"
