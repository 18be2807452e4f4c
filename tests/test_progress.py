"""The course home: the progress table (kdcore.progress) and the navigation cells of every notebook."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from kdcore import navigation
from kdcore.checking import EXERCISES
from kdcore.hints import solution_source
from kdcore.progress import learner_notebooks, notebook_progress, progress_table

ROOT = Path(__file__).resolve().parents[1]
FIX = "python -m kdcore.assign"


def _copy_learner(tmp_path: Path, name: str = "01_soft_labels.ipynb") -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir(exist_ok=True)
    return Path(shutil.copyfile(ROOT / "notebooks" / name, folder / name))


def _replace_stub(path: Path, function: str, source: str) -> None:
    """Put ``source`` in the cell that defines ``function`` (as a learner typing in the cell would)."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and f"def {function}(" in c.source)
    cell.source = source
    nbformat.write(nb, path)


def _states(progress) -> dict[str, str]:
    return {e.exercise_id: e.state for e in progress.exercises}


def test_unsolved_solved_wrong_and_broken_exercises(tmp_path):
    path = _copy_learner(tmp_path)
    assert _states(notebook_progress(path)) == {"softmax_t": "todo", "kl_divergence": "todo",
                                                "soft_cross_entropy": "todo"}
    _replace_stub(path, "softmax_t", solution_source("softmax_t"))
    _replace_stub(path, "kl_divergence", "import torch\n\ndef kl_divergence(p_teacher, p_student):\n"
                                         "    return (p_teacher * (p_teacher / p_student).log()).sum()\n")  # no mean
    _replace_stub(path, "soft_cross_entropy", "def soft_cross_entropy(p_teacher, p_student):\n    return (\n")
    progress = notebook_progress(path)
    by_id = {e.exercise_id: e for e in progress.exercises}
    assert by_id["softmax_t"].state == "solved" and by_id["softmax_t"].score == 1.0
    assert by_id["kl_divergence"].state == "started" and re.fullmatch(rf"\d+/{len(EXERCISES['kl_divergence'].cases)} cases", by_id["kl_divergence"].detail)
    assert by_id["soft_cross_entropy"].state == "error" and "SyntaxError" in by_id["soft_cross_entropy"].detail


def test_training_and_output_cells_do_not_run(tmp_path):
    """Only definitions run: a cell that would train for a minute, print or raise is skipped."""
    path = _copy_learner(tmp_path)
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(2, nbformat.v4.new_code_cell("import time\ntime.sleep(120)\nprint('trained')\nraise SystemExit"))
    nbformat.write(nb, path)
    start = time.perf_counter()
    progress = notebook_progress(path)
    assert time.perf_counter() - start < 60  # the sleep alone would take 120 s
    assert set(_states(progress).values()) == {"todo"}


def test_a_function_defined_under_another_name_or_not_at_all(tmp_path):
    path = _copy_learner(tmp_path)
    _replace_stub(path, "softmax_t", "def my_softmax(logits, T=1.0):\n    return logits.softmax(-1)\n")
    status = next(e for e in notebook_progress(path).exercises if e.exercise_id == "softmax_t")
    assert status.state == "missing" and "`softmax_t` is not defined" in status.detail


def test_table_rows_next_notebook_and_markdown(tmp_path):
    for name in ("00_start_here.ipynb", "01_soft_labels.ipynb", "02_kd_loss.ipynb"):
        _copy_learner(tmp_path, name)
    folder = tmp_path / "notebooks"
    table = progress_table(folder)
    assert [nb.path.name for nb in table.notebooks] == ["00_start_here.ipynb", "01_soft_labels.ipynb",
                                                         "02_kd_loss.ipynb"]
    assert table.next_notebook().path.name == "01_soft_labels.ipynb"
    for eid in ("softmax_t", "kl_divergence", "soft_cross_entropy"):
        _replace_stub(folder / "01_soft_labels.ipynb", eid, solution_source(eid))
    table = progress_table(folder)
    markdown = table._repr_markdown_()
    assert "| [01 · Soft labels and temperature](01_soft_labels.ipynb) | ✓ `softmax_t` · ✓ `kl_divergence` · " \
           "✓ `soft_cross_entropy` |" in markdown
    assert f"○ `kd_loss` (0/{len(EXERCISES['kd_loss'].cases)} cases)" in markdown
    assert "3 of 4 exercises solved. Next: [02 · The KD loss](02_kd_loss.ipynb)." in markdown
    assert "00_start_here" not in markdown.split("\n\n")[0]  # the home page is not a row
    with pytest.raises(ValueError, match="folder must be the folder of the learner notebooks"):
        progress_table(tmp_path / "nope")


def test_every_course_exercise_appears_once_unsolved_and_the_solutions_are_solved():
    learner = progress_table(ROOT / "notebooks").exercises
    assert sorted(e.exercise_id for e in learner) == sorted(EXERCISES)
    assert {e.state for e in learner} == {"todo"}
    solved = progress_table(ROOT / "solutions")
    assert {e.state for e in solved.exercises} == {"solved"}
    assert solved.next_notebook() is None and "All done" in solved.summary()


# --- navigation ------------------------------------------------------------------------------------------

LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
def test_every_notebook_links_home_previous_next_and_its_quiz(folder):
    paths = learner_notebooks(ROOT / folder)
    assert paths[0].name == navigation.HOME_NAME
    stale = []
    for index, path in enumerate(paths):
        nb = nbformat.read(path, as_version=4)
        ids = [c.get("id") for c in nb.cells]
        if ids.count(navigation.TOP_ID) != 1 or ids.count(navigation.BOTTOM_ID) != 1:
            stale.append(f"{path.name}: navigation cells missing")
            continue
        assert ids[-1] == navigation.BOTTOM_ID and ids.index(navigation.TOP_ID) in (0, 1), path.name
        top, bottom = (nb.cells[ids.index(i)].source for i in (navigation.TOP_ID, navigation.BOTTOM_ID))
        targets = [target for _, target in LINK.findall(top + bottom)]
        for target in targets:  # every link resolves from the notebook's own folder
            assert (path.parent / target).resolve().exists(), (path.name, target)
        previous = paths[index - 1].name if index else None
        following = paths[index + 1].name if index + 1 < len(paths) else None
        is_home = path.name == navigation.HOME_NAME
        expected = ([] if is_home else [navigation.HOME_NAME]) + [n for n in (previous, following) if n]
        assert [target for _, target in LINK.findall(top)] == expected, path.name
        assert [t for _, t in LINK.findall(bottom) if not t.startswith("..")] == (
            [n for n in (previous,) if n] + ([] if is_home else [navigation.HOME_NAME]) + [n for n in (following,) if n])
        if path.name != navigation.HOME_NAME and "no quiz question" not in bottom:
            assert f"python -m quiz --notebook {path.name[:2]}" in bottom, path.name
    assert not stale, f"run `{FIX}`:\n" + "\n".join(stale)


def _nb(title: str, code: str = "x = 1") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {title}"),
                                         nbformat.v4.new_code_cell(code)])
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
    return nb


def test_navigation_is_idempotent_and_follows_an_inserted_notebook(tmp_path):
    for name, title in (("00_start_here", "00 · Home"), ("01_a", "01 · A"), ("03_c", "03 · C")):
        nbformat.write(_nb(title), tmp_path / f"{name}.ipynb")
    assert len(navigation.navigate(tmp_path)) == 3
    assert navigation.navigate(tmp_path) == [] and navigation.stale_navigation(tmp_path) == []
    one = nbformat.read(tmp_path / "01_a.ipynb", as_version=4)
    assert [c.get("id") for c in one.cells][1] == navigation.TOP_ID
    assert "[03 · C](03_c.ipynb) →" in one.cells[1].source and one.cells[2].outputs[0].text == "kept\n"

    nbformat.write(_nb("02 · B"), tmp_path / "02_b.ipynb")
    assert sorted(p.name for p in navigation.stale_navigation(tmp_path)) == ["01_a.ipynb", "02_b.ipynb",
                                                                          "03_c.ipynb"]
    navigation.navigate(tmp_path)
    one = nbformat.read(tmp_path / "01_a.ipynb", as_version=4)
    three = nbformat.read(tmp_path / "03_c.ipynb", as_version=4)
    assert "[02 · B](02_b.ipynb) →" in one.cells[1].source and "← [02 · B](02_b.ipynb)" in three.cells[1].source
    assert [c.get("id") for c in one.cells].count(navigation.TOP_ID) == 1  # replaced, not added again
