"""Stage 4c, the class report (``--report FILE.html`` or ``FILE.md``): grading turned into a lesson plan.

Per exercise: how many students passed every case, the mean score and the score distribution; then the
misconceptions found in the class, ranked by how many students showed each one (a misconception is a known
wrong variant of the exercise whose hint the judge gave that student), with its hint and who they are; then
the students whose status needs a look (``uses-reference``, ``timeout``, ``crashed``...). One matplotlib
figure (pass rate per exercise, misconceptions by number of students) is embedded in the file as a PNG.
"""
from __future__ import annotations

import base64
import html
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .._notebook import write_atomic
from .gradebook import StudentRow

__all__ = ["ClassSummary", "Misconception", "summarize", "class_report", "render_html", "render_markdown"]

#: Score histogram bins: 0, then quarters, then full marks.
BINS = ("0", "(0, 0.25]", "(0.25, 0.5]", "(0.5, 0.75]", "(0.75, 1)", "1")


@dataclass
class Misconception:
    exercise: str
    name: str
    hint: str
    students: list[str] = field(default_factory=list)


@dataclass
class ExerciseSummary:
    exercise: str
    passed: int
    mean: float
    histogram: dict[str, int]


@dataclass
class ClassSummary:
    students: int
    exercises: list[ExerciseSummary]
    misconceptions: list[Misconception]      # ranked: most students first
    statuses: dict[str, list[str]]           # status -> students (ok omitted)


def _bin(score: float) -> str:
    if score <= 0:
        return BINS[0]
    if score >= 1:
        return BINS[-1]
    return BINS[min(4, 1 + int((score - 1e-12) // 0.25))]


def summarize(rows: list[StudentRow], columns: list[str]) -> ClassSummary:
    from .catalogue import VARIANTS
    exercises = []
    for column in columns:
        scores = [row.scores[column] for row in rows]
        histogram = Counter(_bin(s) for s in scores)
        exercises.append(ExerciseSummary(column, sum(s >= 1.0 for s in scores),
                                         sum(scores) / len(scores) if scores else 0.0,
                                         {b: histogram.get(b, 0) for b in BINS}))
    found: dict[tuple[str, str], Misconception] = {}
    for row in rows:
        for column in columns:
            # the misconceptions of the student's best notebook for this exercise
            graded = [r.exercises[column] for r in row.results if column in r.exercises]
            if not graded:
                continue
            best = max(graded, key=lambda e: e.score)
            for name in best.misconceptions:
                hint = next((v.hint for v in VARIANTS.get(column, []) if v.name == name), "")
                entry = found.setdefault((column, name), Misconception(column, name, hint))
                if row.student not in entry.students:
                    entry.students.append(row.student)
    ranked = sorted(found.values(), key=lambda m: (-len(m.students), columns.index(m.exercise), m.name))
    statuses: dict[str, list[str]] = {}
    for row in rows:
        if row.status != "ok":
            statuses.setdefault(row.status, []).append(row.student)
    return ClassSummary(len(rows), exercises, ranked, statuses)


def chart_png(summary: ClassSummary, top: int = 10) -> bytes:
    """Pass rate per exercise and the ``top`` misconceptions by number of students, as one PNG."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    names = [e.exercise for e in summary.exercises]
    rates = [e.passed / summary.students if summary.students else 0.0 for e in summary.exercises]
    misconceptions = summary.misconceptions[:top][::-1]
    figure = Figure(figsize=(11, max(3.0, 0.45 * max(len(names), len(misconceptions)) + 1.2)), dpi=90)
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    left.barh(names[::-1], [100 * r for r in rates[::-1]], color="#4c72b0")
    left.set_xlim(0, 100)
    left.set_xlabel("students passing every case (%)")
    left.set_title("Pass rate per exercise")
    if misconceptions:
        labels = [f"{m.exercise}: {m.name}"[:48] for m in misconceptions]
        right.barh(labels, [len(m.students) for m in misconceptions], color="#dd8452")
        right.set_xlabel("students")
        right.xaxis.get_major_locator().set_params(integer=True)
    else:
        right.text(0.5, 0.5, "no known misconception matched", ha="center", va="center")
        right.set_axis_off()
    right.set_title("Misconceptions, by number of students")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_markdown(summary: ClassSummary, png: bytes) -> str:
    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")
    lines = ["# Class report", "", f"{summary.students} students.", "", f"![chart]({_data_uri(png)})", "",
             "## Exercises", "", "| exercise | passed | mean score | " + " | ".join(BINS) + " |",
             "|---|---|---|" + "---|" * len(BINS)]
    for e in summary.exercises:
        lines.append(f"| `{e.exercise}` | {e.passed}/{summary.students} | {e.mean:.2f} | "
                     + " | ".join(str(e.histogram[b]) for b in BINS) + " |")
    lines += ["", "## Misconceptions, most common first", ""]
    if not summary.misconceptions:
        lines.append("No known misconception matched.")
    else:
        lines += ["| students | exercise | misconception | hint | who |", "|---|---|---|---|---|"]
        for m in summary.misconceptions:
            lines.append(f"| {len(m.students)} | `{m.exercise}` | {cell(m.name)} | {cell(m.hint)} | "
                         f"{cell(', '.join(m.students))} |")
    if summary.statuses:
        lines += ["", "## Students to look at", ""]
        lines += [f"- **{status}**: {cell(', '.join(students))}" for status, students in sorted(summary.statuses.items())]
    return "\n".join(lines) + "\n"


def render_html(summary: ClassSummary, png: bytes) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Class report</title>",
             "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}</style></head><body>",
             "<h1>Class report</h1>", f"<p>{summary.students} students.</p>",
             f"<img alt=\"pass rate per exercise and misconceptions\" src=\"{_data_uri(png)}\">",
             "<h2>Exercises</h2><table><tr><th>exercise</th><th>passed</th><th>mean score</th>"
             + "".join(f"<th>{e(b)}</th>" for b in BINS) + "</tr>"]
    for x in summary.exercises:
        parts.append(f"<tr><td><code>{e(x.exercise)}</code></td><td>{x.passed}/{summary.students}</td>"
                     f"<td>{x.mean:.2f}</td>" + "".join(f"<td>{x.histogram[b]}</td>" for b in BINS) + "</tr>")
    parts.append("</table><h2>Misconceptions, most common first</h2>")
    if not summary.misconceptions:
        parts.append("<p>No known misconception matched.</p>")
    else:
        parts.append("<table><tr><th>students</th><th>exercise</th><th>misconception</th><th>hint</th>"
                     "<th>who</th></tr>")
        for m in summary.misconceptions:
            parts.append(f"<tr><td>{len(m.students)}</td><td><code>{e(m.exercise)}</code></td><td>{e(m.name)}</td>"
                         f"<td>{e(m.hint)}</td><td>{e(', '.join(m.students))}</td></tr>")
        parts.append("</table>")
    if summary.statuses:
        parts.append("<h2>Students to look at</h2><ul>")
        parts += [f"<li><b>{e(status)}</b>: {e(', '.join(students))}</li>"
                  for status, students in sorted(summary.statuses.items())]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def class_report(rows: list[StudentRow], columns: list[str], path: Path) -> ClassSummary:
    """Write the class report to ``path`` (HTML for .html/.htm, Markdown for .md); returns its summary."""
    summary = summarize(rows, columns)
    png = chart_png(summary)
    text = render_markdown(summary, png) if Path(path).suffix.lower() == ".md" else render_html(summary, png)
    write_atomic(Path(path), text)
    return summary
