"""Every learner notebook (``notebooks/``) runs top to bottom, and fails exactly at its check cells.

An unsolved learner notebook must raise in each check cell (the exercise is not done yet) and nowhere
else (a notebook without exercises must not raise at all): setup, experiments and plots call ``kd.<reference>``, never the learner's function (the format of
docs/CONTRIBUTING.md). One test per notebook, so ``pytest -n 2 --dist loadfile`` spreads them. The solution
notebooks are run by ``pytest --nbval-lax solutions/`` (``make test``), not here.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from kdcore._notebook import parse_check_cell

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds; a whole solution notebook is meant to run in well under 60 s


def raised_cells(nb) -> dict[int, str]:
    """Index -> "Ename: evalue" of every code cell whose outputs include an error."""
    found = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found[index] = f"{output.get('ename')}: {str(output.get('evalue'))[:300]}"
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_learner_notebook_fails_exactly_at_its_check_cells(path, monkeypatch):
    from nbclient import NotebookClient

    # The kernel inherits this environment: no progress bars, no plot windows.
    monkeypatch.setenv("KDCORE_PROGRESS", "0")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    checks = {i for i, c in enumerate(nb.cells) if c.cell_type == "code" and parse_check_cell(c.source)}
    client = NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    raised = raised_cells(nb)
    unexpected = {i: e for i, e in raised.items() if i not in checks}
    silent = sorted(checks - set(raised))
    assert not unexpected, f"{path.name}: cells other than check cells raised: {unexpected}"
    assert not silent, f"{path.name}: check cells {silent} passed in the unsolved notebook"
    for index in checks:  # each check failed because the exercise is not implemented, not for another reason
        assert raised[index].startswith("ExerciseFailed"), (path.name, index, raised[index])
