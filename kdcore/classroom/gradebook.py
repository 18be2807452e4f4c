"""Stage 4a, the gradebook: one row per student (the best score per exercise over their notebooks, the
worst status), as a terminal table and as CSV (``student, <exercise>..., total, status``; scores in [0, 1],
two decimals)."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from .judge import Result
from .runner import worse

__all__ = ["StudentRow", "columns_for", "student_rows", "gradebook_csv", "format_table"]


@dataclass
class StudentRow:
    student: str
    scores: dict[str, float]
    status: str
    results: list[Result]

    @property
    def total(self) -> float:
        return sum(self.scores.values())


def columns_for(results: list[Result], requested: list[str] | None) -> list[str]:
    """The gradebook's exercise columns in catalogue order: ``--exercises`` if given, else every exercise a
    submission was graded on (see ``judge.expected_exercises``)."""
    from .catalogue import EXERCISES

    if requested:
        return list(requested)
    wanted = {e for r in results for e in r.exercises}
    return [e for e in EXERCISES if e in wanted]


def student_rows(results: list[Result], columns: list[str]) -> list[StudentRow]:
    by_student: dict[str, list[Result]] = {}
    for result in results:
        by_student.setdefault(result.submission.student, []).append(result)
    rows = []
    for student in sorted(by_student):
        group = by_student[student]
        scores = {c: max(r.scores.get(c, 0.0) for r in group) for c in columns}
        status = "ok"
        for r in group:
            status = worse(status, r.status)
        rows.append(StudentRow(student, scores, status, group))
    return rows


def gradebook_csv(rows: list[StudentRow], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", *columns, "total", "status"])
    for row in rows:
        writer.writerow([row.student, *(f"{row.scores[c]:.2f}" for c in columns), f"{row.total:.2f}", row.status])
    return buffer.getvalue()


def format_table(rows: list[StudentRow], columns: list[str]) -> str:
    header = ["student", *columns, "total", "status"]
    body = [[r.student, *(f"{r.scores[c]:.2f}" for c in columns), f"{r.total:.2f}/{len(columns)}", r.status]
            for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)])
