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


def test_cpu_loops_give_the_same_bits_for_any_thread_count():
    """The CPU kernels' loops split over threads (at::parallel_for) with each thread
    writing its own elements: 1 and 2 threads give the same bits. Sizes are above one
    parallel task and not a multiple of a vector, so the splits and remainders differ.
    The test sets the thread counts itself, so it runs under OMP_NUM_THREADS=1 too."""
    from torch_plugin import ops
    g = torch.Generator().manual_seed(0)
    n = 3 * 32768 + 13
    level = torch.rand(n, generator=g)
    labels = torch.randint(0, 10, (67,), generator=g)
    ni = torch.rand(20, 1501, generator=g)
    current = 0.8 * torch.rand(3, 41, 1601, generator=g)
    spikes = (torch.rand(3, 41, 1601, generator=g) < 0.3).float()
    state, drive = torch.rand(41, 1601, generator=g), torch.rand(41, 1601, generator=g)
    calls = {
        "modulation": lambda: ops.modulation(level),
        "neuromodulator": lambda: ops.neuromodulator(labels, ni),
        "lif_forward": lambda: ops.lif_forward(current, 0.2, 0.5),
        "stp_forward": lambda: ops.stp_forward(spikes),
        "homeostatic_relax": lambda: ops.homeostatic_relax(state, drive, 0.5, 7),
    }
    threads = torch.get_num_threads()
    try:
        for name, call in calls.items():
            torch.set_num_threads(1)
            assert torch.get_num_threads() == 1
            one = call()
            torch.set_num_threads(2)
            assert torch.get_num_threads() == 2
            two = call()
            for a, b in zip(one if isinstance(one, tuple) else [one], two if isinstance(two, tuple) else [two]):
                assert torch.equal(a, b), name
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif("parallel backend: OpenMP" not in torch.__config__.parallel_info(),
                    reason="ATen's parallel backend is not OpenMP here")
def test_cpu_loops_are_built_with_openmp():
    """at::parallel_for is inline OpenMP with this torch: an extension compiled without
    -fopenmp has no GOMP_parallel call and runs every CPU loop on one thread, which no
    result test would notice, since one thread gives the same results."""
    import torch_plugin
    with open(torch_plugin.library_path, "rb") as f:
        assert b"GOMP_parallel" in f.read()
