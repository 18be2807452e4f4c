"""Checking an exercise: ``check(exercise_id, fn)`` compares a learner's function with kdcore's reference.

``check`` = ``judge(run_candidate(...))`` + a printed report (one line per case, hints naming the likely
misconception) + ``ExerciseFailed`` (an AssertionError) on failure. ``run_candidate`` and ``judge`` can run in
different processes: observations are plain data (``torch.save`` / ``torch.load(weights_only=True)``).

Where things are, for an exercise id such as ``kd_loss``:

* its record (notebook, reference, seed questions, quiz items): ``kdcore/exercises/manifest.toml``
* its cases, wrong variants with their hints, correct alternatives: ``kdcore/exercises/kd_loss.py``
* the machinery: :mod:`.core` (judging), :mod:`.cases` (case tables), :mod:`.catalogue` (``@wrong``),
  :mod:`.mutants` (mutation testing of the cases).

Registries filled here from the manifest: ``EXERCISES`` (id → :class:`Exercise`), ``VARIANTS`` (id → known wrong
variants), ``CORRECT`` (id → correct but different solutions), ``REFERENCES`` (id → reference function).
"""
from __future__ import annotations

import importlib

from .catalogue import variants_of
from .core import (CORRECT, EXERCISES, VARIANTS, Case, CaseResult, CheckResult, Exercise, ExerciseFailed,
                   Variant, check, judge, register, run_candidate)
from .manifest import Record, records
from .references import REFERENCES


def _load(record: Record) -> None:
    module = importlib.import_module(record.module)
    catalogue = variants_of(record.module)
    exercise = Exercise(record.id, record.notebook, record.signature(), list(module.CASES), record.reference,
                        record.summary, getattr(module, "TIMEOUT", 10.0),
                        dict(getattr(module, "EQUIVALENT_MUTANTS", {})))
    register(exercise, catalogue["wrong"], catalogue["correct"])


def _load_all() -> None:
    for record in records().values():
        _load(record)


_load_all()

__all__ = ["check", "judge", "run_candidate", "EXERCISES", "VARIANTS", "CORRECT", "REFERENCES", "Exercise",
           "Case", "Variant", "CaseResult", "CheckResult", "ExerciseFailed", "records"]
