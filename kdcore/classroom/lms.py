"""Gradebook import files for learning-management systems: ``--lms canvas`` and ``--lms moodle``.

Each exercise is one gradebook column worth 1 point (the score in [0, 1], as in the CSV); the student key is
the name ``discover`` gives a submission (its folder or file name), so name each student's folder by their
LMS login for the import to match them.

Canvas (Gradebook -> Import): the columns the gradebook import requires, in this order, then one column per
assignment: ``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID``, ``Section``. Canvas matches a row by
one of its identifiers; the key goes in ``SIS Login ID`` (and ``Student``), the others are left empty. A
column whose name is not an existing assignment becomes a new assignment. Followed: The Ohio State
University's CarmenCanvas guide "Import a CSV file to Carmen grades"
(https://teaching.resources.osu.edu/toolsets/carmencanvas/guides/calculating-final-grades/import-csv-file-carmen-grades),
which restates Canvas's required columns, and Instructure's "How do I import grades in the Gradebook?"
that it points to.

Moodle (Grades -> Import -> CSV file): any columns; on the import page "Map from" picks the column holding
the user and "Map to" the user field it matches (``userid``, ``username``, ``useridnumber``, ``useremail``),
then each other column is mapped to a grade item or "new grade item"; ``-`` or an empty cell means no
grade. The first column, ``username``, holds the key: map it to ``username``. Followed: MoodleDocs "Grade
import" (https://docs.moodle.org/311/en/Grade_import) and Moodle's importer
(``grade/import/csv/classes/load_data.php``, ``map_user_data_with_value``), which lists those four fields.
"""
from __future__ import annotations

import csv
import io

from .gradebook import StudentRow

__all__ = ["lms_csv", "FORMATS"]

CANVAS_IDENTITY = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
FORMATS = ("canvas", "moodle")


def _column(exercise_id: str) -> str:
    return f"kdcore {exercise_id}"


def lms_csv(lms: str, rows: list[StudentRow], columns: list[str]) -> str:
    """The import file for ``lms`` ("canvas" or "moodle")."""
    if lms not in FORMATS:
        raise ValueError(f"lms must be one of {', '.join(FORMATS)}, got {lms!r}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if lms == "canvas":
        writer.writerow([*CANVAS_IDENTITY, *map(_column, columns)])
        for row in rows:
            writer.writerow([row.student, "", "", row.student, "", *(f"{row.scores[c]:.2f}" for c in columns)])
    else:
        writer.writerow(["username", *map(_column, columns)])
        for row in rows:
            writer.writerow([row.student, *(f"{row.scores[c]:.2f}" for c in columns)])
    return buffer.getvalue()
