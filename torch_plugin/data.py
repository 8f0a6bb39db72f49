"""Small data layer for the comparative studies: IDX / .npz loaders, Fashion-MNIST
and sklearn digits, [0, 1] normalisation, subsets, class-incremental task splits
and a seeded batch iterator. No torchvision.

Every loader returns torch tensors: images float32 in [0, 1] of shape
(n, C, H, W) (C = 1 for grey-scale) or (n, D) for flat features, labels int64 (n,).
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"

# Standard IDX names (MNIST-style); each is tried raw and with .gz, and with '.' for the last '-'.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Dataset:
    """A train/test split. x_*: float32 in [0, 1], (n, C, H, W) or (n, D); y_*: int64 (n,)."""
    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int

    @property
    def sample_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    @property
    def in_features(self) -> int:
        return int(np.prod(self.sample_shape))


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (gzip-compressed or raw, detected from the content)."""
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    count = int(np.prod(shape)) if shape else 0
    if len(data) - offset < count * dtype.itemsize:
        raise ValueError(f"{path}: truncated IDX file (header says {shape}, {len(data) - offset} bytes of data)")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
    if not arr.dtype.isnative:  # IDX multi-byte types are big-endian; torch only takes native byte order
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _find_idx(root: str, stem: str) -> Optional[str]:
    candidates = [stem, stem.replace("-idx", ".idx")]  # train-images-idx3-ubyte, train-images.idx3-ubyte
    for name in candidates:
        for suffix in ("", ".gz"):
            path = os.path.join(root, name + suffix)
            if os.path.exists(path):
                return path
    return None


def normalize(x) -> Tensor:
    """Images to float32 in [0, 1]: uint8 divided by 255, other unsigned integer data divided
    by its max, signed integer data min-max scaled (its negative values included), float data
    already in [0, 1] unchanged, any other float data min-max scaled globally."""
    arr = np.array(x)  # a copy: IDX buffers are read-only
    if arr.dtype.kind in "iub" and arr.dtype != np.uint8:
        if arr.dtype.kind == "b" or arr.size == 0:
            return torch.from_numpy(arr.astype(np.float32))
        a = arr.astype(np.float64)  # exact for <= 32-bit integers, no overflow in hi - lo
        if arr.dtype.kind == "i":
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) / max(hi - lo, 1.0)
        else:
            a = a / max(float(a.max()), 1.0)
        return torch.from_numpy(a.astype(np.float32))
    x = torch.as_tensor(arr)
    if not torch.is_floating_point(x):  # uint8
        return x.to(torch.float32) / 255.0
    x = x.to(torch.float32)
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0.0 and hi <= 1.0:
        return x
    return (x - lo) / max(hi - lo, 1e-12)


def _as_images(x: Tensor) -> Tensor:
    """(n, H, W) -> (n, 1, H, W); (n, H, W, C) with C in (1, 3, 4) -> (n, C, H, W); others unchanged."""
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return x.permute(0, 3, 1, 2).contiguous()
    return x


def _labels(y) -> Tensor:
    y = torch.as_tensor(np.array(y)).reshape(-1)
    if torch.is_floating_point(y):
        if not torch.equal(y, y.round()):
            raise ValueError("labels must be integers")
    return y.to(torch.int64)


def _read_idx_split(root: str, split: str, package_hint: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw (x, y) numpy arrays of one IDX split (no normalisation)."""
    if split not in IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    paths = []
    for stem in IDX_FILES[split]:
        path = _find_idx(root, stem)
        if path is None:
            msg = f"missing data file: {os.path.join(root, stem + '.gz')} (or the uncompressed {stem})"
            if package_hint:
                msg += f"; install it with `apt-get install {package_hint}`"
            raise FileNotFoundError(msg)
        paths.append(path)
    x, y = read_idx(paths[0]), read_idx(paths[1])
    if len(x) != len(y):
        raise ValueError(f"{paths[0]} has {len(x)} samples but {paths[1]} has {len(y)} labels")
    return x, y


def load_idx_dir(root: str, split: str = "train", package_hint: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """(x, y) of one split from a folder of MNIST-style IDX files (raw or .gz).

    Looks for train-images-idx3-ubyte / train-labels-idx1-ubyte (split 'train') or
    t10k-images-idx3-ubyte / t10k-labels-idx1-ubyte (split 'test'), also with '.idx'
    spelling and a .gz suffix. Raises FileNotFoundError naming the missing file.
    The images are normalised on this split alone (uint8 / 255 and [0, 1] floats do not
    depend on it); use load_idx_splits for train and test on one shared scale.
    """
    x, y = _read_idx_split(root, split, package_hint)
    return _as_images(normalize(x)), _labels(y)


def load_idx_splits(root: str, package_hint: Optional[str] = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_test, y_test) from an IDX folder, train and test images normalised
    together (one scale for both splits, as load_npz does)."""
    xtr, ytr = _read_idx_split(root, "train", package_hint)
    xte, yte = _read_idx_split(root, "test", package_hint)
    if xtr.shape[1:] != xte.shape[1:]:
        raise ValueError(f"{root}: train images have shape {xtr.shape[1:]} but test images {xte.shape[1:]}")
    n_tr = len(xtr)
    xs = _as_images(normalize(np.concatenate([xtr, xte])))
    return xs[:n_tr], _labels(ytr), xs[n_tr:], _labels(yte)


def load_fashion_mnist(root: str = FASHION_MNIST_DIR, split: str = "train") -> tuple[Tensor, Tensor]:
    """Fashion-MNIST from Debian's dataset-fashion-mnist: x (n, 1, 28, 28) in [0, 1], y (n,)."""
    return load_idx_dir(root, split, package_hint=FASHION_MNIST_PACKAGE if root == FASHION_MNIST_DIR else None)


def _check_npz_labels(path: str, key: str, y: np.ndarray) -> None:
    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
        return
    raise ValueError(f"{path}: labels {key!r} have shape {tuple(y.shape)}; expected class indices of shape (n,) "
                     f"or (n, 1) (one-hot or multi-column labels are not accepted: store the class index per sample)")


def load_npz(path: str, test_fraction: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_test, y_test) from an .npz with keys x_train/y_train/x_test/y_test,
    or x/y (then split by a seeded permutation, test_fraction held out)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"missing data file: {path}")
    with np.load(path) as f:
        keys = set(f.files)
        if {"x_train", "y_train", "x_test", "y_test"} <= keys:
            parts = [f["x_train"], f["y_train"], f["x_test"], f["y_test"]]
            for xk, yk, xa, ya in (("x_train", "y_train", parts[0], parts[1]), ("x_test", "y_test", parts[2], parts[3])):
                _check_npz_labels(path, yk, ya)
                if len(xa) != len(ya):
                    raise ValueError(f"{path}: {xk} has {len(xa)} samples but {yk} has {len(ya)} labels")
        elif {"x", "y"} <= keys:
            x, y = f["x"], f["y"]
            _check_npz_labels(path, "y", y)
            if len(x) != len(y):
                raise ValueError(f"{path}: x has {len(x)} samples but y has {len(y)}")
            perm = np.random.default_rng(seed).permutation(len(x))
            n_test = max(1, int(round(test_fraction * len(x))))
            te, tr = perm[:n_test], perm[n_test:]
            parts = [x[tr], y[tr], x[te], y[te]]
        else:
            raise ValueError(f"{path}: expected keys x_train, y_train, x_test, y_test (or x, y), found {sorted(keys)}")
    # one scale for train and test: normalise them together
    n_tr = len(parts[0])
    xs = normalize(np.concatenate([parts[0], parts[2]]))
    xs = _as_images(xs)
    return xs[:n_tr], _labels(parts[1]), xs[n_tr:], _labels(parts[3])


def load_digits(test_fraction: float = 0.2) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """sklearn's 8x8 digits (1797 samples), x (n, 1, 8, 8) in [0, 1]; a fixed split
    (seeded permutation, seed 0): 1438 train / 359 test."""
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32) / 16.0
    y = torch.as_tensor(d.target, dtype=torch.int64)
    perm = torch.as_tensor(np.random.default_rng(0).permutation(len(x)))
    n_test = int(round(test_fraction * len(x)))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr].unsqueeze(1), y[tr], x[te].unsqueeze(1), y[te]


def _stratified_quotas(counts: Sequence[int], n: int) -> list[int]:
    """Per-class sample counts summing to n (< sum(counts)): largest-remainder (Hamilton)
    apportionment of n * count / total (ties: lower class position first), then, when
    n >= number of classes, at least one per class, taken from the classes with the largest
    quotas (ties: lower class position first)."""
    total = int(sum(counts))
    quota = [c * n // total for c in counts]  # exact integer floors
    rem = [c * n % total for c in counts]
    rest = n - sum(quota)
    for k in sorted(range(len(counts)), key=lambda k: (-rem[k], k))[:rest]:
        quota[k] += 1
    if n >= len(counts):
        for k in range(len(counts)):
            if quota[k] == 0:
                donor = max(range(len(counts)), key=lambda j: (quota[j], -j))
                quota[donor] -= 1
                quota[k] += 1
    return quota


def subset(x: Tensor, y: Tensor, n: Optional[int], seed: int = 0, stratified: bool = True) -> tuple[Tensor, Tensor]:
    """A seeded random subset of n samples (all when n is None or >= len). Stratified: the
    classes keep their proportions (largest-remainder rounding), and every class gets at
    least one sample when n >= the number of classes."""
    if n is None or n >= len(x):
        return x, y
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    g = torch.Generator().manual_seed(int(seed))
    if not stratified:
        idx = torch.randperm(len(x), generator=g)[:n]
    else:
        perm = torch.randperm(len(x), generator=g)
        ys = y[perm]
        classes, counts = torch.unique(ys, return_counts=True)
        quota = _stratified_quotas(counts.tolist(), n)
        idx = torch.cat([perm[ys == c][:q] for c, q in zip(classes.tolist(), quota)])
        idx = idx[torch.randperm(len(idx), generator=g)]
    return x[idx], y[idx]


def load_dataset(name: str, train_subset: Optional[int] = None, test_subset: Optional[int] = None,
                 seed: int = 0) -> Dataset:
    """'fashion-mnist', 'digits', a folder of IDX files, or an .npz file."""
    if name == "fashion-mnist":
        xtr, ytr, xte, yte = load_idx_splits(FASHION_MNIST_DIR, package_hint=FASHION_MNIST_PACKAGE)
    elif name == "digits":
        xtr, ytr, xte, yte = load_digits()
    elif name.endswith(".npz") or os.path.isfile(name):
        xtr, ytr, xte, yte = load_npz(name, seed=seed)
    elif os.path.isdir(name):
        xtr, ytr, xte, yte = load_idx_splits(name)
    else:
        raise FileNotFoundError(f"dataset {name!r}: not 'fashion-mnist', 'digits', an existing .npz file or IDX folder")
    xtr, ytr = subset(xtr, ytr, train_subset, seed)
    xte, yte = subset(xte, yte, test_subset, seed)
    num_classes = int(max(int(ytr.max()), int(yte.max())) + 1)
    if int(min(ytr.min(), yte.min())) < 0:
        raise ValueError("labels must be non-negative integers")
    return Dataset(os.path.basename(name.rstrip("/")) if os.path.exists(name) else name,
                   xtr.contiguous(), ytr, xte.contiguous(), yte, num_classes)


def class_incremental_tasks(num_classes: int, classes_per_task: int = 2,
                            order: Optional[Sequence[int]] = None) -> list[list[int]]:
    """Consecutive class groups: N=10, k=2 -> [[0,1],[2,3],...,[8,9]]; the last task may be smaller.
    order: a permutation of range(num_classes) to group instead of 0..N-1 (e.g. a seeded shuffle)."""
    if classes_per_task < 1:
        raise ValueError(f"classes_per_task must be >= 1, got {classes_per_task}")
    order = list(range(num_classes)) if order is None else [int(c) for c in order]
    if sorted(order) != list(range(num_classes)):
        raise ValueError(f"order must be a permutation of 0..{num_classes - 1}, got {order}")
    return [order[c:c + classes_per_task] for c in range(0, num_classes, classes_per_task)]


def task_subset(x: Tensor, y: Tensor, classes: Sequence[int]) -> tuple[Tensor, Tensor]:
    """The samples whose label is in classes."""
    mask = torch.isin(y, torch.as_tensor(list(classes), dtype=y.dtype, device=y.device))
    return x[mask], y[mask]


def batches(x: Tensor, y: Tensor, batch_size: int, shuffle: bool = True,
            generator: Optional[torch.Generator] = None, seed: Optional[int] = None,
            drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
    """Mini-batches (x[idx], y[idx]); shuffled by `generator` (or a fresh one from `seed`)."""
    n = len(x)
    if shuffle:
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]
