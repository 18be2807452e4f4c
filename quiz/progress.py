"""Learner progress: a small JSON file outside the repository, written atomically, scheduled by FSRS.

Scheduling uses FSRS (the ``fsrs`` package, the scheduler Anki ships): every item is an FSRS card with a
stability (days until recall drops to 90 %) and a difficulty, updated from each answer's rating. On the
open-spaced-repetition benchmark of about 350 million Anki reviews, FSRS-6 predicts recall with log loss
0.32 where SM-2, the older Anki algorithm, reaches 0.55 (github.com/open-spaced-repetition/srs-benchmark).
Outcomes map to FSRS ratings: right → Good, partial → Hard, wrong → Again (due again after the 10-minute
relearning step, and asked once more at the end of the same session).

Files written by the first version of the quiz (``"version": 1``, a Leitner box per item) are migrated on
load without losing anything: each record becomes an FSRS card due exactly when the Leitner schedule had it
due (a box-``k`` item gets a stability of its Leitner interval, so recall is 90 % on that date), and the old
record is kept beside the card (``"leitner"``). Before the first version-2 save, the version-1 file is copied
to ``<name>.v1-backup``.

Where the file lives (first match wins): ``--progress-file``; ``$KDCORE_QUIZ_HOME/progress.json``;
``$XDG_DATA_HOME/kdcore/quiz_progress.json``; ``~/.local/share/kdcore/quiz_progress.json``.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Mapping

from fsrs import Card, Rating, Scheduler, State

OUTCOMES = ("right", "partial", "wrong")
RATINGS = {"right": Rating.Good, "partial": Rating.Hard, "wrong": Rating.Again}
FORMAT_VERSION = 2
LEITNER_INTERVALS_DAYS = (0, 1, 3, 7, 16, 35)   # the version-1 schedule, for migration
# No fuzzing: the same answers give the same schedule (and the tests can check it).
SCHEDULER = Scheduler(enable_fuzzing=False)


class ProgressError(ValueError):
    """The progress file cannot be used (unreadable, or not a kdcore progress file)."""


def default_progress_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("KDCORE_QUIZ_HOME"):
        return Path(env["KDCORE_QUIZ_HOME"]).expanduser() / "progress.json"
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]).expanduser() / "kdcore" / "quiz_progress.json"
    return Path.home() / ".local" / "share" / "kdcore" / "quiz_progress.json"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="seconds")


def _card_id(item_id: str) -> int:
    """A stable card id per item (FSRS needs one; it is not used for scheduling)."""
    return zlib.crc32(item_id.encode("utf-8")) + 1


@dataclass
class Record:
    """One item's FSRS card (None until first answered) and plain counts."""
    card: Card | None = None
    seen: int = 0
    right: int = 0
    last: str = ""                                   # last outcome
    reviews: list[list] = field(default_factory=list)  # [[ISO time, rating 1..4], ...] for a future optimiser
    leitner: dict | None = None                      # the version-1 record this one was migrated from

    @property
    def due(self) -> datetime | None:
        return None if self.card is None else self.card.due

    def to_json(self) -> dict:
        out = {"card": None if self.card is None else self.card.to_dict(), "seen": self.seen, "right": self.right,
               "last": self.last, "reviews": self.reviews}
        if self.leitner is not None:
            out["leitner"] = self.leitner
        return out

    @classmethod
    def from_json(cls, raw: object) -> "Record":
        if not isinstance(raw, dict):
            raise ValueError("record is not an object")
        card = None if raw.get("card") is None else Card.from_dict(raw["card"])
        rec = cls(card=card, seen=int(raw.get("seen", 0)), right=int(raw.get("right", 0)),
                  last=str(raw.get("last", "")), reviews=[list(r) for r in raw.get("reviews", [])],
                  leitner=raw.get("leitner"))
        if rec.seen < 0 or rec.right < 0 or rec.right > rec.seen:
            raise ValueError("record out of range")
        return rec

    @classmethod
    def from_leitner(cls, item_id: str, raw: object) -> "Record":
        """Migrate a version-1 record (Leitner ``box``, ``due``, ``seen``, ``right``, ``last``)."""
        if not isinstance(raw, dict):
            raise ValueError("record is not an object")
        box, seen, right = int(raw.get("box", 0)), int(raw.get("seen", 0)), int(raw.get("right", 0))
        due_text, last = str(raw.get("due", "")), str(raw.get("last", ""))
        if not 0 <= box < len(LEITNER_INTERVALS_DAYS) or seen < 0 or right < 0:
            raise ValueError("record out of range")
        card = None
        if due_text:
            due = datetime.fromisoformat(due_text)
            if box == 0:   # missed last time: relearn from the first step, when it was due
                card = Card(card_id=_card_id(item_id), state=State.Learning, step=0, due=due)
            else:          # recall was 90 % on the Leitner due date: stability = that interval
                interval = LEITNER_INTERVALS_DAYS[box]
                since = timedelta(days=1 if last == "partial" else interval)
                card = Card(card_id=_card_id(item_id), state=State.Review, stability=float(interval),
                            difficulty=5.0, due=due, last_review=due - since)
        return cls(card=card, seen=seen, right=right, last=last, leitner=dict(raw))


class Progress:
    """Records per item id, loaded from and saved to ``path``."""

    def __init__(self, path: Path, records: dict[str, Record] | None = None, *, migrated_from: int | None = None):
        self.path = Path(path)
        self.records: dict[str, Record] = records or {}
        self.migrated_from = migrated_from   # 1 when loaded from a version-1 (Leitner) file

    # ---- file handling -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> tuple["Progress", str | None]:
        """Load ``path``; a missing file is a fresh start, a version-1 file is migrated to FSRS.

        A corrupt file is never overwritten: it is renamed to ``<name>.corrupt-<UTC time>`` and a
        warning naming both files is returned with a fresh ``Progress``.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path), None
        except OSError as exc:
            raise ProgressError(f"cannot read progress file {path}: {exc.strerror or exc}") from None
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict) or not isinstance(raw.get("items"), dict):
                raise ValueError("expected an object with an 'items' object")
            version = raw.get("version", 1)
            if version == 1:
                records = {str(k): Record.from_leitner(str(k), v) for k, v in raw["items"].items()}
            elif version == FORMAT_VERSION:
                records = {str(k): Record.from_json(v) for k, v in raw["items"].items()}
            else:
                raise ValueError(f"unknown version {version!r} (this quiz reads 1 and {FORMAT_VERSION})")
        except (ValueError, TypeError, KeyError) as exc:
            backup = path.with_name(f"{path.name}.corrupt-{_now().strftime('%Y%m%dT%H%M%SZ')}")
            try:
                os.replace(path, backup)
            except OSError as err:
                raise ProgressError(f"progress file {path} is corrupt ({exc}) and could not be moved "
                                    f"aside ({err.strerror or err}); fix or remove it") from None
            return cls(path), (f"progress file {path} was not valid ({exc}); it was kept as {backup} "
                               f"and a new progress file is started")
        return cls(path, records, migrated_from=1 if version == 1 else None), None

    def save(self) -> None:
        """Write atomically: a temporary file in the same folder, fsync, then rename over the old one.

        The first save over a version-1 file copies it to ``<name>.v1-backup`` first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.migrated_from == 1 and self.path.exists():
            backup = self.path.with_name(self.path.name + ".v1-backup")
            if not backup.exists():
                shutil.copy2(self.path, backup)
            self.migrated_from = None
        data = {"version": FORMAT_VERSION, "scheduler": "FSRS-6 (fsrs package), no fuzzing",
                "items": {k: v.to_json() for k, v in sorted(self.records.items())}}
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, ensure_ascii=False, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    # ---- scheduling ----------------------------------------------------------------------------
    def get(self, item_id: str) -> Record:
        return self.records.get(item_id, Record())

    def record(self, item_id: str, outcome: str, now: datetime | None = None) -> Record:
        """Rate ``item_id`` with ``outcome`` (right, partial or wrong) at ``now`` and reschedule it."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        now = now or _now()
        rec = self.records.setdefault(item_id, Record())
        card = rec.card or Card(card_id=_card_id(item_id), due=now)
        rec.card, _ = SCHEDULER.review_card(card, RATINGS[outcome], review_datetime=now)
        rec.seen += 1
        rec.right += outcome == "right"
        rec.last = outcome
        rec.reviews.append([_iso(now), int(RATINGS[outcome])])
        return rec

    def retrievability(self, item_id: str, now: datetime | None = None) -> float | None:
        """FSRS's probability that the item is recalled at ``now`` (None if never answered)."""
        rec = self.records.get(item_id)
        if rec is None or rec.card is None:
            return None
        return SCHEDULER.get_card_retrievability(rec.card, now or _now())

    def order(self, item_ids: Iterable[str], now: datetime | None = None,
              rng: random.Random | None = None) -> list[str]:
        """Due items first (least likely to be recalled first), then never-seen ones (shuffled), then the
        rest by due date."""
        now = now or _now()
        rng = rng or random.Random()
        due, new, later = [], [], []
        for iid in item_ids:
            rec = self.records.get(iid)
            if rec is None or rec.card is None:
                new.append(iid)
            elif rec.card.due <= now:
                due.append((self.retrievability(iid, now), rec.card.due, iid))
            else:
                later.append((rec.card.due, iid))
        rng.shuffle(new)
        return [i for *_, i in sorted(due)] + new + [i for _, i in sorted(later)]
