"""Stage 3, judge: turn what a sandboxed run left into scores, statuses and the student's feedback.

Runs in the grader's process, which never runs learner code: each record is loaded with
``torch.load(weights_only=True)`` and judged by the checking package's ``judge``, which computes the
references here. The student's feedback holds only their own cases, their own error messages (each line
capped at :data:`MAX_LINE`) and the hints; errors from the notebook's other cells (its experiments, the
course's own demo code) are not shown.
"""
from __future__ import annotations

import ast
import io
import json
import re
from dataclasses import asdict, dataclass, field

from .._notebook import cell_source, definitions
from .discover import Submission
from .runner import RunOutcome, worse

__all__ = ["ExerciseResult", "Result", "judge_outcome", "top_level_names", "expected_exercises", "missing",
           "MAX_LINE"]

#: Longest line of learner-provided text (an error message) copied into feedback.
MAX_LINE = 300
#: Longest feedback per exercise.
MAX_FEEDBACK = 6000
_NOTEBOOK_NUMBER = re.compile(r"^(\d\d)_")


@dataclass
class ExerciseResult:
    score: float
    status: str = "ok"  # ok | missing | error | crashed | memory | timeout | uses-reference
    feedback: str = ""
    misconceptions: list[str] = field(default_factory=list)  # names of the wrong variants that matched


@dataclass
class Result:
    """What grading one submission produced."""
    submission: Submission
    sha256: str = ""
    status: str = "ok"
    exercises: dict[str, ExerciseResult] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def scores(self) -> dict[str, float]:
        return {e: r.score for e, r in self.exercises.items()}

    def to_json(self) -> dict:
        data = asdict(self)
        data["submission"] = {"student": self.submission.student, "path": str(self.submission.path),
                              "label": self.submission.label}
        return data

    @classmethod
    def from_json(cls, data: dict, submission: Submission) -> "Result":
        return cls(submission, data["sha256"], data["status"],
                   {e: ExerciseResult(**r) for e, r in data["exercises"].items()},
                   list(data["checks"]), list(data["notes"]))


def cap(text: str, limit: int = MAX_LINE) -> str:
    """Each line of ``text`` cut to ``limit`` characters."""
    return "\n".join(line if len(line) <= limit else line[:limit - 1] + "…" for line in str(text).splitlines())


def top_level_names(notebook: bytes) -> set[str]:
    """Names the notebook binds at top level in its code cells (read here, by parsing, never running)."""
    try:
        nb = json.loads(notebook.decode("utf-8"))
        cells = [c for c in nb.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code"]
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return set()
    names: set[str] = set()
    for cell in cells:
        try:
            statements, _ = definitions(cell_source(cell))
        except (RecursionError, MemoryError, ValueError):
            continue
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _misconceptions(exercise_id: str, check) -> list[str]:
    """The wrong variants whose hint the judge gave (the misconceptions this learner showed)."""
    from .catalogue import VARIANTS
    found = []
    for variant in VARIANTS.get(exercise_id, []):
        if any(not case.passed and variant.hint in case.hint for case in check.cases):
            found.append(variant.name)
    return found


def _judge_record(exercise_id: str, data: bytes) -> ExerciseResult:
    import torch

    from .catalogue import judge
    from .reference_use import verdict
    try:
        record = torch.load(io.BytesIO(data), weights_only=True)
        if not isinstance(record, dict):
            raise ValueError(f"the record is a {type(record).__name__}, not a dict")
        if record.get("reference"):
            return ExerciseResult(0.0, "uses-reference", verdict(exercise_id, cap(str(record["reference"]))))
        if record.get("error"):
            return ExerciseResult(0.0, "memory" if record.get("memory") else "error", f"grading stopped with an error: {cap(str(record['error']))}")
        observations = record.get("observations")
        check = judge(exercise_id, observations)
        timed_out = (isinstance(observations, list) and observations
                     and all(isinstance(o, dict) and o.get("error_type") == "TimeoutError" for o in observations))
        status = "timeout" if timed_out else "memory" if record.get("memory") else "ok"
        feedback = cap(str(check.feedback))
        return ExerciseResult(float(check.score), status, feedback[:MAX_FEEDBACK], _misconceptions(exercise_id, check))
    except Exception as error:  # noqa: BLE001 - forged or corrupt outputs grade as 0, never abort the batch
        return ExerciseResult(0.0, "error", cap(f"the outputs could not be judged: {type(error).__name__}: {error}"))


def _cell_errors_for(info: dict, exercise_id: str) -> list[str]:
    """Errors of the cells that bind ``exercise_id`` (a syntax error in the learner's own cell)."""
    errors = info.get("cell_errors") if isinstance(info.get("cell_errors"), list) else []
    shown = []
    for error in errors[:200]:
        if isinstance(error, dict) and isinstance(error.get("binds"), list) and exercise_id in error["binds"]:
            shown.append(cap(f"code cell {error.get('cell')}, {error.get('message')}"))
    return shown[:5]


def judge_outcome(submission: Submission, outcome: RunOutcome, notebook: bytes, sha256: str,
                  exercises: list[str]) -> Result:
    """Score every exercise in ``exercises`` (plus any other the notebook defines) for one submission."""
    result = Result(submission, sha256, outcome.status, notes=list(outcome.notes))
    info = outcome.info
    if "invalid" in info:
        result.status = "invalid"
        result.notes.append(f"not a readable notebook: {cap(str(info['invalid']))}")
        return result
    result.checks = [c for c in (info.get("checks") if isinstance(info.get("checks"), list) else [])
                     if isinstance(c, str)][:200]
    if info.get("memory"):
        result.status = worse(result.status, "memory")
    bound = top_level_names(notebook)
    for exercise_id, why in outcome.failed.items():
        status = "timeout" if "ran out of time" in why else "crashed"
        result.exercises[exercise_id] = ExerciseResult(0.0, status, why)
    for exercise_id, data in outcome.records.items():
        if exercise_id not in bound:  # a record the notebook's own definitions cannot have produced
            result.notes.append(f"outputs for `{exercise_id}` appeared although the notebook defines no such "
                                "function: ignored")
            continue
        result.exercises[exercise_id] = _judge_record(exercise_id, data)
    for exercise_id in exercises or expected_exercises(submission, result.checks):
        if exercise_id in result.exercises:
            continue
        errors = _cell_errors_for(info, exercise_id)
        if errors:
            text = "Not graded: the cell defining it failed:\n" + "\n".join(errors)
        else:
            text = missing(exercise_id, result.status)
        result.exercises[exercise_id] = ExerciseResult(0.0, "missing", text)
    for exercise in result.exercises.values():
        if exercise.status in ("timeout", "uses-reference", "memory"):
            result.status = worse(result.status, exercise.status)
    return result


def expected_exercises(submission: Submission, checks: list[str]) -> list[str]:
    """The exercises a submission is graded on when ``--exercises`` is not given: those it has a check cell
    for, and those of the notebook its file name numbers (``02_kd.ipynb`` -> notebook 02), so that a deleted
    cell still shows as a 0."""
    from .catalogue import EXERCISES
    match = _NOTEBOOK_NUMBER.match(submission.path.name)
    number = match.group(1) if match else None
    return [e for e, ex in EXERCISES.items() if e in checks or ex.notebook == number]


def missing(exercise_id: str, status: str) -> str:
    """Why an exercise has no grader report."""
    if status == "invalid":
        return "Not graded: the file is not a readable notebook (see the notes below)."
    if status in ("timeout", "crashed", "memory"):
        return (f"Not graded: the grading stopped ({status}) before this exercise, or no function named "
                f"`{exercise_id}` was defined (see the notes below).")
    return (f"No function named `{exercise_id}` was found: was its cell deleted or renamed, or does it have a "
            "syntax error? The grader runs only imports, `def`/`class` statements and constant "
            "assignments, so compute everything inside the function.")
