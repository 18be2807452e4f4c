"""Seeded training, evaluation and distillation loops (Adam, mini-batches, tqdm progress).

Progress bars are on by default; ``progress=False`` or the environment variable ``KDCORE_PROGRESS=0``
silences them (the tests and CI do). Every loop is deterministic for a given ``seed``.

(Used by notebooks 02–11; no exercise of its own.)
"""
from __future__ import annotations

import copy
import functools
import os
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _validate as v

__all__ = ["set_seed", "evaluate", "predict_logits", "fit", "distill", "pretrained_digits_teacher"]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch's global generators."""
    v.integer("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def progress_enabled(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    return os.environ.get("KDCORE_PROGRESS", "1").lower() not in {"0", "false", "no", "off"}


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits ``[N, n_classes]`` in eval mode without gradients; the model's mode is restored."""
    v.tensor("x", x)
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy in [0, 1]."""
    v.tensor("y", y, ndim=1)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    return (predict_logits(model, x, batch_size).argmax(1) == y).float().mean().item()


def accuracy(model: nn.Module, split) -> float:
    """Top-1 test accuracy of ``model`` on a :class:`kdcore.data.Split` (its ``x_test``, ``y_test``)."""
    return evaluate(model, split.x_test, split.y_test)


def _n_steps(n_rows: int, batch_size: int, epochs: int | None, steps: int | None) -> int:
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs or steps")
    if steps is not None:
        return v.integer("steps", steps, minimum=1)
    v.integer("epochs", epochs, minimum=1)
    return epochs * -(-n_rows // batch_size)


def _batches(n_rows: int, batch_size: int, n_steps: int, gen: torch.Generator):
    """Yield ``n_steps`` index batches, reshuffling every epoch (last partial batch kept)."""
    done = 0
    while True:
        perm = torch.randperm(n_rows, generator=gen)
        for i in range(0, n_rows, batch_size):
            yield perm[i:i + batch_size]
            done += 1
            if done == n_steps:
                return


def _apply_masks(model: nn.Module, masks: dict[str, torch.Tensor] | None) -> None:
    if masks:
        from .prune import apply_masks
        apply_masks(model, masks)


def _loop(model, n_rows, loss_fn, *, epochs, steps, batch_size, lr, weight_decay, seed, progress, desc, masks):
    from tqdm.auto import tqdm

    v.integer("batch_size", batch_size, minimum=1)
    v.positive("lr", lr)
    total = _n_steps(n_rows, batch_size, epochs, steps)
    torch.manual_seed(seed)  # dropout etc. inside the model
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    _apply_masks(model, masks)
    losses: list[float] = []
    bar = tqdm(total=total, desc=desc, disable=not progress_enabled(progress), leave=False)
    for idx in _batches(n_rows, batch_size, total, gen):
        loss = loss_fn(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _apply_masks(model, masks)  # pruned weights stay exactly 0 (Adam would move them otherwise)
        losses.append(loss.item())
        bar.update(1)
        if len(losses) % 20 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    model.eval()
    return losses


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int | None = None,
        steps: int | None = None, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
        label_smoothing: float = 0.0, seed: int = 0, progress: bool | None = None, desc: str = "fit",
        masks: dict[str, torch.Tensor] | None = None) -> list[float]:
    """Train ``model`` in place with cross-entropy and Adam; returns the per-step losses.

    ``masks`` (parameter name → keep-mask) holds pruned weights at exactly zero throughout.
    """
    v.tensor("x", x, floating=True)
    v.tensor("y", y, ndim=1)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    v.in_unit_interval("label_smoothing", label_smoothing)

    def loss_fn(idx):
        return F.cross_entropy(model(x[idx]), y[idx], label_smoothing=label_smoothing)

    return _loop(model, len(x), loss_fn, epochs=epochs, steps=steps, batch_size=batch_size, lr=lr,
                 weight_decay=weight_decay, seed=seed, progress=progress, desc=desc, masks=masks)


def distill(student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
            T: float = 4.0, alpha: float = 0.9, epochs: int | None = None, steps: int | None = None,
            batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0,
            x_unlabelled: torch.Tensor | None = None, progress: bool | None = None, desc: str = "distill",
            masks: dict[str, torch.Tensor] | None = None) -> list[float]:
    """Train ``student`` in place on ``kdcore.distill.kd_loss`` against a frozen ``teacher``.

    Labelled rows (``x`` with ``y``) use the full KD loss; rows without labels (``y is None``, or the
    rows of ``x_unlabelled``) use only the soft term ``T²·KL``. The teacher's logits are computed once,
    in eval mode, without gradients; the teacher is never updated.
    """
    from .distill import kd_loss

    v.tensor("x", x, floating=True)
    T = v.positive("T", T)
    alpha = v.in_unit_interval("alpha", alpha)
    xs = x if x_unlabelled is None else torch.cat([x, v.tensor("x_unlabelled", x_unlabelled, floating=True)])
    n_labelled = 0
    if y is not None:
        v.tensor("y", y, ndim=1)
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        n_labelled = len(y)
    t_logits = predict_logits(teacher, xs)  # [N, C]; teacher is a constant
    labels = torch.full((len(xs),), -1, dtype=torch.long)
    if y is not None:
        labels[:n_labelled] = y

    def loss_fn(idx):
        out = student(xs[idx])  # [b, C]
        lab = labels[idx]
        has = lab >= 0
        soft = kd_loss(out, t_logits[idx], torch.zeros_like(lab), T=T, alpha=1.0)  # alpha=1: soft term only
        if not bool(has.any()):
            return soft
        # CE summed over the labelled rows, divided by the whole batch: equals kd_loss's hard term
        # when every row is labelled.
        hard = F.cross_entropy(out[has], lab[has], reduction="sum") / len(idx)
        return alpha * soft + (1 - alpha) * hard

    return _loop(student, len(xs), loss_fn, epochs=epochs, steps=steps, batch_size=batch_size, lr=lr,
                 weight_decay=weight_decay, seed=seed, progress=progress, desc=desc, masks=masks)


@functools.lru_cache(maxsize=8)
def _digits_teacher(seed: int, epochs: int):
    from .data import load_digits
    from .models import DigitsCNN

    split = load_digits(flat=False)
    torch.manual_seed(seed)
    teacher = DigitsCNN()
    fit(teacher, split.x_train, split.y_train, epochs=epochs, seed=seed, desc="teacher")
    return teacher


def pretrained_digits_teacher(seed: int = 0, epochs: int = 20) -> nn.Module:
    """The course's digits teacher (``DigitsCNN(32, 64)`` trained on all 1,347 training digits).

    Trained on first use (a few seconds) and cached in this process; each call returns a fresh copy.
    """
    return copy.deepcopy(_digits_teacher(seed, epochs))
