"""Builds torch_plugin's compiled library with CMake: libnaca, the `naca` operators
(CPU always, CUDA when available), from the same CMakeLists.txt as a plain CMake
build, installed into the package (docs/cpp.md):

    torch_plugin/lib/libnaca.so                      loaded by `import torch_plugin`
    torch_plugin/include/naca/*.h                    the C++ API
    torch_plugin/share/cmake/TorchPluginNaca/        find_package(TorchPluginNaca), via
                                                     torch_plugin.cmake_prefix_path

Environment switches:
  TORCH_PLUGIN_CUDA=1|0|auto  force the CUDA kernels on or off (default auto: on
                              when nvcc is found and torch was built with CUDA).
  TORCH_CUDA_ARCH_LIST        GPU architectures (default: the visible GPUs', or
                              "9.0" when none is visible, e.g. in CI).
  MAX_JOBS                    parallel compile jobs.
  TORCH_PLUGIN_BUILD_DIR      the CMake build folder (default build-cmake/). It is
                              kept, so a rerun on an unchanged tree builds nothing;
                              .ci/test.sh's GoogleTest step builds in it too.
"""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

# torch finds CUDA_HOME from the nvcc on PATH; a wrapper script there (as
# /usr/local/bin/nvcc here) points it at a folder with no libcudart. Prefer the
# standard toolkit location when it is complete.
if not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")):
    for _home in ("/usr/local/cuda",):
        if os.path.exists(os.path.join(_home, "bin", "nvcc")) and glob.glob(os.path.join(_home, "lib*", "libcudart.so")):
            os.environ["CUDA_HOME"] = _home
            break

import torch  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME  # noqa: E402

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


def cmake_executable() -> str:
    found = shutil.which("cmake")
    if found is None:
        raise RuntimeError("building torch_plugin needs CMake >= 3.18 on PATH (apt-get install cmake, "
                           "or pip install cmake)")
    return found


def cached_generator(build_dir: str):
    """The generator an existing build folder was configured with, or None."""
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("CMAKE_GENERATOR:"):
                    return line.split("=", 1)[1].strip()
    except OSError:
        return None
    return None


class CMakeBuild(build_ext):
    """Configure, build and install libnaca into the package (the source tree's with
    --inplace and editable installs, else build_lib's, from which the wheel is made)."""

    def run(self):
        cmake = cmake_executable()
        build_dir = os.path.abspath(os.environ.get("TORCH_PLUGIN_BUILD_DIR", os.path.join(ROOT, "build-cmake")))
        package_dir = os.path.join(ROOT if self.inplace else os.path.abspath(self.build_lib), "torch_plugin")
        cuda = use_cuda()
        configure = [
            cmake, "-S", ROOT, "-B", build_dir,
            f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
            f"-DNACA_CUDA={'ON' if cuda else 'OFF'}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DCMAKE_INSTALL_LIBDIR=lib",
            "-DCMAKE_INSTALL_INCLUDEDIR=include",
        ]
        if cached_generator(build_dir) is None:
            # A first configure: no GoogleTest needed (.ci/test.sh turns the tests on).
            configure.append("-DNACA_BUILD_TESTS=OFF")
            if shutil.which("ninja"):
                configure += ["-G", "Ninja"]
        if cuda:
            configure += [f"-DCUDA_TOOLKIT_ROOT_DIR={CUDA_HOME}",
                          f"-DCMAKE_CUDA_COMPILER={os.path.join(CUDA_HOME, 'bin', 'nvcc')}"]
        jobs = os.environ.get("MAX_JOBS") or str(os.cpu_count() or 1)
        subprocess.check_call(configure)
        subprocess.check_call([cmake, "--build", build_dir, "--target", "naca_shared", "--parallel", jobs])
        subprocess.check_call([cmake, "--install", build_dir, "--prefix", package_dir, "--component", "naca"])
        self._installed = self._manifest(build_dir)
        # A torch_plugin._C from an older build registers the `naca` namespace a second time.
        for stale in glob.glob(os.path.join(package_dir, "_C.*.so")) + glob.glob(os.path.join(package_dir, "_C.so")):
            os.remove(stale)

    @staticmethod
    def _manifest(build_dir):
        path = os.path.join(build_dir, "install_manifest_naca.txt")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [line.strip() for line in f if line.strip()]

    def get_outputs(self):
        return list(getattr(self, "_installed", []))

    def get_output_mapping(self):
        return {}


setup(
    name="torch_plugin",
    version="0.1.0",
    description="NACA and SBP local learning rules as PyTorch custom operators (CPU and CUDA)",
    packages=find_packages(include=["torch_plugin", "torch_plugin.*"]),
    # One entry stands for the whole CMake build (CMakeBuild); it also marks the wheel
    # as platform-specific.
    ext_modules=[Extension("torch_plugin.lib.libnaca", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=["torch>=2.4", "numpy"],
    extras_require={
        "full": ["tqdm", "matplotlib", "scikit-learn"],
        "test": ["pytest", "hypothesis", "scikit-learn", "tqdm", "matplotlib"],
    },
    entry_points={"console_scripts": ["torch-plugin-compare=torch_plugin.compare:main"]},
)
