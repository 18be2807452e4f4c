"""The grading journal: each submission's result, appended as soon as it is judged.

    <journal>.jsonl   line 1: {"kdcore_journal": 1, "settings": {...}}   then one line per submission:
                      {"label": ..., "sha256": ..., "result": {...}}

Each line is written with a single ``write`` on a file opened for appending, then ``fsync``ed, so a grader
killed at any moment leaves whole lines and at most one torn last line (ignored when read). With
``--resume`` the grader reads the journal, skips every submission whose path and content (SHA-256) it
already holds under the same settings, and grades the rest: the final gradebook equals an uninterrupted
run's. Without ``--resume`` a new journal replaces the old one. The journal lives with the grader's outputs,
never where a submission can reach it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .._notebook import write_atomic
from .discover import Submission
from .judge import Result

__all__ = ["Journal", "JournalMismatch"]

FORMAT = 1


class JournalMismatch(ValueError):
    """The journal was written with other settings (a usage error with --resume)."""


class Journal:
    def __init__(self, path: Path, settings: dict, *, resume: bool) -> None:
        self.path = Path(path)
        self.settings = json.loads(json.dumps(settings, sort_keys=True))
        self.entries: dict[tuple[str, str], dict] = {}
        if resume and self.path.exists():
            self._load()
        else:
            write_atomic(self.path, json.dumps({"kdcore_journal": FORMAT, "settings": self.settings},
                                               sort_keys=True) + "\n")

    def _load(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # a line torn by a kill: end it, so the next append starts clean
            with open(self.path, "ab") as handle:
                handle.write(b"\n")
        lines = data.split(b"\n")
        try:
            header = json.loads(lines[0])
        except ValueError as error:
            raise JournalMismatch(f"{self.path} is not a kdcore grading journal") from error
        if not isinstance(header, dict) or header.get("kdcore_journal") != FORMAT:
            raise JournalMismatch(f"{self.path} is not a kdcore grading journal")
        if header.get("settings") != self.settings:
            raise JournalMismatch(f"{self.path} was written with other settings ({header.get('settings')}); "
                                  "grade again without --resume, or with the same options")
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # the torn last line of an interrupted run
            if isinstance(entry, dict) and {"label", "sha256", "result"} <= set(entry):
                self.entries[(entry["label"], entry["sha256"])] = entry["result"]

    def get(self, submission: Submission, sha256: str) -> Result | None:
        data = self.entries.get((submission.label, sha256))
        if data is None:
            return None
        try:
            return Result.from_json(data, submission)
        except (KeyError, TypeError, ValueError):
            return None

    def append(self, result: Result) -> None:
        line = json.dumps({"label": result.submission.label, "sha256": result.sha256,
                           "result": result.to_json()}, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))  # one write on an O_APPEND file: the line lands whole
            os.fsync(fd)
        finally:
            os.close(fd)
