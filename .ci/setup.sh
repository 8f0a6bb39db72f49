#!/usr/bin/env bash
# Installs what torch_plugin needs on a fresh machine and builds it in place
# (pip install -e). Safe to rerun: installed pieces are skipped, the build is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_pkgs=()
[ -f /usr/include/gtest/gtest.h ] || apt_pkgs+=(libgtest-dev)
[ -d /usr/share/datasets/fashion-mnist ] || apt_pkgs+=(dataset-fashion-mnist)
command -v cmake >/dev/null || apt_pkgs+=(cmake)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${apt_pkgs[*]}"
  $SUDO apt-get install -y -q "${apt_pkgs[@]}" >/dev/null 2>&1 ||
    { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${apt_pkgs[@]}" >/dev/null; }
fi

PY=${PYTHON:-python3}
# torch 2.14.1 (CUDA 13 build) lies on this machine's disk; its CUDA headers let the CUDA kernels compile in CI.
if ! $PY -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.') and torch.version.cuda else 1)" 2>/dev/null; then
  echo "[setup] pip install torch==2.14.1"
  $PY -m pip install -q "torch==2.14.1"
fi
$PY -m pip install -q numpy scikit-learn matplotlib tqdm pytest hypothesis ninja 2>&1 | grep -v "Running pip as the 'root'" || true

echo "[setup] building torch_plugin (MAX_JOBS=${MAX_JOBS:-2})"
MAX_JOBS=${MAX_JOBS:-2} $PY -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | grep -v "Running pip as the 'root'" || true
$PY -c "import torch_plugin, torch; print('[setup] torch_plugin', torch_plugin.__version__, 'on torch', torch.__version__, '| CUDA kernels built:', torch_plugin.built_with_cuda())"
