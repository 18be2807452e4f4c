"""Render the bank as Markdown or HTML for printing or a classroom handout.

``python -m quiz --export md|html [--lang en|zh|both] [--no-answers] [--topic T] [-o FILE]``.
Without answers, a handout lists each question and its multiple-choice options (in a fixed shuffled
order, so the right option is not always first), the true/false claim and the number asked for.
With answers, it adds the model answer, key points, the correct option, the numeric answer, the
true/false answer and any seed correction with its evidence.
"""
from __future__ import annotations

import html
import random
import zlib

from .bank import Bank, Item

LABELS = {
    "en": {"title": "Model compression interview quiz", "answers": "with answers", "handout": "questions only",
           "q": "Question", "choice": "Multiple choice", "numeric": "Numeric", "tf": "True or false",
           "model": "Model answer", "key": "Key points", "answer": "Answer", "corr": "Correction of seed",
           "evidence": "Evidence", "nb": "Notebook", "seeds": "Seed", "follow": "Follow-up to",
           "true": "true", "false": "false", "unit": "unit", "colon": ": "},
    "zh": {"title": "模型压缩面试题", "answers": "含答案", "handout": "仅题目",
           "q": "问题", "choice": "选择题", "numeric": "数值题", "tf": "判断题",
           "model": "参考答案", "key": "要点", "answer": "答案", "corr": "对原题的更正",
           "evidence": "依据", "nb": "笔记本", "seeds": "原题", "follow": "追问，接",
           "true": "对", "false": "错", "unit": "单位", "colon": "："},
}


def option_order(item: Item) -> list[int]:
    """A fixed, item-specific order of the multiple-choice options (stable across runs and machines)."""
    order = list(range(len(item.mc["options"]["en"])))
    random.Random(zlib.crc32(item.id.encode())).shuffle(order)
    return order


def _langs(lang: str) -> list[str]:
    return ["en", "zh"] if lang == "both" else [lang]


def _own_prompt(item: Item, form: str, lang: str) -> str:
    """The form's own question, or "" when it is the item's question (already printed above)."""
    prompt = getattr(item, form).get("prompt")
    return prompt[lang] if prompt and prompt[lang] != item.question[lang] else ""


def _blocks(item: Item, lang: str, answers: bool) -> list[tuple[str, object]]:
    """A neutral description of one item: (kind, payload) pairs rendered by the md/html writers."""
    out: list[tuple[str, object]] = []
    L = LABELS[lang]
    origin = f"{L['follow']} {', '.join(item.follows)}" if item.followup else f"{L['seeds']} {', '.join(item.seeds)}"
    out.append(("meta", f"{item.id} · {origin} · {L['nb']}{L['colon']}solutions/{item.notebook}"))
    out.append(("question", item.question[lang]))
    if item.mc:
        order = option_order(item)
        letters = "abcdefgh"
        prompt = _own_prompt(item, "mc", lang)
        opts = [f"{letters[i]}) {item.mc['options'][lang][idx]}" for i, idx in enumerate(order)]
        out.append(("form", (L["choice"], prompt, opts)))
        if answers:
            out.append(("answer", f"{letters[order.index(item.mc['answer'])]}) {item.mc['options'][lang][item.mc['answer']]}"))
    if item.numeric:
        prompt = _own_prompt(item, "numeric", lang)
        unit = item.numeric.get("unit", {}).get(lang)
        out.append(("form", (L["numeric"], prompt + (f" ({L['unit']}{L['colon']}{unit})" if unit else ""), [])))
        if answers:
            out.append(("answer", f"{item.numeric['value']:g} ± {item.numeric['tolerance']:g}"))
    if item.tf:
        out.append(("form", (L["tf"], item.tf["claim"][lang], [])))
        if answers:
            out.append(("answer", L["true"] if item.tf["answer"] else L["false"]))
    if answers:
        out.append(("model", item.answer[lang]))
        out.append(("key", item.key_points[lang]))
        if item.correction:
            out.append(("corr", (item.correction["seed"], item.correction[lang], item.correction["evidence"])))
    return out


def to_markdown(bank: Bank, items: list[Item], *, lang: str = "both", answers: bool = True) -> str:
    langs = _langs(lang)
    L0 = LABELS[langs[0]]
    lines = [f"# {' / '.join(LABELS[l]['title'] for l in langs)} ({L0['answers'] if answers else L0['handout']})", ""]
    n = 0
    for topic in bank.topics:
        chosen = [it for it in items if it.topic == topic.id]
        if not chosen:
            continue
        lines += [f"## {' / '.join(topic.title[l] for l in langs)}", ""]
        for item in chosen:
            n += 1
            for i, lang_ in enumerate(langs):
                L = LABELS[lang_]
                for kind, payload in _blocks(item, lang_, answers):
                    if kind == "meta":
                        if i == 0:
                            lines += [f"### {n}. {item.question[lang_]}", "", f"*{payload}*", ""]
                        continue
                    if kind == "question":
                        if i > 0:
                            lines += [f"**{payload}**", ""]
                    elif kind == "form":
                        name, prompt, opts = payload
                        lines += [f"- **{name}**{L['colon']}{prompt}".rstrip()] + [f"    - {o}" for o in opts]
                    elif kind == "answer":
                        lines += [f"    - *{L['answer']}*{L['colon']}{payload}"]
                    elif kind == "model":
                        lines += ["", f"**{L['model']}**{L['colon']}{payload}", ""]
                    elif kind == "key":
                        lines += [f"**{L['key']}**{L['colon'].strip()}"] + [f"- {p}" for p in payload] + [""]
                    elif kind == "corr":
                        seed, text, evidence = payload
                        lines += [f"> **{L['corr']} {seed}**{L['colon']}{text}", ">"]
                        lines += [f"> - {e}" for e in evidence] + [""]
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


_CSS = """body{font-family:system-ui,'Noto Sans CJK SC','PingFang SC',sans-serif;max-width:50em;margin:2em auto;
line-height:1.5;padding:0 1em}h2{border-bottom:1px solid #999;margin-top:2em}section{break-inside:avoid;
margin-bottom:1.5em}.meta{color:#555;font-size:.85em}.answer{color:#064}.corr{border-left:4px solid #b00;
padding-left:.8em;background:#fff4f4}@media print{body{margin:0}a{color:inherit}}"""


def to_html(bank: Bank, items: list[Item], *, lang: str = "both", answers: bool = True) -> str:
    e = html.escape
    langs = _langs(lang)
    L0 = LABELS[langs[0]]
    title = " / ".join(LABELS[l]["title"] for l in langs)
    doc = ["<!DOCTYPE html>", f'<html lang="{"zh" if langs == ["zh"] else "en"}"><head><meta charset="utf-8">',
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{e(title)} <small>({e(L0['answers'] if answers else L0['handout'])})</small></h1>"]
    n = 0
    for topic in bank.topics:
        chosen = [it for it in items if it.topic == topic.id]
        if not chosen:
            continue
        doc.append(f"<h2>{e(' / '.join(topic.title[l] for l in langs))}</h2>")
        for item in chosen:
            n += 1
            doc.append(f'<section id="{e(item.id)}">')
            for i, lang_ in enumerate(langs):
                L = LABELS[lang_]
                doc.append(f'<div lang="{lang_}">')
                for kind, payload in _blocks(item, lang_, answers):
                    if kind == "meta":
                        if i == 0:
                            doc.append(f'<p class="meta">{n}. {e(str(payload))}</p>')
                    elif kind == "question":
                        doc.append(f"<h3>{e(str(payload))}</h3>")
                    elif kind == "form":
                        name, prompt, opts = payload
                        doc.append(f"<p><b>{e(name)}</b>{e(L['colon'])}{e(prompt)}</p>")
                        if opts:
                            doc.append("<ul>" + "".join(f"<li>{e(o)}</li>" for o in opts) + "</ul>")
                    elif kind == "answer":
                        doc.append(f'<p class="answer"><b>{e(L["answer"])}</b>{e(L["colon"])}{e(str(payload))}</p>')
                    elif kind == "model":
                        doc.append(f"<p><b>{e(L['model'])}</b>{e(L['colon'])}{e(str(payload))}</p>")
                    elif kind == "key":
                        doc.append(f"<p><b>{e(L['key'])}</b></p><ul>" +
                                   "".join(f"<li>{e(p)}</li>" for p in payload) + "</ul>")
                    elif kind == "corr":
                        seed, text, evidence = payload
                        doc.append(f'<div class="corr"><p><b>{e(L["corr"])} {e(seed)}</b>{e(L["colon"])}{e(text)}</p>'
                                   f"<p>{e(L['evidence'])}</p><ul>" +
                                   "".join(f"<li>{e(x)}</li>" for x in evidence) + "</ul></div>")
                doc.append("</div>")
            doc.append("</section>")
    doc.append("</body></html>")
    return "\n".join(doc) + "\n"
