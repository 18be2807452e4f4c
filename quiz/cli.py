"""Command line of the quiz: ``python -m quiz [options]``.

Examples::

    python -m quiz                          # pick a topic, 10 questions, English
    python -m quiz --lang zh --topic kd_loss --count 5
    python -m quiz --mock --count 6 --minutes 12   # timed mock interview, mixed topics, open answers
    python -m quiz --list-topics
    python -m quiz --export html --no-answers -o handout.html
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
from .session import MOCK_SECONDS, EndOfInput, NoTopicChosen, QuitRequested, Session


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
    p.add_argument("--lang", choices=["en", "zh", "both"], default=None,
                   help="language: en or zh for a session (default en); en, zh or both for --export (default both)")
    p.add_argument("--count", type=_positive_int, default=None, metavar="N",
                   help="number of questions (default 10; 6 with --mock)")
    p.add_argument("--mock", action="store_true",
                   help="timed mock interview: a mix of topics, open answers, self-rated")
    p.add_argument("--minutes", type=_positive_float, default=None,
                   help=f"total time of the mock interview (default {MOCK_SECONDS // 60} minutes per question)")
    p.add_argument("--open", action="store_true", help="ask every question as an open (spoken) question")
    p.add_argument("--followups", choices=["include", "only", "exclude"], default="include",
                   help="include follow-up questions (default), ask only them, or leave them out")
    p.add_argument("--no-repeat", action="store_true", help="do not ask missed questions again at the end")
    p.add_argument("--progress-file", type=Path, default=None,
                   help="progress file (default: $KDCORE_QUIZ_HOME/progress.json, else "
                        "$XDG_DATA_HOME/kdcore/quiz_progress.json, else ~/.local/share/kdcore/quiz_progress.json)")
    p.add_argument("--seed", type=int, default=None, help="random seed (option order, new-question order)")
    p.add_argument("--list-topics", action="store_true", help="list topics with their number of questions")
    p.add_argument("--export", choices=["md", "html"], default=None,
                   help="print the bank as Markdown or HTML instead of running a session")
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

    if args.export:
        items = bank.items_in(args.topic)
        items = _filter_followups(items, args.followups)
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
    seconds = args.minutes * 60 / count if args.minutes else MOCK_SECONDS
    rng = random.Random(args.seed)
    session = Session(bank, progress, lang=lang, inp=stdin, out=stdout, mock=args.mock, open_only=args.open,
                      seconds_per_question=seconds, repeat_missed=not args.no_repeat, rng=rng)
    topics = args.topic
    if topics is None and not args.mock:
        try:
            topics = session.choose_topics()
        except (EndOfInput, QuitRequested, KeyboardInterrupt):
            stdout.write("\n")
            return 0
        except NoTopicChosen:
            return fail(f"no valid topic chosen; choose from: {', '.join(known)}")
    items = _filter_followups(bank.items_in(topics), args.followups)
    by_id = {it.id: it for it in items}
    ordered = [by_id[i] for i in progress.order(by_id, rng=rng)]
    if args.mock:
        ordered = _mix_topics(ordered)
    return session.run(ordered[:count])


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
