"""Seeded training, evaluation and distillation loops (Adam, mini-batches, tqdm progress).

Progress bars are shown where someone watches (a notebook open in Jupyter, a terminal: see
``progress_enabled``); ``progress=False`` or ``KDCORE_PROGRESS=0`` silences them, ``KDCORE_PROGRESS=1`` forces
them. Every loop is deterministic for a given ``seed``.

(Used by notebooks 02–11; no exercise of its own.)
"""
from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import json
import os
import pickle
import random
import sys
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _validate as v

__all__ = ["set_seed", "evaluate", "predict_logits", "fit", "distill", "cached_model", "state_digest",
           "pretrained_digits_teacher", "pretrained_mnist1d_teacher"]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch's global generators."""
    v.integer("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def progress_enabled(progress: bool | None) -> bool:
    """``progress`` if given, else ``$KDCORE_PROGRESS`` if set, else whether someone is watching: a notebook
    open in Jupyter (its kernel has ``JPY_SESSION_NAME``; tqdm.auto then draws a widget) or a terminal.
    Batch runs (nbclient, nbval, CI, redirected output) get no bar, so none is stored frozen in a notebook."""
    if progress is not None:
        return bool(progress)
    setting = os.environ.get("KDCORE_PROGRESS")
    if setting is not None:
        return setting.lower() not in {"0", "false", "no", "off"}
    import sys

    return bool(os.environ.get("JPY_SESSION_NAME")) or bool(getattr(sys.stderr, "isatty", lambda: False)())


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
    """Train ``student`` in place on the loss of ``kdcore.distill.kd_loss`` against a frozen ``teacher``.

    Labelled rows (``x`` with ``y``) use the full KD loss; rows without labels (``y is None``, or the
    rows of ``x_unlabelled``) use only the soft term ``T²·KL``. The teacher's logits are computed once,
    in eval mode, without gradients, and turned into log-probabilities at ``T`` once (the teacher is
    fixed); the teacher is never updated. The arguments are checked once here, where ``kd_loss`` checks its
    own on every call, so a step is a student forward and backward pass and a few fused loss kernels; the
    result is bit-for-bit the one ``kd_loss`` gives.
    """
    v.tensor("x", x, floating=True)
    T = v.positive("T", T)
    alpha = v.in_unit_interval("alpha", alpha)
    xs = x if x_unlabelled is None else torch.cat([x, v.tensor("x_unlabelled", x_unlabelled, floating=True)])
    t_logits = v.finite("teacher logits", predict_logits(teacher, xs))   # [N, C]; the teacher is a constant
    n_classes = t_logits.shape[1]
    n_labelled = 0
    if y is not None:
        v.tensor("y", y, ndim=1)
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        if y.is_floating_point() or (len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes)):
            raise ValueError(f"y must hold integer class indices in [0, {n_classes - 1}]")
        n_labelled = len(y)
    log_p_t = F.log_softmax(t_logits / T, dim=-1)          # [N, C], the soft targets at T, once
    labels = torch.full((len(xs),), -1, dtype=torch.long)  # -1: a row without a label
    if y is not None:
        labels[:n_labelled] = y

    def loss_fn(idx):
        out = student(xs[idx])                             # [b, C]
        soft = (T * T) * F.kl_div(F.log_softmax(out / T, dim=-1), log_p_t[idx], reduction="batchmean",
                                  log_target=True)
        if n_labelled == 0:
            return soft
        lab = labels[idx]
        # CE summed over the labelled rows, divided by the whole batch: kd_loss's hard term when every row is
        # labelled; a batch that happens to hold no labelled row uses the soft term alone
        hard = F.cross_entropy(out, lab, ignore_index=-1, reduction="sum") / len(idx)
        if n_labelled == len(xs):
            return alpha * soft + (1 - alpha) * hard
        return torch.where((lab >= 0).any(), alpha * soft + (1 - alpha) * hard, soft)

    return _loop(student, len(xs), loss_fn, epochs=epochs, steps=steps, batch_size=batch_size, lr=lr,
                 weight_decay=weight_decay, seed=seed, progress=progress, desc=desc, masks=masks)


# --------------------------------------------------------------------------------------------- cache
def _code_only(source: str) -> str:
    """A module's syntax tree without its docstrings (comments never reach the tree), as text."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """Hash of the library code a trained model depends on (training loops, losses, models, pruning, data):
    editing documentation keeps the cache, any change to the code itself invalidates it."""
    from . import data, distill, models, prune

    parts = [_code_only(inspect.getsource(m)) for m in (sys.modules[__name__], data, distill, models, prune)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _code_digest(fn: Callable) -> str:
    """Hash of a function's compiled code (nested functions included), so an edited ``train`` misses the cache."""
    import types

    def walk(code: types.CodeType) -> bytes:
        consts = b"".join(walk(c) if isinstance(c, types.CodeType) else repr(c).encode() for c in code.co_consts)
        return code.co_code + consts + repr(code.co_names).encode()

    code = getattr(fn, "__code__", None)
    if code is None:                                   # a callable object or a partial: its type and repr
        return hashlib.sha256(f"{type(fn).__qualname__}:{fn!r}".encode()).hexdigest()[:16]
    return hashlib.sha256(walk(code)).hexdigest()[:16]


def state_digest(model: nn.Module) -> str:
    """A short hash of a model's state (parameters and buffers, with their names): equal states, equal digests.

    Put it in a :func:`cached_model` recipe when the training reads another model (a teacher), so that a
    different teacher never loads a student trained from the old one.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def model_cache_enabled() -> bool:
    """False when the environment variable ``KDCORE_MODEL_CACHE`` is 0/false/no/off (then every call trains)."""
    return os.environ.get("KDCORE_MODEL_CACHE", "1").lower() not in {"0", "false", "no", "off"}


def cached_model(name: str, recipe: Mapping, make: Callable[[], nn.Module],
                 train: Callable[[nn.Module], object]) -> nn.Module:
    """``make()`` trained by ``train(model)``, stored on disk after the first call and loaded afterwards.

    The file is ``<cache_dir>/models/<name>-<key>.pt`` (see :func:`kdcore.data.cache_dir`; never inside the
    repository), where ``key`` hashes ``recipe`` (everything the training depends on that the code does not
    fix: data, steps, learning rate, seed...), the untrained model's ``repr`` (its architecture), the compiled
    code of ``train``, the torch version, the thread count (a CPU convolution trained on 2 threads rounds
    differently from one trained on 1) and the code (docstrings aside) of kdcore's training, loss, model,
    pruning and data modules, so a changed recipe, training function or library never loads a stale model.
    Values ``train`` reads from outside (data, a teacher) are not seen: name them in ``recipe`` (for a model,
    its :func:`state_digest`), which must be JSON-serialisable. Writes are atomic; a corrupt file is retrained. ``KDCORE_MODEL_CACHE=0`` disables the
    cache. Returns the model in eval mode.
    """
    if not isinstance(name, str) or not name or any(c in name for c in "/\\"):
        raise ValueError(f"name must be a non-empty file-name-safe string, got {name!r}")
    if not isinstance(recipe, Mapping):
        raise TypeError(f"recipe must be a dict, got {type(recipe).__name__}")
    from .data import cache_dir

    model = make()
    if not isinstance(model, nn.Module):
        raise TypeError(f"make() must return an nn.Module, got {type(model).__name__}")
    try:
        blob = json.dumps({"recipe": recipe, "model": repr(model), "torch": torch.__version__,
                           "threads": torch.get_num_threads(),   # CPU kernels round differently per thread count
                           "code": _code_fingerprint(), "train": _code_digest(train)}, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"recipe must be JSON-serialisable: {err}") from None
    use_cache = model_cache_enabled()
    path = None
    if use_cache:
        try:                                   # caching is best effort: a read-only home just means no cache
            path = cache_dir() / "models" / f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.pt"
        except OSError:
            path = None
    if path is not None and path.exists():
        try:
            model.load_state_dict(torch.load(path, weights_only=True))
            return model.eval()
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
            model = make()                     # corrupt or incompatible file: train again below
    train(model)
    model.eval()
    if path is not None:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), tmp)
            os.replace(tmp, path)              # atomic: a concurrent reader never sees half a file
        except OSError:
            tmp.unlink(missing_ok=True)
    return model


@functools.lru_cache(maxsize=8)
def _digits_teacher(seed: int, epochs: int):
    from .data import load_digits
    from .models import DigitsCNN

    split = load_digits(flat=False)

    def make():
        torch.manual_seed(seed)
        return DigitsCNN()

    return cached_model("digits-teacher", {"data": "load_digits(flat=False)", "epochs": epochs, "seed": seed},
                        make, lambda m: fit(m, split.x_train, split.y_train, epochs=epochs, seed=seed, desc="teacher"))


def pretrained_digits_teacher(seed: int = 0, epochs: int = 20) -> nn.Module:
    """The course's digits teacher (``DigitsCNN(32, 64)`` trained on all 1,347 training digits).

    Trained on first use (a few seconds), then loaded from the disk cache (:func:`cached_model`) and kept in
    this process; each call returns a fresh copy.
    """
    return copy.deepcopy(_digits_teacher(seed, epochs))


@functools.lru_cache(maxsize=4)
def _mnist1d_teacher(seed: int, steps: int):
    from .data import load_mnist1d
    from .models import Mnist1dConvBase

    split = load_mnist1d()

    def make():
        torch.manual_seed(seed)
        return Mnist1dConvBase()

    return cached_model("mnist1d-teacher", {"data": "load_mnist1d()", "steps": steps, "lr": 1e-2, "batch_size": 128,
                                            "seed": seed}, make,
                        lambda m: fit(m, split.x_train, split.y_train, steps=steps, lr=1e-2, batch_size=128, seed=seed,
                                      desc="teacher 1d"))


def pretrained_mnist1d_teacher(seed: int = 0, steps: int = 1000) -> nn.Module:
    """The MNIST-1D teacher of notebook 03: ``Mnist1dConvBase`` trained on the 4,000 labelled training series.

    Adam, lr 1e-2, batch 128, ``steps`` steps (about 10 s of one CPU core on first use), then loaded from the
    disk cache; each call returns a fresh copy.
    """
    return copy.deepcopy(_mnist1d_teacher(seed, steps))
