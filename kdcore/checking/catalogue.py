"""The misconception catalogue of an exercise module: ``@wrong``, ``@correct`` and ``edited``.

In ``kdcore/exercises/<id>.py`` each known wrong answer stands with its hint directly above its code::

    @wrong("missing T²", hint="off by a factor of T²: multiply the soft term by T**2")
    def no_T_squared(student_logits, teacher_logits, labels, T=4.0, alpha=0.9):
        ...

and a wrong answer that differs from an honest solution by one line is written as that one-line edit, so
the difference is what the reader sees::

    no_zero_grad = wrong("gradients accumulate", hint="...").edit(honest, "optimizer.zero_grad()\\n", "")

The decorators only record the function in a per-module list (in definition order); the exercise loader in
:mod:`kdcore.checking` reads it. The functions themselves are returned unchanged.
"""
from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from typing import Callable

from .core import Variant

# module name -> ("wrong" | "correct") -> variants, in the order they are defined
_BY_MODULE: dict[str, dict[str, list[Variant]]] = {}


def _caller_module(depth: int = 2) -> str:
    return sys._getframe(depth).f_globals.get("__name__", "?")


def _record(module: str, kind: str, variant: Variant) -> None:
    listed = _BY_MODULE.setdefault(module, {"wrong": [], "correct": []})[kind]
    if any(v.name == variant.name for v in listed):
        raise ValueError(f"{module}: two {kind} variants are named {variant.name!r}")
    listed.append(variant)


def edited(fn: Callable, old: str, new: str, count: int = 1) -> Callable:
    """A copy of ``fn`` compiled from its source with the text ``old`` replaced by ``new``.

    ``old`` must occur exactly ``count`` times (all are replaced), so an edit cannot silently miss.

    The copy shares ``fn``'s globals, so it calls the same helpers; its name gets a ``_edited`` suffix.
    """
    source = textwrap.dedent(inspect.getsource(fn))
    # compile the copy undecorated: drop everything above the `def` line (a multi-line @wrong(..., hint=...) too)
    source = "\n".join(source.splitlines()[ast.parse(source).body[0].lineno - 1:]) + "\n"
    if source.count(old) != count:
        raise ValueError(f"edited({fn.__name__}): {old!r} must occur exactly {count} time(s) in its source, "
                         f"found {source.count(old)} times")
    namespace: dict = {}
    exec(compile(source.replace(old, new), f"<edited {fn.__module__}.{fn.__name__}>", "exec"),  # noqa: S102
         fn.__globals__, namespace)
    copy = namespace[fn.__name__]
    copy.__name__ = copy.__qualname__ = f"{fn.__name__}_edited"
    copy.__module__ = fn.__module__
    return copy


class wrong:  # noqa: N801 - used as a decorator, reads like one
    """``@wrong(name, hint=...)``: a wrong answer candidates really write, and the hint that names it."""

    def __init__(self, name: str, *, hint: str) -> None:
        if not name or not hint:
            raise ValueError("a wrong variant needs a name and a hint")
        self.name, self.hint, self.module = name, hint, _caller_module()

    def __call__(self, fn: Callable) -> Callable:
        _record(self.module, "wrong", Variant(self.name, fn, self.hint))
        return fn

    def edit(self, fn: Callable, old: str, new: str, count: int = 1) -> Callable:
        """Register ``edited(fn, old, new, count)`` as this wrong variant and return it."""
        return self(edited(fn, old, new, count))


class correct:  # noqa: N801
    """``@correct(name)``: a correct answer written differently from the reference; it must pass."""

    def __init__(self, name: str) -> None:
        if not name:
            raise ValueError("a correct variant needs a name")
        self.name, self.module = name, _caller_module()

    def __call__(self, fn: Callable) -> Callable:
        _record(self.module, "correct", Variant(self.name, fn, ""))
        return fn

    def edit(self, fn: Callable, old: str, new: str, count: int = 1) -> Callable:
        return self(edited(fn, old, new, count))


def variants_of(module: str) -> dict[str, list[Variant]]:
    """The catalogue a module registered: ``{"wrong": [...], "correct": [...]}``."""
    found = _BY_MODULE.get(module, {"wrong": [], "correct": []})
    return {"wrong": list(found["wrong"]), "correct": list(found["correct"])}
