"""``python -m kdcore.assign``: learner notebooks generated from the solution notebooks.

Two kinds of tests: the generator on small notebooks built here, and the repository's own
``solutions/`` and ``notebooks/`` (up to date, no leaked solution text, one check cell per exercise, every
exercise of ``kdcore.checking.EXERCISES`` in exactly one notebook, nbgrader accepts them).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from kdcore import assign
from kdcore._notebook import (NotebookFormatError, cell_source, parse_check_cell, solution_lines,
                              solution_regions)

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"
SOLUTION_FILES = sorted(SOLUTIONS.glob("*.ipynb"))
FIX_COMMAND = "python -m kdcore.assign"

EXERCISE_CELL = textwrap.dedent('''\
    import math

    def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                T: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
        """Hinton KD loss; logits [B, C], labels [B] -> scalar."""
        # soft term: teacher probabilities at temperature T
        ### BEGIN SOLUTION
        soft = F.kl_div(F.log_softmax(student_logits / T, -1), F.softmax(teacher_logits.detach() / T, -1),
                        reduction="batchmean")
        if alpha < 1:
            hard = F.cross_entropy(student_logits, labels)
        else:
            hard = 0.0
        ### END SOLUTION
        # combine
        return alpha * T**2 * soft + (1 - alpha) * hard
    ''')


def solution_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python", "version": "3.11.7"},
                   "widgets": {"state": {}}, "toc": {"number": True}}
    setup = nbformat.v4.new_code_cell("import torch\nimport torch.nn.functional as F\nimport kdcore as kd",
                                      execution_count=1)
    exercise = nbformat.v4.new_code_cell(EXERCISE_CELL, execution_count=2,
                                         metadata={"tags": ["exercise"], "scrolled": True,
                                                   "execution": {"iopub.status.idle": "2026-11-22"}})
    check = nbformat.v4.new_code_cell('kd.check("kd_loss", kd_loss)', execution_count=3,
                                      outputs=[nbformat.v4.new_output("stream", name="stdout",
                                                                      text="kd_loss: 9/9 cases passed")])
    top_level = nbformat.v4.new_code_cell("x = 1\n### BEGIN SOLUTION\ny = x + 41\n### END SOLUTION\nprint(y)")
    nb.cells = [nbformat.v4.new_markdown_cell("# 02 · KD loss\n> 原题：蒸馏损失怎么写？"), setup,
                nbformat.v4.new_markdown_cell("### 000-Q1 · Write the KD loss"), exercise, check, top_level]
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index}"
    return nb


def learner_of(nb) -> nbformat.NotebookNode:
    return nbformat.reads(assign.render(assign.learner_notebook(nb, "02_kd.ipynb")), as_version=4)


# --- the generator ------------------------------------------------------------------------------------

def test_region_replaced_at_its_indentation_keeping_the_rest():
    learner = learner_of(solution_notebook())
    source = learner.cells[3].source
    want = EXERCISE_CELL.split("    ### BEGIN SOLUTION")[0] + '    raise NotImplementedError("Your code here")\n' \
        + EXERCISE_CELL.split("### END SOLUTION\n")[1]
    assert source == want
    assert learner.cells[5].source == 'x = 1\nraise NotImplementedError("Your code here")\nprint(y)'
    compile(source, "exercise", "exec")  # still valid Python


def test_outputs_counts_and_metadata_cleared_markdown_kept():
    solution = solution_notebook()
    learner = learner_of(solution)
    assert [c.cell_type for c in learner.cells] == [c.cell_type for c in solution.cells]
    assert [c.id for c in learner.cells] == [c.id for c in solution.cells]
    for cell in learner.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        assert set(cell.metadata) <= {"tags"}
    assert learner.cells[3].metadata == {"tags": ["exercise"]}
    assert learner.cells[0].source == solution.cells[0].source
    assert dict(learner.metadata) == {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                     "name": "python3"}, "language_info": {"name": "python"}}
    assert solution.cells[4].outputs  # the input notebook was not modified


def test_no_solution_line_leaks():
    solution = solution_notebook()
    text = assign.render(assign.learner_notebook(solution, "x"))
    secret = [line.strip() for cell in solution.cells
              for line in solution_lines(cell.source, "x") if line.strip()]
    assert secret and not any(json.dumps(line)[1:-1] in text for line in secret)


@pytest.mark.parametrize("source, problem", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "never closed"),
    ("def f():\n    return 1\n    ### END SOLUTION\n", "without a matching"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "inside the region"),
    ("### BEGIN HIDDEN TESTS\nassert f() == 1\n### END HIDDEN TESTS\n", "not supported"),
])
def test_unbalanced_markers_name_notebook_and_cell(source, problem):
    nb = solution_notebook()
    nb.cells[3].source = source
    with pytest.raises(NotebookFormatError, match=rf"07_x\.ipynb, cell 3 \(id cell-3\).*{problem}"):
        assign.learner_notebook(nb, "07_x.ipynb")


def test_markers_in_markdown_are_refused():
    nb = solution_notebook()
    nb.cells[2].source = "### BEGIN SOLUTION\nthe answer\n### END SOLUTION"
    with pytest.raises(ValueError, match="cell 2.*only supported in code cells"):
        assign.learner_notebook(nb, "x.ipynb")


def test_cli_is_deterministic_atomic_and_check_reports_stale(tmp_path, capsys):
    solutions, notebooks = tmp_path / "solutions", tmp_path / "notebooks"
    solutions.mkdir()
    nbformat.write(solution_notebook(), solutions / "02_kd.ipynb")
    args = ["--solutions", str(solutions), "--notebooks", str(notebooks)]

    assert assign.main(args + ["--check"]) == 1
    out = capsys.readouterr()
    assert "02_kd.ipynb (missing)" in out.out and FIX_COMMAND in out.err
    assert not notebooks.exists()  # --check writes nothing

    assert assign.main(args) == 0
    first = (notebooks / "02_kd.ipynb").read_bytes()
    assert assign.main(args) == 0
    assert (notebooks / "02_kd.ipynb").read_bytes() == first  # byte-identical on re-run
    assert sorted(p.name for p in notebooks.iterdir()) == ["02_kd.ipynb"]  # no temporary file left
    assert assign.main(args + ["--check"]) == 0

    nb = solution_notebook()
    nb.cells[0].source += "\nedited"
    nbformat.write(nb, solutions / "02_kd.ipynb")
    (notebooks / "99_orphan.ipynb").write_text("{}")
    capsys.readouterr()
    assert assign.main(args + ["--check"]) == 1
    out = capsys.readouterr().out
    assert "02_kd.ipynb (differs from" in out and "99_orphan.ipynb (no " in out
    assert (notebooks / "02_kd.ipynb").read_bytes() == first


def test_command_line_entry_point(tmp_path):
    """The real ``python -m kdcore.assign``: an unbalanced marker exits 2 naming notebook and cell."""
    nb = solution_notebook()
    nb.cells[3].source = "def f():\n    ### BEGIN SOLUTION\n    return 1\n"
    (tmp_path / "solutions").mkdir()
    nbformat.write(nb, tmp_path / "solutions" / "05_prune.ipynb")
    run = subprocess.run([sys.executable, "-m", "kdcore.assign", "--solutions", str(tmp_path / "solutions"),
                          "--notebooks", str(tmp_path / "notebooks")], capture_output=True, text=True)
    assert run.returncode == 2
    assert "05_prune.ipynb, cell 3" in run.stderr and "never closed" in run.stderr
    assert not (tmp_path / "notebooks").exists()


def test_nbgrader_metadata():
    nb = assign.nbgrader_notebook(solution_notebook(), "02_kd.ipynb")
    meta = [c.metadata.get("nbgrader") for c in nb.cells]
    assert meta[3] == {"grade": False, "solution": True, "locked": False, "grade_id": "kd_loss",
                       "schema_version": 3}
    assert meta[4] == {"grade": True, "solution": False, "locked": True, "points": 1,
                       "grade_id": "check-kd_loss", "schema_version": 3}
    assert meta[5]["solution"] and meta[5]["grade_id"] == "solution-5"
    assert meta[0] is None and meta[1] is None


# --- the repository's notebooks -------------------------------------------------------------------------

def test_learner_notebooks_are_up_to_date():
    stale = assign.stale_notebooks(SOLUTIONS, NOTEBOOKS)
    assert not stale, ("notebooks/ is stale; regenerate with `" + FIX_COMMAND + "`:\n" + "\n".join(stale))


def _learner(path: Path) -> nbformat.NotebookNode:
    target = NOTEBOOKS / path.name
    if not target.exists():
        pytest.fail(f"notebooks/{path.name} is missing; generate it with `{FIX_COMMAND}`")
    return nbformat.read(target, as_version=4)


def _check_cells(nb) -> dict[int, str]:
    found = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            call = parse_check_cell(cell.source)
            if call is not None:
                found[index] = call.exercise_id
    return found


@pytest.mark.parametrize("path", SOLUTION_FILES, ids=lambda p: p.name)
def test_no_solution_text_in_learner_notebook(path):
    solution = nbformat.read(path, as_version=4)
    learner = _learner(path)
    visible = {line.strip() for cell in learner.cells for line in cell.source.splitlines()}
    # Lines the solution shows outside its regions may legitimately appear in the learner notebook.
    public = set()
    for index, cell in enumerate(solution.cells):
        lines = cell.source.splitlines()
        hidden = {i for begin, end in solution_regions(cell.source, f"{path}, cell {index}")
                  for i in range(begin, end + 1)}
        public.update(line.strip() for i, line in enumerate(lines) if i not in hidden)
    leaked = []
    for index, cell in enumerate(solution.cells):
        for line in solution_lines(cell.source, f"{path}, cell {index}"):
            text = line.strip()
            if text and not text.startswith("#") and text not in public and text in visible:
                leaked.append(f"cell {index}: {text}")
    assert not leaked, f"{path.name}: solution lines visible in notebooks/{path.name}:\n" + "\n".join(leaked)


_SIGNATURE = re.compile(r"^def \w+\(.*?\)\s*(->[^:]*)?:", re.S | re.M)


@pytest.mark.parametrize("path", SOLUTION_FILES, ids=lambda p: p.name)
def test_learner_notebook_keeps_signatures_and_check_cells(path):
    solution = nbformat.read(path, as_version=4)
    learner = _learner(path)
    checks = _check_cells(solution)  # may be empty: not every notebook has exercises (see the next test)
    assert _check_cells(learner) == checks
    for index, cell in enumerate(solution.cells):
        if cell.cell_type != "code" or not solution_regions(cell.source, f"{path}, cell {index}"):
            continue
        assert index + 1 in checks, f"{path.name}, cell {index}: an exercise cell must be followed by its check"
        exercise_id = checks[index + 1]
        signatures = [m.group(0) for m in _SIGNATURE.finditer(cell.source)]
        assert any(s.startswith(f"def {exercise_id}(") for s in signatures), (path.name, exercise_id)
        for signature in signatures:
            assert signature in learner.cells[index].source, f"{path.name}: signature lost: {signature}"
        assert 'raise NotImplementedError("Your code here")' in learner.cells[index].source


@pytest.mark.parametrize("path", SOLUTION_FILES, ids=lambda p: p.name)
def test_each_exercise_in_exactly_one_notebook(path):
    """The notebook's check cells are exactly the catalogue's exercises of its number, once each."""
    from kdcore.checking import EXERCISES

    number = path.name[:2]
    checks = list(_check_cells(nbformat.read(path, as_version=4)).values())
    assert len(checks) == len(set(checks)), f"{path.name}: an exercise is checked twice: {checks}"
    assert set(checks) == {e for e, ex in EXERCISES.items() if ex.notebook == number}
    for other in SOLUTION_FILES:
        if other != path:
            assert not set(checks) & set(_check_cells(nbformat.read(other, as_version=4)).values()), other.name


# --- nbgrader compatibility (optional dependency) -------------------------------------------------------

def test_nbgrader_generate_assignment_accepts_the_notebooks(tmp_path):
    import nbgrader  # noqa: F401  (requirements-instructor.txt, which `make test` and CI install: must run, not skip)
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    nbformat.write(solution_notebook(), solutions / "02_kd.ipynb")
    for path in SOLUTION_FILES:  # the repository's notebooks, when they exist
        shutil.copyfile(path, solutions / path.name)
    course = tmp_path / "course"
    assert assign.main(["--solutions", str(solutions), "--nbgrader", str(course)]) == 0
    # nbgrader runs the `alembic` command: the virtual environment's bin/ must be on PATH (as when activated)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "kdcore"],
                         cwd=course, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for path in sorted(solutions.glob("*.ipynb")):
        released = course / "release" / "kdcore" / path.name
        text = released.read_text()
        assert "BEGIN SOLUTION" not in text
        solution = nbformat.read(path, as_version=4)
        released_nb = nbformat.read(released, as_version=4)
        assert _check_cells(released_nb) == _check_cells(solution)
        for index, cell in enumerate(solution.cells):
            for line in solution_lines(cell.source, path.name):
                if line.strip() and not line.strip().startswith("#"):
                    assert line.strip() not in cell_source(released_nb.cells[index]), (path.name, line)
