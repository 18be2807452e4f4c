"""Grading: ``check(exercise_id, fn)`` compares a learner's function with kdcore's reference.

``check`` = ``judge(run_candidate(...))`` + a printed report (one line per case, hints naming the likely
misconception) + ``ExerciseFailed`` (an AssertionError) on failure. ``run_candidate`` and ``judge`` can run in
different processes: observations are plain data (``torch.save`` / ``torch.load(weights_only=True)``).

Registries: ``EXERCISES`` (id → :class:`Exercise` with its cases), ``VARIANTS`` (id → known wrong variants
with their hints), ``CORRECT`` (id → correct but different solutions, used by the tests). References are
captured at import in :mod:`kdcore.grading.references`.
"""
from __future__ import annotations

from .core import (CORRECT, EXERCISES, VARIANTS, Case, CaseResult, CheckResult, Exercise, ExerciseFailed,
                   Variant, check, judge, run_candidate)
from .references import REFERENCES
from . import ex_distill, ex_prune, ex_measure, ex_quantize, ex_select  # noqa: F401  (register exercises)

__all__ = ["check", "judge", "run_candidate", "EXERCISES", "VARIANTS", "CORRECT", "REFERENCES", "Exercise",
           "Case", "Variant", "CaseResult", "CheckResult", "ExerciseFailed"]
