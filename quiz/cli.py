"""Command line of the quiz: ``python -m quiz [options]``.

Examples::

    python -m quiz                          # pick a topic, 10 questions, English
    python -m quiz --lang zh --topic soft_targets --count 5
    python -m quiz --notebook 02            # the questions that rehearse notebook 02
    python -m quiz --mock --count 6 --minutes 14   # timed mock interview: 5 spoken answers + 1 coding exercise
    python -m quiz --list-topics
    python -m quiz --export html --no-answers -o handout.html
    python -m quiz --export anki kdcore.apkg        # an Anki deck (one note per item and language)
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Sequence, TextIO

from .bank import BankError, load_bank
from .export import to_html, to_markdown
from .progress import Progress, ProgressError, default_progress_path
from .session import CODING_EXERCISES, MOCK_SECONDS, EndOfInput, NoTopicChosen, QuitRequested, Session


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m quiz",
        description="Interview quiz on knowledge distillation, pruning and quantization "
                    "(auto-scored, bilingual, with spaced repetition).")
    p.add_argument("--topic", action="append", metavar="TOPIC",
                   help="topic id (repeatable; see --list-topics). Without it, a menu asks (unless --mock).")
    p.add_argument("--notebook", metavar="NN",
                   help="only the questions that rehearse notebook NN (its number, e.g. 02)")
    p.add_argument("--lang", choices=["en", "zh", "both"], default=None,
                   help="language: en or zh for a session (default en); en, zh or both for --export (default both)")
    p.add_argument("--count", type=_positive_int, default=None, metavar="N",
                   help="number of questions (default 10; 6 with --mock)")
    p.add_argument("--mock", action="store_true",
                   help="timed mock interview: an introduction, a countdown, spoken answers to mixed topics "
                        "(self-rated), one coding exercise graded by kd.check, and a score")
    p.add_argument("--minutes", type=_positive_float, default=None,
                   help=f"total time of the mock interview (default {MOCK_SECONDS // 60} minutes per spoken answer, "
                        "twice that for the coding exercise)")
    p.add_argument("--exercise", choices=CODING_EXERCISES, default=None, metavar="ID",
                   help="the mock interview's coding exercise (default: one that fits the questions asked)")
    p.add_argument("--open", action="store_true", help="ask every question as an open (spoken) question")
    p.add_argument("--followups", choices=["include", "only", "exclude"], default="include",
                   help="include follow-up questions (default), ask only them, or leave them out")
    p.add_argument("--no-repeat", action="store_true", help="do not ask missed questions again at the end")
    p.add_argument("--progress-file", type=Path, default=None,
                   help="progress file (default: $KDCORE_QUIZ_HOME/progress.json, else "
                        "$XDG_DATA_HOME/kdcore/quiz_progress.json, else ~/.local/share/kdcore/quiz_progress.json)")
    p.add_argument("--seed", type=int, default=None, help="random seed (option order, new-question order)")
    p.add_argument("--list-topics", action="store_true", help="list topics with their number of questions")
    p.add_argument("--export", choices=["md", "html", "anki"], default=None,
                   help="print the bank as Markdown or HTML, or write an Anki deck (anki FILE.apkg), "
                        "instead of running a session")
    p.add_argument("export_file", nargs="?", type=Path, default=None, metavar="FILE.apkg",
                   help="with --export anki: the deck file to write")
    p.add_argument("--no-answers", action="store_true", help="with --export: questions only (a handout)")
    p.add_argument("-o", "--output", type=Path, default=None, help="with --export: write to this file")
    p.add_argument("--bank", type=Path, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None, *, stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:          # argparse already printed a usage message
        return int(exc.code or 0)

    def fail(message: str) -> int:
        stderr.write(f"python -m quiz: error: {message}\n")
        return 2

    try:
        bank = load_bank(args.bank)
    except BankError as exc:
        return fail(str(exc))

    known = [t.id for t in bank.topics]
    unknown = [t for t in (args.topic or []) if t not in known]
    if unknown:
        return fail(f"unknown topic {unknown[0]!r}; choose from: {', '.join(known)}")

    if args.list_topics:
        for t in bank.topics:
            lang = args.lang if args.lang in ("en", "zh") else "en"
            stdout.write(f"{t.id:14s} {len(bank.items_in([t.id])):3d}  {t.title[lang]}\n")
        return 0

    if args.notebook is not None:
        numbers = sorted({it.notebook[:2] for it in bank.items})
        if args.notebook.zfill(2) not in numbers:
            return fail(f"--notebook: no quiz question points to notebook {args.notebook!r}; "
                        f"choose from: {', '.join(numbers)}")
    if args.export_file is not None and args.export != "anki":
        return fail(f"unexpected argument {str(args.export_file)!r} (a file name goes after --export anki)")

    if args.export:
        items = _filter_notebook(bank.items_in(args.topic), args.notebook)
        items = _filter_followups(items, args.followups)
        if args.export == "anki":
            target = args.export_file or args.output
            if target is None:
                return fail("--export anki needs a file name: python -m quiz --export anki kdcore.apkg")
            from .anki import write_apkg   # genanki: only for this export
            langs = ("en", "zh") if (args.lang or "both") == "both" else (args.lang,)
            try:
                count = write_apkg(bank, items, target, langs)
            except (OSError, ValueError) as exc:
                return fail(f"cannot write {target}: {getattr(exc, 'strerror', None) or exc}")
            stdout.write(f"wrote {target}: {count} notes ({len(items)} questions × {len(langs)} "
                         f"language{'s' if len(langs) > 1 else ''}); import it in Anki with File → Import\n")
            return 0
        render = to_markdown if args.export == "md" else to_html
        text = render(bank, items, lang=args.lang or "both", answers=not args.no_answers)
        if args.output:
            try:
                args.output.write_text(text, encoding="utf-8")
            except OSError as exc:
                return fail(f"cannot write {args.output}: {exc.strerror or exc}")
        else:
            stdout.write(text)
        return 0

    lang = args.lang or "en"
    if lang == "both":
        return fail("--lang both is only for --export; a session runs in en or zh")
    path = args.progress_file or default_progress_path()
    try:
        progress, warning = Progress.load(path)
    except ProgressError as exc:
        return fail(str(exc))
    if warning:
        stderr.write(f"python -m quiz: warning: {warning}\n")

    count = args.count or (6 if args.mock else 10)
    # in a mock interview the coding exercise gets twice the time of a spoken answer
    slots = (count - 1) + 2 if args.mock else count
    seconds = args.minutes * 60 / slots if args.minutes else MOCK_SECONDS
    rng = random.Random(args.seed)
    session = Session(bank, progress, lang=lang, inp=stdin, out=stdout, mock=args.mock, open_only=args.open,
                      seconds_per_question=seconds, repeat_missed=not args.no_repeat, rng=rng)
    topics = args.topic
    if topics is None and not args.mock and args.notebook is None:
        try:
            topics = session.choose_topics()
        except (EndOfInput, QuitRequested, KeyboardInterrupt):
            stdout.write("\n")
            return 0
        except NoTopicChosen:
            return fail(f"no valid topic chosen; choose from: {', '.join(known)}")
    items = _filter_followups(_filter_notebook(bank.items_in(topics), args.notebook), args.followups)
    by_id = {it.id: it for it in items}
    ordered = [by_id[i] for i in progress.order(by_id, rng=rng)]
    if args.mock:
        spoken = _mix_topics(ordered)[:max(count - 1, 0)]
        exercise = args.exercise or _coding_exercise(spoken, rng)
        return session.run_mock(spoken, exercise)
    return session.run(ordered[:count])


def _filter_notebook(items, notebook: str | None):
    if notebook is None:
        return items
    return [it for it in items if it.notebook[:2] == notebook.zfill(2)]


def _coding_exercise(items, rng: random.Random) -> str:
    """An exercise that one of the spoken questions leads to, else any whiteboard-sized one."""
    related = [it.exercise for it in items if it.exercise in CODING_EXERCISES]
    return related[0] if related else rng.choice(CODING_EXERCISES)


def _filter_followups(items, mode: str):
    if mode == "only":
        return [it for it in items if it.followup]
    if mode == "exclude":
        return [it for it in items if not it.followup]
    return items


def _mix_topics(items):
    """Keep the spaced-repetition priority but avoid two questions of the same topic in a row where possible:
    take items round-robin over topics in order of first appearance."""
    queues: dict[str, list] = {}
    for it in items:
        queues.setdefault(it.topic, []).append(it)
    mixed = []
    while any(queues.values()):
        for q in queues.values():
            if q:
                mixed.append(q.pop(0))
    return mixed
