"""Building the cases of an exercise: seeded inputs, standard observations, and declarative case tables.

``cases(build, rows)`` turns a table of arguments into cases whose names are rendered from the arguments and
whose seeds are derived from those names (never numbered by hand)::

    CASES = cases(_build, [dict(n=8, c=10, T=2.0), dict(n=1, c=7, T=3.0, note="single row"),
                           dict(n=8, c=6, T=2.0, grad=(0, 1)), dict(n=4, c=3, T=0.0, raises=True)])
"""
from __future__ import annotations

import zlib
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


# Row options that configure the case rather than its inputs.
_CASE_OPTIONS = {"note", "grad", "teacher_grad", "raises", "compare", "versus_reference", "observe"}
_COMPARE_OPTIONS = {"rtol", "atol", "keys", "strict_type", "check_dtype"}


def _render(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    return str(value)


def case_name(params: dict[str, Any], *, note: str | None = None, grad: Any = None, raises: bool = False) -> str:
    """``"n=8, c=10, T=2"`` (+ ``", gradient"``, ``"raises: ..."``, ``" — note"``): the case's arguments."""
    text = ", ".join(f"{k}={_render(v)}" for k, v in params.items()) or "defaults"
    if grad is not None:
        text += ", gradient"
    if raises:
        text = f"raises on {text}"
    return f"{text} — {note}" if note else text


def derived_seed(name: str) -> int:
    """The seed of a case's random inputs, derived from its name (stable across runs and machines)."""
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


def cases(build: Callable[..., tuple[tuple, dict]], rows: list[dict[str, Any]], **defaults: Any) -> list[Case]:
    """One case per row: ``build(seed=..., **arguments)`` returns the call's ``(args, kwargs)``.

    A row's keys are ``build``'s arguments, plus options: ``note`` (appended to the name), ``grad`` /
    ``teacher_grad`` (see :func:`call_case`), ``raises=True`` (the reference decides which exception),
    ``compare`` (a custom ``compare(cand, ref)``), ``versus_reference``, ``observe`` (a custom observation
    ``observe(fn, args, kwargs) -> Observation`` for outputs that are not plain values, e.g. modules, or for
    state the call may change, e.g. a model's ``.grad``) and the tolerances ``rtol``, ``atol``, ``keys``,
    ``strict_type``, ``check_dtype``. ``defaults`` apply to every row.
    """
    built: list[Case] = []
    for row in rows:
        row = {**defaults, **row}
        options = {k: row.pop(k) for k in list(row) if k in _CASE_OPTIONS}
        compare_kwargs = {k: row.pop(k) for k in list(row) if k in _COMPARE_OPTIONS}
        name = case_name(row, note=options.get("note"), grad=options.get("grad"), raises=options.get("raises", False))
        seed = derived_seed(name)

        def make(params: dict = row, seed: int = seed) -> tuple[tuple, dict]:
            return build(seed=seed, **params)

        if options.get("raises"):
            case = raises_case(name, make)
        elif options.get("observe") is not None:
            case = Case(name, lambda fn, make=make, observe=options["observe"]: observe(fn, *make()),
                        comparer(**compare_kwargs))
        else:
            case = call_case(name, make, grad=options.get("grad"), teacher_grad=options.get("teacher_grad", True),
                             **compare_kwargs)
        if options.get("compare") is not None:
            case.compare = options["compare"]
        case.versus_reference = options.get("versus_reference")
        built.append(case)
    names = [c.name for c in built]
    if len(set(names)) != len(names):
        raise ValueError(f"two cases render to the same name: {sorted(n for n in names if names.count(n) > 1)}")
    return built
