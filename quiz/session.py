"""The interactive quiz session: asks items, scores answers, updates progress.

Input and output are plain text streams (``sys.stdin`` / ``sys.stdout`` by default), so the runner is
tested by feeding lines on standard input. Progress is saved after every answer; end of input or ``q``
ends the session cleanly with progress kept.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable, TextIO

from .bank import Bank, Item
from .progress import Progress

MAX_TRIES = 3          # unreadable answers in a row before the question is skipped
MOCK_SECONDS = 120     # default time per question in a mock interview

UI = {
    "en": {
        "topics": "Topics:", "all": "all topics", "pick_topic": "Pick a topic (number or name, Enter = all): ",
        "bad_topic": "Unknown topic {0!r}. Type a number from 1 to {1}, a name from the list, or press Enter for all.",
        "header": "[{n}/{total}] {topic} · {id}",
        "seeds": "seed {0}", "followup": "follow-up to {0}",
        "mc_prompt": "Your answer ({letters}; s = skip, q = quit): ",
        "mc_bad": "Please type one letter from {first} to {last} (s = skip, q = quit).",
        "num_prompt": "Your answer (a number{unit}; s = skip, q = quit): ",
        "num_bad": "{0!r} is not a number. Type a number such as 0.76, 1e-3 or 50% (s = skip, q = quit).",
        "tf_claim": "True or false? {0}", "tf_prompt": "Your answer (t = true, f = false; s = skip, q = quit): ",
        "tf_bad": "Please type t (true) or f (false) (s = skip, q = quit).",
        "open": "Answer aloud (or type notes), then press Enter to see the model answer: ",
        "mock_time": "You have {0}. Answer as you would in the interview.",
        "rate": "How did you do? 1 = missed it, 2 = partly, 3 = got it: ",
        "rate_bad": "Please type 1, 2 or 3 (s = skip, q = quit).",
        "right": "✓ Correct.", "wrong": "✗ Not quite. Correct answer: {0}",
        "skipped": "Skipped (progress unchanged).",
        "too_many": "No valid answer after {0} tries: skipping this question.",
        "model": "Model answer:", "key": "Key points:", "corr": "Correction of seed {0}:",
        "evidence": "Evidence:", "nb": "Notebook: solutions/{0}",
        "true": "true", "false": "false",
        "time_ok": "Time: {0} (budget {1}).", "time_over": "Time: {0}, over the {1} budget.",
        "again": "Once more, the ones you missed:",
        "eof": "End of input: stopping.", "quit": "Stopping.",
        "summary": "Summary: {right}/{scored} auto-scored answers correct; self-rated: {got} got it, {part} partly, {miss} missed; {skip} skipped.",
        "missed": "Missed (they come back first next time): {0}",
        "total_time": "Mock interview time: {0} for {1} questions.",
        "saved": "Progress saved to {0}",
        "none": "Nothing to ask: no items match.",
        "save_failed": "Could not save progress ({0}); stopping so that no further answers are lost.",
    },
    "zh": {
        "topics": "主题：", "all": "全部主题", "pick_topic": "选择主题（输入编号或名称，直接回车 = 全部）：",
        "bad_topic": "没有名为 {0!r} 的主题。请输入 1 到 {1} 的编号、列表中的名称，或直接回车选择全部。",
        "header": "[{n}/{total}] {topic} · {id}",
        "seeds": "原题 {0}", "followup": "追问（接 {0}）",
        "mc_prompt": "你的答案（{letters}；s = 跳过，q = 退出）：",
        "mc_bad": "请输入 {first} 到 {last} 之间的一个字母（s = 跳过，q = 退出）。",
        "num_prompt": "你的答案（一个数{unit}；s = 跳过，q = 退出）：",
        "num_bad": "{0!r} 不是数字。请输入数字，例如 0.76、1e-3 或 50%（s = 跳过，q = 退出）。",
        "tf_claim": "判断对错：{0}", "tf_prompt": "你的答案（t = 对，f = 错；s = 跳过，q = 退出）：",
        "tf_bad": "请输入 t（对）或 f（错）（s = 跳过，q = 退出）。",
        "open": "请口头作答（或写下要点），然后按回车查看参考答案：",
        "mock_time": "本题限时 {0}。请像正式面试一样作答。",
        "rate": "自评：1 = 没答上，2 = 答对一部分，3 = 答对了：",
        "rate_bad": "请输入 1、2 或 3（s = 跳过，q = 退出）。",
        "right": "✓ 正确。", "wrong": "✗ 不对。正确答案：{0}",
        "skipped": "已跳过（进度不变）。",
        "too_many": "连续 {0} 次输入无效：跳过本题。",
        "model": "参考答案：", "key": "要点：", "corr": "对原题 {0} 的更正：",
        "evidence": "依据：", "nb": "对应笔记本：solutions/{0}",
        "true": "对", "false": "错",
        "time_ok": "用时 {0}（限时 {1}）。", "time_over": "用时 {0}，超过了 {1} 的限时。",
        "again": "再来一遍刚才答错的题：",
        "eof": "输入结束：停止。", "quit": "停止。",
        "summary": "小结：自动评分 {scored} 题，答对 {right} 题；自评：答对 {got} 题，部分答对 {part} 题，没答上 {miss} 题；跳过 {skip} 题。",
        "missed": "答错的题（下次会优先出现）：{0}",
        "total_time": "模拟面试用时：{0}，共 {1} 题。",
        "saved": "进度已保存到 {0}",
        "none": "没有可出的题：没有匹配的题目。",
        "save_failed": "无法保存进度（{0}）；为避免丢失更多答题记录，现在停止。",
    },
}
TRUE_WORDS = {"t", "true", "y", "yes", "1", "对", "是", "正确", "真"}
FALSE_WORDS = {"f", "false", "n", "no", "0", "错", "否", "错误", "假"}
QUIT_WORDS = {"q", "quit", "exit", "退出"}
SKIP_WORDS = {"s", "skip", "跳过"}


class EndOfInput(Exception):
    """Standard input ended."""


class QuitRequested(Exception):
    """The learner typed q."""


class _Skip(Exception):
    pass


class SaveFailed(Exception):
    """The progress file could not be written."""


class NoTopicChosen(Exception):
    """The learner typed an unknown topic MAX_TRIES times at the menu."""


@dataclass
class Result:
    item_id: str
    form: str        # "mc", "numeric", "tf" or "open"
    outcome: str     # "right", "partial", "wrong" or "skipped"
    seconds: float = 0.0


def parse_number(text: str) -> float | None:
    """Read a number as typed by a person: '0.76', '884,736', '1e-3', '50%', '８'. None if it is not one."""
    t = text.strip().replace("\u3000", " ")
    t = t.translate(str.maketrans("０１２３４５６７８９．－＋％", "0123456789.-+%"))
    percent = t.endswith("%")
    if percent:
        t = t[:-1]
    t = t.replace(",", "").replace("_", "").replace(" ", "")
    try:
        value = float(t)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return value / 100 if percent else value


def format_seconds(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


class Session:
    def __init__(self, bank: Bank, progress: Progress, *, lang: str = "en", inp: TextIO, out: TextIO,
                 mock: bool = False, open_only: bool = False, seconds_per_question: float = MOCK_SECONDS,
                 repeat_missed: bool = True, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if lang not in UI:
            raise ValueError(f"lang must be one of {sorted(UI)}, got {lang!r}")
        self.bank, self.progress, self.lang = bank, progress, lang
        self.inp, self.out = inp, out
        self.mock, self.open_only = mock, open_only or mock
        self.seconds_per_question = seconds_per_question
        self.repeat_missed = repeat_missed and not mock
        self.rng = rng or random.Random()
        self.clock = clock
        self.t = UI[lang]
        self.results: list[Result] = []

    # ---- low-level I/O ---------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def ask(self, prompt: str) -> str:
        self.out.write(prompt)
        self.out.flush()
        line = self.inp.readline()
        if not line:
            self.say()
            raise EndOfInput
        answer = line.strip()
        if answer.lower() in QUIT_WORDS:
            raise QuitRequested
        return answer

    def ask_until(self, prompt: str, parse: Callable[[str], object], bad: Callable[[str], str]) -> object:
        """Ask until ``parse`` returns something other than None; s skips; MAX_TRIES bad answers skip."""
        for _ in range(MAX_TRIES):
            answer = self.ask(prompt)
            if answer.lower() in SKIP_WORDS:
                raise _Skip
            value = parse(answer)
            if value is not None:
                return value
            self.say(bad(answer))
        self.say(self.t["too_many"].format(MAX_TRIES))
        raise _Skip

    # ---- topic menu ------------------------------------------------------------------------------
    def choose_topics(self) -> list[str] | None:
        """Interactive topic menu; returns None for all topics."""
        topics = self.bank.topics
        self.say(self.t["topics"])
        self.say(f"  0. {self.t['all']}")
        for i, tp in enumerate(topics, 1):
            n = len(self.bank.items_in([tp.id]))
            self.say(f"  {i}. {tp.id} — {tp.title[self.lang]} ({n})")
        for _ in range(MAX_TRIES):
            answer = self.ask(self.t["pick_topic"])
            if answer in ("", "0", "all"):
                return None
            if answer.isdigit() and 1 <= int(answer) <= len(topics):
                return [topics[int(answer) - 1].id]
            if any(tp.id == answer for tp in topics):
                return [answer]
            self.say(self.t["bad_topic"].format(answer, len(topics)))
        raise NoTopicChosen

    # ---- one question ----------------------------------------------------------------------------
    def pick_form(self, item: Item) -> str:
        if self.open_only:
            return "open"
        forms = item.forms + ("open",)
        return forms[self.progress.get(item.id).seen % len(forms)]

    def header(self, item: Item, n: int, total: int) -> None:
        topic = self.bank.topic(item.topic).title[self.lang]
        origin = (self.t["followup"] if item.followup else self.t["seeds"]).format(", ".join(item.seed_ids))
        self.say()
        self.say(self.t["header"].format(n=n, total=total, topic=topic, id=item.id) + f" ({origin})")

    def reveal(self, item: Item) -> None:
        L = self.lang
        self.say(self.t["model"])
        self.say("  " + item.answer[L])
        self.say(self.t["key"])
        for point in item.key_points[L]:
            self.say("  - " + point)
        if item.correction:
            self.say(self.t["corr"].format(item.correction["seed"]))
            self.say("  " + item.correction[L])
            self.say(self.t["evidence"])
            for ev in item.correction["evidence"]:
                self.say("  - " + ev)
        self.say(self.t["nb"].format(item.notebook))

    def run_item(self, item: Item, form: str) -> str:
        """Ask one item in ``form``; return 'right', 'partial', 'wrong' (raises _Skip to skip)."""
        L, t = self.lang, self.t
        if form == "mc":
            mc = item.mc
            prompt = mc.get("prompt", item.question)[L]
            order = list(range(len(mc["options"][L])))
            self.rng.shuffle(order)
            letters = "abcdefgh"[:len(order)]
            self.say("Q: " + prompt)
            for letter, idx in zip(letters, order):
                self.say(f"  {letter}) {mc['options'][L][idx]}")
            correct = letters[order.index(mc["answer"])]
            choice = self.ask_until(
                t["mc_prompt"].format(letters="/".join(letters)),
                lambda a: a.lower() if len(a) == 1 and a.lower() in letters else None,
                lambda a: t["mc_bad"].format(first=letters[0], last=letters[-1]))
            ok = choice == correct
            self.say(t["right"] if ok else t["wrong"].format(f"{correct}) {mc['options'][L][mc['answer']]}"))
            return "right" if ok else "wrong"
        if form == "numeric":
            num = item.numeric
            prompt = num.get("prompt", item.question)[L]
            unit = num.get("unit", {}).get(L, "")
            self.say("Q: " + prompt)
            value = self.ask_until(
                t["num_prompt"].format(unit=f", {unit}" if unit else ""),
                parse_number, lambda a: t["num_bad"].format(a))
            ok = abs(value - num["value"]) <= num["tolerance"]
            shown = f"{num['value']:g}" + (f" {unit}" if unit else "") + f" (± {num['tolerance']:g})"
            self.say(t["right"] if ok else t["wrong"].format(shown))
            return "right" if ok else "wrong"
        if form == "tf":
            tf = item.tf
            self.say("Q: " + item.question[L])
            self.say(t["tf_claim"].format(tf["claim"][L]))
            value = self.ask_until(
                t["tf_prompt"],
                lambda a: True if a.lower() in TRUE_WORDS else False if a.lower() in FALSE_WORDS else None,
                lambda a: t["tf_bad"])
            ok = value == tf["answer"]
            self.say(t["right"] if ok else t["wrong"].format(t["true"] if tf["answer"] else t["false"]))
            return "right" if ok else "wrong"
        # open question: the talking part of the interview, self-rated
        self.say("Q: " + item.question[L])
        if self.mock:
            self.say(t["mock_time"].format(format_seconds(self.seconds_per_question)))
        self.ask(t["open"])
        return "open"

    def ask_item(self, item: Item, n: int, total: int) -> Result:
        form = self.pick_form(item)
        self.header(item, n, total)
        start = self.clock()
        try:
            outcome = self.run_item(item, form)
            elapsed = self.clock() - start
            if self.mock:
                budget = format_seconds(self.seconds_per_question)
                key = "time_ok" if elapsed <= self.seconds_per_question else "time_over"
                self.say(self.t[key].format(format_seconds(elapsed), budget))
            self.reveal(item)
            if outcome == "open":
                rating = self.ask_until(self.t["rate"],
                                        lambda a: {"1": "wrong", "2": "partial", "3": "right"}.get(a),
                                        lambda a: self.t["rate_bad"])
                outcome = str(rating)
        except _Skip:
            self.say(self.t["skipped"])
            return Result(item.id, form, "skipped", self.clock() - start)
        self.progress.record(item.id, outcome)
        try:
            self.progress.save()
        except OSError as exc:
            raise SaveFailed(f"{self.progress.path}: {exc.strerror or exc}") from None
        return Result(item.id, form, outcome, elapsed)

    # ---- whole session ---------------------------------------------------------------------------
    def run(self, items: list[Item]) -> int:
        """Ask ``items`` (then the missed ones once more); return the process exit code (0)."""
        if not items:
            self.say(self.t["none"])
            return 0
        try:
            for n, item in enumerate(items, 1):
                self.results.append(self.ask_item(item, n, len(items)))
            missed = [it for it, r in zip(items, self.results) if r.outcome == "wrong"]
            if self.repeat_missed and missed:
                self.say()
                self.say(self.t["again"])
                for n, item in enumerate(missed, 1):
                    self.results.append(self.ask_item(item, n, len(missed)))
        except EndOfInput:
            self.say(self.t["eof"])
        except (QuitRequested, KeyboardInterrupt):
            self.say()
            self.say(self.t["quit"])
        except SaveFailed as exc:
            self.say(self.t["save_failed"].format(exc))
            return 1
        self.summary()
        return 0

    def summary(self) -> None:
        scored = [r for r in self.results if r.form != "open" and r.outcome != "skipped"]
        rated = [r for r in self.results if r.form == "open" and r.outcome != "skipped"]
        self.say()
        self.say(self.t["summary"].format(
            right=sum(r.outcome == "right" for r in scored), scored=len(scored),
            got=sum(r.outcome == "right" for r in rated), part=sum(r.outcome == "partial" for r in rated),
            miss=sum(r.outcome == "wrong" for r in rated),
            skip=sum(r.outcome == "skipped" for r in self.results)))
        final: dict[str, str] = {}
        for r in self.results:
            if r.outcome != "skipped":
                final[r.item_id] = r.outcome
        missed = [iid for iid, o in final.items() if o == "wrong"]
        if missed:
            self.say(self.t["missed"].format(", ".join(missed)))
        if self.mock:
            self.say(self.t["total_time"].format(format_seconds(sum(r.seconds for r in self.results)),
                                                 len(self.results)))
        if any(r.outcome != "skipped" for r in self.results):
            self.say(self.t["saved"].format(self.progress.path))
