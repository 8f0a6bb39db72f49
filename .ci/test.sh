#!/usr/bin/env bash
# All tests: set-up, the GoogleTest suite (LibTorch build via CMake; again under
# ASan + UBSan, followed by the CPU emulation of the CUDA kernels), then pytest.
# CUDA tests skip without a GPU; the CUDA kernels are still compiled, and run
# in the emulation (tests/test_cuda_emu.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh

PY=${PYTHON:-python3}
echo "[test] GoogleTest (CMake + LibTorch)"
cmake -S . -B build-cmake -G Ninja -DCMAKE_PREFIX_PATH="$($PY -c 'import torch;print(torch.utils.cmake_prefix_path)')" >/dev/null
cmake --build build-cmake -j "${MAX_JOBS:-2}"
ctest --test-dir build-cmake --output-on-failure

echo "[test] GoogleTest under ASan + UBSan"
bash .ci/sanitize.sh

echo "[test] pytest"
$PY -m pytest tests -q -p no:cacheprovider "$@"
