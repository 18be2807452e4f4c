"""The quiz as a study tool: FSRS scheduling and migration, the Anki deck, the mock interview (fed on standard
input), the Chinese mode, and a seed's own wrong answer recognised as that seed's mistake."""
from __future__ import annotations

import copy
import io
import json
import random
import re
import sqlite3
import tomllib
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from quiz.bank import Bank, default_bank_path, load_bank, validate
from quiz.cli import main
from quiz.progress import LEITNER_INTERVALS_DAYS, SCHEDULER, Progress
from quiz.session import UI, LiveClock, Session

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bank() -> Bank:
    return load_bank()


# --- FSRS and the migration of version-1 files ---------------------------------------------------------------

V1 = {"version": 1, "items": {
    "kd-temperature": {"box": 3, "due": "2026-03-01T10:00:00+00:00", "seen": 5, "right": 4, "last": "right"},
    "kd-definition": {"box": 0, "due": "2026-02-01T09:30:00+00:00", "seen": 2, "right": 0, "last": "wrong"},
    "prune-types": {"box": 2, "due": "2026-02-10T08:00:00+00:00", "seen": 3, "right": 2, "last": "partial"},
    "retired-item": {"box": 5, "due": "2027-01-01T00:00:00+00:00", "seen": 9, "right": 9, "last": "right"},
    "never-seen": {"box": 0, "due": "", "seen": 0, "right": 0, "last": ""},
}}


def test_a_leitner_file_is_migrated_without_loss(tmp_path):
    path = tmp_path / "progress.json"
    original = json.dumps(V1, indent=1)
    path.write_text(original, encoding="utf-8")
    progress, warning = Progress.load(path)
    assert warning is None and set(progress.records) == set(V1["items"])
    for item_id, old in V1["items"].items():
        rec = progress.records[item_id]
        assert (rec.seen, rec.right, rec.last, rec.leitner) == (old["seen"], old["right"], old["last"], old)
        if not old["due"]:
            assert rec.card is None            # never answered: still new
            continue
        assert rec.due == datetime.fromisoformat(old["due"])   # due exactly when the Leitner schedule had it
        if old["box"] > 0 and old["last"] == "right":
            # stability = the Leitner interval, so FSRS predicts 90 % recall on that due date
            assert SCHEDULER.get_card_retrievability(rec.card, rec.due) == pytest.approx(0.9, abs=0.005)
            assert rec.card.stability == LEITNER_INTERVALS_DAYS[old["box"]]
    progress.record("kd-temperature", "right", datetime(2026, 3, 1, 10, tzinfo=timezone.utc))
    progress.save()
    assert (tmp_path / "progress.json.v1-backup").read_text(encoding="utf-8") == original  # the old file, kept
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["version"] == 2 and saved["items"]["retired-item"]["leitner"] == V1["items"]["retired-item"]
    again, _ = Progress.load(path)
    assert {k: r.to_json() for k, r in again.records.items()} == {k: r.to_json() for k, r in progress.records.items()}
    later = again.records["kd-temperature"]
    assert later.seen == 6 and later.right == 5 and later.due > datetime(2026, 3, 10, tzinfo=timezone.utc)
    again.save()
    assert (tmp_path / "progress.json.v1-backup").read_text(encoding="utf-8") == original  # written once


def test_a_migrated_item_that_is_due_comes_first(tmp_path):
    path = tmp_path / "progress.json"
    path.write_text(json.dumps(V1), encoding="utf-8")
    progress, _ = Progress.load(path)
    order = progress.order(["retired-item", "brand-new", "kd-temperature", "kd-definition"],
                           now=datetime(2026, 3, 2, tzinfo=timezone.utc), rng=random.Random(0))
    assert order == ["kd-definition", "kd-temperature", "brand-new", "retired-item"]


def test_a_bad_version_1_record_is_kept_aside_not_lost(tmp_path):
    path = tmp_path / "progress.json"
    path.write_text(json.dumps({"version": 1, "items": {"x": {"box": 42, "due": ""}}}), encoding="utf-8")
    progress, warning = Progress.load(path)
    assert progress.records == {} and "kept as" in warning
    assert len(list(tmp_path.glob("progress.json.corrupt-*"))) == 1


# --- the Anki deck ------------------------------------------------------------------------------------------

def _notes(apkg: Path) -> list[tuple[str, str, str]]:
    """(fields, tags, guid) of every note in the deck's SQLite collection."""
    with zipfile.ZipFile(apkg) as archive:
        assert "collection.anki2" in archive.namelist()
        data = archive.read("collection.anki2")
    db_path = apkg.with_suffix(".anki2")
    db_path.write_bytes(data)
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT flds, tags, guid FROM notes").fetchall()


def test_anki_export_one_note_per_item_and_language(bank, tmp_path):
    target = tmp_path / "kdcore.apkg"
    out = io.StringIO()
    assert main(["--export", "anki", str(target)], stdout=out, stderr=io.StringIO()) == 0
    n = len(bank.items)
    assert f"{2 * n} notes" in out.getvalue()
    notes = _notes(target)
    assert len(notes) == 2 * n and len({guid for *_, guid in notes}) == 2 * n
    by_item_lang = {}
    for fields, tags, _ in notes:
        values = fields.split("\x1f")
        lang = "zh" if "lang::zh" in tags else "en"
        by_item_lang[(values[-1], lang)] = (values, tags)
    for item in bank.items:
        for lang in ("en", "zh"):
            values, tags = by_item_lang[(item.id, lang)]
            assert f"kdcore::{item.topic}" in tags
            assert item.key_points[lang][0].split("<")[0][:20].replace("&", "&amp;")[:10] in values[2]
            if item.correction:
                assert "seed-correction" in tags and item.correction["seed"] in values[3]
                first_evidence = bank.evidence(item.correction["evidence"][0], lang)
                assert first_evidence[:15].replace("&", "&amp;").replace("'", "&#x27;")[:8] in values[3]
            else:
                assert values[3] == ""
    # re-exporting gives the same note ids (Anki updates notes instead of duplicating them)
    again = tmp_path / "again.apkg"
    assert main(["--export", "anki", str(again), "--lang", "zh", "--topic", "soft_targets"],
                stdout=io.StringIO(), stderr=io.StringIO()) == 0
    assert {g for *_, g in _notes(again)} <= {g for *_, g in notes}
    assert len(_notes(again)) == len(bank.items_in(["soft_targets"]))


def test_anki_export_needs_an_apkg_file_name(tmp_path):
    err = io.StringIO()
    assert main(["--export", "anki"], stdout=io.StringIO(), stderr=err) == 2
    assert "needs a file name" in err.getvalue()
    err = io.StringIO()
    assert main(["--export", "anki", str(tmp_path / "deck.zip")], stdout=io.StringIO(), stderr=err) == 2
    assert "must end in .apkg" in err.getvalue() and list(tmp_path.iterdir()) == []


# --- the mock interview, fed on standard input ----------------------------------------------------------------

SOFTMAX = ("def softmax_t(logits, T=1.0):\n    if T <= 0:\n        raise ValueError('T must be > 0')\n"
           "    return torch.softmax(logits / T, dim=-1)\n")
WRONG_SOFTMAX = "def softmax_t(logits, T=1.0):\n    return torch.softmax(logits / T, dim=-1)\n"  # T <= 0 accepted


def _mock(tmp_path, code: str, lang: str = "en", ratings=("3", "2")) -> str:
    spoken = "".join(f"my answer\n{r}\n" for r in ratings)
    stdin = io.StringIO("\n" + spoken + code + "end\n")
    out = io.StringIO()
    rc = main(["--mock", "--count", str(len(ratings) + 1), "--exercise", "softmax_t", "--lang", lang, "--seed", "0",
               "--progress-file", str(tmp_path / "p.json")], stdin=stdin, stdout=out, stderr=io.StringIO())
    assert rc == 0
    return out.getvalue()


def test_mock_interview_introduction_countdown_coding_and_score(tmp_path):
    out = _mock(tmp_path, SOFTMAX)
    intro, _, rest = out.partition("Press Enter to start the clock")
    assert intro.startswith("Mock interview: 3 questions in 8:00: 2 conceptual, then one coding exercise.")
    clocks = re.findall(r"⏱ (\d+:\d\d) left of 8:00", rest)
    assert len(clocks) == 3                                        # shown at every question
    assert "[⏱ " in rest and "left] Answer aloud" in rest            # and in the prompt
    assert "Coding exercise: write `softmax_t(logits, T=1.0)`" in rest
    assert "softmax_t: all 9 cases passed" in rest and "kd.check: 100% of the cases passed." in rest
    assert "Score: 2.5/3 (83%)" in rest                           # 1 + 0.5 + 1.0
    assert "auto-scored" not in rest                               # no "0/0 auto-scored answers correct"


def test_mock_interview_wrong_code_scores_its_passed_cases(tmp_path):
    out = _mock(tmp_path, WRONG_SOFTMAX, ratings=("1",))
    passed = re.search(r"kd.check: (\d+)% of the cases passed.", out)
    assert passed and 0 < int(passed.group(1)) < 100
    assert "hint: T <= 0 is not a temperature: raise ValueError" in out
    assert re.search(r"Score: 0\.\d+/2 ", out)


def test_mock_interview_in_chinese(tmp_path):
    out = _mock(tmp_path, SOFTMAX, lang="zh")
    assert out.startswith("模拟面试：共 3 题，限时 8:00")
    assert "按回车开始计时" in out and "剩余" in out and "编程题：请实现 `softmax_t(logits, T=1.0)`" in out
    assert "得分：2.5/3" in out and "Score" not in out and "Mock interview" not in out


def test_mock_interview_time_runs_out():
    ticks = iter([0.0] + [1000.0] * 50)
    bank = load_bank()
    item = next(it for it in bank.items if it.id == "kd-temperature")
    out = io.StringIO()
    session = Session(bank, Progress(Path("unused.json")), inp=io.StringIO("\nsaid it\n2\n"), out=out, mock=True,
                      seconds_per_question=60, clock=lambda: next(ticks))
    session.progress.save = lambda: None
    assert session.run_mock([item, item], "softmax_t") == 0
    assert "Time is up for the whole interview." in out.getvalue() and "Coding exercise" not in out.getvalue()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_clock_redraws_only_on_a_terminal():
    bank = load_bank()
    session = Session(bank, Progress(Path("unused.json")), inp=_Tty(), out=_Tty(), mock=True)
    session.deadline, session.total = session.clock() + 90, 120
    with LiveClock(session, interval=0.01) as clock:
        assert clock.active()
        import time
        time.sleep(0.1)
    assert re.search(r"\x1b7\x1b\[1A\r⏱ 1:\d\d left of 2:00\x1b\[K\x1b8", session.out.getvalue())
    plain = Session(bank, Progress(Path("unused.json")), inp=io.StringIO(), out=io.StringIO(), mock=True)
    plain.deadline = plain.clock() + 90
    assert not LiveClock(plain).active()


# --- Chinese mode and the seeds' own answers --------------------------------------------------------------------

def test_every_evidence_line_has_a_chinese_version_and_none_is_stale(bank):
    lines = {ev for it in bank.items if it.correction for ev in it.correction["evidence"]}
    missing = sorted(lines - set(bank.evidence_zh))
    stale = sorted(set(bank.evidence_zh) - lines)
    assert not missing, f"add these to quiz/evidence_zh.toml: {missing}"
    assert not stale, f"quiz/evidence_zh.toml has entries for lines no longer in bank.toml: {stale}"
    assert all(zh != en for en, zh in bank.evidence_zh.items())  # translated (citations keep their titles)


def test_chinese_interface_is_complete():
    assert set(UI["zh"]) == set(UI["en"])
    words = {k: re.sub(r"\{[^}]*\}", "", v) for k, v in UI["en"].items()}   # placeholders are not words
    same = [k for k in UI["en"] if UI["en"][k] == UI["zh"][k] and re.search(r"[A-Za-z]{3}", words[k])]
    assert not same, f"untranslated strings: {same}"


def test_a_chinese_session_shows_chinese_evidence(bank, tmp_path):
    item = next(it for it in bank.items if it.id == "kd-seed-loss-ce")
    out = io.StringIO()
    session = Session(bank, Progress(tmp_path / "p.json"), lang="zh", inp=io.StringIO("0.16\n"), out=out)
    session.ask_item(item, 1, 1)
    text = out.getvalue()
    for ev in item.correction["evidence"]:
        assert bank.evidence_zh[ev] in text and ev not in text
    assert "问：" in text and "Q: " not in text and "这正是原题 001-C1 自己给出的答案" in text


class _NoShuffle(random.Random):
    def shuffle(self, x, *args, **kwargs) -> None:  # options in bank order, so the letter is known
        return None


def _answer_as_the_seed(item, form: str) -> str:
    given = item.correction["seed_answer"][form]
    if form == "mc":
        return "abcdefgh"[given[0] if isinstance(given, list) else given]
    if form == "tf":
        return "t" if given else "f"
    return str(given)


def _wrong_but_not_the_seed(item, form: str) -> str:
    if form == "mc":
        given = item.correction["seed_answer"]["mc"]
        given = given if isinstance(given, list) else [given]
        others = [i for i in range(len(item.mc["options"]["en"])) if i != item.mc["answer"] and i not in given]
        return "abcdefgh"[others[0]] if others else ""
    if form == "numeric":
        return str(item.numeric["value"] + 100 * item.numeric["tolerance"] + 7)
    return ""


SEEDED = [(it.id, form) for it in load_bank().items if it.correction
          for form in (it.correction.get("seed_answer") or {})]


@pytest.mark.parametrize("item_id,form", SEEDED, ids=[f"{i}:{f}" for i, f in SEEDED])
def test_the_seeds_own_answer_is_named_as_its_mistake(bank, tmp_path, item_id, form):
    item = next(it for it in bank.items if it.id == item_id)

    def ask(answer: str) -> str:
        out = io.StringIO()
        session = Session(bank, Progress(tmp_path / "p.json"), inp=io.StringIO(answer + "\n"), out=out,
                          rng=_NoShuffle())
        assert session.run_item(item, form) == "wrong"
        return out.getvalue()

    named = f"That is seed {item.correction['seed']}'s own answer, and it is wrong"
    assert named in ask(_answer_as_the_seed(item, form))
    other = _wrong_but_not_the_seed(item, form)
    if other:
        assert named not in ask(other)


def test_seed_001_c1_value_0_16_is_recognised(bank):
    item = next(it for it in bank.items if it.id == "kd-seed-loss-ce")
    assert item.seed_mistake("numeric", 0.16) == "001-C1"
    assert item.seed_mistake("numeric", 0.157) == "001-C1"   # the reversed KL, which the seed rounded to 0.16
    assert item.seed_mistake("numeric", 0.1203) is None      # the KL: a different answer, not the seed's


def test_seed_answer_schema_is_checked():
    with open(default_bank_path(), "rb") as fh:
        raw = tomllib.load(fh)
    item = next(i for i in raw["item"] if i["id"] == "kd-temperature")
    for bad, message in (({"mc": 0}, "the correct option cannot be"), ({"mc": 9}, "option indices"),
                         ({"tf": True}, "no tf form"), ({"numeric": 0.4192}, "away from the answer")):
        broken = copy.deepcopy(raw)
        target = next(i for i in broken["item"] if i["id"] == item["id"])
        target["correction"]["seed_answer"] = bad
        assert any(message in p for p in validate(broken)), bad


def test_notebook_filter(bank, tmp_path):
    out, err = io.StringIO(), io.StringIO()
    assert main(["--notebook", "02", "--export", "md", "--lang", "en"], stdout=out, stderr=err) == 0
    expected = [it for it in bank.items if it.notebook.startswith("02_")]
    assert expected and all(it.question["en"] in out.getvalue() for it in expected)
    others = [it for it in bank.items if not it.notebook.startswith("02_")]
    assert not any(f"`{it.id}`" in out.getvalue() or it.question["en"] in out.getvalue() for it in others)
    err = io.StringIO()
    assert main(["--notebook", "99", "--count", "1"], stdout=io.StringIO(), stderr=err) == 2
    assert "no quiz question points to notebook '99'" in err.getvalue()
