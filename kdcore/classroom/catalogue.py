"""The exercise catalogue and the judge, imported from the checking package in this one place.

Everything in :mod:`kdcore.classroom` that needs the checking API (the exercises and their cases, the
known wrong variants, the references, ``run_candidate`` and ``judge``) imports it from here, so a rename of
that package is a one-line change.
"""
from __future__ import annotations

from kdcore.checking import (CORRECT, EXERCISES, REFERENCES, VARIANTS, CheckResult, check, judge,  # noqa: F401
                            run_candidate)

__all__ = ["CORRECT", "EXERCISES", "REFERENCES", "VARIANTS", "CheckResult", "check", "judge", "run_candidate"]
