"""Grader core: exercises, cases, observations, judging and the ``check`` report.

Two halves, so that a learner's code and the judging can run in different processes:

* :func:`run_candidate` runs every case of an exercise on the learner's function and returns one
  *observation* per case: a dict of plain data (tensors, lists, dicts, str, int, float, bool, None) that
  survives ``torch.save`` / ``torch.load(weights_only=True)``. Exceptions and time-outs are observations too.
* :func:`judge` rebuilds the same (seeded) inputs, runs the **reference** function on them and compares.
  When a case fails it also runs the exercise's catalogue of known wrong variants (``VARIANTS``) on the
  same inputs; if the learner's observation matches a wrong variant's, that variant's hint names the
  misconception.

Trust: the references are the functions captured in ``REFERENCES`` when ``kdcore.checking`` is first
imported (see :mod:`kdcore.checking.references`), not looked up again at judging time. A learner function
that re-binds ``kdcore.distill.kd_loss`` while it runs cannot change what the judge compares against in
the same process; the batch grader (``python -m kdcore.grade``) goes further and judges in a separate
process that never runs learner code.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

Observation = dict
# A failed comparison: (message, generic hint or None).
Failure = tuple[str, "str | None"]

NOT_IMPLEMENTED_HINT = "not implemented yet: replace `raise NotImplementedError` with your code"


# ---------------------------------------------------------------------------------------------------
# data classes
# ---------------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One graded situation.

    ``observe(fn)`` builds the (seeded) inputs, calls ``fn`` and returns an observation dict;
    ``compare(candidate_obs, expected_obs)`` returns None when they agree, else ``(message, hint)``.
    ``compare`` must be *relative*: it judges the candidate against whatever it is given as expected
    (the reference's observation, or a wrong variant's when diagnosing), never against fixed values.
    """
    name: str
    observe: Callable[[Callable], Observation]
    compare: Callable[[Observation, Observation], "Failure | None"]
    # An extra condition checked only against the reference, never when diagnosing against a wrong variant
    # (e.g. "reconstruction error within 5 % of the reference's": a variant is matched by compare alone).
    versus_reference: "Callable[[Observation, Observation], Failure | None] | None" = None


@dataclass
class Variant:
    """A known way to get the exercise wrong (real code), with the hint shown when a learner matches it."""
    name: str
    fn: Callable
    hint: str


@dataclass
class Exercise:
    id: str
    notebook: str
    signature: str
    cases: list[Case]
    reference: str = ""          # dotted path of the reference, e.g. "kdcore.distill.kd_loss"
    summary: str = ""
    timeout: float = 10.0
    equivalent_mutants: dict[str, str] = field(default_factory=dict)   # mutant id -> why it is equivalent


@dataclass
class CaseResult:
    name: str
    passed: bool
    message: str = ""
    hint: str = ""


@dataclass
class CheckResult:
    exercise_id: str
    passed: bool
    score: float
    feedback: str
    cases: list[CaseResult] = field(default_factory=list)
    # True once check() has shown the report: the notebook then echoes nothing more for the returned value
    shown: bool = field(default=False, repr=False, compare=False)

    def __repr__(self) -> str:
        n_pass = sum(c.passed for c in self.cases)
        return (f"CheckResult({self.exercise_id!r}, passed={self.passed}, score={self.score:.2f}, "
                f"{n_pass}/{len(self.cases)} cases)")

    def _ipython_display_(self) -> None:
        """IPython hook for a cell ending in ``kd.check(...)``: no ``CheckResult(...)`` echo under the report
        check() already printed; a result held in a variable and shown later prints its report."""
        if not self.shown:
            print(render_report(self.feedback, self.passed, color=True))


class ExerciseFailed(AssertionError):
    """Raised by :func:`check` when an exercise fails (in graders, see :func:`failure_mode`).

    The report, hint first, is the exception's text, and IPython (hence nbval and nbgrader) shows it as the
    traceback: whoever reads the failure reads the hint.
    """

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.feedback)
        self.result = result

    def _render_traceback_(self) -> list[str]:  # IPython hook: the report instead of a long traceback
        lines = render_report(self.result.feedback, False, color=True).splitlines()
        return [lines[0].replace("✗ ", "ExerciseFailed: ", 1), *lines[1:]]


# Registries, filled from the manifest and the exercise modules by kdcore.checking (see its __init__).
EXERCISES: dict[str, Exercise] = {}
VARIANTS: dict[str, list[Variant]] = {}
CORRECT: dict[str, list[Variant]] = {}   # correct but different solutions: must pass


def register(exercise: Exercise, wrong: list[Variant], correct: list[Variant]) -> None:
    EXERCISES[exercise.id] = exercise
    VARIANTS[exercise.id] = wrong
    CORRECT[exercise.id] = correct


# ---------------------------------------------------------------------------------------------------
# plain data (what an observation may contain)
# ---------------------------------------------------------------------------------------------------
def plain(value: Any) -> Any:
    """Convert a function's output into data that ``torch.load(weights_only=True)`` reads back."""
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.is_sparse or t.layout != torch.strided:
            t = t.to_dense()
        return t.cpu().clone()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    try:  # numpy scalars / arrays without importing numpy
        import numpy as np
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return torch.from_numpy(value.copy())
    except ImportError:  # pragma: no cover
        pass
    return {"__type__": type(value).__name__, "__repr__": repr(value)[:200]}


def type_name(value: Any) -> str:
    """The kind of a (plain) value, as used in messages."""
    if isinstance(value, torch.Tensor):
        return "Tensor"
    if isinstance(value, dict) and "__type__" in value:
        return value["__type__"]
    return type(value).__name__


def describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return f"tensor({value.item():.6g}, dtype={str(value.dtype).replace('torch.', '')})"
        return f"tensor of shape {tuple(value.shape)}, dtype {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict) and "__type__" in value:
        return value["__type__"]
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def tensor_snapshot(*values: Any) -> list[torch.Tensor]:
    return [v.detach().clone() for v in values if isinstance(v, torch.Tensor)]


def changed(before: list[torch.Tensor], *values: Any) -> bool:
    """True if any tensor among ``values`` differs from its snapshot (in-place modification)."""
    now = [v for v in values if isinstance(v, torch.Tensor)]
    return any(b.shape != a.shape or not torch.equal(b, a.detach()) for b, a in zip(before, now))


def module_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def grads(module: nn.Module) -> dict[str, "torch.Tensor | None"]:
    return {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in module.named_parameters()}


def expect_raises(call: Callable[[], Any]) -> Observation:
    """Observation for a case that expects an exception: the type name raised (None if none)."""
    try:
        call()
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001 - the learner's code may raise anything
        return {"raised": type(err).__name__}
    return {"raised": None}


# ---------------------------------------------------------------------------------------------------
# comparisons
# ---------------------------------------------------------------------------------------------------
SCALAR_HINT = ("return one number for the whole batch (a 0-dim tensor): sum over the classes, then average "
               "over the rows (`.sum(-1).mean()`, or reduction='batchmean'), not one value per sample")
SHAPE_HINT = "wrong shape: check which dimension you reduce over and which you keep"
FINITE_HINT = ("NaN/inf in the output: use a numerically stable form (log_softmax instead of log(softmax(x)), "
               "subtract the maximum before exp)")
MUTATION_HINT = ("you modified an input in place (e.g. `x /= T`, `.abs_()`, `w.data = ...`): work on a copy "
                 "or use out-of-place operations")
TEACHER_GRAD_HINT = ("a gradient reached the teacher: the teacher is a constant target, so detach its outputs "
                     "(`teacher_logits.detach()`) or compute them under `torch.no_grad()`")
NOT_DIFF_HINT = ("the result is not differentiable: do not call `.item()`, `.detach()`, `.numpy()` or work "
                 "under `torch.no_grad()` inside a loss")
ERROR_HINT = "your function should not raise here: read the error message and the case name"
VALIDATE_HINT = ("validate the argument and raise ValueError (naming the argument and the allowed range), "
                 "e.g. `if T <= 0: raise ValueError(...)`")


def _as_tensor(value: Any) -> "torch.Tensor | None":
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(value, dtype=torch.float64)
    return None


def compare_values(cand: Any, ref: Any, *, what: str = "output", rtol: float = 1e-4, atol: float = 1e-6,
                   strict_type: bool = False, check_dtype: str = "kind") -> "Failure | None":
    """Compare one value (tensor, number, str, bool, None, list, dict) with tolerance.

    ``strict_type``: a number must be a number and a tensor a tensor (otherwise 0-dim tensors and
    numbers are interchangeable). ``check_dtype``: "kind" (float vs integer vs bool), "exact" or "none".
    """
    if isinstance(ref, dict) and "__type__" not in ref:
        if not isinstance(cand, dict):
            return f"{what}: expected a dict, got {type_name(cand)}", None
        if set(cand) != set(ref):
            missing, extra = sorted(set(ref) - set(cand)), sorted(set(cand) - set(ref))
            return (f"{what}: keys differ (missing {missing}, unexpected {extra})",
                    "return one entry per expected key, with the same names")
        for key in ref:
            failure = compare_values(cand[key], ref[key], what=f"{what}[{key!r}]", rtol=rtol, atol=atol,
                                     strict_type=strict_type, check_dtype=check_dtype)
            if failure:
                return failure
        return None
    if isinstance(ref, list):
        if not isinstance(cand, list) or len(cand) != len(ref):
            n = len(cand) if isinstance(cand, list) else None
            return (f"{what}: expected {len(ref)} values (a tuple/list), got "
                    f"{type_name(cand)}{'' if n is None else f' of length {n}'}", None)
        for i, (c, r) in enumerate(zip(cand, ref)):
            failure = compare_values(c, r, what=f"{what}[{i}]", rtol=rtol, atol=atol, strict_type=strict_type,
                                     check_dtype=check_dtype)
            if failure:
                return failure
        return None
    if ref is None or isinstance(ref, (str, bool)):
        if type(cand) is not type(ref) or cand != ref:
            return f"{what}: expected {describe(ref)}, got {describe(cand)}", None
        return None
    ref_t, cand_t = _as_tensor(ref), _as_tensor(cand)
    if ref_t is None:
        return (None if cand == ref else (f"{what}: expected {describe(ref)}, got {describe(cand)}", None))
    if cand_t is None or isinstance(cand, bool):
        return f"{what}: expected {'a tensor' if isinstance(ref, torch.Tensor) else 'a number'}, got {type_name(cand)}", None
    if strict_type and isinstance(ref, torch.Tensor) != isinstance(cand, torch.Tensor):
        return (f"{what}: expected {'a tensor' if isinstance(ref, torch.Tensor) else 'a Python number'}, "
                f"got {type_name(cand)}", None)
    if cand_t.shape != ref_t.shape:
        hint = SCALAR_HINT if ref_t.dim() == 0 else SHAPE_HINT
        return f"{what}: expected shape {tuple(ref_t.shape)}, got shape {tuple(cand_t.shape)}", hint
    if isinstance(ref, torch.Tensor) and isinstance(cand, torch.Tensor) and check_dtype != "none":
        def kind(t):
            return "bool" if t.dtype == torch.bool else "float" if t.is_floating_point() else "integer"
        if check_dtype == "exact" and cand.dtype != ref.dtype:
            return f"{what}: expected dtype {ref.dtype}, got {cand.dtype}", None
        if kind(cand) != kind(ref):
            return (f"{what}: expected a {kind(ref)} tensor, got dtype {str(cand.dtype).replace('torch.', '')}",
                    None)
    if cand_t.dtype == torch.bool or ref_t.dtype == torch.bool:
        if not torch.equal(cand_t.bool(), ref_t.bool()):
            n = int((cand_t.bool() != ref_t.bool()).sum())
            return f"{what}: {n} of {ref_t.numel()} entries differ", None
        return None
    c64, r64 = cand_t.double(), ref_t.double()
    c_fin, r_fin = torch.isfinite(c64), torch.isfinite(r64)
    if not torch.equal(c_fin, r_fin) or not torch.equal(c64[~c_fin].nan_to_num(0.0), r64[~r_fin].nan_to_num(0.0)):
        if bool(r_fin.all()):
            return f"{what}: contains NaN/inf ({describe(cand)}), expected finite values", FINITE_HINT
        return f"{what}: expected {describe(ref)} (not finite), got {describe(cand)}", None
    if not torch.allclose(c64[c_fin], r64[r_fin], rtol=rtol, atol=atol):
        if ref_t.numel() == 1:
            return f"{what}: expected {r64.item():.6g}, got {c64.item():.6g}", None
        diff = (c64 - r64).abs().nan_to_num(0.0)
        return (f"{what}: values differ (max abs difference {diff.max().item():.3g} at "
                f"{int(diff.argmax())} of {ref_t.numel()} entries)", None)
    return None


# Keys with a fixed meaning in observations, compared first, with their generic hints.
_FLAG_MESSAGES = {
    "mutated": ("an input was modified in place", MUTATION_HINT),
    "teacher_grad": ("a gradient reached the teacher", TEACHER_GRAD_HINT),
    "requires_grad": ("the output does not carry a gradient (not differentiable)", NOT_DIFF_HINT),
}


def compare_obs(cand: Observation, ref: Observation, *, rtol: float = 1e-4, atol: float = 1e-6,
                keys: "list[str] | None" = None, **kwargs: Any) -> "Failure | None":
    """Relative comparison of two observation dicts, key by key (flags first)."""
    if "raised" in ref:
        if cand.get("raised") != ref["raised"]:
            got = cand.get("raised") or "no exception"
            want = ref["raised"] or "no exception"
            return f"expected {want}, got {got}", (VALIDATE_HINT if ref["raised"] else ERROR_HINT)
    order = keys if keys is not None else [k for k in ref if k != "raised"]
    for key in sorted(order, key=lambda k: k not in _FLAG_MESSAGES):
        if key not in ref:
            continue
        if key in _FLAG_MESSAGES:
            if cand.get(key) != ref[key]:
                message, hint = _FLAG_MESSAGES[key]
                if not ref[key] and key == "requires_grad":
                    message, hint = "the output unexpectedly requires a gradient", None
                elif ref[key] and key != "requires_grad":
                    message, hint = f"expected {key} = {ref[key]}, got {cand.get(key)}", None
                return message, hint
            continue
        failure = compare_values(cand.get(key), ref[key], what="result" if key == "out" else key, rtol=rtol,
                                 atol=atol, **kwargs)
        if failure:
            return failure
    return None


def comparer(**kwargs: Any) -> Callable[[Observation, Observation], "Failure | None"]:
    """A ``compare`` for :class:`Case` that calls :func:`compare_obs` with fixed options."""
    return lambda cand, ref: compare_obs(cand, ref, **kwargs)


# ---------------------------------------------------------------------------------------------------
# running a case with a deadline
# ---------------------------------------------------------------------------------------------------
def _error_obs(err: BaseException) -> Observation:
    return {"error": f"{type(err).__name__}: {err}"[:500], "error_type": type(err).__name__}


def observe_with_timeout(case: Case, fn: Callable, timeout: float) -> Observation:
    """Run ``case.observe(fn)`` in a daemon thread; an exception or a time-out becomes an observation.

    A thread cannot be killed: after a time-out it keeps running in the background (the batch grader runs
    submissions in child processes that it does kill).
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["obs"] = case.observe(fn)
        except BaseException as err:  # noqa: BLE001 - any failure of learner code is an observation
            box["obs"] = _error_obs(err)

    worker = threading.Thread(target=target, name=f"kdcore-case-{case.name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return {"error": f"TimeoutError: the case did not finish within {timeout:g} s", "error_type": "TimeoutError"}
    obs = box.get("obs", {"error": "RuntimeError: the case produced no observation", "error_type": "RuntimeError"})
    return plain(obs)


@contextlib.contextmanager
def single_thread():
    """Run the (tiny) cases on one intra-op thread, restoring the caller's setting afterwards.

    On small tensors several OpenMP threads only add synchronisation; on a busy 2-core machine a
    batch-norm of 64x16 took 30x longer with 2 threads than with 1.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def get_exercise(exercise_id: str) -> Exercise:
    if not isinstance(exercise_id, str) or exercise_id not in EXERCISES:
        known = ", ".join(sorted(EXERCISES))
        raise ValueError(f"unknown exercise_id {exercise_id!r}; known ids: {known}")
    return EXERCISES[exercise_id]


def run_candidate(exercise_id: str, fn: Callable, *, case_timeout: float = 10.0) -> list[Observation]:
    """Run every case of ``exercise_id`` on ``fn``; one plain observation dict per case, in case order."""
    exercise = get_exercise(exercise_id)
    if not callable(fn):
        raise TypeError(f"fn must be a function (callable), got {type(fn).__name__}")
    with single_thread():
        _warm_up(exercise)
        return [observe_with_timeout(case, fn, case_timeout) for case in exercise.cases]


_WARM: set[str] = set()


def _warm_up(exercise: Exercise) -> None:
    """Run the first case once, untimed, on one of the grader's own correct solutions.

    The first call of many torch functions pays for lazy imports and allocations (about a second, much
    more on a loaded machine); that cost must not count against the learner's time limit.
    """
    if exercise.id in _WARM or not CORRECT.get(exercise.id):
        return
    _WARM.add(exercise.id)
    _observe_trusted(exercise.cases[0], CORRECT[exercise.id][0].fn)


# ---------------------------------------------------------------------------------------------------
# judging
# ---------------------------------------------------------------------------------------------------
def _reference(exercise_id: str) -> Callable:
    from .references import REFERENCES
    ref = REFERENCES.get(exercise_id)
    if ref is None:
        raise RuntimeError(f"the reference for {exercise_id!r} could not be imported when kdcore.checking was "
                           f"loaded ({EXERCISES[exercise_id].reference}); reinstall kdcore")
    return ref


def _observe_trusted(case: Case, fn: Callable) -> Observation:
    """Reference/variant side: run in this thread; errors become observations (for variants)."""
    try:
        with warnings.catch_warnings():  # wrong variants trigger PyTorch warnings on purpose
            warnings.simplefilter("ignore")
            return plain(case.observe(fn))
    except BaseException as err:  # noqa: BLE001
        return _error_obs(err)


# Observations of the reference and of the wrong variants are deterministic (seeded inputs, trusted code):
# computed once per process and reused by every later judge() call.
_OBS_CACHE: dict[tuple, Observation] = {}


def _cached(key: tuple, case: Case, fn: Callable) -> Observation:
    if key not in _OBS_CACHE:
        _OBS_CACHE[key] = _observe_trusted(case, fn)
    return _OBS_CACHE[key]


def _errors_match(a: Observation, b: Observation) -> bool:
    return "error" in a and "error" in b and a["error"] == b["error"]


def _matches(case: Case, cand: Observation, var_obs: Observation) -> bool:
    """Does the candidate's observation look like this variant's?"""
    if "error" in var_obs or "error" in cand:
        return _errors_match(cand, var_obs)
    try:
        return case.compare(cand, var_obs) is None
    except Exception:  # noqa: BLE001 - a malformed observation must not break the judge
        return False


def _diagnose(exercise_id: str, exercise: Exercise, observations: list[Observation], refs: list[Observation],
              passed: list[bool]) -> dict[int, list[str]]:
    """Hints for the failed cases, from the wrong variants that best explain the candidate.

    A variant *matches* a failed case when the candidate's observation there looks like the variant's.
    Its *agreement* counts the cases where it behaves like the candidate (on a case the candidate passed:
    the variant passes too; on a failed case: it matches). On a failed case, the matching variants with the
    highest agreement give the hints (at most two), so a variant that explains every failure wins over one
    that coincides on a single case. Work is lazy: all variants are tried on the first failed case, and a
    later failed case is scanned again only if none of the explanations found so far matches it.
    """
    variants = VARIANTS.get(exercise_id, [])
    cases = exercise.cases

    def var_obs(v: int, i: int) -> Observation:
        return _cached(("variant", exercise_id, variants[v].name, i), cases[i], variants[v].fn)

    def agrees(v: int, i: int) -> bool:
        obs = var_obs(v, i)
        if passed[i]:
            try:
                return "error" not in obs and cases[i].compare(obs, refs[i]) is None
            except Exception:  # noqa: BLE001
                return False
        return matches(v, i)

    memo: dict[tuple[int, int], bool] = {}

    def matches(v: int, i: int) -> bool:
        if (v, i) not in memo:
            obs = var_obs(v, i)
            try:
                same_as_ref = "error" not in obs and cases[i].compare(obs, refs[i]) is None
            except Exception:  # noqa: BLE001
                same_as_ref = False
            memo[(v, i)] = not same_as_ref and _matches(cases[i], observations[i], obs)
        return memo[(v, i)]

    agreement: dict[int, int] = {}

    def best_of(found: list[int]) -> list[int]:
        for v in found:
            if v not in agreement:
                agreement[v] = sum(agrees(v, i) for i in range(len(cases)))
        top = max(agreement[v] for v in found)
        return [v for v in found if agreement[v] == top]

    hints: dict[int, list[str]] = {}
    explanations: list[int] = []
    for i, ok in enumerate(passed):
        if ok or not variants:
            continue
        found = [v for v in explanations if matches(v, i)]
        if not found:
            found = [v for v in range(len(variants)) if matches(v, i)]
            if not found:
                continue
            explanations.extend(v for v in best_of(found) if v not in explanations)
        chosen = best_of(found)
        hints[i] = list(dict.fromkeys(variants[v].hint for v in chosen))[:2]
    return hints


def judge(exercise_id: str, observations: list[Observation]) -> CheckResult:
    """Compare a candidate's observations with the reference's (computed here) and build the report."""
    with single_thread():
        return _judge(exercise_id, observations)


def _judge(exercise_id: str, observations: list[Observation]) -> CheckResult:
    exercise = get_exercise(exercise_id)
    if not isinstance(observations, list) or len(observations) != len(exercise.cases):
        raise ValueError(f"observations must be a list of {len(exercise.cases)} dicts (one per case of "
                         f"{exercise_id!r}), got {type(observations).__name__}"
                         f"{f' of length {len(observations)}' if isinstance(observations, list) else ''}")
    reference = _reference(exercise_id)
    refs: list[Observation] = []
    failures: list["Failure | None"] = []
    clean: list[Observation] = []
    for ci, (case, cand) in enumerate(zip(exercise.cases, observations)):
        ref = dict(_cached(("reference", exercise_id, id(reference), ci), case, reference))
        if "error" in ref:
            raise RuntimeError(f"grader bug: the reference of {exercise_id!r} failed on case {case.name!r}: "
                               f"{ref['error']}")
        refs.append(ref)
        if not isinstance(cand, dict):
            cand = {"error": f"TypeError: observation is {type(cand).__name__}, not a dict", "error_type": "TypeError"}
        clean.append(cand)
        if "error" in cand:
            message = str(cand["error"])
            if cand.get("error_type") == "NotImplementedError" or message.startswith("NotImplementedError"):
                failures.append(("not implemented yet", NOT_IMPLEMENTED_HINT))
                continue
            if cand.get("error_type") == "TimeoutError":
                generic = "too slow: look for an endless loop or a Python loop over every element"
            else:
                generic = ERROR_HINT
            failures.append((f"raised {message}", generic))
            continue
        try:
            failure = case.compare(cand, ref)
            if failure is None and case.versus_reference is not None:
                failure = case.versus_reference(cand, ref)
            failures.append(failure)
        except Exception as err:  # noqa: BLE001 - e.g. a candidate returned something unexpected
            failures.append((f"could not compare the result ({type(err).__name__}: {err})", None))
    passed = [f is None for f in failures]
    not_implemented = all(f is None or f[1] == NOT_IMPLEMENTED_HINT for f in failures)
    specific = {} if all(passed) or not_implemented else _diagnose(exercise_id, exercise, clean, refs, passed)
    results: list[CaseResult] = []
    for i, (case, failure) in enumerate(zip(exercise.cases, failures)):
        if failure is None:
            results.append(CaseResult(case.name, True))
            continue
        message, generic = failure
        hint = " | ".join(specific[i]) if specific.get(i) else (generic or "")
        results.append(CaseResult(case.name, False, message, hint))
    return _result(exercise_id, results)


def _result(exercise_id: str, results: list[CaseResult]) -> CheckResult:
    """The report: a header line, then each distinct hint once followed by the failed cases it explains (one
    line each), the failed cases without a hint, and the passed cases summarised in one line."""
    n_pass = sum(r.passed for r in results)
    score = n_pass / len(results) if results else 0.0
    passed = n_pass == len(results)
    failed = [r for r in results if not r.passed]
    if passed:
        return CheckResult(exercise_id, True, score, f"{exercise_id}: all {len(results)} cases passed — well done!",
                           results)
    if all(r.hint == NOT_IMPLEMENTED_HINT for r in failed):
        return CheckResult(exercise_id, False, score, f"{exercise_id}: {NOT_IMPLEMENTED_HINT}", results)
    lines = [f"{exercise_id}: {n_pass}/{len(results)} cases passed"]
    by_hint: dict[str, list[CaseResult]] = {}
    for r in failed:  # hints in the order of the first case that needs them
        by_hint.setdefault(r.hint, []).append(r)
    for hint, group in sorted(by_hint.items(), key=lambda kv: kv[0] == ""):
        if hint:
            lines.append(f"  hint: {hint}")
        lines.extend(f"    ✗ {r.name}" + (f": {r.message}" if r.message else "") for r in group)
    passed_names = [r.name for r in results if r.passed]
    if passed_names:
        lines.append(f"  ✓ {len(passed_names)} passed: " + _shorten("; ".join(passed_names), 150))
    return CheckResult(exercise_id, False, score, "\n".join(lines), results)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1].rstrip("; ") + "…"


_RED, _GREEN, _BOLD, _RESET = "\x1b[31m", "\x1b[32m", "\x1b[1m", "\x1b[0m"


def render_report(feedback: str, passed: bool, *, color: bool) -> str:
    """``feedback`` for a screen: with ``color``, the header line green (passed) or bold red, hints bold."""
    if not color:
        return feedback
    head, _, rest = feedback.partition("\n")
    mark = "✓ " if passed else "✗ "
    lines = [f"{_GREEN if passed else _BOLD + _RED}{mark}{head}{_RESET}"]
    for line in rest.splitlines():
        if line.lstrip().startswith("hint:"):
            line = f"{_BOLD}{line}{_RESET}"
        elif line.lstrip().startswith("✗"):
            line = f"{_RED}{line}{_RESET}"
        lines.append(line)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# raise or report: who is reading
# ---------------------------------------------------------------------------------------------------
CHECK_MODE_ENV = "KDCORE_CHECK"


def _in_ipython_kernel() -> bool:
    """True inside a Jupyter kernel (ipykernel's shell), false in a terminal IPython or plain Python."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - a broken IPython must not break grading
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def failure_mode() -> str:
    """``"report"`` (a failed check prints its report and the notebook goes on) or ``"raise"``
    (:class:`ExerciseFailed`, so that a grader counts the cell as failed).

    ``$KDCORE_CHECK`` decides when set (``raise`` or ``report``): the course's pytest/nbval configuration
    (``conftest.py``) and the nbgrader configuration that ``python -m kdcore.assign --nbgrader`` writes set
    ``raise``. Unset, it is ``report`` only in a kernel that a Jupyter server started for an open notebook
    (JupyterLab, Notebook: the server gives such kernels ``JPY_SESSION_NAME``), where a learner presses Run
    All; everywhere else (nbclient, nbconvert, plain Python, pytest) it is ``raise``. The batch grader does
    not call ``check``: it judges outputs, so it counts failures whatever this says.
    """
    value = os.environ.get(CHECK_MODE_ENV, "").strip().lower()
    if value in ("raise", "report"):
        return value
    if value:
        raise ValueError(f"environment variable {CHECK_MODE_ENV} must be 'raise' or 'report' (or unset), "
                         f"got {os.environ[CHECK_MODE_ENV]!r}")
    return "report" if os.environ.get("JPY_SESSION_NAME") and _in_ipython_kernel() else "raise"


def check(exercise_id: str, fn: Callable, *, raise_on_fail: "bool | None" = None,
          verbose: bool = True) -> CheckResult:
    """Grade ``fn`` on the exercise ``exercise_id`` and show a short report (the hint first).

    Returns a :class:`CheckResult` (``passed``, ``score`` = fraction of cases passed, ``feedback``, ``cases``).
    On failure it raises :class:`ExerciseFailed` (an ``AssertionError`` whose text is the report) when
    ``raise_on_fail`` is true; ``None`` (the default) follows :func:`failure_mode`: in a notebook open in
    JupyterLab a failure is reported in red and Run All goes on, in graders (pytest/nbval, nbgrader, CI)
    it raises. ``verbose=False`` prints nothing.
    """
    exercise = get_exercise(exercise_id)
    if not callable(fn):
        raise TypeError(f"fn must be your function (a callable), got {type(fn).__name__}; "
                        f"pass the function itself: check({exercise_id!r}, {exercise_id})")
    if raise_on_fail is None:
        raise_on_fail = failure_mode() == "raise"
    # A function that is, or calls, this exercise's reference gets no credit (kdcore.classroom.reference_use).
    from kdcore.classroom.reference_use import reference_use, verdict, watching
    why = reference_use(exercise_id, fn)
    if why is None:
        with watching(exercise_id) as watch:
            observations = run_candidate(exercise_id, fn, case_timeout=exercise.timeout)
        if watch.called:
            why = "it called that reference while the cases ran"
    if why is not None:
        result = CheckResult(exercise_id, False, 0.0, verdict(exercise_id, why))
    else:
        result = judge(exercise_id, observations)
    will_raise = raise_on_fail and not result.passed
    in_kernel = _in_ipython_kernel()
    # In a kernel a raised failure shows the report as its traceback: printing it too would show it twice.
    if verbose and not (will_raise and in_kernel):
        color = in_kernel or bool(getattr(sys.stdout, "isatty", lambda: False)())
        stream = sys.stderr if (in_kernel and not result.passed) else sys.stdout  # Jupyter tints stderr red
        print(render_report(result.feedback, result.passed, color=color), file=stream)
    result.shown = verbose
    if will_raise:
        raise ExerciseFailed(result)
    return result
