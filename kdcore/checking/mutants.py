"""Mutation testing of the grader's cases: does ``check`` reject every small change of the reference?

The catalogue of wrong variants (``kdcore/exercises/<id>.py``) proves the grader catches the mistakes someone
thought of. This module is the mechanical complement: it derives *mutants* of the reference function from its
syntax tree, one small change each, and grades every mutant with the exercise's own cases. A mutant that
passes (*survives*) is either equivalent to the reference (listed, with the reason, in the exercise module's
``EQUIVALENT_MUTANTS``) or a clause of the contract that no case tests — then the exercise needs a new case.

Mutation operators (one change per mutant):

* arithmetic ``+ − * / // ** %`` swapped for a neighbour (``+``↔``−``, ``*``↔``/``, ``**`` → ``*`` …)
* comparisons flipped or loosened (``<``↔``<=``, ``>``↔``>=``, ``==``↔``!=``, ``in``↔``not in``), ``and``↔``or``,
  ``not`` removed, unary minus removed
* constants off by one (integers ±1, floats +1, ``True``↔``False``)
* a wrapping call removed (``clamp``, ``round``, ``abs``, ``detach``, ``float`` …: the call is replaced by its
  argument, or by the object it is called on)
* a keyword argument changed: ``dim``/``axis`` to another dimension, ``keepdim``/``largest``/``descending``/
  ``sorted``/``log_target`` negated

Only the reference function's own body is mutated (not the helpers it calls). Usage::

    python -m kdcore.checking.mutants kd_loss          # survivors of one exercise
    python -m kdcore.checking.mutants --all            # the kill-rate table of every exercise
"""
from __future__ import annotations

import argparse
import ast
import copy
import inspect
import sys
import textwrap
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

WRAPPERS = {"clamp", "clamp_", "clamp_min", "clamp_max", "clip", "round", "round_", "abs", "abs_", "detach",
            "float", "double", "int", "long", "contiguous", "clone", "item", "squeeze", "unsqueeze", "flatten",
            "t", "sqrt", "exp", "log", "neg", "sum", "mean", "max", "min", "relu", "sign"}
NEGATABLE_KEYWORDS = {"keepdim", "largest", "descending", "sorted", "log_target", "stable", "inplace", "bias"}
DIM_KEYWORDS = {"dim", "axis"}

_BINOP_SWAPS: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
                                  ast.FloorDiv: ast.Div, ast.Pow: ast.Mult, ast.Mod: ast.FloorDiv,
                                  ast.MatMult: ast.Mult}
_CMP_SWAPS: dict[type, type] = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
                                ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
                                ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Pow: "**",
           ast.Mod: "%", ast.MatMult: "@", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
           ast.NotEq: "!=", ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
           ast.And: "and", ast.Or: "or"}


@dataclass
class Mutant:
    id: str            # stable within the function: "line +12, col 8: `a + b` → `a - b`"
    fn: Callable


def _where(node: ast.AST, first_line: int) -> str:
    return f"line +{node.lineno - first_line}, col {node.col_offset}"


def _short(node: ast.AST) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= 50 else text[:47] + "..."


def _edits(func: ast.FunctionDef) -> Iterator[tuple[ast.AST, Callable[[ast.AST], "ast.AST | None"], str]]:
    """(node, replace(node_copy) -> new node, description) for every mutation of the function body."""
    body_nodes = [n for stmt in func.body for n in ast.walk(stmt)]
    docstring = func.body[0] if (func.body and isinstance(func.body[0], ast.Expr)
                                 and isinstance(func.body[0].value, ast.Constant)
                                 and isinstance(func.body[0].value.value, str)) else None
    skip = set(map(id, ast.walk(docstring))) if docstring else set()
    for node in body_nodes:
        if id(node) in skip:
            continue
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAPS:
            new_op = _BINOP_SWAPS[type(node.op)]

            def swap(n: ast.BinOp, new_op: type = new_op) -> ast.AST:
                n.op = new_op()
                return n
            yield node, swap, f"`{_SYMBOL[type(node.op)]}` → `{_SYMBOL[new_op]}` in `{_short(node)}`"
        elif isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _CMP_SWAPS:
                    new_op = _CMP_SWAPS[type(op)]

                    def flip(n: ast.Compare, i: int = i, new_op: type = new_op) -> ast.AST:
                        n.ops[i] = new_op()
                        return n
                    yield node, flip, f"`{_SYMBOL[type(op)]}` → `{_SYMBOL[new_op]}` in `{_short(node)}`"
        elif isinstance(node, ast.BoolOp):
            other = ast.Or if isinstance(node.op, ast.And) else ast.And

            def swap_bool(n: ast.BoolOp, other: type = other) -> ast.AST:
                n.op = other()
                return n
            yield node, swap_bool, f"`{_SYMBOL[type(node.op)]}` → `{_SYMBOL[other]}` in `{_short(node)}`"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            yield node, (lambda n: n.operand), f"`{_short(node)}` → `{_short(node.operand)}`"
        elif isinstance(node, ast.Constant) and not isinstance(node.value, str) and node.value is not None:
            value = node.value
            if isinstance(value, bool):
                yield node, (lambda n, v=value: ast.Constant(not v)), f"`{value}` → `{not value}`"
            elif isinstance(value, int):
                for delta in (1, -1):
                    yield (node, (lambda n, v=value, d=delta: ast.Constant(v + d)),
                           f"`{value}` → `{value + delta}`")
            elif isinstance(value, float):
                yield node, (lambda n, v=value: ast.Constant(v + 1.0)), f"`{value!r}` → `{value + 1.0!r}`"
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name in WRAPPERS:
                if isinstance(node.func, ast.Attribute) and not _is_module(node.func.value):
                    yield node, (lambda n: n.func.value), f"`{_short(node)}` → `{_short(node.func.value)}`"
                elif node.args:
                    yield node, (lambda n: n.args[0]), f"`{_short(node)}` → `{_short(node.args[0])}`"
            for k, kw in enumerate(node.keywords):
                if kw.arg in NEGATABLE_KEYWORDS and isinstance(kw.value, ast.Constant) \
                        and isinstance(kw.value.value, bool):
                    def negate(n: ast.Call, k: int = k) -> ast.AST:
                        n.keywords[k].value = ast.Constant(not n.keywords[k].value.value)
                        return n
                    yield node, negate, f"`{kw.arg}={kw.value.value}` → `{kw.arg}={not kw.value.value}`"
                elif kw.arg in DIM_KEYWORDS:
                    current = ast.unparse(kw.value)
                    for other in ("0", "1", "-1"):
                        if other == current:
                            continue

                        def set_dim(n: ast.Call, k: int = k, other: str = other) -> ast.AST:
                            n.keywords[k].value = ast.parse(other, mode="eval").body
                            return n
                        yield node, set_dim, f"`{kw.arg}={current}` → `{kw.arg}={other}` in `{_short(node)}`"


def _is_module(node: ast.AST) -> bool:
    """``torch.round(x)`` / ``F.relu(x)`` / ``math.sqrt(x)``: the call's receiver is a module, not a value."""
    return isinstance(node, (ast.Name, ast.Attribute)) and ast.unparse(node).split(".")[0] in {
        "torch", "F", "nn", "math", "np", "numpy", "v"}


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, replace: Callable[[ast.AST], ast.AST]) -> None:
        self.target, self.replace, self.done = target, replace, False

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            self.done = True
            return self.replace(node)
        return super().generic_visit(node)


def mutants(fn: Callable) -> list[Mutant]:
    """Every single-change mutant of ``fn`` that compiles, compiled in a copy of ``fn``'s module globals."""
    source = textwrap.dedent(inspect.getsource(fn))
    tree = ast.parse(source)
    func = tree.body[0]
    if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise TypeError(f"{fn!r} is not a plain function")
    first = func.lineno
    found: list[Mutant] = []
    seen: set[str] = {ast.unparse(tree)}   # mutants are told apart by the code they produce
    for node, replace, description in list(_edits(func)):
        mutated_tree = copy.deepcopy(tree)
        # locate the same node in the copy: walk both trees in step
        target = next(c for o, c in zip(ast.walk(tree), ast.walk(mutated_tree)) if o is node)
        transformer = _Replace(target, lambda n, replace=replace: replace(n))
        mutated_tree = transformer.visit(mutated_tree)
        if not transformer.done:
            continue
        ast.fix_missing_locations(mutated_tree)
        mutant_id = f"{_where(node, first)}: {description}"
        code = ast.unparse(mutated_tree)
        if code in seen:       # the same program reached by another change (e.g. `-1` → `1` twice)
            continue
        seen.add(code)
        namespace = dict(fn.__globals__)   # a copy: the mutant must not replace the module's real function
        try:
            exec(compile(mutated_tree, f"<mutant of {fn.__qualname__}: {mutant_id}>", "exec"), namespace)  # noqa: S102
        except Exception:  # noqa: BLE001 - a mutant that does not compile is no mutant
            continue
        found.append(Mutant(mutant_id, namespace[func.name]))
    return found


@dataclass
class Report:
    exercise_id: str
    total: int
    killed: list[str]
    equivalent: list[str]
    survived: list[str]
    stale_equivalents: list[str]   # listed as equivalent but no longer generated (the reference changed)

    @property
    def kill_rate(self) -> float:
        """Killed among the non-equivalent mutants (1.0 when there are none)."""
        n = len(self.killed) + len(self.survived)
        return len(self.killed) / n if n else 1.0


def rejected(exercise_id: str, fn: Callable, *, case_timeout: float = 5.0) -> bool:
    """Would ``check`` fail ``fn``? Cases in order, stopping at the first failure (no hints are needed here)."""
    from . import EXERCISES, REFERENCES
    from .core import _cached, observe_with_timeout, single_thread

    exercise = EXERCISES[exercise_id]
    reference = REFERENCES[exercise_id]
    with single_thread():
        for i, case in enumerate(exercise.cases):
            ref = _cached(("reference", exercise_id, id(reference), i), case, reference)
            obs = observe_with_timeout(case, fn, min(case_timeout, exercise.timeout))
            if "error" in obs:
                return True
            try:
                failure = case.compare(obs, ref)
                if failure is None and case.versus_reference is not None:
                    failure = case.versus_reference(obs, ref)
            except Exception:  # noqa: BLE001 - an unexpected output is a rejection
                return True
            if failure is not None:
                return True
    return False


def run(exercise_id: str, *, case_timeout: float = 5.0) -> Report:
    """Grade every mutant of the exercise's reference with its cases."""
    from . import EXERCISES, REFERENCES

    exercise = EXERCISES[exercise_id]
    reference = REFERENCES[exercise_id]
    killed, equivalent, survived = [], [], []
    generated = mutants(reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mutant in generated:
            if rejected(exercise_id, mutant.fn, case_timeout=case_timeout):
                killed.append(mutant.id)
            elif mutant.id in exercise.equivalent_mutants:
                equivalent.append(mutant.id)
            else:
                survived.append(mutant.id)
    ids = {m.id for m in generated}
    stale = [m for m in exercise.equivalent_mutants if m not in ids]
    return Report(exercise_id, len(generated), killed, equivalent, survived, stale)


def format_table(reports: list[Report]) -> str:
    lines = [f"{'exercise':<24}{'mutants':>8}{'killed':>8}{'equiv.':>8}{'survived':>9}{'kill rate':>11}"]
    for r in reports:
        lines.append(f"{r.exercise_id:<24}{r.total:>8}{len(r.killed):>8}{len(r.equivalent):>8}"
                     f"{len(r.survived):>9}{r.kill_rate:>10.0%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from . import EXERCISES

    parser = argparse.ArgumentParser(prog="python -m kdcore.checking.mutants",
                                     description="Mutation testing of the grader's cases (see the module doc).")
    parser.add_argument("ids", nargs="*", help="exercise ids (default with --all: every exercise)")
    parser.add_argument("--all", action="store_true", help="every exercise of the manifest")
    args = parser.parse_args(argv)
    ids = sorted(EXERCISES) if args.all or not args.ids else args.ids
    unknown = [i for i in ids if i not in EXERCISES]
    if unknown:
        parser.error(f"unknown exercise ids {unknown}; known: {', '.join(sorted(EXERCISES))}")
    reports = []
    for exercise_id in ids:
        report = run(exercise_id)
        reports.append(report)
        for mutant_id in report.survived:
            print(f"{exercise_id}: SURVIVED {mutant_id}")
        for mutant_id in report.stale_equivalents:
            print(f"{exercise_id}: listed as equivalent but not generated any more: {mutant_id}")
    print(format_table(reports))
    return 1 if any(r.survived for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
