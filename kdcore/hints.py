"""``kd.hint("kd_loss")``: graded hints for one exercise, a little more at each call, then the solution.

Taught in every exercise notebook (the home page, ``00_start_here``, introduces it). The hints are derived
from what the grader already knows, so they cannot drift from it:

1. what the exercise asks and every situation the grader checks (the names of its cases);
2. the mistakes the grader recognises (the hints of its catalogue of wrong answers), as a checklist;
3. the course's solution: the code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` in
   ``solutions/NN_*.ipynb``.

Each call to :func:`hint` shows the next level for that exercise (kept for the life of the kernel);
``level=`` shows a given one.
"""
from __future__ import annotations

from pathlib import Path

from ._notebook import cell_source, parse_check_cell, solution_regions

__all__ = ["hint", "hint_text", "solution_source", "LEVELS"]

LEVELS = ("what the grader checks", "mistakes the grader recognises", "the course's solution")
_shown: dict[str, int] = {}   # exercise id -> highest level shown in this process


def _exercise(exercise_id: str):
    from . import checking  # importing the package registers every exercise

    return checking.core.get_exercise(exercise_id)


def _solutions_dir() -> Path | None:
    """The course's ``solutions/`` folder: next to the package (a clone), else next to the working folder."""
    for candidate in (Path(__file__).resolve().parents[1] / "solutions", Path.cwd().parent / "solutions",
                      Path.cwd() / "solutions"):
        if candidate.is_dir():
            return candidate
    return None


def solution_source(exercise_id: str, solutions_dir: Path | None = None) -> str:
    """The solution cell of ``exercise_id`` in its solution notebook, without the solution markers.

    The solution cell is the last code cell with a solution region before the check cell
    ``kd.check("<exercise_id>", ...)``. Raises ``LookupError`` naming what is missing.
    """
    import nbformat

    exercise = _exercise(exercise_id)
    folder = solutions_dir or _solutions_dir()
    if folder is None:
        raise LookupError("the course's solutions/ folder was not found (kdcore is installed without the "
                          "course repository)")
    notebooks = sorted(Path(folder).glob(f"{exercise.notebook}_*.ipynb"))
    if not notebooks:
        raise LookupError(f"no solution notebook {exercise.notebook}_*.ipynb in {folder}")
    nb = nbformat.read(notebooks[0], as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for index, cell in enumerate(code):
        call = parse_check_cell(cell_source(cell))
        if call is None or call.exercise_id != exercise_id:
            continue
        for previous in reversed(code[:index]):
            source = cell_source(previous)
            regions = solution_regions(source, f"{notebooks[0]}")
            if regions:
                lines = source.splitlines()
                markers = {i for region in regions for i in region}
                return "\n".join(line for i, line in enumerate(lines) if i not in markers)
    raise LookupError(f"{notebooks[0].name} has no solution cell before kd.check({exercise_id!r}, ...)")


def hint_text(exercise_id: str, level: int) -> str:
    """The text of hint ``level`` (1..3) for ``exercise_id``."""
    from .checking import VARIANTS

    exercise = _exercise(exercise_id)
    if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= len(LEVELS):
        raise ValueError(f"level must be an integer from 1 to {len(LEVELS)}, got {level!r}")
    title = f"Hint {level}/{len(LEVELS)} for {exercise_id}: {LEVELS[level - 1]}"
    if level == 1:
        lines = [f"Write {exercise.signature}: {exercise.summary}." if exercise.summary
                 else f"Write {exercise.signature}.", "The grader runs it on these cases:"]
        lines += [f"  - {case.name}" for case in exercise.cases]
    elif level == 2:
        hints = list(dict.fromkeys(v.hint for v in VARIANTS.get(exercise_id, [])))
        lines = ["Mistakes the grader recognises; check your code against each:"]
        lines += [f"  - {h}" for h in hints] or ["  (none catalogued for this exercise)"]
    else:
        try:
            lines = ["The course's solution (solutions/ has the whole notebook):", "",
                     solution_source(exercise_id)]
        except LookupError as error:
            lines = [f"Not available here: {error}."]
    return "\n".join([title, *lines])


def hint(exercise_id: str, level: int | None = None) -> None:
    """Print the next hint for ``exercise_id`` (or hint ``level``, 1..3); the last one is the solution."""
    if level is None:
        level = min(_shown.get(exercise_id, 0) + 1, len(LEVELS))
    text = hint_text(exercise_id, level)
    _shown[exercise_id] = max(_shown.get(exercise_id, 0), level)
    if level < len(LEVELS):
        text += f"\n(kd.hint({exercise_id!r}) again for the next hint"
        text += "; the last one is the solution)" if level == len(LEVELS) - 1 else ")"
    print(text)
