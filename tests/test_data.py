"""Tests of torch_plugin.data: IDX byte order and dtypes, one normalisation scale for the
IDX train/test splits, signed-integer normalisation, largest-remainder stratified subsets,
and the .npz label checks."""
import gzip
import os

import numpy as np
import pytest
import torch

from torch_plugin import data

_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
          np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def _write_idx(path, arr, gz=False):
    """Write arr as an IDX file; multi-byte types are stored big-endian, as the format says."""
    arr = np.asarray(arr)
    if arr.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder(">"))
    code = _CODES[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(head + arr.tobytes())


def _write_idx_folder(root, xtr, ytr, xte, yte, gz=False):
    sfx = ".gz" if gz else ""
    _write_idx(os.path.join(root, f"train-images-idx3-ubyte{sfx}"), xtr, gz)
    _write_idx(os.path.join(root, f"train-labels-idx1-ubyte{sfx}"), ytr, gz)
    _write_idx(os.path.join(root, f"t10k-images-idx3-ubyte{sfx}"), xte, gz)
    _write_idx(os.path.join(root, f"t10k-labels-idx1-ubyte{sfx}"), yte, gz)


def _images(rng, dtype, shape):
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if dtype.kind == "i":
        info = np.iinfo(dtype)
        lo, hi = max(int(info.min), -30000), min(int(info.max), 30000)
        return rng.integers(lo, hi + 1, shape).astype(dtype)
    return (rng.random(shape) * 6.0 - 2.0).astype(dtype)  # outside [0, 1]: min-max scaled


def _expected(raw):
    """The documented normalisation of the raw train+test values, in float64."""
    a = raw.astype(np.float64)
    if raw.dtype == np.uint8:
        return a / 255.0
    if raw.dtype.kind == "f" and a.min() >= 0 and a.max() <= 1:
        return a
    return (a - a.min()) / (a.max() - a.min())


# --- 1. every IDX type code, big-endian on disk --------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_every_type_code(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    xtr, xte = _images(rng, dtype, (12, 4, 5)), _images(rng, dtype, (6, 4, 5))
    ytr = (np.arange(12) % 3).astype(dtype)
    yte = (np.arange(6) % 3).astype(dtype)
    _write_idx_folder(str(tmp_path), xtr, ytr, xte, yte, gz)

    sfx = ".gz" if gz else ""
    raw = data.read_idx(str(tmp_path / f"train-images-idx3-ubyte{sfx}"))
    assert raw.dtype.isnative and raw.dtype == np.dtype(dtype).newbyteorder("=")
    assert np.array_equal(raw, xtr)
    assert np.array_equal(data.read_idx(str(tmp_path / f"t10k-labels-idx1-ubyte{sfx}")), yte)

    ds = data.load_dataset(str(tmp_path))
    both = _expected(np.concatenate([xtr, xte]))
    assert ds.x_train.dtype == torch.float32 and ds.x_train.shape == (12, 1, 4, 5)
    assert float(ds.x_train.min()) >= 0.0 and float(ds.x_train.max()) <= 1.0
    np.testing.assert_allclose(ds.x_train[:, 0].numpy(), both[:12], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ds.x_test[:, 0].numpy(), both[12:], rtol=0, atol=1e-6)
    assert ds.y_train.dtype == torch.int64 and ds.y_train.tolist() == ytr.astype(int).tolist()
    assert ds.y_test.tolist() == yte.astype(int).tolist() and ds.num_classes == 3

    # the public one-split loader reads every type too (scaled on that split alone)
    x, y = data.load_idx_dir(str(tmp_path), "test")
    np.testing.assert_allclose(x[:, 0].numpy(), _expected(xte), rtol=0, atol=1e-6)
    assert y.tolist() == yte.astype(int).tolist()


# --- 2. one scale for the IDX train and test splits ----------------------------------------------

@pytest.mark.parametrize("as_uint16", [False, True])
def test_idx_splits_share_one_scale(tmp_path, monkeypatch, as_uint16):
    xtr = np.array([[[0, 100], [200, 1000]]] * 4, dtype=np.uint16)  # train max 1000
    xte = np.array([[[0, 100], [200, 500]]] * 2, dtype=np.uint16)   # test max 500
    # IDX has no uint16 code: the files hold int32; with as_uint16 the reader hands back uint16
    # arrays, so the unsigned divide-by-max rule runs through the IDX loader too
    _write_idx_folder(str(tmp_path), xtr.astype(np.int32), np.arange(4, dtype=np.uint8) % 2,
                      xte.astype(np.int32), np.arange(2, dtype=np.uint8) % 2)
    if as_uint16:
        read = data.read_idx
        monkeypatch.setattr(data, "read_idx", lambda p: read(p).astype(np.uint16))
    ds = data.load_dataset(str(tmp_path))
    assert float(ds.x_train[0, 0, 0, 1]) == float(ds.x_test[0, 0, 0, 1])  # raw 100 in both splits
    assert float(ds.x_train[0, 0, 1, 0]) == float(ds.x_test[0, 0, 1, 0])  # raw 200 in both splits
    assert float(ds.x_test[0, 0, 1, 1]) == pytest.approx(0.5)  # raw 500 of a 0..1000 range
    xtr2, _, xte2, _ = data.load_idx_splits(str(tmp_path))
    assert torch.equal(xtr2, ds.x_train) and torch.equal(xte2, ds.x_test)


def test_uint16_shared_scale_through_normalize():
    # the concatenate-then-split path, with a real unsigned 16-bit array
    xtr = np.array([0, 100, 1000], dtype=np.uint16)
    xte = np.array([0, 100, 500], dtype=np.uint16)
    xs = data.normalize(np.concatenate([xtr, xte]))
    assert float(xs[1]) == float(xs[4]) == pytest.approx(0.1) and float(xs[5]) == pytest.approx(0.5)


def test_uint8_and_unit_float_idx_unchanged(tmp_path):
    rng = np.random.default_rng(3)
    xtr, xte = rng.integers(0, 200, (5, 3, 3), dtype=np.uint8), rng.integers(0, 100, (4, 3, 3), dtype=np.uint8)
    _write_idx_folder(str(tmp_path), xtr, np.zeros(5, np.uint8), xte, np.ones(4, np.uint8))
    ds = data.load_dataset(str(tmp_path))
    assert torch.equal(ds.x_train[:, 0], torch.from_numpy(xtr).to(torch.float32) / 255.0)
    assert torch.equal(ds.x_test[:, 0], torch.from_numpy(xte).to(torch.float32) / 255.0)
    ftr, fte = rng.random((5, 3, 3)).astype(np.float32) * 0.5, rng.random((4, 3, 3)).astype(np.float32)
    _write_idx_folder(str(tmp_path), ftr, np.zeros(5, np.uint8), fte, np.ones(4, np.uint8))
    ds = data.load_dataset(str(tmp_path))
    assert torch.equal(ds.x_train[:, 0], torch.from_numpy(ftr)) and torch.equal(ds.x_test[:, 0], torch.from_numpy(fte))


def test_idx_split_shape_mismatch(tmp_path):
    _write_idx_folder(str(tmp_path), np.zeros((3, 4, 4), np.uint8), np.zeros(3, np.uint8),
                      np.zeros((2, 5, 5), np.uint8), np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="train images have shape"):
        data.load_dataset(str(tmp_path))


# --- 3. normalize() -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_normalize_signed_integers_min_max(dtype):
    x = np.array([-100, -50, 0, 27, 100], dtype=dtype)
    out = data.normalize(x)
    assert out.dtype == torch.float32
    assert out.tolist() == pytest.approx([0.0, 0.25, 0.5, 0.635, 1.0])


def test_normalize_signed_extremes_and_constant():
    out = data.normalize(np.array([np.iinfo(np.int32).min, 0, np.iinfo(np.int32).max], dtype=np.int32))
    assert float(out[0]) == 0.0 and float(out[2]) == 1.0 and float(out[1]) == pytest.approx(0.5)
    assert data.normalize(np.full(4, -7, np.int16)).tolist() == [0.0] * 4


def test_normalize_unsigned_and_float_rules():
    u8 = np.array([0, 51, 255, 10], dtype=np.uint8)
    assert torch.equal(data.normalize(u8), torch.from_numpy(u8).to(torch.float32) / 255.0)
    assert data.normalize(np.array([0, 10, 40], dtype=np.uint8)).tolist() == pytest.approx([0, 10 / 255, 40 / 255])
    assert data.normalize(np.array([0, 250, 1000], dtype=np.uint16)).tolist() == pytest.approx([0, 0.25, 1.0])
    assert data.normalize(np.array([5, 10], dtype=np.uint32)).tolist() == pytest.approx([0.5, 1.0])
    f = np.array([0.1, 0.7], dtype=np.float32)
    assert torch.equal(data.normalize(f), torch.from_numpy(f))
    assert data.normalize(np.array([-1.0, 0.0, 3.0])).tolist() == pytest.approx([0.0, 0.25, 1.0])


# --- 4. stratified subsets ------------------------------------------------------------------------

def _old_subset(x, y, n, seed=0):
    """The previous stratified subset (remainder to the largest classes), for regression checks."""
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(len(x), generator=g)
    ys = y[perm]
    classes, counts = torch.unique(ys, return_counts=True)
    quota = (counts.double() * n / len(x)).floor().long()
    rest = n - int(quota.sum())
    quota[torch.argsort(counts, descending=True)[:rest]] += 1
    idx = torch.cat([perm[ys == c][:q] for c, q in zip(classes.tolist(), quota.tolist())])
    idx = idx[torch.randperm(len(idx), generator=g)]
    return x[idx], y[idx]


def _labels_with_counts(counts, seed=0):
    y = torch.cat([torch.full((c,), k, dtype=torch.int64) for k, c in enumerate(counts)])
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]


def test_subset_rare_class_kept():
    y = _labels_with_counts([1000, 1000, 20])
    x = torch.arange(len(y), dtype=torch.float32)
    xs, ys = data.subset(x, y, 50, seed=0)
    assert len(ys) == 50 and torch.bincount(ys, minlength=3).tolist() == [24, 25, 1]
    assert torch.equal(y[xs.long()], ys) and len(set(xs.tolist())) == 50  # real, distinct samples


def test_stratified_quotas_largest_remainder():
    assert data._stratified_quotas([1000, 1000, 20], 50) == [24, 25, 1]
    # 6, 2.5, 1.5: the remainder goes to a largest fractional part, not to the largest class
    assert data._stratified_quotas([60, 25, 15], 10) == [6, 3, 1]
    # 2.8, 1.8, 0.4 -> 3, 2, 0 by Hamilton; every class kept: one taken from the largest quota
    assert data._stratified_quotas([70, 45, 10], 5) == [2, 2, 1]
    # fewer samples than classes: no guarantee, only the apportionment
    assert data._stratified_quotas([50, 30, 20], 2) == [1, 1, 0]
    for counts, n in (([7, 3, 1, 1], 4), ([500, 5, 5, 5, 5], 5), ([13, 29, 31, 2, 1], 17)):
        q = data._stratified_quotas(counts, n)
        assert sum(q) == n and all(0 < a <= c for a, c in zip(q, counts))


@pytest.mark.parametrize("counts,n", [([600] * 10, 100), ([600] * 10, 200), ([300, 300, 600], 40), ([6000] * 10, 10000)])
def test_subset_integer_quotas_match_previous_selection(counts, n):
    y = _labels_with_counts(counts, seed=1)
    x = torch.arange(len(y))
    for seed in (0, 5):
        xa, ya = data.subset(x, y, n, seed=seed)
        xb, yb = _old_subset(x, y, n, seed=seed)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.skipif(not os.path.isdir(data.FASHION_MNIST_DIR), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_unchanged():
    xtr, ytr = data.load_fashion_mnist(split="train")
    ds = data.load_dataset("fashion-mnist")
    assert torch.equal(ds.x_train, xtr) and torch.equal(ds.y_train, ytr)
    raw = data._read_idx_split(data.FASHION_MNIST_DIR, "test")[0]
    assert torch.equal(ds.x_test[:, 0], torch.from_numpy(raw.copy()).to(torch.float32) / 255.0)
    for n in (10000, 20000):
        sub = data.load_dataset("fashion-mnist", n)
        xo, yo = _old_subset(ds.x_train, ds.y_train, n, seed=0)
        assert torch.equal(sub.x_train, xo) and torch.equal(sub.y_train, yo)


# --- 5. .npz label checks -------------------------------------------------------------------------

def test_npz_split_length_mismatch(tmp_path):
    x, y = np.zeros((10, 4), np.float32), np.arange(10) % 2
    np.savez(tmp_path / "a.npz", x_train=x, y_train=y[:9], x_test=x[:3], y_test=y[:3])
    with pytest.raises(ValueError, match=r"a\.npz.*x_train has 10 samples but y_train has 9"):
        data.load_npz(str(tmp_path / "a.npz"))
    np.savez(tmp_path / "b.npz", x_train=x, y_train=y, x_test=x[:3], y_test=y[:4])
    with pytest.raises(ValueError, match=r"b\.npz.*x_test has 3 samples but y_test has 4"):
        data.load_dataset(str(tmp_path / "b.npz"))


def test_npz_one_hot_labels_rejected(tmp_path):
    x, y = np.zeros((10, 4), np.float32), np.arange(10) % 3
    onehot = np.eye(3, dtype=np.float32)[y]
    np.savez(tmp_path / "a.npz", x_train=x, y_train=onehot, x_test=x[:3], y_test=y[:3])
    with pytest.raises(ValueError, match=r"a\.npz.*'y_train'.*\(10, 3\).*class indices"):
        data.load_npz(str(tmp_path / "a.npz"))
    np.savez(tmp_path / "b.npz", x=x, y=onehot)
    with pytest.raises(ValueError, match=r"b\.npz.*'y'.*class indices"):
        data.load_npz(str(tmp_path / "b.npz"))
    # (n, 1) column labels are class indices: accepted
    np.savez(tmp_path / "c.npz", x_train=x, y_train=y[:, None], x_test=x[:3], y_test=y[:3, None])
    xtr, ytr, xte, yte = data.load_npz(str(tmp_path / "c.npz"))
    assert ytr.tolist() == y.tolist() and yte.tolist() == y[:3].tolist() and len(xtr) == 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_task_subset_on_cuda():
    """Class-incremental task data of labels that live on the GPU (compare moves the dataset there)."""
    x = torch.arange(6.0, device="cuda").unsqueeze(1)
    y = torch.tensor([0, 1, 2, 0, 1, 2], device="cuda")
    xs, ys = data.task_subset(x, y, [0, 2])
    assert ys.tolist() == [0, 2, 0, 2] and xs.squeeze(1).tolist() == [0.0, 2.0, 3.0, 5.0]


def test_task_subset_keeps_the_labels_device_and_order():
    x = torch.arange(6.0).unsqueeze(1)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    xs, ys = data.task_subset(x, y, [2, 0])
    assert ys.tolist() == [0, 2, 0, 2] and xs.squeeze(1).tolist() == [0.0, 2.0, 3.0, 5.0] and ys.device == y.device
