import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import torch_plugin  # noqa: F401  (loads the ops)

CUDA = torch.cuda.is_available()
DEVICES = ["cpu"] + (["cuda"] if CUDA else [])


def dtypes_for(device):
    base = [torch.float32, torch.float64]
    return base + ([torch.float16, torch.bfloat16] if device == "cuda" else [])


DEVICE_DTYPES = [(d, t) for d in DEVICES for t in dtypes_for(d)]


def tol(dtype):
    """(rtol, atol) for comparing an op in `dtype` against the float64 reference."""
    return {
        torch.float64: (1e-10, 1e-10),
        torch.float32: (1e-4, 1e-5),
        torch.float16: (2e-2, 2e-2),
        torch.bfloat16: (6e-2, 6e-2),
    }[dtype]


def pytest_report_header(config):
    return f"torch {torch.__version__}; CUDA tests {'run' if CUDA else 'skipped (no GPU)'}"


class NoNacaOps(TorchDispatchMode):
    """Fails if anything inside the block dispatches a torch.ops.naca.* op: a reference path must be
    plain PyTorch (ref.* and torch), independent of the kernels under test."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        assert func.namespace != "naca", f"the reference path called {func}"
        return func(*args, **(kwargs or {}))
