"""The exercise manifest (``kdcore/exercises/manifest.toml``): one record per exercise id.

The id is the spine of the course: from one record a reader finds the notebook that teaches the exercise,
its reference implementation, the seed questions it answers, the quiz items that rehearse it, and — by the
id alone — its grading module ``kdcore/exercises/<id>.py``. ``tests/test_manifest.py`` checks every other
place that names an exercise against this file.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MANIFEST = Path(__file__).resolve().parents[1] / "exercises" / "manifest.toml"
_ID = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Record:
    """One exercise: ``id`` is the function name, the grading module's name and the gradebook column."""
    id: str
    notebook: str          # "02": the notebook that teaches it
    reference: str         # "kdcore.distill.kd_loss"
    seeds: tuple[str, ...]
    quiz: tuple[str, ...]
    summary: str

    @property
    def module(self) -> str:
        """The grading module: cases, wrong variants with their hints, correct alternatives."""
        return f"kdcore.exercises.{self.id}"

    def load_reference(self) -> Callable:
        module_name, _, name = self.reference.rpartition(".")
        return getattr(importlib.import_module(module_name), name)

    def signature(self) -> str:
        """``kd_loss(student_logits, teacher_logits, labels, T=4.0, alpha=0.9)``, read from the reference."""
        sig = inspect.signature(self.load_reference())
        params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
        return f"{self.id}{sig.replace(parameters=params, return_annotation=inspect.Signature.empty)}"


@functools.cache
def records() -> dict[str, Record]:
    """id -> :class:`Record`, in manifest order."""
    data = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    found: dict[str, Record] = {}
    for raw in data.get("exercise", []):
        missing = {"id", "notebook", "reference", "seeds", "quiz", "summary"} - set(raw)
        if missing:
            raise ValueError(f"{MANIFEST}: record {raw.get('id', raw)!r} lacks {sorted(missing)}")
        if not _ID.match(raw["id"]) or raw["id"] in found:
            raise ValueError(f"{MANIFEST}: bad or duplicated id {raw['id']!r}")
        found[raw["id"]] = Record(raw["id"], raw["notebook"], raw["reference"], tuple(raw["seeds"]),
                                  tuple(raw["quiz"]), raw["summary"])
    return found
