"""Offline data sets with fixed, stratified splits.

* ``load_digits``: scikit-learn's bundled 8x8 digits (1,797 images, shipped inside scikit-learn).
* ``load_mnist1d``: MNIST-1D (Greydanus 2020) *generated* locally with ``mnist1d.data.make_dataset``;
  the package's downloader is never called. Generated arrays are cached under the user cache folder
  (``$KDCORE_CACHE``, else ``$XDG_CACHE_HOME/kdcore``, else ``~/.cache/kdcore``), never in the repository.

Nothing here touches the network.

(Used by notebooks 01–10; no exercise of its own.)
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import _validate as v

__all__ = ["Split", "load_digits", "load_mnist1d", "labelled_subset", "shift_images", "add_noise", "cache_dir"]


@dataclass
class Split:
    """Train/test tensors. ``x_*`` float32, ``y_*`` int64; ``x_unlabelled`` has no labels on purpose."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_unlabelled: torch.Tensor | None = None
    n_classes: int = 10

    def __repr__(self) -> str:
        extra = "" if self.x_unlabelled is None else f", x_unlabelled={tuple(self.x_unlabelled.shape)}"
        return (f"Split(x_train={tuple(self.x_train.shape)}, x_test={tuple(self.x_test.shape)}"
                f"{extra}, n_classes={self.n_classes})")


def cache_dir() -> Path:
    """Folder for generated data (created on first use)."""
    root = os.environ.get("KDCORE_CACHE")
    if root:
        path = Path(root)
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kdcore"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------- digits
def load_digits(*, flat: bool = True, seed: int = 0) -> Split:
    """scikit-learn digits: stratified 1,347 train / 450 test, pixels scaled to [0, 1].

    x is ``[N, 64]`` when ``flat`` else ``[N, 1, 8, 8]``. ``seed`` is the split's ``random_state``
    (0 gives the course's fixed split).
    """
    from sklearn.datasets import load_digits as _sk_digits
    from sklearn.model_selection import train_test_split

    v.integer("seed", seed, minimum=0)
    bunch = _sk_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=450, stratify=y, random_state=seed)
    shape = (-1, 64) if flat else (-1, 1, 8, 8)
    return Split(torch.from_numpy(x_tr).reshape(shape), torch.from_numpy(y_tr),
                 torch.from_numpy(x_te).reshape(shape), torch.from_numpy(y_te))


# --------------------------------------------------------------------------------------------- MNIST-1D
def _make_mnist1d(num_samples: int, seed: int, train_split: float) -> dict[str, np.ndarray]:
    """Call ``mnist1d.data.make_dataset`` without letting it disturb global random state.

    ``make_dataset`` reseeds NumPy's and Python's global generators (``mnist1d.utils.set_seed``);
    we save and restore both so that importing data never changes a learner's random stream.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    args.train_split = train_split
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def _cached(name: str, params: dict, build) -> dict[str, np.ndarray]:
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / f"{name}_{key}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError):
            pass  # corrupt cache: rebuild below
    arrays = build()
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return arrays


def load_mnist1d(*, n_unlabelled: int = 0, seed: int = 0) -> Split:
    """MNIST-1D, generated offline: 4,000 train / 1,000 test, x ``[N, 40]`` float32.

    ``seed`` 0 gives the package's standard data set (its own seed 42). ``n_unlabelled`` extra samples are
    generated from a disjoint seed and returned as ``x_unlabelled`` without labels (a transfer set).
    """
    v.integer("seed", seed, minimum=0)
    v.integer("n_unlabelled", n_unlabelled, minimum=0, maximum=1_000_000)
    base_seed = 42 + seed
    main = _cached("mnist1d", {"n": 5000, "seed": base_seed},
                   lambda: _make_mnist1d(5000, base_seed, 0.8))
    x_unl = None
    if n_unlabelled:
        n_gen = -(-n_unlabelled // 10) * 10  # make_dataset draws the same number per class
        unl_seed = 10_000 + base_seed
        extra = _cached("mnist1d_unlabelled", {"n": n_gen, "seed": unl_seed},
                        lambda: _make_mnist1d(n_gen, unl_seed, 1.0))
        x_unl = torch.from_numpy(extra["x"][:n_unlabelled].astype(np.float32))
    return Split(torch.from_numpy(main["x"].astype(np.float32)), torch.from_numpy(main["y"].astype(np.int64)),
                 torch.from_numpy(main["x_test"].astype(np.float32)),
                 torch.from_numpy(main["y_test"].astype(np.int64)), x_unl)


# --------------------------------------------------------------------------------------------- helpers
def labelled_subset(x: torch.Tensor, y: torch.Tensor, n: int, seed: int = 0, *, return_rest: bool = False):
    """A stratified subset of ``n`` rows (class proportions kept), deterministic for a seed.

    Returns ``(x_sub, y_sub)``; with ``return_rest=True`` also the inputs of the other rows, without their
    labels (``(x_sub, y_sub, x_rest)``): the unlabelled transfer set of a few-labels experiment.
    """
    from sklearn.model_selection import train_test_split

    v.tensor("x", x)
    v.tensor("y", y, ndim=1)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    n_classes = int(y.unique().numel())
    v.integer("n", n, minimum=n_classes, maximum=len(y))
    if n == len(y):
        return (x.clone(), y.clone(), x[:0].clone()) if return_rest else (x.clone(), y.clone())
    idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y.numpy(), random_state=seed)
    idx = torch.from_numpy(np.sort(idx))
    if not return_rest:
        return x[idx], y[idx]
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[idx] = False
    return x[idx], y[idx], x[rest]


def shift_images(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate 8x8 digits by (dx, dy) pixels with zero fill; accepts ``[N, 64]`` or ``[N, 1, 8, 8]``."""
    v.tensor("x", x, ndim=(2, 4))
    v.integer("dx", dx, minimum=-7, maximum=7)
    v.integer("dy", dy, minimum=-7, maximum=7)
    img = x.reshape(-1, 1, 8, 8)
    out = torch.zeros_like(img)
    # destination and source windows along each axis
    ys, yd = (slice(0, 8 - dy), slice(dy, 8)) if dy >= 0 else (slice(-dy, 8), slice(0, 8 + dy))
    xs, xd = (slice(0, 8 - dx), slice(dx, 8)) if dx >= 0 else (slice(-dx, 8), slice(0, 8 + dx))
    out[:, :, yd, xd] = img[:, :, ys, xs]
    return out.reshape(x.shape)


def add_noise(x: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """``x`` plus Gaussian noise of standard deviation ``std`` (a new tensor; seeded, no global RNG use)."""
    v.tensor("x", x, floating=True)
    std = v.real("std", std)
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    gen = torch.Generator().manual_seed(seed)
    return x + std * torch.randn(x.shape, generator=gen, dtype=x.dtype)
