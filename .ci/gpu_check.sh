#!/usr/bin/env bash
# The checks that need a GPU, as one script for a lent GPU machine (CI has none):
# build with CUDA, the CUDA tests, the compare CLI on CUDA, compute-sanitizer memcheck and
# racecheck on the CUDA op tests, the CUDA benchmarks, a CUDA memory trace of one NACA step.
# Every phase has its own time limit and log, so a slow phase cannot hide the others' results.
#   OUT=/some/dir bash .ci/gpu_check.sh     (logs and benchmark files go to $OUT)
# Budgets (seconds): BUILD_S (200), PHASE2_S (170: the jobs of phase 2 side by side), BENCH_S
# (260); TOTAL_S (default 570) caps the whole script, so it ends inside one 600 s device call:
# each phase gets at most what is left (a phase past the deadline reports rc=124).
# Order: build; then side by side the CUDA tests, compute-sanitizer memcheck and racecheck,
# the compare CLI on CUDA and the memory trace; then the benchmarks alone on the machine.
# At most 8 files come back from a device call: summary.txt, pytest.log, memcheck.log,
# racecheck.log, compare.tar.gz, bench/benchmarks.{md,json}, and bench.log or build.log on failure.
# Fashion-MNIST for the compare runs: copy /usr/share/datasets/fashion-mnist to .data/ (git-ignored).
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
TORCH_PLUGIN_CUDA=1 MAX_JOBS=${MAX_JOBS:-16} timeout "$(budget "${BUILD_S:-200}")" \
  $PY setup.py build_ext --inplace >"$OUT/build.log" 2>&1
rc=$?; status "build rc=$rc in $((SECONDS - t0)) s"
[ $rc -eq 0 ] && rm -f "$OUT/build.log"   # kept only when it failed
$PY -c "import torch_plugin; assert torch_plugin.built_with_cuda(), 'CUDA kernels not built'" 2>&1 |
  tee -a "$OUT/summary.txt" || exit 1

# Phase 2, jobs side by side (16 cores; none of them is a timing): the CUDA tests,
# compute-sanitizer memcheck and racecheck on the op tests (float32), and the compare CLI
# on the GPU, the memory trace. The compare's wall times per epoch are taken while the others share the GPU and
# the host (said wherever they are quoted); its accuracies are not affected.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
P2_END=$((SECONDS + $(budget "${PHASE2_S:-170}")))
p2_left() { local left=$((P2_END - SECONDS)); ((left < 1)) && left=1; echo $left; }
t0=$SECONDS
( timeout "$(p2_left)" $PY -m pytest tests -q -p no:cacheprovider -n 6 \
    -k "cuda and not cuda_emu" >"$OUT/pytest.log" 2>&1
  status "pytest -k cuda rc=$? in $((SECONDS - t0)) s: $(tail -n 1 "$OUT/pytest.log")" ) &

# The op tests on CUDA, float32, under the sanitizers (slow: a few hundred kernels);
# memcheck in two processes (test_naca_ops.py; the spiking and SBP files), merged after.
SAN_K="cuda and not float64 and not bfloat16 and not float16"
sanitize() { local tool=$1 log=$2; shift 2
  timeout "$(p2_left)" compute-sanitizer --tool "$tool" --error-exitcode 9 \
    $PY -m pytest "$@" -q -p no:cacheprovider -k "$SAN_K" >"$log" 2>&1
  status "$tool $* rc=$? in $((SECONDS - t0)) s: $(grep -hE 'RACECHECK SUMMARY|ERROR SUMMARY' "$log" | tail -n 1) $(grep -hE '[0-9]+ (passed|failed)' "$log" | tail -n 1)"; }
sanitize memcheck /tmp/memcheck_ops.log tests/test_naca_ops.py &
sanitize memcheck /tmp/memcheck_snn.log tests/test_snn_ops.py tests/test_snn.py tests/test_stdp.py tests/test_sbp.py tests/test_stp.py &
sanitize racecheck "$OUT/racecheck.log" tests/test_naca_ops.py tests/test_snn_ops.py tests/test_snn.py tests/test_stp.py &

# The comparison CLI on the GPU, most important first: the README's main command as it is
# (Fashion-MNIST from .data/fashion-mnist where carried, put where Debian's package puts it);
# tiny digits runs of the spiking MLP (NACA, SBP, BPTT) and of class-incremental learning with
# the gate and the authors' loop options; then the main class-incremental study
# (examples/results/class_incremental_fashion) and the conv net's default study. Each run
# writes into /tmp/naca_compare/<name>; all of it comes back as $OUT/compare.tar.gz.
if [ -d .data/fashion-mnist ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  mkdir -p /usr/share/datasets && cp -r .data/fashion-mnist /usr/share/datasets/
fi
( C=/tmp/naca_compare; mkdir -p $C
  cmp() { local name=$1; shift; local t1=$SECONDS
    timeout "$(p2_left)" $PY -m torch_plugin.compare --device cuda --out $C/$name "$@" \
      >$C/$name.log 2>&1
    status "compare $name rc=$? in $((SECONDS - t1)) s"; }
  cmp default --quiet
  cmp snn_tiny --dataset digits --model snn --hidden 200 --epochs 2 --methods naca,sbp,bp-surrogate --quiet --no-plots
  cmp ci_gate_tiny --dataset digits --scenario class-incremental --tasks-classes 1 --gate --epochs 1 --methods bp,naca \
    --restore-best --stop-metric eval --quiet --no-plots
  cmp class_incremental --scenario class-incremental --tasks-classes 2 --model mlp --hidden 1000 --seeds 0,1,2 \
    --methods bp,naca --stop-at 0.95 --epochs 10 --quiet
  cmp conv --model conv --methods bp,naca --seeds 0,1,2 --quiet
  tar -czf "$OUT/compare.tar.gz" -C /tmp naca_compare ) &

# Where one NACA step's CUDA peak comes from (MLP, batch 256 and 1024), into the summary
# (allocator bytes of its own process: the jobs beside it do not change them).
( PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} timeout "$(p2_left)" $PY .ci/gpu_memtrace.py 2>&1 | tail -n 60 |
    tee -a "$OUT/summary.txt" >/dev/null ) &
wait
cat /tmp/memcheck_ops.log /tmp/memcheck_snn.log >"$OUT/memcheck.log" 2>/dev/null
status "phase 2 (tests, sanitizers, compare, memory trace) done in $((SECONDS - t0)) s"

# The benchmarks alone on the machine, most wanted sections first; bench writes its files
# after each section, so a cut-short run keeps what it finished.
t0=$SECONDS
unset OMP_NUM_THREADS
timeout "$(budget "${BENCH_S:-260}")" $PY -m torch_plugin.bench --device cuda --sections step,snn,ops,scaling \
  --out "$OUT/bench" >"$OUT/bench.log" 2>&1
rc=$?; status "bench rc=$rc in $((SECONDS - t0)) s"
[ $rc -eq 0 ] && rm -f "$OUT/bench.log"   # the results are in $OUT/bench

status "done in $SECONDS s"
