#!/usr/bin/env bash
# All tests: set-up, the GoogleTest suite and the package tests (ctest), the
# GoogleTest suite again under ASan + UBSan followed by the CPU emulation of the
# CUDA kernels, then pytest. CUDA tests skip without a GPU; the CUDA kernels are
# still compiled, and run in the emulation (tests/test_cuda_emu.py).
#
# The builds, each needed once:
#   build-cmake/        libnaca (CPU + CUDA kernels), built by the set-up (setup.py drives
#                       CMake) and installed into torch_plugin/; this step adds the tests to
#                       the same build, so the library is not compiled again.
#   build-cmake/tests/cpp/package/   the consumer project (tests/cpp/consumer), built
#                       against the installed tree and against the pip route's prefix.
#   build-sanitize/     the library and tests instrumented (ASan + UBSan, CPU only).
#   build-cuda-emu*/    the CUDA kernels translated for the CPU (plain and instrumented).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh

PY=${PYTHON:-python3}
BUILD=${TORCH_PLUGIN_BUILD_DIR:-build-cmake}
echo "[test] GoogleTest and package tests (CMake + LibTorch, $BUILD)"
cmake -S . -B "$BUILD" -DNACA_BUILD_TESTS=ON \
  -DCMAKE_PREFIX_PATH="$($PY -c 'import torch;print(torch.utils.cmake_prefix_path)')" >/dev/null
cmake --build "$BUILD" -j "${MAX_JOBS:-2}"
ctest --test-dir "$BUILD" --output-on-failure

echo "[test] GoogleTest under ASan + UBSan"
bash .ci/sanitize.sh

echo "[test] pytest"
$PY -m pytest tests -q -p no:cacheprovider "$@"
