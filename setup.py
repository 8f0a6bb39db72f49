"""Builds torch_plugin._C: the `naca` operators, CPU always, CUDA when available.

Environment switches:
  TORCH_PLUGIN_CUDA=1|0|auto  force the CUDA kernels on or off (default auto: on
                              when nvcc is found and torch was built with CUDA).
  TORCH_CUDA_ARCH_LIST        GPU architectures (default: the visible GPU's, or
                              "9.0" when none is visible, e.g. in CI).
  MAX_JOBS                    parallel compile jobs (ninja).
"""
import glob
import os

from setuptools import find_packages, setup

# torch finds CUDA_HOME from the nvcc on PATH; a wrapper script there (as
# /usr/local/bin/nvcc here) points it at a folder with no libcudart. Prefer the
# standard toolkit location when it is complete.
if not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")):
    for _home in ("/usr/local/cuda",):
        if os.path.exists(os.path.join(_home, "bin", "nvcc")) and glob.glob(os.path.join(_home, "lib*", "libcudart.so")):
            os.environ["CUDA_HOME"] = _home
            break

import torch  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))


def use_cuda() -> bool:
    mode = os.environ.get("TORCH_PLUGIN_CUDA", "auto").lower()
    available = CUDA_HOME is not None and torch.version.cuda is not None
    if mode in ("0", "off", "false", "no"):
        return False
    if mode in ("1", "on", "true", "yes"):
        if not available:
            raise RuntimeError(
                "TORCH_PLUGIN_CUDA=1 but CUDA cannot be built: "
                f"CUDA_HOME={CUDA_HOME}, torch.version.cuda={torch.version.cuda}"
            )
        return True
    return available


def pip_cuda_includes():
    """Headers of the CUDA libraries torch's CUDA headers include (cusparse.h, ...).

    A minimal CUDA toolkit (nvcc and the runtime only) lacks them; torch's pip
    wheels ship them under site-packages/nvidia/*/include.
    """
    try:
        import nvidia  # the namespace package of the nvidia-* wheels
    except ImportError:
        return []
    found = set()
    for root in nvidia.__path__:
        for header in glob.glob(os.path.join(root, "**", "include", "cusparse.h"), recursive=True):
            found.add(os.path.dirname(header))
    return sorted(found)


def extension():
    rel = lambda pattern: sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))
    sources = rel("csrc/*.cpp") + rel("csrc/cpu/*.cpp")
    # -fopenmp where ATen's parallel backend is OpenMP (Linux wheels): at::parallel_for
    # is then inline OpenMP (ATen/ParallelOpenMP.h), and without the flag every CPU
    # kernel's loop runs on one thread, whatever torch.get_num_threads() says.
    openmp = "parallel backend: OpenMP" in torch.__config__.parallel_info()
    cxx = ["-O3", "-fdiagnostics-color=always"] + (["-fopenmp"] if openmp else [])
    link = ["-fopenmp"] if openmp else []
    if use_cuda():
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
        nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
        return CUDAExtension(
            "torch_plugin._C",
            sources + rel("cuda/*.cu"),
            include_dirs=pip_cuda_includes(),
            extra_compile_args={"cxx": cxx + ["-DNACA_WITH_CUDA"], "nvcc": nvcc + ["-DNACA_WITH_CUDA"]},
            extra_link_args=link,
        )
    return CppExtension("torch_plugin._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link)


setup(
    name="torch_plugin",
    version="0.1.0",
    description="NACA and SBP local learning rules as PyTorch custom operators (CPU and CUDA)",
    packages=find_packages(include=["torch_plugin", "torch_plugin.*"]),
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    python_requires=">=3.9",
    install_requires=["torch>=2.4", "numpy"],
    extras_require={
        "full": ["tqdm", "matplotlib", "scikit-learn"],
        "test": ["pytest", "hypothesis", "scikit-learn", "tqdm", "matplotlib"],
    },
    entry_points={"console_scripts": ["torch-plugin-compare=torch_plugin.compare:main"]},
)
