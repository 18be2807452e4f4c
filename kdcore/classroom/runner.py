"""Stage 2, the sandboxed run of one submission: copy in, run (retrying after a crash), read results back.

A :class:`Slot` is one scratch folder with one zygote (:mod:`kdcore.classroom.zygote`) in its own sandbox;
``--jobs N`` gives N slots, each grading one submission at a time. For each submission the slot empties
its scratch folder, writes the submission's copy there (from the grader's snapshot; the original never
enters a sandbox), asks the zygote for a grading process and waits, at most ``--timeout`` seconds in all.
If the process dies inside one exercise, that exercise scores 0 and a new process grades the remaining
ones. Then everything the process wrote is read back into memory (:class:`RunOutcome`), each file opened
without following links and size-capped, before the slot moves on to the next submission.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import protocol
from .sandbox import Isolation, Zygote, ZygoteFailed

__all__ = ["RunOptions", "RunOutcome", "Slot", "run_submission", "STATUSES", "worse"]

#: Statuses of a submission, in increasing severity (a student's row shows the worst of their notebooks).
STATUSES = ("ok", "crashed", "memory", "timeout", "uses-reference", "invalid")

_MEMORY_SIGNS = ("MemoryError", "bad_alloc", "can't allocate memory", "Cannot allocate memory", "out of memory")

#: Exit code reported when the zygote itself was lost while a grading process ran (it cannot be killed from
#: inside a sandbox; without one, learner code can kill it).
ZYGOTE_LOST = -1000


def worse(a: str, b: str) -> str:
    return a if STATUSES.index(a) >= STATUSES.index(b) else b


@dataclass(frozen=True)
class RunOptions:
    exercises: tuple[str, ...]
    timeout: float
    case_timeout: float | None
    memory_mb: int
    threads: int
    reuse_zygote: bool = True  # False: a fresh zygote (and sandbox) per submission


@dataclass
class RunOutcome:
    """What the grading processes of one submission left: the worker's info, each exercise's record (raw
    bytes, loaded by the judge with ``weights_only``), the exercises that have no record and why, the
    run's status and notes for the student."""
    info: dict = field(default_factory=dict)
    records: dict[str, bytes] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    status: str = "ok"
    notes: list[str] = field(default_factory=list)
    memory_limited: bool | None = None


def _signal_name(code: int) -> str:
    try:
        return f"signal {-code} ({signal.Signals(-code).name})"
    except ValueError:
        return f"signal {-code}"


def read_regular(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of ``path`` if it is a regular file (not a link, FIFO or device) of at most ``max_bytes``."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, 2**20)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks) if total <= max_bytes else None
    finally:
        os.close(fd)


def _tail(path: Path, n_bytes: int = 4000) -> str:
    data = read_regular(path, protocol.MAX_FILE_BYTES + 2**20)
    return (data or b"")[-n_bytes:].decode("utf-8", "replace")


def empty_folder(folder: Path) -> None:
    """Remove everything inside ``folder`` (links are removed, never followed), keeping the folder itself:
    it is bind-mounted into a running sandbox."""
    for entry in os.scandir(folder):
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
        except OSError:
            pass


class Slot:
    """A scratch folder and the zygote that works in it (started lazily, restarted when lost)."""

    def __init__(self, isolation: Isolation, scratch: Path) -> None:
        self.isolation, self.scratch = isolation, scratch
        self.scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.zygote: Zygote | None = None

    def run(self, argv: list[str], env: dict[str, str], timeout: float) -> int | None:
        if self.zygote is None or not self.zygote.alive():
            self.close()
            self.zygote = Zygote(self.isolation, self.scratch)
        try:
            code = self.zygote.run(argv, env, timeout)
        except ZygoteFailed:
            self.close()
            return ZYGOTE_LOST
        if code is None:
            self.zygote = None  # killed, with its sandbox, by Zygote.run
        return code

    def close(self) -> None:
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None


def _worker_env(threads: int) -> dict[str, str]:
    return {"KDCORE_PROGRESS": "0", "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "MALLOC_ARENA_MAX": "2"}


def _read_info(scratch: Path) -> dict:
    data = read_regular(scratch / protocol.INFO_FILE, protocol.MAX_INFO_BYTES)
    try:
        info = json.loads(data) if data else {}
    except (ValueError, RecursionError):
        info = {}
    return info if isinstance(info, dict) else {}


def _record_ids(scratch: Path) -> list[str]:
    return sorted(e for e in (protocol.record_exercise(name) for name in os.listdir(scratch)) if e)


def run_submission(slot: Slot, notebook: bytes, options: RunOptions) -> RunOutcome:
    """Grade one submission (its bytes) in ``slot``: until done, out of time, or out of exercises to retry."""
    empty_folder(slot.scratch)
    (slot.scratch / protocol.SUBMISSION_FILE).write_bytes(notebook)
    inside = Path(slot.isolation.scratch_path(slot.scratch))
    deadline = time.monotonic() + options.timeout
    outcome = RunOutcome()
    while True:
        running_file = slot.scratch / protocol.RUNNING_FILE
        running_file.unlink(missing_ok=True)
        done = _record_ids(slot.scratch)
        argv = [str(inside / protocol.SUBMISSION_FILE), str(inside), "--exercises", ",".join(options.exercises),
                "--skip", ",".join(done + sorted(outcome.failed)), "--case-timeout", str(options.case_timeout or 0),
                "--memory-mb", str(options.memory_mb), "--threads", str(options.threads)]
        code = slot.run(argv, _worker_env(options.threads), max(0.1, deadline - time.monotonic()))
        info = _read_info(slot.scratch)
        outcome.info = info or outcome.info
        running_bytes = read_regular(running_file, 1000)
        running = running_bytes.decode("utf-8", "replace").strip() if running_bytes else None
        if running is not None and running in _record_ids(slot.scratch):
            running = None  # it finished just before the process ended
        if code is None:
            outcome.status = worse(outcome.status, "timeout")
            where = f" while running {running}" if running else ""
            outcome.notes.append(f"stopped after --timeout {options.timeout:g} s{where} (an infinite loop?)")
            if running:
                outcome.failed[running] = (f"stopped: the submission ran out of time (--timeout "
                                           f"{options.timeout:g} s) in this exercise (an infinite loop?)")
            break
        if code == 0 and (slot.scratch / protocol.DONE_FILE).exists() or "invalid" in info:
            break
        if code == protocol.EXIT_RESTART and running is None:
            continue  # a timed-out case left a thread running: go on in a fresh process
        # The process died before finishing.
        if code == ZYGOTE_LOST:
            cause = "its parent process was killed"
        else:
            cause = f"exit code {code}" if code >= 0 else _signal_name(code)
        memory = any(sign in _tail(slot.scratch / protocol.STDERR_FILE) for sign in _MEMORY_SIGNS)
        outcome.status = worse(outcome.status, "memory" if memory else "crashed")
        where = f"while running {running}" if running else "while defining the notebook's functions"
        outcome.notes.append(f"the grading process died ({cause}) {where}")
        if running is None:
            break  # it died before any exercise: a retry would die the same way
        outcome.failed[running] = (f"the process died ({cause}) while running this exercise "
                                   f"(os._exit, sys.exit in a thread, a crash{' or too much memory' if memory else ''})")
        if time.monotonic() >= deadline:
            break
    for exercise_id in _record_ids(slot.scratch):
        data = read_regular(slot.scratch / protocol.record_name(exercise_id), protocol.MAX_RECORD_BYTES)
        if data is None:
            outcome.failed.setdefault(exercise_id, "its saved outputs were missing, too large or not a file")
        elif exercise_id not in outcome.failed:
            outcome.records[exercise_id] = data
    if "memory_limited" in outcome.info:
        outcome.memory_limited = bool(outcome.info["memory_limited"])
    empty_folder(slot.scratch)
    if not options.reuse_zygote:
        slot.close()
    return outcome
