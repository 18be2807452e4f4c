"""The course home's progress table: which exercises the learner has solved, found in seconds.

Shown by ``notebooks/00_start_here.ipynb`` (``kd.progress_table()``). For each learner notebook
``NN_*.ipynb`` it reads the saved file, executes only its *definitions* (imports, ``def``, ``class`` and
constant assignments: :func:`kdcore._notebook.definitions`, the batch grader's fast path), never the
training or plotting cells, and runs :func:`kdcore.check` quietly on every exercise the notebook checks.
The learner's code runs in this process, each notebook in its own namespace, each case under the grader's
time limit.
"""
from __future__ import annotations

import ast
import contextlib
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ._notebook import cell_source, check_calls, definitions

__all__ = ["ExerciseStatus", "NotebookProgress", "ProgressTable", "notebook_progress", "course_progress",
           "progress_table", "learner_notebooks", "notebook_title"]

NOTEBOOK_NAME = re.compile(r"^(\d\d)_.*\.ipynb$")


@dataclass
class ExerciseStatus:
    exercise_id: str
    state: str            # "solved", "started" (some cases fail), "todo" (not implemented), "missing", "error"
    detail: str = ""      # e.g. "7/11 cases", the error
    score: float = 0.0

    @property
    def mark(self) -> str:
        return {"solved": "✓", "started": "✗", "todo": "○", "missing": "?", "error": "!"}[self.state]

    def label(self) -> str:
        text = f"{self.mark} `{self.exercise_id}`"
        return text + (f" ({self.detail})" if self.detail and self.state != "solved" else "")


@dataclass
class NotebookProgress:
    path: Path
    title: str
    exercises: list[ExerciseStatus] = field(default_factory=list)

    @property
    def solved(self) -> int:
        return sum(e.state == "solved" for e in self.exercises)

    @property
    def done(self) -> bool:
        return self.solved == len(self.exercises)


def learner_notebooks(folder: Path) -> list[Path]:
    """``NN_*.ipynb`` in ``folder``, in course order (the home page ``00_*`` included)."""
    return sorted(p for p in Path(folder).glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))


def notebook_title(nb: dict, fallback: str) -> str:
    """The first level-1 heading of a notebook (``# 01 · Soft labels`` gives ``01 · Soft labels``)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in cell_source(cell).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def _read(path: Path) -> dict:
    import json

    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def notebook_progress(path: Path) -> NotebookProgress:
    """Check every exercise that the notebook ``path`` checks, running only its definitions."""
    from .checking import check
    from .checking.core import NOT_IMPLEMENTED_HINT

    path = Path(path)
    try:
        nb = _read(path)
    except (OSError, ValueError) as error:
        return NotebookProgress(path, path.stem, [ExerciseStatus("(notebook)", "error",
                                                                 f"cannot read: {error}")])
    progress = NotebookProgress(path, notebook_title(nb, path.stem))
    namespace: dict = {"__name__": f"kdcore_progress_{path.stem}"}
    broken: list[str] = []
    wanted: list[tuple[str, str | None]] = []
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = cell_source(cell)
        wanted += [(c.exercise_id, c.function_name) for c in check_calls(source)]
        statements, syntax_error = definitions(source)
        if syntax_error is not None:
            broken.append(f"cell {index + 1}: SyntaxError: {syntax_error.msg} (line {syntax_error.lineno})")
            continue
        for statement in statements:
            module = ast.Module(body=[statement], type_ignores=[])
            try:
                with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    exec(compile(module, f"{path.name}, cell {index + 1}", "exec"), namespace)  # noqa: S102
            except Exception as error:  # noqa: BLE001 - the learner's cell may raise anything
                broken.append(f"cell {index + 1}: {type(error).__name__}: {error}")
    seen: set[str] = set()
    for exercise_id, function_name in wanted:
        if exercise_id in seen:
            continue
        seen.add(exercise_id)
        fn = namespace.get(function_name or exercise_id)
        if not callable(fn):
            detail = f"`{function_name or exercise_id}` is not defined"
            progress.exercises.append(ExerciseStatus(exercise_id, "error" if broken else "missing",
                                                     detail + (f"; {broken[0]}" if broken else "")))
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                result = check(exercise_id, fn, raise_on_fail=False, verbose=False)
        except Exception as error:  # noqa: BLE001 - an unknown id, for example
            progress.exercises.append(ExerciseStatus(exercise_id, "error", f"{type(error).__name__}: {error}"))
            continue
        n_pass, n = sum(c.passed for c in result.cases), len(result.cases)
        if result.passed:
            state = "solved"
        elif all(c.hint == NOT_IMPLEMENTED_HINT for c in result.cases if not c.passed) and n_pass == 0:
            state = "todo"
        else:
            state = "started"
        progress.exercises.append(ExerciseStatus(exercise_id, state, f"{n_pass}/{n} cases", result.score))
    return progress


def course_progress(folder: Path) -> list[NotebookProgress]:
    """:func:`notebook_progress` for every course notebook in ``folder``."""
    return [notebook_progress(path) for path in learner_notebooks(folder)]


@dataclass
class ProgressTable:
    """The progress of every notebook, shown as a Markdown table in a notebook, as text elsewhere."""
    folder: Path
    notebooks: list[NotebookProgress]

    @property
    def exercises(self) -> list[ExerciseStatus]:
        return [e for nb in self.notebooks for e in nb.exercises]

    def next_notebook(self) -> NotebookProgress | None:
        """The first notebook (after the home page) with an exercise not solved yet."""
        for nb in self.notebooks:
            if nb.exercises and not nb.done:
                return nb
        return None

    def summary(self) -> str:
        solved = sum(e.state == "solved" for e in self.exercises)
        nxt = self.next_notebook()
        head = f"{solved} of {len(self.exercises)} exercises solved."
        if nxt is None:
            return head + " All done: rehearse the talking part with the quiz (`python -m quiz --mock`)."
        return head + f" Next: [{nxt.title}]({nxt.path.name})."

    def _repr_markdown_(self) -> str:
        rows = ["| notebook | exercises |", "|---|---|"]
        for nb in self.notebooks:
            if nb.path.name.startswith("00_"):
                continue
            labels = " · ".join(e.label() for e in nb.exercises) or "— (no exercise: questions and experiments)"
            rows.append(f"| [{nb.title}]({nb.path.name}) | {labels} |")
        legend = "✓ solved · ✗ some cases fail · ○ not started · ? function not found · ! cell error"
        return "\n".join(rows) + f"\n\n{legend}\n\n**{self.summary()}**"

    def __str__(self) -> str:
        lines = []
        for nb in self.notebooks:
            if nb.path.name.startswith("00_"):
                continue
            labels = ", ".join(e.label().replace("`", "") for e in nb.exercises) or "-"
            lines.append(f"{nb.title}: {labels}")
        return "\n".join(lines + [self.summary().replace("[", "").replace("]", " ").split("(")[0].rstrip()])

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # IPython in a terminal
        printer.text(str(self))


def _default_folder() -> Path:
    """The learner notebooks next to the working folder (``notebooks/`` or ``solutions/``), else the clone's."""
    here = Path.cwd()
    for candidate in (here.parent / "notebooks", here / "notebooks"):
        if candidate.is_dir():
            return candidate
    return Path(__file__).resolve().parents[1] / "notebooks"


def progress_table(folder: str | Path | None = None) -> ProgressTable:
    """Progress over the learner notebooks in ``folder`` (default: the course's ``notebooks/``)."""
    folder = Path(folder) if folder is not None else _default_folder()
    if not folder.is_dir():
        raise ValueError(f"folder must be the folder of the learner notebooks, got {folder} (not a folder)")
    return ProgressTable(folder, course_progress(folder))
