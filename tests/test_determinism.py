"""Determinism: the same seed gives bit-identical training on CPU; every op gives
bit-identical results twice in a row under torch.use_deterministic_algorithms(True)
(on CUDA in a subprocess with CUBLAS_WORKSPACE_CONFIG=:4096:8).

None of the plugin's CUDA kernels uses atomics or shared-memory reductions
(each thread writes its own elements; the LIF and trace kernels loop over time
inside one thread); the reductions are cuBLAS GEMMs (addmm_/mm), ATen sums and
the cuDNN conv weight gradient (convolution_backward), which PyTorch makes
deterministic in deterministic mode.
"""
import os
import subprocess
import sys

import pytest
import torch

from conftest import CUDA
from op_samples import SAMPLES
from torch_plugin import learn, models


def train(kind, seed):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    if kind == "mlp":
        model, shape = models.mlp(10, [16, 8], 4), (10,)
        learner = learn.NACA(model, lr=0.05)
    elif kind == "mlp-adam":
        model, shape = models.mlp(10, [16, 8], 4), (10,)
        learner = learn.NACA(model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2))
    elif kind == "conv":
        model, shape = models.conv_net((1, 8, 8), 4, channels=(3,), hidden=10), (1, 8, 8)
        learner = learn.NACA(model, lr=0.05)
    elif kind == "spiking":  # the encoder draws from torch's global RNG
        model, shape = models.spiking_mlp(10, [12], 4, T=5), (10,)
        learner = learn.NACA(model, lr=0.05)
    else:
        model, shape = models.sbp_ann(10, 12, 4), (10,)
        learner = learn.SBP(model)
    for _ in range(5):
        learner.step(torch.rand(6, *shape, generator=g), torch.randint(0, 4, (6,), generator=g))
    return model.state_dict()


@pytest.mark.parametrize("kind", ["mlp", "mlp-adam", "conv", "spiking", "sbp"])
def test_same_seed_same_weights_cpu(kind):
    a, b, c = train(kind, 0), train(kind, 0), train(kind, 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def run_every_op_twice(device):
    """Every op sample twice from fresh inputs under deterministic mode: bit-identical tensors."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        for name, factories in SAMPLES.items():
            op = getattr(torch.ops.naca, name)
            for make in factories:
                results = []
                for _ in range(2):
                    args, kwargs = make(device)
                    out = op(*args, **kwargs)
                    tensors = [a for a in args if isinstance(a, torch.Tensor)]
                    tensors += list(out) if isinstance(out, (tuple, list)) else [out] if out is not None else []
                    results.append(tensors)
                for x, y in zip(*results):
                    assert torch.equal(x, y), name
    finally:
        torch.use_deterministic_algorithms(previous)


def test_ops_deterministic_mode_cpu():
    run_every_op_twice("cpu")


@pytest.mark.skipif(not CUDA, reason="no GPU")
def test_ops_deterministic_mode_cuda():
    env = dict(os.environ, CUBLAS_WORKSPACE_CONFIG=":4096:8")
    code = "import torch_plugin, test_determinism as t; t.run_every_op_twice('cuda'); print('ok')"
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    env["PYTHONPATH"] = os.pathsep.join([here, root, env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=here, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]
