"""Navigation cells of the course notebooks: course home, previous and next notebook, and the quiz.

Generated, never written by hand: ``python -m kdcore.assign`` (``make notebooks``) calls :func:`navigate`
on ``solutions/`` before it writes the learner notebooks, which inherit the cells. Each notebook
``NN_*.ipynb`` gets two markdown cells, recognised by their ids:

* ``nav-top``, right after the title cell: home · previous · next;
* ``nav-bottom``, the last cell: the quiz questions that rehearse this notebook (``python -m quiz
  --notebook NN``, counted from ``quiz/bank.toml``), then previous · home · next.

Re-running is idempotent (a notebook is rewritten only when its cells change, outputs untouched), so after a
notebook is added, renamed or merged, one run fixes every link.
"""
from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import nbformat

from ._notebook import cell_source, write_atomic
from .progress import learner_notebooks, notebook_title

__all__ = ["TOP_ID", "BOTTOM_ID", "HOME_NAME", "navigation_sources", "with_navigation", "navigate",
           "stale_navigation"]

TOP_ID, BOTTOM_ID = "nav-top", "nav-bottom"
HOME_NAME = "00_start_here.ipynb"


def _quiz_counts(bank_path: Path | None) -> dict[str, Counter]:
    """Notebook file name -> Counter of topic titles of the quiz items that point to it."""
    try:
        from quiz.bank import load_bank
    except ImportError:  # kdcore installed without the quiz
        return {}
    bank = load_bank(bank_path, check_seeds=False)
    counts: dict[str, Counter] = {}
    for item in bank.items:
        counts.setdefault(item.notebook, Counter())[bank.topic(item.topic).title["en"]] += 1
    return counts


def _link(path: Path | None, titles: dict[str, str]) -> str | None:
    return None if path is None else f"[{titles[path.name]}]({path.name})"


def navigation_sources(paths: list[Path], index: int, titles: dict[str, str],
                       quiz: dict[str, Counter]) -> tuple[str, str]:
    """The markdown of the top and bottom navigation cells of ``paths[index]``."""
    path = paths[index]
    prev_path = paths[index - 1] if index > 0 else None
    next_path = paths[index + 1] if index + 1 < len(paths) else None
    home = "[⌂ Course home](00_start_here.ipynb)" if path.name != HOME_NAME else "⌂ Course home"
    prev_link, next_link = _link(prev_path, titles), _link(next_path, titles)
    top = " · ".join(part for part in (home, prev_link and f"← {prev_link}", next_link and f"{next_link} →")
                     if part)
    number = path.name[:2]
    topics = quiz.get(path.name, Counter())
    if path.name == HOME_NAME:
        quiz_line = ("**Quiz.** Rehearse the talking part of the interview in a terminal (File → New → "
                     "Terminal): `.venv/bin/python -m quiz` ([how the quiz works](../quiz/README.md)).")
    elif topics:
        n = sum(topics.values())
        names = ", ".join(f"*{title}*" for title, _ in topics.most_common())
        quiz_line = (f"**Quiz on this notebook:** {n} question{'s' if n != 1 else ''} ({names}). In a terminal "
                     f"(File → New → Terminal): `.venv/bin/python -m quiz --notebook {number}` "
                     "([how the quiz works](../quiz/README.md)).")
    else:
        quiz_line = ("**Quiz:** no quiz question points to this notebook yet; `.venv/bin/python -m quiz` asks "
                     "the others ([how the quiz works](../quiz/README.md)).")
    links = " · ".join(part for part in (prev_link and f"← Previous: {prev_link}", home,
                                         next_link and f"Next: {next_link} →") if part)
    return top, f"---\n{quiz_line}\n\n{links}"


def _nav_cell(cell_id: str, source: str) -> dict:
    cell = nbformat.v4.new_markdown_cell(source)
    cell["id"] = cell_id
    return cell


def with_navigation(nb: dict, top: str, bottom: str) -> dict:
    """A copy of ``nb`` whose navigation cells are ``top`` (after the title cell) and ``bottom`` (last)."""
    out = copy.deepcopy(nb)
    cells = [c for c in out["cells"] if c.get("id") not in (TOP_ID, BOTTOM_ID)]
    first = cells[0] if cells else None
    has_title = (first is not None and first.get("cell_type") == "markdown"
                 and cell_source(first).lstrip().startswith("# "))
    position = 1 if has_title else 0
    cells.insert(position, _nav_cell(TOP_ID, top))
    cells.append(_nav_cell(BOTTOM_ID, bottom))
    out["cells"] = cells
    return out


def _render(nb: dict) -> str:
    text = nbformat.writes(nbformat.from_dict(nb))
    return text if text.endswith("\n") else text + "\n"


def _expected(folder: Path, bank_path: Path | None) -> dict[Path, str]:
    paths = learner_notebooks(folder)
    notebooks = {p: nbformat.read(p, as_version=4) for p in paths}
    titles = {p.name: notebook_title(nb, p.stem) for p, nb in notebooks.items()}
    quiz = _quiz_counts(bank_path)
    expected = {}
    for index, path in enumerate(paths):
        top, bottom = navigation_sources(paths, index, titles, quiz)
        expected[path] = _render(with_navigation(notebooks[path], top, bottom))
    return expected


def stale_navigation(folder: Path, bank_path: Path | None = None) -> list[Path]:
    """Course notebooks in ``folder`` whose navigation cells are missing or out of date."""
    return [p for p, text in _expected(Path(folder), bank_path).items() if p.read_text(encoding="utf-8") != text]


def navigate(folder: Path, bank_path: Path | None = None) -> list[Path]:
    """Write the navigation cells of every course notebook in ``folder``; return the notebooks changed."""
    written = []
    for path, text in _expected(Path(folder), bank_path).items():
        if path.read_text(encoding="utf-8") != text:
            write_atomic(path, text)
            written.append(path)
    return written
