"""Write the learner notebooks (``notebooks/``) from the solution notebooks (``solutions/``).

    python -m kdcore.assign                  # navigation cells in solutions/, then notebooks/*.ipynb from them
    python -m kdcore.assign --check          # exit 1 and list the stale files; write nothing
    python -m kdcore.assign --nbgrader DIR   # an nbgrader course folder: DIR/source/kdcore/*.ipynb

For the learner, each region between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (markers included) is
replaced by ``raise NotImplementedError("Your code here")`` at the indentation of the BEGIN marker, as nbgrader
does, so the signature, docstring and comments outside the region stay. Outputs and execution counts are
cleared, cell metadata is reduced to ``tags`` and notebook metadata to the kernel, so the output depends on
the solution's text only: re-running is byte-identical, and ``--check`` can compare bytes.

First, every solution notebook gets its navigation cells (course home, previous and next notebook, its quiz
questions; :mod:`kdcore.navigation`), so that adding or renaming a notebook needs one run to fix every link.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

from .navigation import navigate, stale_navigation
from ._notebook import (NotebookFormatError, cell_source, parse_check_cell, solution_regions,
                        strip_solutions, write_atomic)

__all__ = ["learner_notebook", "nbgrader_notebook", "render", "write_atomic", "stale_notebooks",
           "assign", "main"]

_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _where(path: Path | str, index: int, cell: dict) -> str:
    cell_id = cell.get("id")
    return f"{path}, cell {index}" + (f" (id {cell_id})" if cell_id else "")


def _trimmed_metadata(cell: dict) -> dict:
    tags = cell.get("metadata", {}).get("tags")
    return {"tags": list(tags)} if tags else {}


def _new_notebook(solution: dict) -> dict:
    kernelspec = solution.get("metadata", {}).get("kernelspec") or _KERNELSPEC
    nb = nbformat.v4.new_notebook()
    nb.metadata = nbformat.from_dict({
        "kernelspec": {key: kernelspec.get(key, _KERNELSPEC[key]) for key in _KERNELSPEC},
        "language_info": {"name": "python"},
    })
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


def _copy_cell(cell: dict, index: int, source: str) -> dict:
    """A clean copy of ``cell`` with ``source``: outputs, counts and non-tag metadata removed."""
    kind = cell.get("cell_type")
    if kind == "code":
        new = nbformat.v4.new_code_cell(source)
    elif kind == "markdown":
        new = nbformat.v4.new_markdown_cell(source)
        if cell.get("attachments"):
            new["attachments"] = copy.deepcopy(cell["attachments"])
    else:
        new = nbformat.v4.new_raw_cell(source)
    # Stable ids: the solution's (so a learner's cell maps to its source cell), else the position.
    new["id"] = str(cell.get("id") or f"cell-{index}")
    new["metadata"] = nbformat.from_dict(_trimmed_metadata(cell))
    return new


def learner_notebook(solution: dict, where: str | Path = "notebook") -> dict:
    """The learner version of a solution notebook (the input is not modified).

    Raises ``NotebookFormatError`` (a ``ValueError``) naming ``where`` and the cell when markers are
    unbalanced, nested, or appear in a markdown cell.
    """
    nb = _new_notebook(solution)
    for index, cell in enumerate(solution.get("cells", [])):
        source = cell_source(cell)
        place = _where(where, index, cell)
        if cell.get("cell_type") == "code":
            source = strip_solutions(source, place)
        elif solution_regions(source, place):
            raise NotebookFormatError(f"{place}: solution markers are only supported in code cells")
        nb.cells.append(_copy_cell(cell, index, source))
    return nb


def nbgrader_notebook(solution: dict, where: str | Path = "notebook", points: int = 1) -> dict:
    """The solution notebook with nbgrader metadata, for ``nbgrader generate_assignment``.

    Every code cell holding a solution region becomes an nbgrader solution cell; every check cell
    (``kd.check("id", fn)``) becomes a locked autograder-test cell worth ``points`` (its grade id is
    ``check-<id>``). Solutions stay in place: nbgrader strips them itself.
    """
    nb = nbformat.from_dict(copy.deepcopy(dict(solution)))
    used: set[str] = set()
    for index, cell in enumerate(nb.cells):
        cell.metadata.pop("nbgrader", None)
        if cell.cell_type != "code":
            continue
        source = cell_source(cell)
        check = parse_check_cell(source)
        if check is not None:
            grade_id = f"check-{check.exercise_id}"
            meta = {"grade": True, "solution": False, "locked": True, "points": points}
        elif solution_regions(source, _where(where, index, cell)):
            following = nb.cells[index + 1] if index + 1 < len(nb.cells) else None
            next_check = parse_check_cell(cell_source(following)) if following is not None else None
            grade_id = next_check.exercise_id if next_check is not None else f"solution-{index}"
            meta = {"grade": False, "solution": True, "locked": False}
        else:
            continue
        base, n = grade_id, 2
        while grade_id in used:  # nbgrader requires unique grade ids
            grade_id, n = f"{base}-{n}", n + 1
        used.add(grade_id)
        cell.metadata["nbgrader"] = {**meta, "grade_id": grade_id, "schema_version": 3}
    return nb


def render(nb: dict) -> str:
    """nbformat's canonical JSON (sorted keys, indent 1) with a final newline."""
    nbformat.validate(nb)
    text = nbformat.writes(nbformat.from_dict(nb))
    return text if text.endswith("\n") else text + "\n"


def _read_solution(path: Path) -> dict:
    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # invalid JSON or schema
        raise NotebookFormatError(f"{path}: not a readable notebook ({error})") from error


def expected_notebooks(solutions_dir: Path) -> dict[str, str]:
    """File name -> learner notebook text, for every ``solutions_dir/*.ipynb``."""
    return {path.name: render(learner_notebook(_read_solution(path), path))
            for path in sorted(Path(solutions_dir).glob("*.ipynb"))}


def stale_notebooks(solutions_dir: Path, notebooks_dir: Path) -> list[str]:
    """Learner notebooks that are missing, differ from what the solutions give, or have no solution."""
    expected = expected_notebooks(Path(solutions_dir))
    stale = []
    for name, text in expected.items():
        target = Path(notebooks_dir) / name
        if not target.exists():
            stale.append(f"{target} (missing)")
        elif target.read_bytes() != text.encode("utf-8"):
            stale.append(f"{target} (differs from {Path(solutions_dir) / name})")
    for target in sorted(Path(notebooks_dir).glob("*.ipynb")):
        if target.name not in expected:
            stale.append(f"{target} (no {Path(solutions_dir) / target.name}; delete it if it is not yours)")
    return stale


def assign(solutions_dir: Path, notebooks_dir: Path) -> list[Path]:
    """Write every learner notebook whose bytes would change; return the paths written."""
    written = []
    for name, text in expected_notebooks(Path(solutions_dir)).items():
        target = Path(notebooks_dir) / name
        if not target.exists() or target.read_bytes() != text.encode("utf-8"):
            write_atomic(target, text)
            written.append(target)
    return written


def export_nbgrader(solutions_dir: Path, course_dir: Path, assignment: str = "kdcore") -> list[Path]:
    """Write ``course_dir/source/<assignment>/*.ipynb`` (+ a minimal ``nbgrader_config.py``)."""
    course_dir = Path(course_dir)
    written = []
    for path in sorted(Path(solutions_dir).glob("*.ipynb")):
        target = course_dir / "source" / assignment / path.name
        write_atomic(target, render(nbgrader_notebook(_read_solution(path), path)))
        written.append(target)
    config = course_dir / "nbgrader_config.py"
    if not config.exists():
        write_atomic(config, 'c = get_config()  # noqa: F821 (defined by nbgrader)\n'
                             'c.CourseDirectory.course_id = "kdcore"\n'
                             '# kd.check raises in the autograder\'s kernels, so a failed exercise loses its points\n'
                             '# (in a notebook open in JupyterLab it only reports; see kdcore.checking.core.failure_mode)\n'
                             'import os\n'
                             'os.environ["KDCORE_CHECK"] = "raise"\n')
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdcore.assign", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="list stale learner notebooks and exit 1 if any; write nothing")
    parser.add_argument("--solutions", type=Path, default=Path("solutions"),
                        help="folder of solution notebooks (default: ./solutions)")
    parser.add_argument("--notebooks", type=Path, default=Path("notebooks"),
                        help="folder of learner notebooks (default: ./notebooks)")
    parser.add_argument("--nbgrader", type=Path, metavar="COURSE_DIR",
                        help="instead, write an nbgrader course folder COURSE_DIR/source/<assignment>/")
    parser.add_argument("--assignment", default="kdcore", help="nbgrader assignment name (default: kdcore)")
    args = parser.parse_args(argv)
    if not args.solutions.is_dir():
        parser.error(f"--solutions: {args.solutions} is not a folder (run from the repository root)")
    try:
        if args.nbgrader is not None:
            for path in export_nbgrader(args.solutions, args.nbgrader, args.assignment):
                print(f"wrote {path}")
            print(f"next: cd {args.nbgrader} && nbgrader generate_assignment {args.assignment}")
            return 0
        if args.check:
            stale = [f"{path} (navigation cells missing or out of date)"
                     for path in stale_navigation(args.solutions)]
            stale += stale_notebooks(args.solutions, args.notebooks)
            for line in stale:
                print(f"stale: {line}")
            if stale:
                print("fix with: python -m kdcore.assign", file=sys.stderr)
                return 1
            print(f"{args.notebooks}/ is up to date with {args.solutions}/")
            return 0
        expected_notebooks(args.solutions)  # refuse malformed solutions before writing anything
        for path in navigate(args.solutions):
            print(f"navigation: {path}")
        written = assign(args.solutions, args.notebooks)
        for path in written:
            print(f"wrote {path}")
        for line in stale_notebooks(args.solutions, args.notebooks):
            print(f"warning: {line}", file=sys.stderr)
        print(f"{len(written)} notebook(s) written, "
              f"{len(list(args.solutions.glob('*.ipynb'))) - len(written)} unchanged")
        return 0
    except NotebookFormatError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
