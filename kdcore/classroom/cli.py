"""Batch grading of learner notebooks: ``python -m kdcore.grade PATH... [options]``.

    python -m kdcore.grade submissions/ --csv gradebook.csv --feedback feedback/ --report class.html --jobs 2

The pipeline, as in nbgrader: discover the submissions (a student per folder or file), run each one in a
sandbox (bubblewrap: read-only system and course environment, one private scratch folder holding only that
submission's copy, no network, its own PID namespace, every process killed when it ends), judge the saved
outputs in this process (which never runs learner code), then write the gradebook (CSV, and Canvas or Moodle
import files), one feedback file per student and the class report. Results are journalled per student as
they are judged; an interrupted batch continues with ``--resume``.

Status per student: ``ok``; ``crashed`` (a grading process died: ``os._exit``, a segfault...); ``memory``
(``--memory-mb`` exceeded); ``timeout`` (``--timeout`` reached, or every case of an exercise timed out);
``uses-reference`` (a graded function is, or calls, kdcore's own reference: no credit for it);
``invalid`` (not a readable notebook). Exit code 0 when grading completed (whatever the students scored),
2 on a usage error, 130 when interrupted.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
from pathlib import Path

from .._notebook import write_atomic
from .discover import UsageError, discover

__all__ = ["build_parser", "main"]

LMS_FORMATS = ("canvas", "moodle")


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
    parser.add_argument("--report", type=Path, metavar="FILE", action="append", default=[],
                        help="write the class report: FILE.html (chart embedded) or FILE.md; may be repeated")
    parser.add_argument("--lms", choices=LMS_FORMATS, action="append", default=[],
                        help="also write a gradebook import file for Canvas or Moodle (next to --csv: "
                             "<csv stem>.canvas.csv / .moodle.csv); may be repeated")
    parser.add_argument("--journal", type=Path, metavar="FILE",
                        help="journal of results (default with --csv: <csv>.journal.jsonl)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted batch: reuse the journal's results for unchanged submissions")
    parser.add_argument("--jobs", type=_positive_int, default=1, metavar="N", help="parallel sandboxes (1)")
    parser.add_argument("--timeout", type=_positive_float, default=120.0, metavar="SEC",
                        help="wall-clock limit per submission (120)")
    parser.add_argument("--case-timeout", type=_positive_float, default=None, metavar="SEC",
                        help="limit per grading case (default: the exercise's own, as in check(): 10 s)")
    parser.add_argument("--memory-mb", type=_positive_int, default=4096, metavar="MB",
                        help="address-space limit of each grading process (4096; at least 1024)")
    parser.add_argument("--exercises", metavar="ID,ID",
                        help="grade only these exercise ids (default: those of the submitted notebooks)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run learner code WITHOUT a sandbox, with your user's rights: a submission can then "
                             "read and overwrite other submissions and your files, reach the network, start "
                             "processes that outlive the grader, and forge grades. Only for notebooks you trust")
    return parser


def _check_output(parser: argparse.ArgumentParser, path: Path | None, flag: str, *, folder: bool,
                  submissions: set[Path]) -> None:
    """Fail before grading if ``path`` cannot be written: wrong kind, an unwritable or missing parent."""
    if path is None:
        return
    if path.resolve() in submissions:
        parser.error(f"{flag} {path} would overwrite a submission")
    if folder:
        if path.exists() and not path.is_dir():
            parser.error(f"{flag} {path} exists and is not a folder")
    else:
        if path.is_dir():
            parser.error(f"{flag} {path} is a folder; give a file name")
        if path.exists() and not os.access(path, os.W_OK):
            parser.error(f"{flag} {path} is not writable")
    ancestor = path if folder else path.parent
    ancestor = ancestor.resolve()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        parser.error(f"{flag} {path}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        parser.error(f"{flag} {path}: cannot write in {ancestor}")


def lms_path(csv_path: Path, lms: str) -> Path:
    return csv_path.with_name(f"{csv_path.stem}.{lms}.csv")


def _settings(args: argparse.Namespace, exercises: list[str] | None, sandbox: str) -> dict:
    """What a journal must agree on to be resumed: the options that change a grade, and the catalogue."""
    import kdcore

    from .catalogue import EXERCISES
    catalogue = hashlib.sha256(repr([(e, [c.name for c in ex.cases]) for e, ex in EXERCISES.items()]).encode())
    return {"exercises": exercises or [], "timeout": args.timeout, "case_timeout": args.case_timeout,
            "memory_mb": args.memory_mb, "sandbox": sandbox, "kdcore": kdcore.__version__,
            "catalogue": catalogue.hexdigest()[:16]}


def _interrupt(signum, frame):  # SIGTERM: clean up as for Ctrl-C (the journal keeps what was graded)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.memory_mb < 1024:
        parser.error(f"--memory-mb must be >= 1024 (importing torch needs about 700 MB), got {args.memory_mb}")
    from .catalogue import EXERCISES

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
    if args.lms and args.csv is None:
        parser.error("--lms writes its file next to the gradebook: give --csv FILE too")
    for report in args.report:
        if report.suffix.lower() not in (".html", ".htm", ".md"):
            parser.error(f"--report {report}: the file name must end in .html or .md")
    journal_path = args.journal or (args.csv.with_name(args.csv.name + ".journal.jsonl") if args.csv else None)
    if args.resume and journal_path is None:
        parser.error("--resume needs the journal of the interrupted run: give the same --csv (or --journal)")
    if args.resume and not journal_path.exists():
        parser.error(f"--resume: no journal at {journal_path}")
    originals = {s.path.resolve() for s in submissions}
    outputs = [(args.csv, "--csv", False), (args.feedback, "--feedback", True), (journal_path, "--journal", False)]
    outputs += [(r, "--report", False) for r in args.report]
    outputs += [(lms_path(args.csv, f), "--lms", False) for f in args.lms]
    for path, flag, folder in outputs:
        _check_output(parser, path, flag, folder=folder, submissions=originals)

    from .sandbox import Bubblewrap, NoSandbox, install_hint, probe
    if args.no_sandbox:
        isolation = NoSandbox()
        print("warning: --no-sandbox: learner code runs with your rights, unconfined", file=sys.stderr)
    else:
        found = probe()
        if found.available:
            hidden = [s.path for s in submissions] + [Path(p) for p in args.paths]
            hidden += [p for p, _, _ in outputs if p is not None]
            isolation = Bubblewrap(found, hidden)
        elif len(submissions) > 1:
            parser.error(f"no sandbox: {found.reason}. Learner code would run with your rights and could read or "
                         f"overwrite other submissions and your files. To grade {len(submissions)} submissions, "
                         f"{install_hint()}; or, only for notebooks you trust, add --no-sandbox")
        else:
            isolation = NoSandbox()
            print(f"note: no sandbox ({found.reason}); grading this one notebook with your rights. "
                  f"To grade a class, {install_hint()}.", file=sys.stderr)

    from .batch import grade
    from .feedback import feedback_file_names, feedback_markdown
    from .gradebook import columns_for, format_table, gradebook_csv, student_rows
    from .journal import Journal, JournalMismatch
    journal = None
    if journal_path is not None:
        try:
            journal = Journal(journal_path, _settings(args, exercises, isolation.name), resume=args.resume)
        except JournalMismatch as error:
            parser.error(f"--resume: {error}")
    progress = os.environ.get("KDCORE_PROGRESS", "1").lower() not in {"0", "false", "no", "off"}
    reuse = os.environ.get("KDCORE_GRADE_FORK", "1") != "0"
    previous = signal.signal(signal.SIGTERM, _interrupt) if threading_main() else None
    try:
        results, warnings = grade(submissions, isolation, exercises=exercises, jobs=args.jobs,
                                  timeout=args.timeout, case_timeout=args.case_timeout, memory_mb=args.memory_mb,
                                  reuse_zygote=reuse, journal=journal, progress=progress)
    except KeyboardInterrupt:
        where = f"; continue with the same command and --resume ({journal_path})" if journal_path else ""
        print(f"interrupted: nothing written{where}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    columns = columns_for(results, exercises)
    rows = student_rows(results, columns)
    print(format_table(rows, columns))
    if args.csv is not None:
        write_atomic(args.csv, gradebook_csv(rows, columns))
        print(f"gradebook: {args.csv}")
        from .lms import lms_csv
        for lms in args.lms:
            write_atomic(lms_path(args.csv, lms), lms_csv(lms, rows, columns))
            print(f"{lms} import file: {lms_path(args.csv, lms)}")
    if args.feedback is not None:
        names = feedback_file_names([row.student for row in rows])
        for row in rows:
            write_atomic(args.feedback / names[row.student], feedback_markdown(row, columns))
        print(f"feedback: {args.feedback}/ ({len(rows)} reports)")
    if args.report:
        from .report import class_report
        for path in args.report:
            class_report(rows, columns, path)
            print(f"class report: {path}")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def threading_main() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()
