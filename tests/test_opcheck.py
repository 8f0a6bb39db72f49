"""torch.library.opcheck on every naca op with the samples of tests/op_samples.py.

opcheck runs the op against its schema (mutations declared as (a!) and only
those), its fake kernel (shapes/dtypes/devices of FakeTensor outputs match the
real kernel) and its dispatch registrations (autograd registration, AOT
dispatch for torch.compile). A new op must add samples to op_samples.SAMPLES.
"""
import pytest
import torch

import torch_plugin  # noqa: F401  (loads the ops and their fake kernels)
from conftest import DEVICES
from op_samples import SAMPLES, registered_ops

CASES = [pytest.param(op, i, id=f"{op}-{i}") for op in sorted(SAMPLES) for i in range(len(SAMPLES[op]))]


def test_every_op_has_samples():
    missing = [op for op in registered_ops() if not SAMPLES.get(op)]
    assert not missing, f"add opcheck samples to tests/op_samples.py for: {missing}"


def test_samples_name_real_ops():
    unknown = sorted(set(SAMPLES) - set(registered_ops()))
    assert not unknown, f"op_samples.SAMPLES has entries for ops that do not exist: {unknown}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op,i", CASES)
def test_opcheck(op, i, device):
    args, kwargs = SAMPLES[op][i](device)
    torch.library.opcheck(getattr(torch.ops.naca, op).default, args, kwargs)
