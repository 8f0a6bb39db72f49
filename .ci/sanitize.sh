#!/usr/bin/env bash
# The GoogleTest suite under AddressSanitizer + UndefinedBehaviorSanitizer (CPU build,
# NACA_SANITIZE=ON in CMakeLists.txt); an instrumented Debug build, ~3 min on 2 cores.
# Then the CUDA kernels' CPU emulation (tests/cuda_emu) under both, ~3 min more.
# .ci/test.sh (and so CI) runs it.   bash .ci/sanitize.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUILD=${SANITIZE_BUILD_DIR:-build-sanitize}

# libtorch itself is not instrumented: leak reports would be its static
# allocations, and container-overflow needs every library instrumented.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:detect_container_overflow=0:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

echo "[sanitize] configure + build ($BUILD)"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DNACA_SANITIZE=ON \
  -DCMAKE_PREFIX_PATH="$($PY -c 'import torch;print(torch.utils.cmake_prefix_path)')" >/dev/null
cmake --build "$BUILD" -j "${MAX_JOBS:-2}"

echo "[sanitize] GoogleTest under ASan + UBSan"
ctest --test-dir "$BUILD" --output-on-failure "$@"

echo "[sanitize] the CUDA kernels, emulated on the CPU (tests/test_cuda_emu.py), under ASan + UBSan"
# The instrumented emulation library (tests/cuda_emu/build.py) needs the ASan runtime
# loaded first, so the whole test process runs with it preloaded; libstdc++ too, or
# ASan finds no __cxa_throw to intercept and a C++ exception aborts. -s: an ASan
# report is printed just before the process aborts, which pytest's capture would lose.
PRELOAD="$("${CXX:-g++}" -print-file-name=libasan.so) $("${CXX:-g++}" -print-file-name=libstdc++.so)"
NACA_EMU_SANITIZE=1 LD_PRELOAD="$PRELOAD" $PY -m pytest tests/test_cuda_emu.py -q -s -p no:cacheprovider
