"""Does a learner's function use kdcore's own reference instead of implementing the exercise?

The course ships its references (``kdcore.distill.kd_loss`` ...), so a graded function that *is* the
reference, or gets its result by calling it, would pass every case although the learner wrote nothing.
Two detectors, used by the notebook's ``check`` and by the batch grader:

* :func:`reference_use` (static, before anything runs) unwraps the function (``functools.partial``,
  ``__wrapped__`` from ``functools.wraps``, bound methods, ``staticmethod``, callable objects and what they
  hold) and follows, through the learner's own helper functions, every global, closure cell, default and
  attribute chain its code reads (``kd.softmax_t``, ``kdcore.distill.softmax_t``,
  ``vars(kdcore.distill)["softmax_t"]``, ``getattr(kd, "softmax_t")``) without calling anything.
* :func:`watching` (at run time) swaps the reference function's ``__code__`` for a small trampoline while
  active, so every call of that function object is seen, by whatever name it was reached: an alias, a
  partial, a module's ``__dict__``, ``getattr`` with a computed name, a wrapper class, ``gc``. The code is
  restored on exit. In "count" mode the reference still returns its result; in "deny" mode (inside the
  batch grader's sandbox, where nothing may compute a reference) it raises :class:`ReferenceUnavailable`.

Not detected, by design: pasting the reference's source into the notebook (copying, for a plagiarism
check), and hostile code that restores the original code object or re-executes kdcore's source files.
"""
from __future__ import annotations

import builtins
import contextlib
import dis
import functools
import inspect
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["ReferenceUnavailable", "reference_use", "watching", "Watch", "verdict"]

_MAX_OBJECTS = 400  # objects visited per function: a bound on hostile, deeply nested wrappers


class ReferenceUnavailable(BaseException):
    """Raised by a denied reference (a BaseException, so ``except Exception`` in learner code does not
    swallow it)."""


def _references() -> dict[str, Callable | None]:
    from .catalogue import REFERENCES
    return REFERENCES


def _dotted(exercise_id: str) -> str:
    from .catalogue import EXERCISES
    exercise = EXERCISES.get(exercise_id)
    return getattr(exercise, "reference", "") or f"kdcore.{exercise_id}"


# --- whose code is it? ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    """Folders whose code is library code (kdcore, the standard library, site-packages)."""
    import kdcore
    roots = {os.path.realpath(Path(kdcore.__file__).parent)}
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        roots.add(os.path.realpath(prefix))
    for entry in sys.path:
        if "site-packages" in entry or "dist-packages" in entry:
            roots.add(os.path.realpath(entry))
    return tuple(sorted(roots))


def _is_learner_code(code: types.CodeType) -> bool:
    """Code from a notebook cell (``<code cell 3>``, ``/tmp/ipykernel_1/123.py``), not from a library."""
    name = code.co_filename
    if name.startswith("<"):
        return True
    real = os.path.realpath(name)
    return not any(real == root or real.startswith(root + os.sep) for root in _library_roots())


def _code_key(code: types.CodeType) -> tuple[str, int, str]:
    name = code.co_filename
    return (name if name.startswith("<") else os.path.realpath(name), code.co_firstlineno, code.co_name)


# --- the static detector --------------------------------------------------------------------------------

@dataclass
class _Search:
    reference: Callable
    reference_code: types.CodeType
    seen: list = field(default_factory=list)
    queue: list = field(default_factory=list)  # (object, how it was reached)

    def is_reference(self, obj: object) -> bool:
        if obj is self.reference:
            return True
        code = getattr(obj, "__code__", None) if isinstance(obj, types.FunctionType) else None
        return code is not None and (code is self.reference_code
                                     or _code_key(code) == _code_key(self.reference_code))

    def push(self, obj: object, how: str) -> None:
        if obj is None or isinstance(obj, (str, bytes, int, float, bool, complex)):
            return
        if len(self.seen) >= _MAX_OBJECTS or any(obj is s for s in self.seen):
            return
        self.seen.append(obj)
        self.queue.append((obj, how))


def _static_attr(obj: object, name: str) -> object:
    """``obj.name`` without running learner code: real getattr on modules (kdcore resolves its names
    lazily in a module ``__getattr__``), ``inspect.getattr_static`` on anything else."""
    try:
        if isinstance(obj, types.ModuleType):
            return getattr(obj, name, None)
        return inspect.getattr_static(obj, name, None)
    except Exception:  # noqa: BLE001 - a hostile object's metaclass may raise anything
        return None


def _unwrapped(obj: object) -> list[tuple[object, str]]:
    """What calling ``obj`` may call: the objects it wraps or holds."""
    inner: list[tuple[object, str]] = []
    if isinstance(obj, functools.partial):
        inner.append((obj.func, "functools.partial"))
        inner += [(a, "an argument bound by functools.partial") for a in (*obj.args, *obj.keywords.values())]
    if isinstance(obj, (staticmethod, classmethod, types.MethodType)):
        inner.append((obj.__func__, "a method"))
    wrapped = _static_attr(obj, "__wrapped__")
    if wrapped is not None:
        inner.append((wrapped, "__wrapped__ (functools.wraps)"))
    if isinstance(obj, types.FunctionType):
        inner += [(d, "a default argument") for d in (obj.__defaults__ or ())]
        inner += [(d, "a default argument") for d in (obj.__kwdefaults__ or {}).values()]
        for cell in obj.__closure__ or ():
            with contextlib.suppress(ValueError):  # an empty cell
                inner.append((cell.cell_contents, "a closure variable"))
    elif not isinstance(obj, (type, types.ModuleType, types.BuiltinFunctionType, types.MethodType,
                              functools.partial, staticmethod, classmethod)):
        call = _static_attr(type(obj), "__call__")
        if isinstance(call, types.FunctionType):  # an instance of a learner's class with __call__
            inner.append((call, "a callable object"))
            try:
                state = vars(obj)
            except TypeError:
                state = {}
            inner += [(v, "an attribute of a callable object") for v in list(state.values())[:50]]
    if isinstance(obj, type) and _is_learner_class(obj):
        inner += [(v, "a class attribute") for v in list(vars(obj).values())[:50]]
    return inner


def _is_learner_class(cls: type) -> bool:
    return any(isinstance(v, types.FunctionType) and _is_learner_code(v.__code__) for v in vars(cls).values())


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _scan_function(fn: types.FunctionType, search: _Search) -> None:
    """Push every object the learner function's code can reach by name or attribute chain."""
    namespace = fn.__globals__
    closure = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        with contextlib.suppress(ValueError):
            closure[name] = cell.cell_contents
    for code in _code_objects(fn.__code__):
        current: object = None
        modules: list[object] = []
        strings: list[str] = []
        for instruction in dis.get_instructions(code):
            op, arg = instruction.opname, instruction.argval
            if op in ("LOAD_GLOBAL", "LOAD_NAME"):
                current = namespace.get(arg, getattr(builtins, arg, None)) if isinstance(arg, str) else None
                search.push(current, f"the global `{arg}`")
            elif op in ("LOAD_DEREF", "LOAD_CLASSDEREF") and code is fn.__code__:
                current = closure.get(arg)
                search.push(current, f"the closure variable `{arg}`")
            elif op in ("LOAD_ATTR", "LOAD_METHOD") and current is not None:
                current = _static_attr(current, arg)
                search.push(current, f"the attribute `.{arg}`")
            elif op == "LOAD_CONST" and isinstance(arg, str):
                strings.append(arg)
                current = None
            else:
                current = None
            if isinstance(current, types.ModuleType):
                modules.append(current)
        # vars(module)["name"], module.__dict__["name"], getattr(module, "name"): a string constant that
        # names the reference, in code that reads a module
        name = search.reference.__name__
        if name in strings:
            for module in modules:
                search.push(_static_attr(module, name), f"the name {name!r} looked up in `{module.__name__}`")


def reference_use(exercise_id: str, fn: object) -> str | None:
    """Why ``fn`` is, or calls, the reference of ``exercise_id`` (a sentence), or None if it does not."""
    reference = _references().get(exercise_id)
    if not isinstance(reference, types.FunctionType):
        return None
    search = _Search(reference, _WATCHED_CODE.get(id(reference), reference.__code__))
    search.push(fn, "")
    while search.queue:
        obj, how = search.queue.pop(0)
        if search.is_reference(obj):
            where = f" (through {how})" if how else ""
            return f"it is or calls kdcore's own reference `{_dotted(exercise_id)}`{where}"
        for inner, inner_how in _unwrapped(obj):
            search.push(inner, inner_how)
        if isinstance(obj, types.FunctionType) and _is_learner_code(obj.__code__):
            _scan_function(obj, search)
    return None


# --- the run-time detector ------------------------------------------------------------------------------

#: id(reference function) -> its original code object, while a watch has swapped it.
_WATCHED_CODE: dict[int, types.CodeType] = {}


@dataclass
class Watch:
    """What a :func:`watching` block saw: the exercise ids whose reference was called."""
    called: set[str] = field(default_factory=set)
    deny: bool = False


def _trampoline(reference: types.FunctionType, global_name: str) -> types.CodeType:
    """A code object ``def name(*args, **kwargs): return <global_name>(*args, **kwargs)`` that keeps the
    reference's file, line and name (tracebacks and :func:`_code_key` still point at the reference)."""
    source = f"def {reference.__name__}(*args, **kwargs):\n    return {global_name}(*args, **kwargs)\n"
    namespace: dict = {}
    exec(compile(source, reference.__code__.co_filename, "exec"), namespace)  # noqa: S102 - our own code
    code = namespace[reference.__name__].__code__
    return code.replace(co_firstlineno=reference.__code__.co_firstlineno, co_name=reference.__code__.co_name)


@contextlib.contextmanager
def watching(exercise_ids: list[str] | str, *, deny: bool = False) -> Iterator[Watch]:
    """Within the block, calls of these exercises' reference functions are recorded in ``Watch.called``
    (and raise :class:`ReferenceUnavailable` when ``deny``)."""
    ids = [exercise_ids] if isinstance(exercise_ids, str) else list(exercise_ids)
    watch = Watch(deny=deny)
    swapped: list[tuple[types.FunctionType, types.CodeType, str]] = []
    try:
        for exercise_id in ids:
            reference = _references().get(exercise_id)
            if (not isinstance(reference, types.FunctionType) or reference.__closure__
                    or id(reference) in _WATCHED_CODE):
                continue  # a closure cannot take a code object without free variables; nested watches skip
            original = reference.__code__
            clone = types.FunctionType(original, reference.__globals__, reference.__name__,
                                       reference.__defaults__, None)
            clone.__kwdefaults__ = reference.__kwdefaults__

            def counted(*args, _id=exercise_id, _clone=clone, **kwargs):
                watch.called.add(_id)
                if watch.deny:
                    raise ReferenceUnavailable(f"kdcore's reference `{_dotted(_id)}` cannot be used while "
                                               "your own function is graded")
                return _clone(*args, **kwargs)

            global_name = f"__kdcore_watched_{exercise_id}__"
            reference.__globals__[global_name] = counted
            _WATCHED_CODE[id(reference)] = original
            reference.__code__ = _trampoline(reference, global_name)
            swapped.append((reference, original, global_name))
        yield watch
    finally:
        for reference, original, global_name in reversed(swapped):
            reference.__code__ = original
            reference.__globals__.pop(global_name, None)
            _WATCHED_CODE.pop(id(reference), None)


def verdict(exercise_id: str, why: str) -> str:
    """The report line shown to the learner for a function that uses the reference."""
    return (f"{exercise_id}: uses kdcore's reference, no credit: {why}. The reference is what your function "
            "is compared with; write the computation yourself (other kdcore helpers are fine).")
