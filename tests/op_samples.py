"""Sample arguments for every ``torch.ops.naca`` op, in one table.

SAMPLES maps an op name to a list of factories ``f(device) -> (args, kwargs)``.
tests/test_opcheck.py runs ``torch.library.opcheck`` on each of them and fails
when an op registered in ``torch.ops.naca`` has no entry here: a new op must
append its samples (a few shapes, with and without optional tensors, every
string option worth covering). tests/test_hostile.py starts from the same
samples. Factories draw from their own seeded generator, so they are
deterministic and independent of the global RNG.
"""
from __future__ import annotations

from typing import Callable

import torch

Sample = Callable[[str], tuple[tuple, dict]]
SAMPLES: dict[str, list[Sample]] = {}


def sample(op: str):
    """Decorator: register a sample factory for ``naca::<op>``."""
    def add(fn: Sample) -> Sample:
        SAMPLES.setdefault(op, []).append(fn)
        return fn
    return add


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _r(g, *shape, dtype=torch.float32, device="cpu"):
    return torch.randn(*shape, generator=g, dtype=dtype).to(device)


def _u(g, *shape, dtype=torch.float32, device="cpu"):
    return torch.rand(*shape, generator=g, dtype=dtype).to(device)


def _labels(g, b, n, device):
    return torch.randint(0, n, (b,), generator=g).to(device)


# --- read-only ops ----------------------------------------------------------

@sample("expectation_matrix")
def _(device):
    return (10,), dict(dtype=torch.float32, device=torch.device(device))


@sample("expectation_matrix")
def _(device):
    return (3,), dict(dtype=torch.float64, device=torch.device(device))


@sample("neuromodulator")
def _(device):
    g = _gen(1)
    return (_labels(g, 5, 10, device), _u(g, 20, 7, device=device)), {}


@sample("neuromodulator")
def _(device):  # unchecked labels, one out of range (its row is zero)
    g = _gen(3)
    labels = _labels(g, 4, 5, device)
    labels[3] = 7
    return (labels, _u(g, 10, 6, device=device)), {"check_labels": False}


@sample("neuromodulator")
def _(device):
    g = _gen(2)
    return (_labels(g, 3, 4, device), _u(g, 8, 2, 3, 3, dtype=torch.float64, device=device)), {}


@sample("modulation")
def _(device):
    g = _gen(3)
    return (_u(g, 4, 6, device=device) * 2,), dict(lam=0.5, theta=1.2)


@sample("modulation")
def _(device):
    g = _gen(4)
    return (_u(g, 2, 3, 5, dtype=torch.float64, device=device), 0.3, 0.8), {}


@sample("modulation")
def _(device):  # non-contiguous input: the output is contiguous (the fake kernel must agree)
    g = _gen(22)
    return (_u(g, 6, 4, device=device).t(),), {}


@sample("neuromodulator")
def _(device):  # non-contiguous NI
    g = _gen(23)
    return (_labels(g, 4, 5, device), _u(g, 7, 10, device=device).t()), {}


# --- linear updates -------------------------------------------------------

def _linear(seed, b, i, h, dtype, device, bias=True):
    g = _gen(seed)
    return (g, _r(g, h, i, dtype=dtype, device=device), _r(g, h, dtype=dtype, device=device) if bias else None,
            _r(g, b, i, dtype=dtype, device=device), _r(g, b, h, dtype=dtype, device=device))


@sample("plasticity_update_")
def _(device):
    g, w, bias, pre, z = _linear(5, 4, 3, 5, torch.float32, device)
    return (w, bias, pre, z, _r(g, 4, 5, device=device), "tanh", 0.1), {}


@sample("plasticity_update_")
def _(device):
    g, w, bias, pre, z = _linear(6, 7, 6, 2, torch.float64, device, bias=False)
    return (w, bias, pre, z, _r(g, 7, 2, dtype=torch.float64, device=device), "sigmoid", -1.0), {}


@sample("plasticity_update_")
def _(device):
    g, w, bias, pre, z = _linear(7, 3, 4, 4, torch.float32, device)
    return (w, bias, pre, z, _r(g, 3, 4, device=device), "relu", 0.01), {}


@sample("plasticity_update_")
def _(device):  # non-contiguous read-only inputs are accepted (the weight must be contiguous)
    g, w, bias, pre, z = _linear(24, 5, 3, 4, torch.float32, device)
    return (w, bias, _r(g, 3, 5, device=device).t(), _r(g, 4, 5, device=device).t(),
            _r(g, 4, 5, device=device).t(), "tanh", 0.1), {}


@sample("naca_hidden_update_")
def _(device):
    g, w, bias, pre, z = _linear(8, 6, 5, 4, torch.float32, device)
    return (w, bias, pre, z, _labels(g, 6, 10, device), _u(g, 20, 4, device=device), "tanh", 0.05), {}


@sample("naca_hidden_update_")
def _(device):
    g, w, bias, pre, z = _linear(9, 3, 2, 3, torch.float64, device, bias=False)
    return (w, bias, pre, z, _labels(g, 3, 3, device), _u(g, 6, 3, dtype=torch.float64, device=device),
            "identity", 0.2, 0.4, 1.5), {}


@sample("plasticity_update_")
def _(device):  # preact holds act(z)
    g, w, bias, pre, z = _linear(26, 4, 3, 5, torch.float32, device)
    return (w, bias, pre, z.tanh(), _r(g, 4, 5, device=device), "tanh", 0.1), {"from_output": True}


@sample("naca_hidden_update_")
def _(device):  # preact holds act(z)
    g, w, bias, pre, z = _linear(27, 6, 5, 4, torch.float64, device)
    return (w, bias, pre, z.sigmoid(), _labels(g, 6, 10, device), _u(g, 20, 4, dtype=torch.float64, device=device),
            "sigmoid", 0.05), {"from_output": True}


@sample("naca_hidden_update_")
def _(device):  # unchecked labels, one out of range (that sample does not learn)
    g, w, bias, pre, z = _linear(30, 6, 5, 4, torch.float32, device)
    labels = _labels(g, 6, 10, device)
    labels[2] = 10
    return (w, bias, pre, z.tanh(), labels, _u(g, 20, 4, device=device), "tanh", 0.05), \
        {"from_output": True, "check_labels": False}


@sample("naca_output_update_")
def _(device):
    g, w, bias, pre, z = _linear(32, 6, 5, 4, torch.float32, device)
    return (w, bias, pre, z, _labels(g, 6, 4, device), 0.1), {}


@sample("naca_output_update_")
def _(device):  # no bias, identity error, float64
    g, w, bias, pre, z = _linear(33, 7, 3, 10, torch.float64, device, bias=False)
    return (w, bias, pre, z, _labels(g, 7, 10, device), 0.5, False), {}


@sample("naca_output_update_")
def _(device):  # unchecked labels, one out of range
    g, w, bias, pre, z = _linear(34, 5, 4, 3, torch.float32, device)
    labels = _labels(g, 5, 3, device)
    labels[1] = -1
    return (w, bias, pre, z, labels, 0.1), {"check_labels": False}


# --- conv updates -----------------------------------------------------------

def _conv(seed, dtype, device, cin=2, cout=4, k=3, hw=6, stride=1, pad=1, dil=1, groups=1, bias=True):
    g = _gen(seed)
    w = _r(g, cout, cin // groups, k, k, dtype=dtype, device=device)
    x = _r(g, 3, cin, hw, hw, dtype=dtype, device=device)
    ho = (hw + 2 * pad - dil * (k - 1) - 1) // stride + 1
    z = _r(g, 3, cout, ho, ho, dtype=dtype, device=device)
    b = _r(g, cout, dtype=dtype, device=device) if bias else None
    return g, w, b, x, z, [stride, stride], [pad, pad], [dil, dil], groups


@sample("conv_plasticity_update_")
def _(device):
    g, w, b, x, z, s, p, d, gr = _conv(10, torch.float32, device)
    return (w, b, x, z, _r(g, *z.shape, device=device), s, p, d, gr, "tanh", 0.1), {}


@sample("conv_plasticity_update_")
def _(device):
    g, w, b, x, z, s, p, d, gr = _conv(11, torch.float64, device, cin=4, stride=2, pad=0, dil=1, groups=2,
                                       bias=False)
    return (w, b, x, z, _r(g, *z.shape, dtype=torch.float64, device=device), s, p, d, gr, "relu", 0.5), {}


@sample("naca_conv_update_")
def _(device):
    g, w, b, x, z, s, p, d, gr = _conv(12, torch.float32, device)
    ni = _u(g, 20, *z.shape[1:], device=device)
    return (w, b, x, z, _labels(g, 3, 10, device), ni, s, p, d, gr, "tanh", 0.1), {}


@sample("naca_conv_update_")
def _(device):
    g, w, b, x, z, s, p, d, gr = _conv(13, torch.float64, device, k=2, hw=5, pad=0, dil=2)
    ni = _u(g, 6, *z.shape[1:], dtype=torch.float64, device=device)
    return (w, b, x, z, _labels(g, 3, 3, device), ni, s, p, d, gr, "sigmoid", 0.1, 0.6, 1.0), {}


@sample("conv_plasticity_update_")
def _(device):  # preact holds act(z)
    g, w, b, x, z, s, p, d, gr = _conv(28, torch.float32, device)
    return (w, b, x, z.relu(), _r(g, *z.shape, device=device), s, p, d, gr, "relu", 0.1), {"from_output": True}


@sample("naca_conv_update_")
def _(device):  # preact holds act(z)
    g, w, b, x, z, s, p, d, gr = _conv(29, torch.float32, device)
    ni = _u(g, 20, *z.shape[1:], device=device)
    return (w, b, x, z.tanh(), _labels(g, 3, 10, device), ni, s, p, d, gr, "tanh", 0.1), {"from_output": True}


@sample("naca_conv_update_")
def _(device):  # unchecked labels
    g, w, b, x, z, s, p, d, gr = _conv(31, torch.float32, device)
    ni = _u(g, 20, *z.shape[1:], device=device)
    return (w, b, x, z.tanh(), _labels(g, 3, 10, device), ni, s, p, d, gr, "tanh", 0.1), \
        {"from_output": True, "check_labels": False}


# --- spiking ops and SBP (helper-1's ops; samples mirror tests/test_snn.py etc.) ---

def _spikes(g, *shape, device="cpu"):
    return (torch.rand(*shape, generator=g) > 0.6).float().to(device)


@sample("lif_forward")
def _(device):
    g = _gen(14)
    return (_u(g, 4, 3, 5, device=device), 0.2, 0.5, "hard", None, None), {}


@sample("lif_forward")
def _(device):
    g = _gen(15)
    return (_u(g, 4, 3, 5, device=device), 0.5, 0.4, "soft", torch.zeros(3, 5, device=device),
            torch.ones(3, 5, device=device)), {}


@sample("lif_forward")
def _(device):  # non-contiguous current: the outputs are contiguous
    g = _gen(25)
    return (_u(g, 4, 5, 3, device=device).transpose(1, 2), 0.2, 0.5, "hard", None, None), {}


@sample("naca_snn_update_")
def _(device):
    g = _gen(16)
    s, v = torch.ops.naca.lif_forward(_u(g, 4, 3, 5, device=device), 0.2, 0.5, "hard", None, None)
    return (_r(g, 5, 6, device=device), torch.zeros(5, device=device), _spikes(g, 4, 3, 6, device=device),
            v, s, _r(g, 3, 5, device=device), 0.5, 0.5, 0.01, True), {}


@sample("naca_snn_update_")
def _(device):
    g = _gen(17)
    s, v = torch.ops.naca.lif_forward(_u(g, 3, 2, 4, device=device), 0.2, 0.5, "hard", None, None)
    return (_r(g, 4, 5, device=device), None, _spikes(g, 3, 2, 5, device=device), v, s, _r(g, 2, 4, device=device),
            0.5, 0.2, 0.1, False), {}


@sample("naca_snn_chain_update_")
def _(device):
    g = _gen(36)
    s, v = torch.ops.naca.lif_forward(_u(g, 5, 3, 4, device=device), 0.2, 0.5, "hard", None, None)
    return (_r(g, 4, 6, device=device), torch.zeros(4, device=device), _spikes(g, 5, 3, 6, device=device),
            v, s, _r(g, 3, 4, device=device), 0.2, 0.5, 0.2, "hard", "sigmoid", 0.01), {}


@sample("naca_snn_chain_update_")
def _(device):
    g = _gen(37)
    s, v = torch.ops.naca.lif_forward(_u(g, 3, 2, 4, device=device), 0.5, 0.4, "soft", None, None)
    return (_r(g, 4, 5, device=device), None, _spikes(g, 3, 2, 5, device=device), v, s, _r(g, 2, 4, device=device),
            0.5, 0.4, 0.5, "soft", "linear", 0.1), {}


@sample("stdp_update_")
def _(device):
    g = _gen(18)
    return (_u(g, 6, 4, device=device), _spikes(g, 5, 3, 4, device=device), _spikes(g, 5, 3, 6, device=device),
            20.0, 20.0, 0.01, 0.012, 0.0, 1.0, "hard", None, 1.0, 1.0), {}


@sample("stdp_update_")
def _(device):
    g = _gen(19)
    return (_u(g, 6, 4, device=device), _spikes(g, 5, 3, 4, device=device), _spikes(g, 5, 3, 6, device=device),
            10.0, 15.0, 0.02, 0.01, 0.0, 1.0, "soft", _u(g, 3, 6, device=device), 0.5, 1.0), {}


@sample("stp_forward")
def _(device):
    g = _gen(30)
    return (_spikes(g, 5, 3, 4, device=device),), {}


@sample("stp_forward")
def _(device):
    g = _gen(31)
    return (_u(g, 1, 2, 6, dtype=torch.float64, device=device), 0.2, 50.0, 5.0, 3.0, 2.0), {}


@sample("stp_forward")
def _(device):  # non-contiguous spikes: the output is contiguous
    g = _gen(32)
    return (_spikes(g, 4, 5, 3, device=device).transpose(1, 2),), dict(U=0.8, tau_d=20.0)


@sample("homeostatic_relax")
def _(device):
    g = _gen(33)
    return (_u(g, 4, 5, device=device), _r(g, 4, 5, device=device)), {}


@sample("homeostatic_relax")
def _(device):
    g = _gen(34)
    return (_u(g, 2, 3, 4, dtype=torch.float64, device=device), _r(g, 2, 3, 4, dtype=torch.float64, device=device),
            0.3, 7), {}


@sample("homeostatic_relax")
def _(device):  # non-contiguous state: the output is contiguous
    g = _gen(35)
    return (_u(g, 6, 3, device=device).t(), _r(g, 3, 6, device=device)), dict(eps=0.9, iters=0)


def _sbp(seed, device, mask):
    g = _gen(seed)
    h, i, o = 5, 7, 3
    m = (torch.rand(h, i, generator=g) > 0.5).to(device) if mask else None
    return (_r(g, h, i, dtype=torch.float64, device=device), _r(g, o, h, dtype=torch.float64, device=device),
            _r(g, h, i, dtype=torch.float64, device=device), _r(g, o, h, dtype=torch.float64, device=device),
            m, 0.2, 0.1, 0.05), {}


@sample("sbp_update_")
def _(device):
    return _sbp(20, device, mask=True)


@sample("sbp_update_")
def _(device):
    return _sbp(21, device, mask=False)


def registered_ops() -> list[str]:
    """Every op name in the ``naca`` namespace (without the prefix)."""
    return sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("naca::"))
