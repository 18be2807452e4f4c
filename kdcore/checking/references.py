"""The reference functions the judge compares against, captured once, when kdcore.checking is imported.

``REFERENCES[exercise_id]`` is the function object found at import time from the manifest's ``reference``
path (``None`` if it could not be imported; judging that exercise then raises a clear RuntimeError).
Because the judge reads this dict and never looks the reference up again, learner code that later re-binds
a module attribute such as ``kdcore.distill.kd_loss = my_loss`` does not change the reference in this
process. (It cannot protect against code that patches torch itself or the internals a reference calls: for
untrusted submissions the batch grader judges in a separate process that never runs learner code.)
"""
from __future__ import annotations

from typing import Callable

from .manifest import records


def _capture() -> dict[str, "Callable | None"]:
    found: dict[str, "Callable | None"] = {}
    for exercise_id, record in records().items():
        try:
            found[exercise_id] = record.load_reference()
        except (ImportError, AttributeError):
            found[exercise_id] = None
    return found


REFERENCES: dict[str, "Callable | None"] = _capture()
