"""Batch grading of learner notebooks: ``python -m kdcore.grade PATH... [options]``.

    python -m kdcore.grade submissions/ --csv gradebook.csv --feedback feedback/ --jobs 2

PATH is a notebook or a folder searched recursively for ``*.ipynb`` (``.ipynb_checkpoints`` ignored).
The student's name is the file stem for a notebook directly inside PATH (``submissions/alice.ipynb`` ->
``alice``) and the first sub-folder name otherwise (``submissions/alice/02_kd.ipynb`` -> ``alice``); a notebook
given directly on the command line is named by its stem. A student with several notebooks gets one row,
with the best score per exercise and the worst status.

Each submission runs in a fresh process (``kdcore._grade_worker``: a copy of the file, a private
working folder, an address-space limit, a wall-clock ``--timeout``) that executes only the notebook's
imports, definitions and constant assignments, runs each defined exercise function on the grader's cases
(``kdcore.checking.run_candidate``, ``--case-timeout`` per case) and saves the outputs. This process loads
them with ``torch.load(weights_only=True)`` and judges them with ``kdcore.checking.judge``, computing the
references itself. On POSIX the grading processes are forks of a server process that has imported torch
and ``kdcore.checking`` once and never runs learner code (about 2 s saved per submission); set the
environment variable ``KDCORE_GRADE_FORK=0`` to start a new interpreter for each instead. If the worker
dies inside one exercise, that exercise scores 0 and a new worker grades
the remaining ones (within the same ``--timeout``).

Status per student: ``ok``; ``timeout`` (``--timeout`` reached); ``memory`` (``--memory-mb`` exceeded);
``crashed`` (the process died: ``os._exit``, a segfault, ...); ``invalid`` (not a readable notebook).
Exit code 0 when grading completed (whatever the students scored), 2 on a usage error.

This is protection against accidents and naive cheating, not a security sandbox: learner code runs with
your user's rights. Grade untrusted submissions inside a container or a throw-away account. As a safety
net every submission is hashed and copied before grading, checked afterwards, and restored if changed.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ._grade_worker import RESTART
from ._notebook import write_atomic

__all__ = ["Submission", "Result", "discover", "grade", "gradebook_csv", "format_table",
           "feedback_markdown", "main"]

STATUSES = ("ok", "crashed", "memory", "timeout", "invalid")  # in increasing severity
_NOTEBOOK_NUMBER = re.compile(r"^(\d\d)_")


class UsageError(ValueError):
    """Bad command-line input (exit code 2)."""


@dataclass(frozen=True)
class Submission:
    student: str
    path: Path
    label: str  # the path as shown in reports


@dataclass
class Result:
    """What grading one submission produced."""
    submission: Submission
    status: str = "ok"
    scores: dict[str, float] = field(default_factory=dict)
    feedback: dict[str, str] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- finding submissions ------------------------------------------------------------------------------

def _notebooks_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.ipynb")
                  if p.is_file() and ".ipynb_checkpoints" not in p.relative_to(folder).parts)


def discover(paths: list[Path]) -> list[Submission]:
    """Submissions named by student (see the module docstring); raises ``UsageError`` for bad paths."""
    found: list[Submission] = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            if path.suffix != ".ipynb":
                raise UsageError(f"PATH {path} is not a notebook (*.ipynb) or a folder")
            found.append(Submission(path.stem, path, str(path)))
        elif path.is_dir():
            notebooks = _notebooks_under(path)
            if not notebooks:
                raise UsageError(f"PATH {path} contains no *.ipynb submissions")
            for notebook in notebooks:
                relative = notebook.relative_to(path)
                student = relative.parts[0] if len(relative.parts) > 1 else notebook.stem
                found.append(Submission(student, notebook, str(notebook)))
        else:
            raise UsageError(f"PATH {path} does not exist")
    unique = {s.path.resolve(): s for s in found}
    return sorted(unique.values(), key=lambda s: (s.student, s.label))


# --- running one submission in a child process --------------------------------------------------------

@dataclass
class _Options:
    exercises: list[str]
    timeout: float
    case_timeout: float | None
    memory_mb: int
    threads: int
    fork: bool = True


def _signal_name(returncode: int) -> str:
    try:
        return f"signal {-returncode} ({signal.Signals(-returncode).name})"
    except ValueError:
        return f"signal {-returncode}"


def _tail(path: Path, n_bytes: int = 4000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - n_bytes))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


_MEMORY_SIGNS = ("MemoryError", "bad_alloc", "can't allocate memory", "Cannot allocate memory",
                 "out of memory")


def _worker_env(threads: int) -> dict[str, str]:
    return {"KDCORE_PROGRESS": "0", "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "MALLOC_ARENA_MAX": "2"}


class _Child:
    """One grading process, started either by forking a pristine server that has already imported torch
    and kdcore.checking (POSIX: about 2 s of imports saved per submission) or as a new interpreter."""

    _context = None

    @classmethod
    def _forkserver(cls):
        if cls._context is None and "forkserver" in multiprocessing.get_all_start_methods():
            cls._context = multiprocessing.get_context("forkserver")
            # The server imports these once; it never runs learner code, each child is a fresh fork of it.
            cls._context.set_forkserver_preload(["kdcore._grade_worker", "torch", "kdcore.checking"])
        return cls._context

    def __init__(self, argv: list[str], workdir: Path, threads: int, use_fork: bool = True) -> None:
        env = _worker_env(threads)
        context = self._forkserver() if use_fork else None
        if context is not None:
            self.process = context.Process(target=child_main, args=(argv, str(workdir), env), daemon=False)
            self.process.start()
            self.pid = self.process.pid
            self.popen = None
        else:
            with open(workdir / "stderr.txt", "ab") as stderr:
                full_env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"} | env
                self.popen = subprocess.Popen([sys.executable, "-m", "kdcore._grade_worker", *argv],
                                              cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                              stderr=stderr, env=full_env, start_new_session=True)
            self.pid = self.popen.pid

    def wait(self, timeout: float) -> int | None:
        """The exit code (negative: killed by that signal), or None if still running after ``timeout``."""
        if self.popen is not None:
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
        self.process.join(timeout)
        return self.process.exitcode

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the child leads its own session: its children go too
        except (ProcessLookupError, PermissionError, AttributeError):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, AttributeError):
                pass
        if self.popen is not None:
            self.popen.wait()
        else:
            self.process.join()


def child_main(argv: list[str], workdir: str, env: dict[str, str]) -> None:
    """Entry point of a forked grading child: detach, redirect output, then run the worker."""
    os.setsid()
    os.chdir(workdir)
    os.environ.update(env)
    devnull = os.open(os.devnull, os.O_RDWR)
    stderr = os.open(os.path.join(workdir, "stderr.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(stderr, 2)
    from . import _grade_worker
    code = _grade_worker.main(argv)
    sys.stderr.flush()
    os._exit(code or 0)


def run_submission(copy: Path, workdir: Path, options: _Options) -> dict:
    """Run the worker on ``copy`` (until done, out of time, or out of exercises to retry).

    Returns the raw outcome: ``info`` (the worker's info.json), ``records`` (exercise id -> path of its
    saved outputs), ``failed`` (exercise id -> why it has no outputs), ``status`` and ``notes``.
    """
    deadline = time.monotonic() + options.timeout
    info: dict = {}
    failed: dict[str, str] = {}
    notes: list[str] = []
    status = "ok"
    while True:
        done_ids = sorted(p.name[4:-3] for p in workdir.glob("obs-*.pt"))
        (workdir / "running.txt").unlink(missing_ok=True)
        argv = [str(copy), str(workdir), "--exercises", ",".join(options.exercises),
                "--skip", ",".join(done_ids + sorted(failed)), "--case-timeout", str(options.case_timeout or 0),
                "--memory-mb", str(options.memory_mb), "--threads", str(options.threads)]
        child = _Child(argv, workdir, options.threads, options.fork)
        returncode = child.wait(max(0.1, deadline - time.monotonic()))
        timed_out = returncode is None
        if timed_out:
            child.kill()
        try:
            info = json.loads((workdir / "info.json").read_text(encoding="utf-8"))
            info = info if isinstance(info, dict) else {}
        except (OSError, ValueError, RecursionError):
            info = info or {}
        running_file = workdir / "running.txt"
        running = running_file.read_text(encoding="utf-8").strip() if running_file.exists() else None
        if running is not None and (workdir / f"obs-{running}.pt").exists():
            running = None  # it finished just before the process ended
        if timed_out:
            status = "timeout"
            where = f" while running {running}" if running else ""
            notes.append(f"stopped after --timeout {options.timeout:g} s{where} (an infinite loop?)")
            if running:
                failed[running] = (f"stopped: the submission ran out of time (--timeout "
                                   f"{options.timeout:g} s) in this exercise (an infinite loop?)")
            break
        # multiprocessing's fork server reports 255 when it loses a child's exit status (its pipe gives EOF
        # instead of the code; seen once in 30 submissions on a loaded 2-core machine). The worker writes
        # `done` only after every exercise's outputs are saved, so `done` with 255 is a finished run.
        lost_status = returncode == 255 and child.popen is None
        if (returncode == 0 or lost_status) and (workdir / "done").exists() or "invalid" in info:
            break
        if returncode == RESTART and running is None:
            continue  # a timed-out case left a thread running: go on in a fresh process
        # The process died before finishing.
        cause = (f"exit code {returncode}" if returncode >= 0
                 else _signal_name(returncode))
        tail = _tail(workdir / "stderr.txt")
        memory = any(sign in tail for sign in _MEMORY_SIGNS)
        status = _worse(status, "memory" if memory else "crashed")
        where = f"while running {running}" if running else "while defining the notebook's functions"
        notes.append(f"the grading process died ({cause}) {where}")
        if running is None:
            break  # it died before any exercise: a retry would die the same way
        failed[running] = (f"the process died ({cause}) while running this exercise "
                           f"(os._exit, sys.exit in a thread, a crash{' or too much memory' if memory else ''})")
    records = {p.name[4:-3]: p for p in sorted(workdir.glob("obs-*.pt"))}
    return {"info": info, "records": records, "failed": failed, "status": status, "notes": notes}


# --- judging in this process ----------------------------------------------------------------------------

def _worse(a: str, b: str) -> str:
    return a if STATUSES.index(a) >= STATUSES.index(b) else b


def judge_submission(submission: Submission, raw: dict, max_record_bytes: int = 256 * 2**20) -> Result:
    """Load the saved outputs (weights_only) and judge them against references computed here."""
    import torch
    from kdcore.checking import judge

    result = Result(submission, status=raw["status"], notes=list(raw["notes"]))
    info = raw["info"]
    if "invalid" in info:
        result.status = "invalid"
        result.notes.append(f"not a readable notebook: {info['invalid']}")
        return result
    def as_list(value: object) -> list:  # info.json is written by the child: trust only its shape
        return value if isinstance(value, list) else []

    result.checks = [c for c in as_list(info.get("checks")) if isinstance(c, str)]
    result.notes.extend(str(e)[:500] for e in as_list(info.get("cell_errors")))
    if info.get("memory"):
        result.status = _worse(result.status, "memory")
    for exercise_id, why in raw["failed"].items():
        result.scores[exercise_id] = 0.0
        result.feedback[exercise_id] = why
    for exercise_id, path in raw["records"].items():
        try:
            if path.stat().st_size > max_record_bytes:
                raise ValueError(f"saved outputs too large ({path.stat().st_size} bytes)")
            record = torch.load(path, weights_only=True)
            if record.get("memory"):
                result.status = _worse(result.status, "memory")
            if record.get("error"):
                result.scores[exercise_id] = 0.0
                result.feedback[exercise_id] = f"grading stopped with an error: {record['error']}"
                continue
            check = judge(exercise_id, record["observations"])
            result.scores[exercise_id] = float(check.score)
            result.feedback[exercise_id] = str(check.feedback)
        except Exception as error:  # forged or corrupt outputs grade as 0, never abort the batch
            result.scores[exercise_id] = 0.0
            result.feedback[exercise_id] = f"the outputs could not be judged: {type(error).__name__}: {error}"
    return result


# --- the batch ------------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def grade(submissions: list[Submission], *, exercises: list[str] | None = None, jobs: int = 1,
          timeout: float = 120.0, case_timeout: float | None = None, memory_mb: int = 4096,
          progress: bool = True, fork: bool = True) -> tuple[list[Result], list[str]]:
    """Grade every submission; returns the results and warnings (restored submissions, no RLIMIT_AS).

    ``fork=False`` starts every grading process as a new interpreter instead of forking the pre-loaded
    server (slower; the benchmark's baseline).
    """
    from tqdm.auto import tqdm

    import kdcore.checking  # noqa: F401  (imported before any learner code runs)

    options = _Options(list(exercises or []), timeout, case_timeout, memory_mb,
                       threads=max(1, (os.cpu_count() or 1) // jobs), fork=fork)
    warnings: list[str] = []
    results: dict[int, Result] = {}
    with tempfile.TemporaryDirectory(prefix="kdcore-grade-") as tmp:
        root = Path(tmp)
        # Snapshot every submission before any learner code runs (one may try to edit another's file).
        originals: list[tuple[Path, str]] = []
        for n, submission in enumerate(submissions):
            (root / f"original-{n}").mkdir()
            backup = root / f"original-{n}" / "submission.ipynb"
            shutil.copyfile(submission.path, backup)
            originals.append((backup, _sha256(backup)))
            workdir = root / f"work-{n}"
            workdir.mkdir()
            shutil.copyfile(backup, workdir / "submission.ipynb")

        def run(n: int) -> dict:
            workdir = root / f"work-{n}"
            return run_submission(workdir / "submission.ipynb", workdir, options)

        with ThreadPoolExecutor(max_workers=jobs) as pool, \
                tqdm(total=len(submissions), desc="grading", unit="notebook", disable=not progress) as bar:
            futures = {pool.submit(run, n): n for n in range(len(submissions))}
            limits_seen: list[bool] = []
            for future in as_completed(futures):
                n = futures[future]
                try:
                    raw = future.result()
                except Exception as error:  # e.g. no process could be started: report it, go on
                    raw = {"info": {}, "records": {}, "failed": {}, "status": "crashed",
                           "notes": [f"the grading process could not run: {type(error).__name__}: {error}"]}
                if "memory_limited" in raw["info"]:
                    limits_seen.append(bool(raw["info"]["memory_limited"]))
                results[n] = judge_submission(submissions[n], raw)  # judged one at a time, in this thread
                bar.update(1)
        for n, submission in enumerate(submissions):
            backup, digest = originals[n]
            if not submission.path.exists() or _sha256(submission.path) != digest:
                shutil.copyfile(backup, submission.path)
                warnings.append(f"{submission.label} was changed during grading (by a submission's code?); "
                                "restored from the copy taken before grading")
    if memory_mb and limits_seen and not any(limits_seen):
        warnings.append("the memory limit (--memory-mb) is not enforced on this system (no RLIMIT_AS)")
    return [results[n] for n in range(len(submissions))], warnings


# --- reports ---------------------------------------------------------------------------------------------

@dataclass
class StudentRow:
    student: str
    scores: dict[str, float]
    status: str
    results: list[Result]

    @property
    def total(self) -> float:
        return sum(self.scores.values())


def columns_for(results: list[Result], requested: list[str] | None) -> list[str]:
    """The gradebook's exercise columns, in catalogue order.

    ``--exercises`` if given; otherwise every exercise that some submission has a check cell for, or whose
    notebook number matches a submission's file name (``02_kd.ipynb`` -> the exercises of notebook 02), so a
    deleted cell still shows as a 0.
    """
    from kdcore.checking import EXERCISES

    if requested:
        return list(requested)
    wanted: set[str] = set()
    for result in results:
        wanted.update(c for c in result.checks if c in EXERCISES)
        match = _NOTEBOOK_NUMBER.match(result.submission.path.name)
        if match:
            wanted.update(e for e, ex in EXERCISES.items() if ex.notebook == match.group(1))
    if not wanted:  # nothing recognisable: show whatever was graded
        for result in results:
            wanted.update(result.scores)
    return [e for e in EXERCISES if e in wanted]


def student_rows(results: list[Result], columns: list[str]) -> list[StudentRow]:
    by_student: dict[str, list[Result]] = {}
    for result in results:
        by_student.setdefault(result.submission.student, []).append(result)
    rows = []
    for student in sorted(by_student):
        group = by_student[student]
        scores = {c: max(r.scores.get(c, 0.0) for r in group) for c in columns}
        status = "ok"
        for r in group:
            status = _worse(status, r.status)
        rows.append(StudentRow(student, scores, status, group))
    return rows


def gradebook_csv(rows: list[StudentRow], columns: list[str]) -> str:
    """One row per student: ``student, <exercise>..., total, status`` (scores in [0, 1], 2 decimals)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", *columns, "total", "status"])
    for row in rows:
        writer.writerow([row.student, *(f"{row.scores[c]:.2f}" for c in columns), f"{row.total:.2f}",
                         row.status])
    return buffer.getvalue()


def format_table(rows: list[StudentRow], columns: list[str]) -> str:
    header = ["student", *columns, "total", "status"]
    body = [[r.student, *(f"{r.scores[c]:.2f}" for c in columns), f"{r.total:.2f}/{len(columns)}", r.status]
            for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    def fmt(line: list[str]) -> str:
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                         enumerate(zip(line, widths)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)])


def feedback_markdown(row: StudentRow, columns: list[str]) -> str:
    """A student's report: scores, then per exercise the grader's per-case lines and hints."""
    lines = [f"# Feedback: {row.student}", "",
             f"Status: **{row.status}**. Total: **{row.total:.2f} / {len(columns)}**.", "",
             "Graded: " + ", ".join(f"`{Path(r.submission.label).name}`" for r in row.results), "",
             "| exercise | score |", "|---|---|"]
    lines += [f"| `{c}` | {row.scores[c]:.2f} |" for c in columns]
    for column in columns:
        lines += ["", f"## `{column}`: {row.scores[column]:.2f}", ""]
        texts = [r.feedback[column] for r in row.results if column in r.feedback]
        if not texts:
            texts = [_missing(column, row.status)]
        for text in texts:
            lines += ["```text", text.rstrip(), "```"]
    notes = [note for r in row.results for note in r.notes]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _missing(column: str, status: str) -> str:
    """Why an exercise has no grader report."""
    if status == "invalid":
        return "Not graded: the file is not a readable notebook (see the notes below)."
    if status in ("timeout", "crashed", "memory"):
        return (f"Not graded: the grading stopped ({status}) before this exercise, or no function named "
                f"`{column}` was defined (see the notes below).")
    return (f"No function named `{column}` was found: was its cell deleted or renamed, or does it have a "
            "syntax error? The grader runs only imports, `def`/`class` statements and constant "
            "assignments, so compute everything inside the function.")


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "student"


# --- command line ----------------------------------------------------------------------------------------

def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kdcore.grade", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="a notebook, or a folder searched recursively for *.ipynb")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="write the gradebook (one row per student)")
    parser.add_argument("--feedback", type=Path, metavar="DIR", help="write one Markdown report per student")
    parser.add_argument("--jobs", type=_positive_int, default=1, metavar="N", help="parallel workers (1)")
    parser.add_argument("--timeout", type=_positive_float, default=120.0, metavar="SEC",
                        help="wall-clock limit per submission (120)")
    parser.add_argument("--case-timeout", type=_positive_float, default=None, metavar="SEC",
                        help="limit per grading case (default: the exercise's own, as in check(): 10 s)")
    parser.add_argument("--memory-mb", type=_positive_int, default=4096, metavar="MB",
                        help="address-space limit of each grading process (4096; at least 1024)")
    parser.add_argument("--exercises", metavar="ID,ID",
                        help="grade only these exercise ids (default: those of the submitted notebooks)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.memory_mb < 1024:
        parser.error(f"--memory-mb must be >= 1024 (importing torch needs about 700 MB), got {args.memory_mb}")
    from kdcore.checking import EXERCISES

    exercises = None
    if args.exercises:
        exercises = [e.strip() for e in args.exercises.split(",") if e.strip()]
        unknown = [e for e in exercises if e not in EXERCISES]
        if unknown:
            parser.error(f"--exercises: unknown id(s) {', '.join(unknown)}; known: {', '.join(EXERCISES)}")
    try:
        submissions = discover(args.paths)
    except UsageError as error:
        parser.error(str(error))
    for out, what in ((args.csv, "--csv"), (args.feedback, "--feedback")):
        if out is not None and out.resolve() in {s.path.resolve() for s in submissions}:
            parser.error(f"{what} {out} would overwrite a submission")
    progress = os.environ.get("KDCORE_PROGRESS", "1").lower() not in {"0", "false", "no", "off"}
    fork = os.environ.get("KDCORE_GRADE_FORK", "1") != "0"
    results, warnings = grade(submissions, exercises=exercises, jobs=args.jobs, timeout=args.timeout,
                              case_timeout=args.case_timeout, memory_mb=args.memory_mb, progress=progress,
                              fork=fork)
    columns = columns_for(results, exercises)
    rows = student_rows(results, columns)
    print(format_table(rows, columns))
    if args.csv is not None:
        write_atomic(args.csv, gradebook_csv(rows, columns))
        print(f"gradebook: {args.csv}")
    if args.feedback is not None:
        used: set[str] = set()
        for row in rows:
            name, n = _safe_filename(row.student), 2
            while name.lower() in used:  # "a b" and "a_b" must not share a report
                name, n = f"{_safe_filename(row.student)}-{n}", n + 1
            used.add(name.lower())
            write_atomic(args.feedback / f"{name}.md", feedback_markdown(row, columns))
        print(f"feedback: {args.feedback}/ ({len(rows)} reports)")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
