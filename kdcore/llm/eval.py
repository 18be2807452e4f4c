"""Evaluating a GPT and collecting what the layer-wise compression methods need.

* :func:`mean_nats` / :func:`perplexity`: cross-entropy per character on fixed windows (validation split),
  ``perplexity = exp(mean nats)``. Every position of every window is scored, each with the context that
  precedes it inside its window (position 0 with none), so the numbers are comparable between models of
  the same ``block_size`` and window set.
* :func:`collect_inputs`: forward hooks that record the input ``X [n, in]`` of named ``nn.Linear`` layers
  over calibration batches: what GPTQ, AWQ, SmoothQuant and Wanda need, layer by layer.
* :func:`hessian`: ``H = 2·XᵀX / n`` ``[in, in]``, the Hessian of the layer's squared output error
  ``‖(W − Ŵ)X‖²`` summed over rows / n (GPTQ's ``H``; Frantar et al. 2023 eq. 1).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdcore import _validate as v

__all__ = ["mean_nats", "perplexity", "collect_inputs", "hessian", "val_windows", "calib_batches"]

VAL_WINDOWS = 256    # validation windows of ...
WINDOW = 128         # ... 128 scored characters each (32,768 characters)


def val_windows(corpus, n: int = VAL_WINDOWS, length: int = WINDOW) -> torch.Tensor:
    """The course's fixed validation set: ``n`` evenly spaced windows ``[n, length + 1]`` of ``corpus.val``."""
    from .corpus import fixed_windows
    return fixed_windows(corpus.val, n, length)


def calib_batches(corpus, n: int = 128, length: int = WINDOW, batch_size: int = 64) -> list[torch.Tensor]:
    """Calibration inputs: ``n`` evenly spaced windows of ``corpus.calib`` (disjoint from validation),
    as a list of ``[batch_size, length]`` id tensors (inputs only)."""
    from .corpus import fixed_windows
    windows = fixed_windows(corpus.calib, n, length)[:, :-1]  # [n, length]
    return list(windows.split(v.integer("batch_size", batch_size, minimum=1)))


@torch.no_grad()
def mean_nats(model: nn.Module, windows: torch.Tensor, batch_size: int = 64,
              cache_factory: Callable[[], object] | None = None, chunk: int | None = None) -> float:
    """Mean next-character cross-entropy (nats) over ``windows [N, L + 1]`` (inputs ``[:, :-1]``,
    targets ``[:, 1:]``), model in eval mode (its mode is restored).

    With ``cache_factory`` (e.g. a quantized KV cache) each batch is fed ``chunk`` positions at a time
    through a fresh cache, so attention reads earlier positions from the cache as in generation; with
    the plain :class:`~kdcore.llm.gpt.KVCache` the result equals the one-pass evaluation.
    """
    v.tensor("windows", windows, ndim=2)
    if windows.shape[1] < 2:
        raise ValueError(f"windows must have at least 2 columns (input + target), got {tuple(windows.shape)}")
    v.integer("batch_size", batch_size, minimum=1)
    if cache_factory is not None:
        chunk = v.integer("chunk", chunk if chunk is not None else 1, minimum=1)
    was_training = model.training
    model.eval()
    try:
        total, count = 0.0, 0
        for batch in windows.split(batch_size):
            x, y = batch[:, :-1], batch[:, 1:]          # [b, L], [b, L]
            if cache_factory is None:
                logits = model(x)                        # [b, L, V]
            else:
                cache = cache_factory()
                logits = torch.cat([model(x[:, i:i + chunk], cache=cache)
                                    for i in range(0, x.shape[1], chunk)], dim=1)
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
        return total / count
    finally:
        model.train(was_training)


def perplexity(model: nn.Module, windows: torch.Tensor, **kwargs) -> float:
    """``exp(mean_nats(model, windows))``: per-character perplexity."""
    return math.exp(mean_nats(model, windows, **kwargs))


@torch.no_grad()
def collect_inputs(model: nn.Module, layer_names: Sequence[str], batches: Iterable[torch.Tensor],
                   forward: Callable[[nn.Module, torch.Tensor], object] | None = None,
                   ) -> dict[str, torch.Tensor]:
    """Inputs of the named ``nn.Linear`` layers while ``model`` runs on ``batches``.

    Returns ``{name: X}`` with ``X [n, in_features]``: every position of every batch, one row each
    (``n = Σ batch.numel()`` for token batches ``[B, T]``), in float32. Hooks are removed afterwards, also
    on error. ``forward(model, batch)`` defaults to ``model(batch)``.
    """
    modules = dict(model.named_modules())
    names = list(layer_names)
    if not names:
        raise ValueError("layer_names must name at least one nn.Linear")
    for name in names:
        if name not in modules:
            raise ValueError(f"layer_names: no module named {name!r} in the model")
        if not isinstance(modules[name], nn.Linear):
            raise ValueError(f"layer_names: {name!r} is a {type(modules[name]).__name__}, not an nn.Linear")
    store: dict[str, list[torch.Tensor]] = {n: [] for n in names}

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            store[name].append(x.reshape(-1, x.shape[-1]).float())  # [B·T, in]
        return hook

    handles = [modules[n].register_forward_pre_hook(make_hook(n)) for n in names]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(batch) if forward is None else forward(model, batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if any(not xs for xs in store.values()):
        raise ValueError("batches was empty: no inputs were collected")
    return {n: torch.cat(xs) for n, xs in store.items()}


def hessian(x: torch.Tensor) -> torch.Tensor:
    """``H = 2·XᵀX / n`` ``[in, in]`` from inputs ``x [n, in]``, in ``x``'s dtype (float32 accumulation is what
    the GPTQ code uses; a float64 ``x`` gives a float64 ``H``)."""
    x = v.finite("x", v.tensor("x", x, ndim=2, floating=True))
    if x.shape[0] == 0:
        raise ValueError("x must have at least one row")
    return 2.0 * x.T @ x / x.shape[0]
