"""torch_plugin: NACA and SBP local learning for PyTorch models.

Importing the package loads the compiled operators (``torch.ops.naca.*``) and
registers their fake kernels. See ``torch_plugin.ops`` for the typed wrappers,
``torch_plugin.nn`` for drop-in layers and ``torch_plugin.learn`` for learners
that replace ``loss.backward()``.

The operators live in one shared library, ``library_path`` (libnaca), which is
also the library of the C++ API: a CMake project finds it with
``-DCMAKE_PREFIX_PATH=<torch_plugin.cmake_prefix_path>`` and
``find_package(TorchPluginNaca)`` (docs/cpp.md). The ``naca`` namespace is
registered once per process: when a C++ host has already loaded a libnaca,
importing the package uses it instead of loading its own copy.
"""
import os
import sys

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))

#: The package's compiled library, libnaca: what ``import torch_plugin`` loads, unless the process
#: has registered the ``naca`` ops already (a C++ host linked against another copy).
library_path = os.path.join(_HERE, "lib", "libnaca.dylib" if sys.platform == "darwin" else "libnaca.so")

#: The folder to pass to CMake as ``-DCMAKE_PREFIX_PATH`` for ``find_package(TorchPluginNaca)``,
#: as ``torch.utils.cmake_prefix_path`` is for ``find_package(Torch)``.
cmake_prefix_path = os.path.join(_HERE, "share", "cmake")


def _naca_registered() -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw("naca::modulation", "")
    except RuntimeError:
        return False
    return True


def _load_library() -> None:
    if _naca_registered():  # a C++ host (or an earlier load) registered the ops: one registration per process
        return
    if not os.path.exists(library_path):
        raise ImportError(
            f"torch_plugin: the compiled library {library_path} is missing; build it with "
            "`pip install --no-build-isolation -e .` or `python setup.py build_ext --inplace`"
        )
    torch.ops.load_library(library_path)


_load_library()

from . import ops  # noqa: E402,F401  (fake kernels)

__version__ = "0.1.0"


def built_with_cuda() -> bool:
    """Whether the CUDA kernels were compiled into this build."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("naca::modulation", "CUDA")


__all__ = ["ops", "built_with_cuda", "library_path", "cmake_prefix_path", "__version__"]
