"""Helpers shared by the exercise modules: seeded inputs and standard observations."""
from __future__ import annotations

from typing import Any, Callable

import torch

from .core import Case, Observation, changed, comparer, expect_raises, tensor_snapshot

Build = Callable[[], tuple[tuple, dict]]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed)) * scale


def probs(*shape: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    """Random probability rows (softmax of scaled Gaussian logits over the last dim)."""
    return torch.softmax(randn(*shape, seed=seed, scale=scale), dim=-1)


def labels(n: int, n_classes: int, seed: int) -> torch.Tensor:
    return torch.randint(0, n_classes, (n,), generator=gen(seed))


def call_case(name: str, build: Build, *, grad: "tuple[int, int | None] | None" = None,
              teacher_grad: bool = True, rtol: float = 1e-4, atol: float = 1e-6, **compare_kwargs: Any) -> Case:
    """A case that calls ``fn(*args, **kwargs)`` and records the output and whether any input changed.

    ``grad=(i_student, i_teacher)``: positional args to make leaf tensors requiring grad; the output is
    back-propagated (when it is a differentiable scalar) and the student's gradient recorded; with
    ``teacher_grad`` also whether any gradient reached the teacher argument.
    """
    def observe(fn: Callable) -> Observation:
        args, kwargs = build()
        args = list(args)
        if grad is not None:
            i_s, i_t = grad
            args[i_s] = args[i_s].clone().requires_grad_(True)
            if i_t is not None:
                args[i_t] = args[i_t].clone().requires_grad_(True)
        before = tensor_snapshot(*args, *kwargs.values())
        out = fn(*args, **kwargs)
        obs: Observation = {"mutated": changed(before, *args, *kwargs.values())}
        if grad is not None:
            i_s, i_t = grad
            differentiable = isinstance(out, torch.Tensor) and out.requires_grad
            obs["requires_grad"] = differentiable
            obs["out"] = out
            if differentiable and out.numel() == 1:
                out.backward()
                g = args[i_s].grad
                obs["grad_student"] = torch.zeros_like(args[i_s]) if g is None else g
                if i_t is not None and teacher_grad:
                    gt = args[i_t].grad
                    obs["teacher_grad"] = gt is not None and bool(gt.abs().sum() > 0)
            return obs
        obs["out"] = out
        return obs

    return Case(name, observe, comparer(rtol=rtol, atol=atol, **compare_kwargs))


def raises_case(name: str, build: Build) -> Case:
    """A case that expects ``fn(*args, **kwargs)`` to raise (the reference decides which exception)."""
    def observe(fn: Callable) -> Observation:
        args, kwargs = build()
        return expect_raises(lambda: fn(*args, **kwargs))

    return Case(name, observe, comparer())
