"""The scale path: nbgrader itself, on the course's notebooks, round trip.

``python -m kdcore.assign --nbgrader`` -> ``nbgrader generate_assignment`` -> three submissions placed as
students return them (correct, wrong, unsolved) -> ``nbgrader autograde`` -> ``nbgrader export``; and the
same three notebooks through ``python -m kdcore.grade``. nbgrader scores each check cell all or nothing
(1 point); kdcore gives the fraction of cases passed. So, per exercise, nbgrader's points must equal 1 exactly
when kdcore's score is 1.00, and nbgrader's exported total must equal the number of exercises kdcore passed.
"""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from classroom_notebooks import CORRECT, EXERCISE_IDS, WRONG, function_source, notebook, solution_cell
from kdcore.classroom import sandbox

ASSIGNMENT = "kdcore"
NOTEBOOK = "01_soft_labels.ipynb"


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    # nbgrader runs the `alembic` command and kernels named "python3": the environment's bin/ goes first
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True,
                         timeout=600, env=env)
    assert run.returncode == 0, f"nbgrader {' '.join(args)}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    print(f"nbgrader {args[0]}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return run


def solution_notebook() -> nbformat.NotebookNode:
    """Notebook 01 in the course's solution format (solution regions between nbgrader's markers)."""
    return notebook({e: solution_cell(e) for e in EXERCISE_IDS}, student="solution", long_cells=False)


def fill(released: nbformat.NotebookNode, bodies: dict[str, str]) -> nbformat.NotebookNode:
    """A learner's returned notebook: their code in the solution cells, everything else as released."""
    nb = nbformat.from_dict(released)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id") in bodies:
            cell.source = function_source(meta["grade_id"], bodies[meta["grade_id"]])
    return nb


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    root = tmp_path_factory.mktemp("nbgrader")
    solutions, course = root / "solutions", root / "course"
    solutions.mkdir()
    nbformat.write(solution_notebook(), solutions / NOTEBOOK)
    assign = subprocess.run([sys.executable, "-m", "kdcore.assign", "--solutions", str(solutions), "--nbgrader",
                             str(course)], capture_output=True, text=True, timeout=300)
    assert assign.returncode == 0, assign.stderr[-3000:]
    nbgrader(course, "generate_assignment", ASSIGNMENT)
    released = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    submissions = {"correct": dict(CORRECT), "wrong": {**CORRECT, "softmax_t": WRONG["softmax_t"][0]},
                   "unsolved": {}}
    for student, bodies in submissions.items():
        target = course / "submitted" / student / ASSIGNMENT / NOTEBOOK
        target.parent.mkdir(parents=True)
        nbformat.write(fill(released, bodies), target)
    nbgrader(course, "autograde", ASSIGNMENT)
    nbgrader(course, "export", "--to", str(course / "nbgrader_grades.csv"))
    exported = {row["student_id"]: row for row in csv.DictReader(io.StringIO((course / "nbgrader_grades.csv").read_text()))}
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        points = {s: {e: gradebook.find_grade(f"check-{e}", NOTEBOOK[:-6], ASSIGNMENT, s).score for e in EXERCISE_IDS}
                  for s in submissions}
    command = [sys.executable, "-m", "kdcore.grade", str(course / "submitted"), "--csv", str(root / "kdcore.csv")]
    if not sandbox.probe().available:
        command.append("--no-sandbox")  # three trusted notebooks
    graded = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "KDCORE_PROGRESS": "0"})
    assert graded.returncode == 0, graded.stderr[-3000:]
    kdcore_rows = {r["student"]: r for r in csv.DictReader(io.StringIO((root / "kdcore.csv").read_text()))}
    return {"exported": exported, "points": points, "kdcore": kdcore_rows, "course": course}


def test_generate_assignment_strips_the_solutions(round_trip):
    text = (round_trip["course"] / "release" / ASSIGNMENT / NOTEBOOK).read_text()
    assert "BEGIN SOLUTION" not in text and "xlogy" not in text
    assert 'kd.check(\\"softmax_t\\", softmax_t)' in text


def test_nbgrader_points_follow_kdcore_scores(round_trip):
    for student, row in round_trip["kdcore"].items():
        for exercise_id in EXERCISE_IDS:
            passed = float(row[exercise_id]) == 1.0
            assert round_trip["points"][student][exercise_id] == (1.0 if passed else 0.0), (student, exercise_id)


def test_exported_totals_equal_kdcore_exercises_passed(round_trip):
    exported, kdcore_rows = round_trip["exported"], round_trip["kdcore"]
    assert set(exported) == set(kdcore_rows) == {"correct", "wrong", "unsolved"}
    for student, row in kdcore_rows.items():
        passed = sum(float(row[e]) == 1.0 for e in EXERCISE_IDS)
        assert float(exported[student]["score"]) == passed, student
        assert float(exported[student]["max_score"]) == len(EXERCISE_IDS)
    assert [float(exported[s]["score"]) for s in ("correct", "wrong", "unsolved")] == [3.0, 2.0, 0.0]
    assert 0.0 < float(kdcore_rows["wrong"]["softmax_t"]) < 1.0  # kdcore's partial credit where nbgrader gives 0
