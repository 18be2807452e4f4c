"""The pipeline for a batch: snapshot -> sandboxed runs (``--jobs`` slots) -> judge -> journal.

Before any learner code runs, every submission is read once into the grader's private folder (mode 0700,
never mounted into a sandbox) with its SHA-256; the sandboxes only ever get copies of those snapshots.
Results are judged one at a time in the calling thread, as the slots deliver them, and appended to the
journal at once. Afterwards every original is hashed again: a changed file is reported (and, without a
sandbox, where learner code could have changed it, restored from a snapshot whose hash still matches).
"""
from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from .discover import Submission, sha256_file
from .journal import Journal
from .judge import Result, judge_outcome
from .runner import RunOptions, RunOutcome, Slot, run_submission
from .sandbox import Isolation

__all__ = ["grade", "Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    path: Path      # the grader's private copy
    sha256: str


def _snapshot(submissions: list[Submission], folder: Path) -> list[Snapshot]:
    snapshots = []
    for n, submission in enumerate(submissions):
        copy = folder / f"{n}.ipynb"
        shutil.copyfile(submission.path, copy)
        snapshots.append(Snapshot(copy, sha256_file(copy)))
    return snapshots


def _check_originals(submissions: list[Submission], snapshots: list[Snapshot], sandboxed: bool) -> list[str]:
    warnings = []
    for submission, snapshot in zip(submissions, snapshots):
        try:
            unchanged = submission.path.is_file() and sha256_file(submission.path) == snapshot.sha256
        except OSError:
            unchanged = False
        if unchanged:
            continue
        if sandboxed:
            warnings.append(f"{submission.label} changed while the batch was graded (not by a submission: none "
                            "could reach it); the copy taken before grading was graded and the file was left as "
                            "it is now")
        elif sha256_file(snapshot.path) == snapshot.sha256:
            shutil.copyfile(snapshot.path, submission.path)
            warnings.append(f"{submission.label} was changed during grading (by a submission's code: no "
                            "sandbox); restored from the copy taken before grading")
        else:
            warnings.append(f"{submission.label} was changed during grading and the grader's copy was changed "
                            "too (by a submission's code: no sandbox); it could NOT be restored")
    return warnings


def grade(submissions: list[Submission], isolation: Isolation, *, exercises: list[str] | None = None,
          jobs: int = 1, timeout: float = 120.0, case_timeout: float | None = None, memory_mb: int = 4096,
          reuse_zygote: bool = True, journal: Journal | None = None,
          progress: bool = True) -> tuple[list[Result], list[str]]:
    """Grade every submission; returns the results (in ``submissions`` order) and warnings for the instructor."""
    from tqdm.auto import tqdm

    from . import catalogue  # noqa: F401  (imported before any learner code runs)

    options = RunOptions(tuple(exercises or ()), timeout, case_timeout, memory_mb,
                         threads=max(1, (os.cpu_count() or 1) // jobs), reuse_zygote=reuse_zygote)
    warnings: list[str] = []
    results: dict[int, Result] = {}
    private = Path(tempfile.mkdtemp(prefix="kdcore-grade-"))
    os.chmod(private, 0o700)
    slots: list[Slot] = []
    memory_limited: list[bool] = []
    try:
        (private / "originals").mkdir()
        snapshots = _snapshot(submissions, private / "originals")
        todo: queue.Queue[int] = queue.Queue()
        for n, (submission, snapshot) in enumerate(zip(submissions, snapshots)):
            done = journal.get(submission, snapshot.sha256) if journal is not None else None
            if done is not None:
                results[n] = done
            else:
                todo.put(n)
        pending = todo.qsize()
        outcomes: queue.Queue[tuple[int, RunOutcome]] = queue.Queue()

        def serve(slot: Slot) -> None:
            # This thread starts its slot's sandboxes and lives as long as they do (--die-with-parent).
            try:
                while True:
                    try:
                        n = todo.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        outcome = run_submission(slot, snapshots[n].path.read_bytes(), options)
                    except Exception as error:  # e.g. no process could be started: report it, go on
                        outcome = RunOutcome(status="crashed", notes=[
                            f"the grading process could not run: {type(error).__name__}: {error}"[:500]])
                    outcomes.put((n, outcome))
            finally:
                slot.close()

        for k in range(min(jobs, pending)):
            slots.append(Slot(isolation, private / f"slot-{k}"))
        threads = [threading.Thread(target=serve, args=(slot,), daemon=True, name=f"kdcore-slot-{k}")
                   for k, slot in enumerate(slots)]
        for thread in threads:
            thread.start()
        with tqdm(total=len(submissions), initial=len(results), desc="grading", unit="notebook",
                  disable=not progress) as bar:
            for _ in range(pending):
                while True:
                    try:
                        n, outcome = outcomes.get(timeout=1.0)
                        break
                    except queue.Empty:
                        if not any(t.is_alive() for t in threads) and outcomes.empty():
                            raise RuntimeError("every grading slot stopped before the batch was graded")
                if outcome.memory_limited is not None:
                    memory_limited.append(outcome.memory_limited)
                result = judge_outcome(submissions[n], outcome, snapshots[n].path.read_bytes(),
                                       snapshots[n].sha256, list(exercises or []))
                if journal is not None:
                    journal.append(result)
                results[n] = result
                bar.update(1)
        for thread in threads:
            thread.join()
        warnings += _check_originals(submissions, snapshots, isolation.sandboxed)
    finally:
        for slot in slots:
            slot.close()
        shutil.rmtree(private, ignore_errors=True)
    if memory_mb and memory_limited and not any(memory_limited):
        warnings.append("the memory limit (--memory-mb) is not enforced on this system (no RLIMIT_AS)")
    return [results[n] for n in range(len(submissions))], warnings
