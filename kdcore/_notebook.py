"""Notebook helpers shared by ``kdcore.assign`` (learner notebooks) and ``kdcore.grade`` (batch grading).

Only the standard library is used here, so the grading worker can read a submission before paying for
``import torch``. A notebook is handled as the plain JSON dictionary of nbformat 4 (``cells``, each with
``cell_type`` and ``source``): submissions are often slightly invalid, and grading must not depend on them
passing nbformat's schema validation.
"""
from __future__ import annotations

import ast
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
HIDDEN_MARKER = "### BEGIN HIDDEN"
STUB = 'raise NotImplementedError("Your code here")'


class NotebookFormatError(ValueError):
    """A solution notebook breaks the format of docs/CONTRIBUTING.md (the message names notebook and cell)."""


def cell_source(cell: dict) -> str:
    """The source of a cell as one string (nbformat stores it as a string or a list of lines)."""
    source = cell.get("source", "")
    if isinstance(source, list):
        return "".join(str(part) for part in source)
    return str(source)


def _marker(line: str) -> str | None:
    stripped = line.strip()
    if stripped.startswith(BEGIN_SOLUTION):
        return "begin"
    if stripped.startswith(END_SOLUTION):
        return "end"
    if stripped.startswith(HIDDEN_MARKER):
        return "hidden"
    return None


def solution_regions(source: str, where: str) -> list[tuple[int, int]]:
    """Line ranges ``(begin, end)`` (0-based, both marker lines included) of the solution regions.

    ``where`` names the notebook and cell for error messages. Raises ``NotebookFormatError`` for an
    END without BEGIN, a BEGIN inside a region, a BEGIN never closed, or a ``### BEGIN HIDDEN`` region
    (hidden tests are not supported: the grader's cases live in ``kdcore.checking``).
    """
    regions: list[tuple[int, int]] = []
    start: int | None = None
    for number, line in enumerate(source.splitlines()):
        kind = _marker(line)
        if kind == "hidden":
            raise NotebookFormatError(
                f"{where}, line {number + 1}: '{line.strip()}' regions are not supported; grading cases "
                "belong in kdcore.checking, not in the notebook")
        if kind == "begin":
            if start is not None:
                raise NotebookFormatError(
                    f"{where}, line {number + 1}: '{BEGIN_SOLUTION}' inside the region opened at line "
                    f"{start + 1}; close it with '{END_SOLUTION}' first")
            start = number
        elif kind == "end":
            if start is None:
                raise NotebookFormatError(
                    f"{where}, line {number + 1}: '{END_SOLUTION}' without a matching '{BEGIN_SOLUTION}'")
            regions.append((start, number))
            start = None
    if start is not None:
        raise NotebookFormatError(
            f"{where}, line {start + 1}: '{BEGIN_SOLUTION}' is never closed by '{END_SOLUTION}'")
    return regions


def strip_solutions(source: str, where: str) -> str:
    """Replace each solution region (markers included) by the stub at the BEGIN marker's indentation."""
    lines = source.splitlines()
    regions = solution_regions(source, where)
    if not regions:
        return source
    out: list[str] = []
    position = 0
    for begin, end in regions:
        out.extend(lines[position:begin])
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        out.append(indent + STUB)
        position = end + 1
    out.extend(lines[position:])
    text = "\n".join(out)
    return text + "\n" if source.endswith("\n") else text


def solution_lines(source: str, where: str) -> list[str]:
    """The lines strictly inside the solution regions (the text a learner must not see)."""
    lines = source.splitlines()
    inside: list[str] = []
    for begin, end in solution_regions(source, where):
        inside.extend(lines[begin + 1:end])
    return inside


# --- check cells -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckCall:
    exercise_id: str
    function_name: str | None


def _check_call(node: ast.AST) -> CheckCall | None:
    """``kd.check("id", fn)``, ``kdcore.check(...)``, ``check(...)`` or ``kd.checking.check(...)``."""
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return None
    call = node.value
    func = call.func
    is_check = (isinstance(func, ast.Name) and func.id == "check") or (
        isinstance(func, ast.Attribute) and func.attr == "check")
    if not is_check or not call.args:
        return None
    first = call.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return None
    fn_name = None
    if len(call.args) > 1 and isinstance(call.args[1], ast.Name):
        fn_name = call.args[1].id
    return CheckCall(first.value, fn_name)


def parse_check_cell(source: str) -> CheckCall | None:
    """The check call of a check cell: a cell whose only statement is ``kd.check("id", fn)``."""
    try:
        tree = ast.parse(strip_magics(source))
    except SyntaxError:
        return None
    if len(tree.body) != 1:
        return None
    return _check_call(tree.body[0])


def check_calls(source: str) -> list[CheckCall]:
    """Every top-level ``check("id", ...)`` statement in a cell (a learner may have merged cells)."""
    try:
        tree = ast.parse(strip_magics(source))
    except SyntaxError:
        return []
    return [c for c in (_check_call(node) for node in tree.body) if c is not None]


def defined_functions(source: str) -> list[str]:
    """Names of the top-level functions a cell defines."""
    try:
        tree = ast.parse(strip_magics(source))
    except SyntaxError:
        return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


# --- the grader's fast path ----------------------------------------------------------------------------

_MAGIC = re.compile(r"^\s*[%!]")


def strip_magics(source: str) -> str:
    """Blank out IPython magics (``%time``, ``%%capture``) and shell lines (``!pip ...``).

    A cell magic (``%%...`` on the first line) makes the whole cell non-Python: it is dropped. Lines are
    blanked rather than removed so that line numbers in error messages still match the notebook.
    """
    if source.lstrip().startswith("%%"):
        return ""
    return "\n".join("" if _MAGIC.match(line) else line for line in source.splitlines())


_CONSTANT_NODES = (ast.Constant, ast.Name, ast.Load, ast.Attribute, ast.UnaryOp, ast.BinOp, ast.Tuple,
                   ast.List, ast.Set, ast.Dict, ast.unaryop, ast.operator)


def _is_constant_expression(node: ast.AST) -> bool:
    """Literals, names and arithmetic on them (``EPS = 1e-8``, ``SIZES = (64, 32, 10)``, ``N = 2 ** 8``).

    Calls, subscripts and comprehensions are refused: they may train a model or read data.
    """
    return all(isinstance(child, _CONSTANT_NODES) for child in ast.walk(node))


def _is_simple_target(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return True
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(isinstance(e, ast.Name) for e in node.elts)
    return False


def is_definition(node: ast.stmt) -> bool:
    """Whether the grader's fast path executes this top-level statement.

    Kept: imports, ``def``, ``class`` and assignments of constant expressions to plain names. Skipped:
    everything else (calls such as ``kd.check(...)`` or training loops, loops, ``if`` blocks, attribute or
    item assignments).
    """
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, ast.Assign):
        return all(_is_simple_target(t) for t in node.targets) and _is_constant_expression(node.value)
    if isinstance(node, ast.AnnAssign):
        return (isinstance(node.target, ast.Name) and node.value is not None
                and _is_constant_expression(node.value))
    return False


def definitions(source: str) -> tuple[list[ast.stmt], SyntaxError | None]:
    """The statements of one code cell that the fast path executes, or the cell's syntax error."""
    try:
        tree = ast.parse(strip_magics(source))
    except SyntaxError as error:
        return [], error
    return [node for node in tree.body if is_definition(node)], None


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, ``\n`` line ends) to ``path`` via a temporary file in the same folder and
    ``os.replace``, so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
