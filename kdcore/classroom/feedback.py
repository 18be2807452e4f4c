"""Stage 4b, the student's feedback file: status and scores, then per exercise the grader's per-case lines
and hints for that student's own function, then notes about their own run. Nothing from other cells of the
notebook, nothing from other students, no grader or solution code."""
from __future__ import annotations

import re
from pathlib import Path

from .gradebook import StudentRow
from .judge import missing

__all__ = ["feedback_markdown", "feedback_file_names"]


def feedback_markdown(row: StudentRow, columns: list[str]) -> str:
    lines = [f"# Feedback: {row.student}", "",
             f"Status: **{row.status}**. Total: **{row.total:.2f} / {len(columns)}**.", "",
             "Graded: " + ", ".join(f"`{Path(r.submission.label).name}`" for r in row.results), "",
             "| exercise | score |", "|---|---|"]
    lines += [f"| `{c}` | {row.scores[c]:.2f} |" for c in columns]
    for column in columns:
        lines += ["", f"## `{column}`: {row.scores[column]:.2f}", ""]
        texts = [r.exercises[column].feedback for r in row.results if column in r.exercises]
        if not texts:
            texts = [missing(column, row.status)]
        for text in texts:
            lines += ["```text", text.rstrip().replace("```", "'''"), "```"]
    notes = [note for r in row.results for note in r.notes]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "student"


def feedback_file_names(students: list[str]) -> dict[str, str]:
    """student -> file name (``<name>.md``), distinct even when two names sanitise alike."""
    used: set[str] = set()
    names = {}
    for student in students:
        base = _safe_filename(student)
        name, n = base, 2
        while name.lower() in used:  # "a b" and "a_b" must not share a report
            name, n = f"{base}-{n}", n + 1
        used.add(name.lower())
        names[student] = f"{name}.md"
    return names
