"""The NACA learner's own argument checks: a clear error naming the argument, what was expected and
what came, at the earliest point (the constructor where it can), and nothing changed."""
import copy
import math
import warnings

import pytest
import torch

from torch_plugin import models
from torch_plugin.learn import NACA


def mlp():
    torch.manual_seed(0)
    return models.mlp(6, [5], 3, seed=0)


@pytest.mark.parametrize("kw,match", [
    ({"lr": -0.1}, r"lr must be a finite number >= 0, got -0.1"),
    ({"lr": math.nan}, r"lr must be a finite number >= 0, got nan"),
    ({"lr": math.inf}, r"lr must be a finite number >= 0, got inf"),
    ({"lam": 0.0}, r"lam must be a finite number > 0, got 0.0"),
    ({"lam": math.nan}, r"lam must be a finite number > 0"),
    ({"theta": -math.inf}, r"theta must be a finite number, got -inf"),
])
def test_bad_scalars_are_refused_in_the_constructor(kw, match):
    with pytest.raises(ValueError, match=match):
        NACA(mlp(), **kw)


def test_scalars_of_the_wrong_type_are_refused():
    with pytest.raises(TypeError, match="lr must be a number, got str"):
        NACA(mlp(), lr="0.1")


def test_zero_lr_is_allowed_and_changes_nothing():
    model = mlp()
    before = copy.deepcopy(model.state_dict())
    NACA(model, lr=0.0).step(torch.rand(4, 6), torch.tensor([0, 1, 2, 0]))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_an_optimizer_without_the_trained_parameters_is_refused():
    model, other = mlp(), mlp()
    with pytest.raises(ValueError, match=r"does not hold these parameters the learner trains: "
                                         r"\['1.weight', '1.bias', '2.weight', '2.bias'\]"):
        NACA(model, optimizer=torch.optim.SGD(other.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"trains: \['1.weight', '1.bias'\]"):  # the output layer only
        NACA(model, optimizer=torch.optim.SGD(model[2].parameters(), lr=0.1))
    NACA(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


def test_a_layer_frozen_by_a_zero_lr_param_group_stays_as_it_was():
    model = mlp()
    w = model[1].weight.detach().clone()
    opt = torch.optim.Adam([{"params": model[1].parameters(), "lr": 0.0}, {"params": model[2].parameters()}],
                           lr=1e-2)
    learner = NACA(model, optimizer=opt)
    for _ in range(3):
        learner.step(torch.rand(4, 6), torch.tensor([0, 1, 2, 0]))
    assert torch.equal(model[1].weight, w) and model[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("x,y,exc,match", [
    (torch.rand(3, 6), [0, 1, 2], TypeError, r"y must be a torch.Tensor of int64 labels, shape \(B,\), got list"),
    (torch.rand(3, 6), torch.tensor([0, 1, 2], dtype=torch.int32), ValueError,
     r"y must be int64 labels of shape \(B,\), got torch.int32 \(3,\)"),
    (torch.rand(3, 6), torch.tensor([[0], [1], [2]]), ValueError, r"y must be int64 labels of shape \(B,\), got "
                                                                 r"torch.int64 \(3, 1\)"),
    ([[0.0] * 6] * 3, torch.tensor([0, 1, 2]), TypeError, r"x must be a torch.Tensor batch \(B, ...\), got list"),
    (torch.rand(6), torch.tensor([1]), ValueError, r"x must be a batch \(B, ...\) of 1 sample\(s\), as y, got "
                                                   r"shape \(6,\) \(one sample: x.unsqueeze\(0\)\)"),
    (torch.rand(4, 6), torch.tensor([0, 1, 2]), ValueError, r"x and y must hold as many samples: x \(4, 6\) has 4, "
                                                            r"y \(3,\) has 3"),
])
def test_bad_batches_name_x_or_y(x, y, exc, match):
    model = mlp()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(exc, match=match):
        NACA(model, lr=0.1).step(x, y)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_load_state_dict_warns_when_the_saved_hyper_parameters_replace_the_constructors():
    saved = NACA(mlp(), lr=0.03, lam=0.4).state_dict()
    learner = NACA(mlp(), lr=0.1)
    with pytest.warns(UserWarning, match=r"the saved values replace the learner's: lr 0.1 -> 0.03, lam 0.5 -> 0.4"):
        learner.load_state_dict(saved)
    assert learner.lr == 0.03 and learner.lam == 0.4  # the saved values win
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NACA(mlp(), lr=0.03, lam=0.4).load_state_dict(saved)  # the same values: silent
        model = mlp()
        with_opt = NACA(model, lr=0.5, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
        model2 = mlp()
        state = NACA(model2, optimizer=torch.optim.SGD(model2.parameters(), lr=0.1)).state_dict()
        with_opt.load_state_dict(state)  # with an optimizer the learner's lr is not used: silent


def test_load_state_dict_refuses_a_bad_saved_lr_and_changes_nothing():
    learner = NACA(mlp(), lr=0.1)
    state = learner.state_dict()
    state.update(lr=-1.0, steps=7)
    with pytest.raises(ValueError, match=r"NACA.load_state_dict: lr must be a finite number >= 0, got -1.0"):
        learner.load_state_dict(state)
    assert learner.lr == 0.1 and learner.steps == 0


def test_naca_warns_for_a_relu_hidden_layer_and_not_for_tanh():
    import warnings

    from torch_plugin import models
    from torch_plugin.learn import NACA

    with pytest.warns(UserWarning, match=r"relu.*docs/activations.md") as record:
        NACA(models.mlp(4, [3], 2, activation="relu", seed=0))
    assert record[0].filename == __file__  # points at the user's NACA(...) call
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NACA(models.mlp(4, [3], 2, activation="tanh", seed=0))
