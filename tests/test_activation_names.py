"""The activation names are one list: ``ops.ACTIVATIONS`` in Python, and the names the C++ side
takes (the ops' ``parse_activation`` in csrc/checks.h, whose error lists them; the C++ layers'
``naca::nn::activations()`` in csrc/api/nn/layers.cpp). The Python layers, the reference and the
compare CLI take theirs from ``ops.ACTIVATIONS``."""
import re
from pathlib import Path

import pytest
import torch

from torch_plugin import ops, reference as ref
from torch_plugin.compare.cli import build_parser
from torch_plugin.nn import NACALinear
from torch_plugin.nn.common import ACTIVATION_FNS, ACTIVATION_FNS_INPLACE, NACA_ACTIVATIONS

ROOT = Path(__file__).resolve().parents[1]


def plasticity_call(activation):
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(3, 4, generator=g), torch.zeros(3)
    pre, z, sig = torch.randn(2, 4, generator=g), torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    before = w.clone()
    torch.ops.naca.plasticity_update_(w, b, pre, z, sig, activation, 0.1)
    return before, w


def test_the_ops_error_lists_exactly_the_python_names():
    with pytest.raises(RuntimeError, match="argument 'activation' expected one of") as e:
        plasticity_call("bogus")
    listed = re.search(r"expected one of (.*), got 'bogus'", str(e.value)).group(1)
    assert tuple(re.findall(r"'([a-z]+)'", listed)) == ops.ACTIVATIONS


@pytest.mark.parametrize("name", ops.ACTIVATIONS)
def test_the_ops_take_every_python_name(name):
    before, w = plasticity_call(name)
    assert not torch.equal(before, w)  # (a random signal moves the weight under every activation)


def cpp_source(path):
    text = (ROOT / path).read_text()
    return re.sub(r"//[^\n]*", "", text)  # comments name activations too


def test_the_cpp_parser_names_are_the_python_names():
    """csrc/checks.h: every name parse_activation compares against is a Python name or an alias of
    identity, and each of the four enum values has its Python name."""
    src = cpp_source("csrc/checks.h")
    body = re.search(r"Activation parse_activation\(.*?\n\}", src, re.S).group(0)
    pairs = [(n, kind) for cond, kind in re.findall(r"if \(([^)]*)\) return Activation::(\w+);", body)
              for n in re.findall(r'"([a-z]+)"', cond)]
    names = {n: kind for n, kind in pairs}
    assert set(ops.ACTIVATIONS) <= set(names), names
    assert {names[n] for n in ops.ACTIVATIONS} == {"Identity", "Tanh", "Sigmoid", "Relu"}
    assert all(kind == "Identity" for n, kind in names.items() if n not in ops.ACTIVATIONS), names
    enum = re.search(r"enum class Activation[^{]*\{([^}]*)\}", cpp_source("csrc/naca_math.h")).group(1)
    assert len(re.findall(r"\b[A-Z]\w*\s*=", enum)) == len(ops.ACTIVATIONS)


def test_the_cpp_layers_lists_are_the_python_lists():
    src = cpp_source("csrc/api/nn/layers.cpp")

    def listed(fn):
        body = re.search(r"\b" + fn + r"\(\) \{(.*?)\n\}", src, re.S).group(1)
        return tuple(re.findall(r'"([a-z]+)"', body))

    assert listed("activations") == ops.ACTIVATIONS
    assert listed("naca_activations") == NACA_ACTIVATIONS


def test_python_users_take_the_one_list():
    assert tuple(ACTIVATION_FNS) == tuple(ACTIVATION_FNS_INPLACE) == ops.ACTIVATIONS
    assert set(NACA_ACTIVATIONS) < set(ops.ACTIVATIONS)
    z = torch.linspace(-2, 2, 9, dtype=torch.float64)
    for name in ops.ACTIVATIONS:
        NACALinear(4, 3, 2, activation=name)
        torch.testing.assert_close(ACTIVATION_FNS_INPLACE[name](z.clone()), ACTIVATION_FNS[name](z))
        assert ref.activation_grad(z, name).shape == z.shape
    with pytest.raises(ValueError, match="argument 'activation'"):
        NACALinear(4, 3, 2, activation="gelu")
    choices = next(a.choices for a in build_parser()._actions if a.dest == "activation")
    assert tuple(choices) == ops.ACTIVATIONS
