"""Learner progress: a small JSON file outside the repository, written atomically.

Scheduling is a Leitner system: every item sits in a box 0..5. A correct answer moves it up one box and
schedules it ``INTERVALS_DAYS[box]`` days later; a miss sends it back to box 0, due at once, so it is
asked again sooner (and once more at the end of the same session). A partial self-rating keeps the box
and asks again the next day.

Where the file lives (first match wins): ``--progress-file``; ``$KDCORE_QUIZ_HOME/progress.json``;
``$XDG_DATA_HOME/kdcore/quiz_progress.json``; ``~/.local/share/kdcore/quiz_progress.json``.
"""
from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Mapping

INTERVALS_DAYS = (0, 1, 3, 7, 16, 35)
OUTCOMES = ("right", "partial", "wrong")
FORMAT_VERSION = 1


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


@dataclass
class Record:
    box: int = 0
    due: str = ""          # ISO 8601 UTC; "" = never seen
    seen: int = 0
    right: int = 0
    last: str = ""         # last outcome

    @classmethod
    def from_json(cls, raw: object) -> "Record":
        if not isinstance(raw, dict):
            raise ValueError("record is not an object")
        rec = cls(box=int(raw.get("box", 0)), due=str(raw.get("due", "")), seen=int(raw.get("seen", 0)),
                  right=int(raw.get("right", 0)), last=str(raw.get("last", "")))
        if not 0 <= rec.box < len(INTERVALS_DAYS) or rec.seen < 0 or rec.right < 0:
            raise ValueError("record out of range")
        if rec.due:
            datetime.fromisoformat(rec.due)  # raises ValueError when malformed
        return rec


class Progress:
    """Records per item id, loaded from and saved to ``path``."""

    def __init__(self, path: Path, records: dict[str, Record] | None = None):
        self.path = Path(path)
        self.records: dict[str, Record] = records or {}

    # ---- file handling -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> tuple["Progress", str | None]:
        """Load ``path``; a missing file is a fresh start.

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
            records = {str(k): Record.from_json(v) for k, v in raw["items"].items()}
        except (ValueError, TypeError) as exc:
            backup = path.with_name(f"{path.name}.corrupt-{_now().strftime('%Y%m%dT%H%M%SZ')}")
            try:
                os.replace(path, backup)
            except OSError as err:
                raise ProgressError(f"progress file {path} is corrupt ({exc}) and could not be moved "
                                    f"aside ({err.strerror or err}); fix or remove it") from None
            return cls(path), (f"progress file {path} was not valid ({exc}); it was kept as {backup} "
                               f"and a new progress file is started")
        return cls(path, records), None

    def save(self) -> None:
        """Write atomically: a temporary file in the same folder, fsync, then rename over the old one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": FORMAT_VERSION,
                "items": {k: asdict(v) for k, v in sorted(self.records.items())}}
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
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        now = now or _now()
        rec = self.records.setdefault(item_id, Record())
        rec.seen += 1
        rec.last = outcome
        if outcome == "right":
            rec.right += 1
            rec.box = min(rec.box + 1, len(INTERVALS_DAYS) - 1)
            rec.due = _iso(now + timedelta(days=INTERVALS_DAYS[rec.box]))
        elif outcome == "partial":
            rec.due = _iso(now + timedelta(days=1))
        else:
            rec.box = 0
            rec.due = _iso(now)
        return rec

    def order(self, item_ids: Iterable[str], now: datetime | None = None,
              rng: random.Random | None = None) -> list[str]:
        """Due items first (earliest due, lowest box), then never-seen ones (shuffled), then the rest
        by due date."""
        now = now or _now()
        rng = rng or random.Random()
        due, new, later = [], [], []
        for iid in item_ids:
            rec = self.records.get(iid)
            if rec is None or not rec.due:
                new.append(iid)
            elif datetime.fromisoformat(rec.due) <= now:
                due.append((rec.due, rec.box, iid))
            else:
                later.append((rec.due, rec.box, iid))
        rng.shuffle(new)
        return [i for *_, i in sorted(due)] + new + [i for *_, i in sorted(later)]
