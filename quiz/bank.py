"""Load and validate the question bank (``quiz/bank.toml``).

The bank is one TOML file: a list of ``[[topic]]`` tables and a list of ``[[item]]`` tables, one per
question. Text that a learner reads comes in both languages as dotted keys (``question.en``,
``question.zh``). Every item has at least one auto-scorable form:

* ``mc``      multiple choice: ``mc.options.en`` / ``mc.options.zh`` (same length), ``mc.answer`` (0-based index)
* ``numeric`` a number: ``numeric.value``, ``numeric.tolerance`` (absolute), optional ``numeric.unit.en/zh``
* ``tf``      true/false on a claim: ``tf.claim.en`` / ``tf.claim.zh``, ``tf.answer`` (bool)

An item either names the seed questions it answers (``seeds``) or is a follow-up
(``followup = true``) naming the seed questions it follows (``follows``). Where a seed's answer is
wrong, ``correction.seed``, ``correction.en``, ``correction.zh`` and ``correction.evidence`` (a list of
citations or computations) say so. ``correction.seed_answer`` records the answer the seed itself gives, in the
item's forms (``mc``: an option index or a list of them; ``tf``: the truth value the seed asserts for the claim;
``numeric``: the seed's number), so that a learner who answers like the seed is told it is that seed's mistake.
Evidence lines are shown in Chinese from ``evidence_zh.toml`` (keyed by the English line).

Only the standard library is used, so ``python -m quiz`` starts instantly (no torch import).
"""
from __future__ import annotations

import csv
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

LANGS = ("en", "zh")
FORMS = ("mc", "numeric", "tf")
# The notebooks of the course (docs/CONTRIBUTING.md); the lead guarantees these file names.
NOTEBOOKS = (
    "01_soft_labels.ipynb", "02_kd_loss.ipynb", "03_training_a_student.ipynb",
    "04_feature_transfer.ipynb", "05_pruning_types.ipynb", "06_when_to_prune.ipynb",
    "07_measuring.ipynb", "08_pruning_and_kd.ipynb", "09_quantization.ipynb", "10_choosing.ipynb",
    "11_distilling_lms.ipynb", "12_quantizing_llms.ipynb", "13_pruning_llms.ipynb", "14_distilling_llms.ipynb",
)
ID_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
# A sentence ends with . ! ? followed by a space or the end (English), or with 。！？ (Chinese).
_SENTENCE_EN = re.compile(r"[.!?](?=\s|$)")
_SENTENCE_ZH = re.compile(r"[。！？]")
ANSWER_SENTENCES = (2, 4)


class BankError(ValueError):
    """The bank file is missing, is not valid TOML, or breaks the schema (all problems listed)."""


@dataclass(frozen=True)
class Topic:
    id: str
    title: dict[str, str]


@dataclass(frozen=True)
class Item:
    id: str
    topic: str
    question: dict[str, str]
    answer: dict[str, str]
    key_points: dict[str, list[str]]
    notebook: str
    seeds: tuple[str, ...] = ()
    follows: tuple[str, ...] = ()
    followup: bool = False
    exercise: str | None = None
    mc: dict[str, Any] | None = None
    numeric: dict[str, Any] | None = None
    tf: dict[str, Any] | None = None
    correction: dict[str, Any] | None = None

    @property
    def forms(self) -> tuple[str, ...]:
        """The auto-scorable forms this item offers, in a fixed order."""
        return tuple(f for f in FORMS if getattr(self, f) is not None)

    @property
    def seed_ids(self) -> tuple[str, ...]:
        """Seed ids this item answers or follows."""
        return self.seeds or self.follows


    def seed_mistake(self, form: str, answer: Any) -> str | None:
        """The seed id whose own (wrong) answer ``answer`` is, in ``form`` (mc index, tf bool, number); else None."""
        seed_answer = (self.correction or {}).get("seed_answer") or {}
        if form not in seed_answer:
            return None
        given = seed_answer[form]
        if form == "mc":
            hit = answer in (given if isinstance(given, list) else [given])
        elif form == "tf":
            hit = answer is given
        else:
            hit = abs(float(answer) - given) <= seed_number_tolerance(given)
        return self.correction["seed"] if hit else None


def seed_number_tolerance(value: float) -> float:
    """Half a unit of the last digit the seed wrote: 0.16 matches answers that round to 0.16."""
    text = repr(float(value))
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 0
    return 0.5 * 10 ** -decimals


@dataclass(frozen=True)
class Bank:
    topics: tuple[Topic, ...]
    items: tuple[Item, ...]
    path: Path | None = field(default=None, compare=False)
    evidence_zh: dict[str, str] = field(default_factory=dict, compare=False)

    def evidence(self, line: str, lang: str) -> str:
        """An evidence line in ``lang`` (the English line where no translation is recorded)."""
        return self.evidence_zh.get(line, line) if lang == "zh" else line

    def topic(self, topic_id: str) -> Topic:
        for t in self.topics:
            if t.id == topic_id:
                return t
        raise KeyError(topic_id)

    def items_in(self, topic_ids: list[str] | None) -> list[Item]:
        if not topic_ids:
            return list(self.items)
        wanted = set(topic_ids)
        return [it for it in self.items if it.topic in wanted]


def default_bank_path() -> Path:
    return Path(str(resources.files("quiz").joinpath("bank.toml")))


def seed_ids(path: Path | None = None) -> list[str]:
    """Question ids of ``seed_questions.tsv`` (the copy shipped inside the package by default)."""
    path = path or Path(str(resources.files("quiz").joinpath("seed_questions.tsv")))
    with open(path, encoding="utf-8", newline="") as fh:
        return [row["id"] for row in csv.DictReader(fh, delimiter="\t")]


def count_sentences(text: str, lang: str) -> int:
    pattern = _SENTENCE_EN if lang == "en" else _SENTENCE_ZH
    return len(pattern.findall(text.strip()))


def _bilingual(raw: Any, where: str, problems: list[str], *, kind: type = str) -> None:
    """Check ``raw`` is a table with non-empty ``en`` and ``zh`` of ``kind``."""
    if not isinstance(raw, dict):
        problems.append(f"{where}: must have .en and .zh")
        return
    for lang in LANGS:
        value = raw.get(lang)
        if kind is str:
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{where}.{lang}: missing or empty")
        elif not isinstance(value, list) or not value or not all(
                isinstance(v, str) and v.strip() for v in value):
            problems.append(f"{where}.{lang}: must be a non-empty list of non-empty strings")
    extra = set(raw) - set(LANGS)
    if extra:
        problems.append(f"{where}: unknown languages {sorted(extra)}")


def validate(raw: dict[str, Any], *, known_seeds: list[str] | None = None,
             known_exercises: set[str] | None = None) -> list[str]:
    """Return every schema problem of a parsed bank (an empty list means the bank is valid)."""
    problems: list[str] = []
    topics = raw.get("topic")
    items = raw.get("item")
    if not isinstance(topics, list) or not topics:
        problems.append("bank: needs at least one [[topic]]")
        topics = []
    if not isinstance(items, list) or not items:
        problems.append("bank: needs at least one [[item]]")
        items = []
    topic_ids: set[str] = set()
    for i, t in enumerate(topics):
        tid = t.get("id")
        if not isinstance(tid, str) or not ID_PATTERN.match(tid.replace("_", "-")):
            problems.append(f"topic #{i}: bad id {tid!r}")
            continue
        if tid in topic_ids:
            problems.append(f"topic {tid}: duplicate id")
        topic_ids.add(tid)
        _bilingual(t.get("title"), f"topic {tid}.title", problems)

    allowed = {"id", "topic", "seeds", "follows", "followup", "question", "answer", "key_points",
               "notebook", "exercise", "mc", "numeric", "tf", "correction"}
    seen_ids: set[str] = set()
    seen_questions: dict[str, str] = {}
    for i, it in enumerate(items):
        iid = it.get("id")
        where = f"item {iid}" if isinstance(iid, str) else f"item #{i}"
        if not isinstance(iid, str) or not ID_PATTERN.match(iid):
            problems.append(f"{where}: id must be lower-case words joined by '-'")
        elif iid in seen_ids:
            problems.append(f"{where}: duplicate id")
        seen_ids.add(str(iid))
        unknown = set(it) - allowed
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        if it.get("topic") not in topic_ids:
            problems.append(f"{where}: unknown topic {it.get('topic')!r}")
        for key in ("question", "answer"):
            _bilingual(it.get(key), f"{where}.{key}", problems)
        _bilingual(it.get("key_points"), f"{where}.key_points", problems, kind=list)
        kp = it.get("key_points")
        if isinstance(kp, dict) and isinstance(kp.get("en"), list) and isinstance(kp.get("zh"), list) \
                and len(kp["en"]) != len(kp["zh"]):
            problems.append(f"{where}.key_points: en has {len(kp['en'])}, zh has {len(kp['zh'])}")
        answer = it.get("answer")
        if isinstance(answer, dict):
            for lang in LANGS:
                text = answer.get(lang)
                if isinstance(text, str):
                    n = count_sentences(text, lang)
                    lo, hi = ANSWER_SENTENCES
                    if not lo <= n <= hi:
                        problems.append(f"{where}.answer.{lang}: {n} sentences, want {lo}-{hi}")
        question = it.get("question")
        if isinstance(question, dict) and isinstance(question.get("en"), str):
            q = " ".join(question["en"].lower().split())
            if q in seen_questions:
                problems.append(f"{where}: same English question as item {seen_questions[q]}")
            seen_questions[q] = str(iid)
        nb = it.get("notebook")
        if nb not in NOTEBOOKS:
            problems.append(f"{where}: notebook {nb!r} is not one of the course notebooks")
        ex = it.get("exercise")
        if ex is not None and known_exercises is not None and ex not in known_exercises:
            problems.append(f"{where}: exercise {ex!r} is not in docs/EXERCISES.md")

        seeds, follows, followup = it.get("seeds", []), it.get("follows", []), it.get("followup", False)
        if not isinstance(followup, bool):
            problems.append(f"{where}: followup must be true or false")
        if followup:
            if seeds or not follows:
                problems.append(f"{where}: a follow-up names the seeds it follows in 'follows', not 'seeds'")
        elif not seeds or follows:
            problems.append(f"{where}: needs 'seeds' (or followup = true and 'follows')")
        for sid in list(seeds) + list(follows):
            if known_seeds is not None and sid not in known_seeds:
                problems.append(f"{where}: unknown seed id {sid!r}")

        forms = [f for f in FORMS if f in it]
        if not forms:
            problems.append(f"{where}: needs at least one auto-scorable form (mc, numeric or tf)")
        form_keys = {"mc": {"prompt", "options", "answer"},
                     "numeric": {"prompt", "value", "tolerance", "unit"},
                     "tf": {"claim", "answer"}}
        for form in forms:
            if not isinstance(it[form], dict):
                problems.append(f"{where}.{form}: must be a table")
                it = {k: v for k, v in it.items() if k != form}
                continue
            unknown = set(it[form]) - form_keys[form]
            if unknown:
                problems.append(f"{where}.{form}: unknown keys {sorted(unknown)}")
            if "prompt" in it[form]:
                _bilingual(it[form]["prompt"], f"{where}.{form}.prompt", problems)
        if "mc" in it:
            mc = it["mc"]
            _bilingual(mc.get("options"), f"{where}.mc.options", problems, kind=list)
            opts = mc.get("options", {})
            n_en, n_zh = len(opts.get("en", [])), len(opts.get("zh", []))
            if n_en != n_zh:
                problems.append(f"{where}.mc.options: en has {n_en}, zh has {n_zh}")
            if not 3 <= n_en <= 5:
                problems.append(f"{where}.mc.options: want 3-5 options, got {n_en}")
            for lang in LANGS:
                if len(set(opts.get(lang, []))) != len(opts.get(lang, [])):
                    problems.append(f"{where}.mc.options.{lang}: duplicate options")
            ans = mc.get("answer")
            if not isinstance(ans, int) or isinstance(ans, bool) or not 0 <= ans < n_en:
                problems.append(f"{where}.mc.answer: must be an index in [0, {n_en - 1}], got {ans!r}")
        if "numeric" in it:
            num = it["numeric"]
            value, tol = num.get("value"), num.get("tolerance")
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                problems.append(f"{where}.numeric.value: must be a number")
            if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not tol > 0:
                problems.append(f"{where}.numeric.tolerance: must be a number > 0")
            if "unit" in num:
                _bilingual(num["unit"], f"{where}.numeric.unit", problems)
        if "tf" in it:
            tf = it["tf"]
            _bilingual(tf.get("claim"), f"{where}.tf.claim", problems)
            if not isinstance(tf.get("answer"), bool):
                problems.append(f"{where}.tf.answer: must be true or false")
        if "correction" in it:
            corr = it["correction"]
            _bilingual({k: corr.get(k) for k in LANGS}, f"{where}.correction", problems)
            if corr.get("seed") not in (list(seeds) + list(follows)):
                problems.append(f"{where}.correction.seed: must be one of the item's seed ids")
            ev = corr.get("evidence")
            if not isinstance(ev, list) or not ev or not all(isinstance(e, str) and e.strip() for e in ev):
                problems.append(f"{where}.correction.evidence: must list at least one citation or computation")
            unknown = set(corr) - {"seed", "en", "zh", "evidence", "seed_answer"}
            if unknown:
                problems.append(f"{where}.correction: unknown keys {sorted(unknown)}")
            _seed_answer(it, corr.get("seed_answer"), where, problems)
    return problems


def _seed_answer(it: dict, given: Any, where: str, problems: list[str]) -> None:
    """``correction.seed_answer``: per form, the seed's own answer, which must be a wrong one."""
    if given is None:
        return
    if not isinstance(given, dict) or not given:
        problems.append(f"{where}.correction.seed_answer: must be a table with mc, tf and/or numeric")
        return
    for form, value in given.items():
        if form not in FORMS or not isinstance(it.get(form), dict):
            problems.append(f"{where}.correction.seed_answer.{form}: the item has no {form} form")
            continue
        spec = it[form]
        if form == "mc":
            values = value if isinstance(value, list) else [value]
            n = len(spec.get("options", {}).get("en", []))
            if not values or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n for v in values):
                problems.append(f"{where}.correction.seed_answer.mc: option indices in [0, {n - 1}], got {value!r}")
            elif spec.get("answer") in values:
                problems.append(f"{where}.correction.seed_answer.mc: the correct option cannot be the seed's mistake")
        elif form == "tf":
            if not isinstance(value, bool) or value is spec.get("answer"):
                problems.append(f"{where}.correction.seed_answer.tf: must be the wrong truth value "
                                f"({not spec.get('answer')!r})")
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or abs(value - spec.get("value", 0)) <= max(spec.get("tolerance", 0), seed_number_tolerance(value)):
                problems.append(f"{where}.correction.seed_answer.numeric: must be a number away from the answer")


def load_evidence_zh(path: Path) -> dict[str, str]:
    """English evidence line -> Chinese, from ``evidence_zh.toml`` (empty if the file is missing)."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise BankError(f"{path} is not valid TOML: {exc}") from None
    return {entry["en"]: entry["zh"] for entry in raw.get("evidence", [])}


def _build(raw: dict[str, Any], path: Path | None) -> Bank:
    topics = tuple(Topic(t["id"], dict(t["title"])) for t in raw["topic"])
    items = []
    for it in raw["item"]:
        items.append(Item(
            id=it["id"], topic=it["topic"], question=dict(it["question"]), answer=dict(it["answer"]),
            key_points={k: list(v) for k, v in it["key_points"].items()}, notebook=it["notebook"],
            seeds=tuple(it.get("seeds", ())), follows=tuple(it.get("follows", ())),
            followup=bool(it.get("followup", False)), exercise=it.get("exercise"),
            mc=it.get("mc"), numeric=it.get("numeric"), tf=it.get("tf"), correction=it.get("correction"),
        ))
    evidence_zh = load_evidence_zh(path.with_name("evidence_zh.toml")) if path is not None else {}
    return Bank(topics, tuple(items), path, evidence_zh)


def load_bank(path: str | Path | None = None, *, check_seeds: bool = True) -> Bank:
    """Read and validate the bank; raise :class:`BankError` listing every problem."""
    path = Path(path) if path is not None else default_bank_path()
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise BankError(f"question bank not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BankError(f"question bank {path} is not valid TOML: {exc}") from None
    problems = validate(raw, known_seeds=seed_ids() if check_seeds else None)
    if problems:
        raise BankError(f"question bank {path} has {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return _build(raw, path)
