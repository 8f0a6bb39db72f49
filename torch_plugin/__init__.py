"""torch_plugin: NACA and SBP local learning for PyTorch models.

Importing the package loads the compiled operators (``torch.ops.naca.*``) and
registers their fake kernels. See ``torch_plugin.ops`` for the typed wrappers,
``torch_plugin.nn`` for drop-in layers and ``torch_plugin.learn`` for learners
that replace ``loss.backward()``.
"""
import torch  # noqa: F401  (the ops library needs torch's symbols loaded first)

from . import _C  # noqa: F401  (runs the TORCH_LIBRARY registrations)
from . import ops  # noqa: F401  (fake kernels)

__version__ = "0.1.0"


def built_with_cuda() -> bool:
    """Whether the CUDA kernels were compiled into this build."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("naca::modulation", "CUDA")


__all__ = ["ops", "built_with_cuda", "__version__"]
