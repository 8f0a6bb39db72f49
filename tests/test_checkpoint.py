"""An interrupted and resumed run ends bit-identical (torch.equal) to an uninterrupted one."""
import random

import numpy as np
import pytest
import torch
from torch import nn

from torch_plugin import checkpoint, learn, models
from torch_plugin.nn import NACALinear, NACAOutput

N, BATCH, EPOCHS, CLASSES = 40, 8, 3, 4
DATA_X = torch.randn(N, 10, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
DATA_Y = torch.randint(0, CLASSES, (N,), generator=torch.Generator().manual_seed(8))


def seed_all(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def build(kind, optimizer):
    if kind == "dropout":  # draws from torch's global RNG in every forward
        model = nn.Sequential(NACALinear(10, 12, CLASSES), nn.Dropout(0.3), NACALinear(12, 9, CLASSES),
                              NACAOutput(9, CLASSES)).double()
        x_shape = (10,)
    else:  # a seeded BernoulliEncoder: its own generator must be saved too
        model = models.spiking_mlp(10, [12], CLASSES, T=4, seed=3).double()
        x_shape = (10,)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2) if optimizer else None
    return model, learn.NACA(model, lr=0.05, optimizer=opt), x_shape


def train(kind, optimizer, stop_at=None, resume_from=None, path=None):
    """Epochs over DATA with a fresh torch.randperm shuffle each epoch, numpy input noise and python
    random batch dropping. stop_at=(epoch, batch): save after that batch and return. resume_from: path."""
    seed_all(0)
    model, learner, _ = build(kind, optimizer)
    start_epoch, start_batch, perm = 0, 0, None
    if resume_from is not None:
        seed_all(999)  # a different process state: everything must come from the checkpoint
        model, learner, _ = build(kind, optimizer)
        extra = checkpoint.load(resume_from, learner=learner)
        start_epoch, start_batch, perm = extra["epoch"], extra["batch"] + 1, extra["perm"]
    for epoch in range(start_epoch, EPOCHS):
        if perm is None:
            perm = torch.randperm(N)
        for b in range(start_batch, N // BATCH):
            idx = perm[b * BATCH:(b + 1) * BATCH]
            noise = torch.from_numpy(np.random.normal(0, 0.1, (BATCH, 10)))
            x = DATA_X[idx] + noise
            x = x.sigmoid() if kind == "spiking" else x
            if random.random() < 0.2:  # python RNG decides to skip a batch
                continue
            learner.step(x, DATA_Y[idx])
            if stop_at == (epoch, b):
                checkpoint.save(path, learner=learner, extra={"epoch": epoch, "batch": b, "perm": perm})
                return model, learner
        perm, start_batch = None, 0
    return model, learner


@pytest.mark.parametrize("kind,optimizer", [("dropout", False), ("dropout", True), ("spiking", False)])
def test_resume_is_bit_identical(kind, optimizer, tmp_path):
    path = tmp_path / "ckpt.pt"
    full, full_learner = train(kind, optimizer)
    train(kind, optimizer, stop_at=(1, 2), path=path)  # interrupted mid-epoch
    resumed, resumed_learner = train(kind, optimizer, resume_from=path)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed_learner.steps == full_learner.steps
    if optimizer:
        sa, sb = full_learner.optimizer.state_dict()["state"], resumed_learner.optimizer.state_dict()["state"]
        assert all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)


def test_rng_state_roundtrip_with_named_generator(tmp_path):
    g = torch.Generator().manual_seed(5)
    seed_all(1)
    model = models.mlp(4, [3], 3)
    checkpoint.save(tmp_path / "c.pt", model=model, generators={"loader": g}, extra=[1, 2])
    expect = (torch.rand(3), np.random.rand(), random.random(), torch.rand(2, generator=g))
    seed_all(2)
    g.manual_seed(6)
    assert checkpoint.load(tmp_path / "c.pt", model=model, generators={"loader": g}) == [1, 2]
    got = (torch.rand(3), np.random.rand(), random.random(), torch.rand(2, generator=g))
    assert torch.equal(got[0], expect[0]) and got[1] == expect[1] and got[2] == expect[2]
    assert torch.equal(got[3], expect[3])


def test_load_rejects_missing_parts(tmp_path):
    model = models.mlp(4, [3], 3)
    checkpoint.save(tmp_path / "m.pt", model=model)
    with pytest.raises(ValueError, match="no learner"):
        checkpoint.load(tmp_path / "m.pt", learner=learn.NACA(model))
    with pytest.raises(RuntimeError):  # a different architecture
        checkpoint.load(tmp_path / "m.pt", model=models.mlp(4, [5], 3))


def test_load_warns_about_generators_not_passed(tmp_path):
    g = torch.Generator().manual_seed(5)
    model = models.mlp(4, [3], 3)
    checkpoint.save(tmp_path / "c.pt", model=model, generators={"loader": g})
    with pytest.warns(UserWarning, match="'loader'"):
        checkpoint.load(tmp_path / "c.pt", model=model)


def test_encoder_unused_at_save_is_reseeded_at_load(tmp_path):
    """Saved before the seeded encoder's first draw, loaded into a model whose encoder has drawn since
    (an evaluation pass): its next draws are those of a fresh encoder, as in the saved run."""
    model = models.spiking_mlp(6, [5], 3, T=4, seed=2)
    x = torch.rand(3, 6, generator=torch.Generator().manual_seed(0))
    checkpoint.save(tmp_path / "c.pt", model=model)
    expect = model[0](x)  # the saved run's first draw
    model[0](x)  # more draws after the save
    checkpoint.load(tmp_path / "c.pt", model=model)
    assert torch.equal(model[0](x), expect)
