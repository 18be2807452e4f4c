"""``python -m quiz --export anki FILE.apkg``: the question bank as an Anki deck (built with ``genanki``).

One note per item and language, in one deck per language (``kdcore interview quiz::English`` and ``::中文``).
The front is the question; the back holds the model answer, the key points and, where the seed was wrong, the
correction with its evidence, then the seed ids and the notebook. Notes are tagged with the topic id, the
language and whether the item corrects a seed. Ids are derived from the item ids (``genanki.guid_for``), so
importing a newer deck updates the notes already in Anki instead of adding copies, and keeps their review
history.
"""
from __future__ import annotations

import html
import zlib
from pathlib import Path

import genanki

from .bank import Bank, Item

__all__ = ["MODEL", "build_deck", "write_apkg"]

DECK_NAME = "kdcore interview quiz"
LANG_NAMES = {"en": "English", "zh": "中文"}
FIELDS = ["Question", "Answer", "KeyPoints", "Correction", "Source", "ItemId"]
LABELS = {
    "en": {"answer": "Answer", "key": "Key points", "corr": "Correction of seed {0}", "evidence": "Evidence",
           "source": "Seeds: {0} · notebook {1}"},
    "zh": {"answer": "参考答案", "key": "要点", "corr": "对原题 {0} 的更正", "evidence": "依据",
           "source": "原题：{0} · 笔记本 {1}"},
}


def _stable_id(text: str) -> int:
    """A fixed 31-bit id (Anki model and deck ids must stay the same from one export to the next)."""
    return (zlib.crc32(text.encode("utf-8")) & 0x7FFFFFFF) | (1 << 30)


MODEL = genanki.Model(
    _stable_id("kdcore-quiz-model-v1"),
    "kdcore interview question",
    fields=[{"name": name} for name in FIELDS],
    templates=[{
        "name": "Question → answer",
        "qfmt": "<div class=question>{{Question}}</div>",
        "afmt": ("{{FrontSide}}<hr id=answer><div class=answer>{{Answer}}</div>{{KeyPoints}}"
                 "{{#Correction}}<div class=correction>{{Correction}}</div>{{/Correction}}"
                 "<div class=source>{{Source}}</div>"),
    }],
    css=(".card { font-family: sans-serif; font-size: 18px; text-align: left; }"
         ".correction { border-left: 4px solid #c0392b; padding-left: 8px; margin-top: 12px; }"
         ".source { color: #777; font-size: 14px; margin-top: 12px; }"),
    sort_field_index=0,
)


def _fields(bank: Bank, item: Item, lang: str) -> list[str]:
    label = LABELS[lang]
    esc = html.escape
    key_points = "".join(f"<li>{esc(p)}</li>" for p in item.key_points[lang])
    correction = ""
    if item.correction:
        evidence = "".join(f"<li>{esc(bank.evidence(e, lang))}</li>" for e in item.correction["evidence"])
        correction = (f"<b>{esc(label['corr'].format(item.correction['seed']))}</b><br>{esc(item.correction[lang])}"
                      f"<br><i>{esc(label['evidence'])}</i><ul>{evidence}</ul>")
    source = label["source"].format(", ".join(item.seed_ids), item.notebook)
    return [esc(item.question[lang]), f"<b>{esc(label['answer'])}</b><br>{esc(item.answer[lang])}",
            f"<b>{esc(label['key'])}</b><ul>{key_points}</ul>", correction, esc(source), item.id]


def build_deck(bank: Bank, items: list[Item], lang: str) -> genanki.Deck:
    """The deck of ``items`` in ``lang`` ("en" or "zh")."""
    if lang not in LANG_NAMES:
        raise ValueError(f"lang must be 'en' or 'zh' for a deck, got {lang!r}")
    deck = genanki.Deck(_stable_id(f"kdcore-quiz-deck-{lang}"), f"{DECK_NAME}::{LANG_NAMES[lang]}")
    for item in items:
        tags = [f"kdcore::{item.topic}", f"lang::{lang}"] + (["seed-correction"] if item.correction else [])
        deck.add_note(genanki.Note(model=MODEL, fields=_fields(bank, item, lang), tags=tags,
                                   guid=genanki.guid_for("kdcore-quiz", item.id, lang)))
    return deck


def write_apkg(bank: Bank, items: list[Item], path: Path, langs: tuple[str, ...] = ("en", "zh")) -> int:
    """Write ``path`` (an ``.apkg`` file, written whole or not at all) and return the number of notes."""
    path = Path(path)
    if path.suffix != ".apkg":
        raise ValueError(f"the Anki deck file must end in .apkg, got {path}")
    decks = [build_deck(bank, items, lang) for lang in langs]
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        genanki.Package(decks).write_to_file(str(tmp))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return sum(len(d.notes) for d in decks)
