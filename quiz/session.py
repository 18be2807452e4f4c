"""The interactive quiz session: asks items, scores answers, updates progress.

Input and output are plain text streams (``sys.stdin`` / ``sys.stdout`` by default), so the runner is
tested by feeding lines on standard input. Progress is saved after every answer; end of input or ``q``
ends the session cleanly with progress kept.
"""
from __future__ import annotations

import math
import random
import threading
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
        "q": "Q: ",
        "right": "✓ Correct.", "wrong": "✗ Not quite. Correct answer: {0}",
        "seed_mistake": "That is seed {0}'s own answer, and it is wrong: see the correction below.",
        "skipped": "Skipped (progress unchanged).",
        "too_many": "No valid answer after {0} tries: skipping this question.",
        "model": "Model answer:", "key": "Key points:", "corr": "Correction of seed {0}:",
        "evidence": "Evidence:", "nb": "Notebook: solutions/{0}",
        "true": "true", "false": "false",
        "time_ok": "Time: {0} (budget {1}).", "time_over": "Time: {0}, over the {1} budget.",
        "again": "Once more, the ones you missed:",
        "eof": "End of input: stopping.", "quit": "Stopping.",
        "summary": "Summary: {parts}.", "auto": "{right}/{scored} auto-scored answers correct",
        "rated": "self-rated: {got} got it, {part} partly, {miss} missed", "skip": "{skip} skipped",
        "nothing": "no answers",
        "mock_intro": ("Mock interview: {n} questions in {total}: {k} conceptual, then one coding exercise. Answer "
                       "the conceptual ones aloud, as to an interviewer, then press Enter to see the model answer and "
                       "rate yourself. For the coding exercise, type the function and finish with a line that says "
                       "only `end`; `kd.check` grades it. The clock counts down at every question."),
        "mock_start": "Press Enter to start the clock (q = quit): ",
        "clock": "⏱ {left} left of {total}",
        "left_prompt": "[⏱ {left} left] ",
        "code_q": "Coding exercise: write `{signature}`: {summary}.",
        "code_hint": "Type your code (`torch`, `F` = torch.nn.functional and `math` are imported); a line with only `end` submits it, `s` skips.",
        "code_prompt": "... ",
        "code_error": "Your code does not run: {0}",
        "code_missing": "No function named `{0}` in your code.",
        "code_result": "kd.check: {0:.0%} of the cases passed.",
        "score": "Score: {points:g}/{n} ({pct:.0%}): conceptual answers by your rating (got it 1, partly 0.5, missed 0), the coding exercise by the fraction of cases passed.",
        "in_time": "Answered within the time: {0}/{1}.",
        "times_up": "Time is up for the whole interview.",
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
        "q": "问：",
        "right": "✓ 正确。", "wrong": "✗ 不对。正确答案：{0}",
        "seed_mistake": "这正是原题 {0} 自己给出的答案，它是错的：见下面的更正。",
        "skipped": "已跳过（进度不变）。",
        "too_many": "连续 {0} 次输入无效：跳过本题。",
        "model": "参考答案：", "key": "要点：", "corr": "对原题 {0} 的更正：",
        "evidence": "依据：", "nb": "对应笔记本：solutions/{0}",
        "true": "对", "false": "错",
        "time_ok": "用时 {0}（限时 {1}）。", "time_over": "用时 {0}，超过了 {1} 的限时。",
        "again": "再来一遍刚才答错的题：",
        "eof": "输入结束：停止。", "quit": "停止。",
        "summary": "小结：{parts}。", "auto": "自动评分 {scored} 题，答对 {right} 题",
        "rated": "自评：答对 {got} 题，部分答对 {part} 题，没答上 {miss} 题", "skip": "跳过 {skip} 题",
        "nothing": "没有作答",
        "mock_intro": ("模拟面试：共 {n} 题，限时 {total}：{k} 道概念题，最后一道编程题。概念题请像面对面试官一样口头作答，"
                       "然后按回车查看参考答案并自评。编程题请输入函数代码，最后单独一行输入 `end` 提交，由 `kd.check` 评分。"
                       "每道题都会显示剩余时间。"),
        "mock_start": "按回车开始计时（q = 退出）：",
        "clock": "⏱ 剩余 {left}（共 {total}）",
        "left_prompt": "[⏱ 剩余 {left}] ",
        "code_q": "编程题：请实现 `{signature}`：{summary}。",
        "code_hint": "输入你的代码（已导入 `torch`、`F` = torch.nn.functional 和 `math`）；单独一行 `end` 表示提交，`s` 跳过。",
        "code_prompt": "... ",
        "code_error": "代码无法运行：{0}",
        "code_missing": "代码中没有名为 `{0}` 的函数。",
        "code_result": "kd.check：通过了 {0:.0%} 的测试用例。",
        "score": "得分：{points:g}/{n}（{pct:.0%}）：概念题按自评计分（答对 1，部分 0.5，没答上 0），编程题按通过的测试用例比例计分。",
        "in_time": "在限时内作答：{0}/{1}。",
        "times_up": "整场面试的时间已用完。",
        "missed": "答错的题（下次会优先出现）：{0}",
        "total_time": "模拟面试用时：{0}，共 {1} 题。",
        "saved": "进度已保存到 {0}",
        "none": "没有可出的题：没有匹配的题目。",
        "save_failed": "无法保存进度（{0}）；为避免丢失更多答题记录，现在停止。",
    },
}
# The exercises of the mock interview's coding question: short enough for a whiteboard, no model to build.
CODING_EXERCISES = ("softmax_t", "kl_divergence", "soft_cross_entropy", "kd_loss", "attention_map", "at_loss",
                    "magnitude_mask", "sparsity_schedule", "conv2d_flops", "csr_bytes", "quantize_affine",
                    "dequantize", "separable_params", "sequence_kd_loss")
CODING_SUMMARY_ZH = {
    "softmax_t": "对 logits / T 在最后一维做 softmax；T <= 0 时抛出 ValueError",
    "kl_divergence": "输入为概率行，返回 batch 平均的 KL(p_teacher ‖ p_student)，单位为 nats",
    "soft_cross_entropy": "输入为概率行，返回 batch 平均的 −Σ p_teacher·log p_student",
    "kd_loss": "alpha·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−alpha)·CE(s, labels)",
    "attention_map": "特征 [B, C, H, W] → [B, H·W]：|A|^p 在通道上取平均、展平，并对每个样本做 L2 归一化",
    "at_loss": "(attention_map(s) − attention_map(t)).pow(2).mean()；空间尺寸不一致时抛出 ValueError",
    "magnitude_mask": "保留掩码（True = 保留），剪掉 round(sparsity·numel) 个 |w| 最小的权重",
    "sparsity_schedule": "Zhu & Gupta (2017) 的渐进稀疏度：s_final + (s_initial − s_final)·(1 − (step − t0)/(n·dt))³",
    "conv2d_flops": "一次 Conv2d 前向（batch 1）的 FLOPs：2·c_out·(c_in/groups)·kh·kw·H_out·W_out，不计偏置",
    "csr_bytes": "以 CSR 存储二维权重的字节数：nnz·(value_bytes + index_bytes) + (rows + 1)·index_bytes",
    "quantize_affine": "返回 (q, scale, zero_point)，遵循 PyTorch MinMaxObserver 的约定",
    "dequantize": "(q − zero_point)·scale，返回 float32",
    "separable_params": "返回 (标准卷积, 深度可分离卷积) 的参数量（不含偏置）",
    "sequence_kd_loss": "语言模型的 token 级蒸馏：T²·KL 在词表上求和，只在真实 token 上取平均",
}
CODE_END = "end"

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
    form: str        # "mc", "numeric", "tf", "open" or "code" (the mock interview's coding exercise)
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
        self.deadline: float | None = None   # clock() value at which a mock interview's time is up
        self.total = 0.0                     # the mock interview's total time, seconds

    # ---- low-level I/O ---------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _ask(self, prompt: str) -> str:
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
                self.say("  - " + self.bank.evidence(ev, L))
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
            self.say(t["q"] + prompt)
            for letter, idx in zip(letters, order):
                self.say(f"  {letter}) {mc['options'][L][idx]}")
            correct = letters[order.index(mc["answer"])]
            choice = self.ask_until(
                t["mc_prompt"].format(letters="/".join(letters)),
                lambda a: a.lower() if len(a) == 1 and a.lower() in letters else None,
                lambda a: t["mc_bad"].format(first=letters[0], last=letters[-1]))
            ok = choice == correct
            self.say(t["right"] if ok else t["wrong"].format(f"{correct}) {mc['options'][L][mc['answer']]}"))
            if not ok:
                self.name_seed_mistake(item, "mc", order[letters.index(choice)])
            return "right" if ok else "wrong"
        if form == "numeric":
            num = item.numeric
            prompt = num.get("prompt", item.question)[L]
            unit = num.get("unit", {}).get(L, "")
            self.say(t["q"] + prompt)
            value = self.ask_until(
                t["num_prompt"].format(unit=f", {unit}" if unit else ""),
                parse_number, lambda a: t["num_bad"].format(a))
            ok = abs(value - num["value"]) <= num["tolerance"]
            shown = f"{num['value']:g}" + (f" {unit}" if unit else "") + f" (± {num['tolerance']:g})"
            self.say(t["right"] if ok else t["wrong"].format(shown))
            if not ok:
                self.name_seed_mistake(item, "numeric", value)
            return "right" if ok else "wrong"
        if form == "tf":
            tf = item.tf
            self.say(t["q"] + item.question[L])
            self.say(t["tf_claim"].format(tf["claim"][L]))
            value = self.ask_until(
                t["tf_prompt"],
                lambda a: True if a.lower() in TRUE_WORDS else False if a.lower() in FALSE_WORDS else None,
                lambda a: t["tf_bad"])
            ok = value == tf["answer"]
            self.say(t["right"] if ok else t["wrong"].format(t["true"] if tf["answer"] else t["false"]))
            if not ok:
                self.name_seed_mistake(item, "tf", value)
            return "right" if ok else "wrong"
        # open question: the talking part of the interview, self-rated
        self.say(t["q"] + item.question[L])
        if self.mock:
            self.say(t["mock_time"].format(format_seconds(self.seconds_per_question)))
        self.ask(self.time_left_prefix() + t["open"])
        return "open"

    def name_seed_mistake(self, item: Item, form: str, answer: object) -> None:
        """Say so when a wrong answer is the one the seed itself gives (``correction.seed_answer``)."""
        seed = item.seed_mistake(form, answer)
        if seed:
            self.say(self.t["seed_mistake"].format(seed))

    def ask_item(self, item: Item, n: int, total: int) -> Result:
        form = self.pick_form(item)
        self.header(item, n, total)
        self.show_clock()
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
        scored = [r for r in self.results if r.form not in ("open", "code") and r.outcome != "skipped"]
        rated = [r for r in self.results if r.form == "open" and r.outcome != "skipped"]
        skipped = sum(r.outcome == "skipped" for r in self.results)
        parts = []
        if scored:
            parts.append(self.t["auto"].format(right=sum(r.outcome == "right" for r in scored), scored=len(scored)))
        if rated:
            parts.append(self.t["rated"].format(
                got=sum(r.outcome == "right" for r in rated), part=sum(r.outcome == "partial" for r in rated),
                miss=sum(r.outcome == "wrong" for r in rated)))
        if skipped:
            parts.append(self.t["skip"].format(skip=skipped))
        self.say()
        self.say(self.t["summary"].format(parts=("; " if self.lang == "en" else "；").join(parts)
                                          if parts else self.t["nothing"]))
        final: dict[str, str] = {}
        for r in self.results:
            if r.outcome != "skipped" and r.form != "code":
                final[r.item_id] = r.outcome
        missed = [iid for iid, o in final.items() if o == "wrong"]
        if missed:
            self.say(self.t["missed"].format(", ".join(missed)))
        if self.mock:
            self.say(self.t["total_time"].format(format_seconds(sum(r.seconds for r in self.results)),
                                                 len(self.results)))
        if any(r.outcome != "skipped" and r.form != "code" for r in self.results):
            self.say(self.t["saved"].format(self.progress.path))

    # ---- the mock interview ------------------------------------------------------------------------
    def time_left(self) -> float | None:
        """Seconds left in the mock interview (None outside one, or before the clock starts)."""
        if self.deadline is None:
            return None
        return self.deadline - self.clock()

    def time_left_prefix(self) -> str:
        left = self.time_left()
        return "" if left is None else self.t["left_prompt"].format(left=format_seconds(max(left, 0)))

    def show_clock(self) -> None:
        left = self.time_left()
        if left is not None:
            self.say(self.t["clock"].format(left=format_seconds(max(left, 0)), total=format_seconds(self.total)))

    def ask(self, prompt: str) -> str:
        with LiveClock(self):
            return self._ask(prompt)

    def run_mock(self, items: list[Item], coding_exercise: str | None) -> int:
        """The mock interview: an introduction, the clock started by the learner, ``items`` answered aloud and
        self-rated, then one coding exercise graded by ``kd.check``; a score at the end."""
        n = len(items) + (coding_exercise is not None)
        self.total = self.seconds_per_question * (len(items) + 2 * (coding_exercise is not None))
        self.say(self.t["mock_intro"].format(n=n, total=format_seconds(self.total), k=len(items)))
        points: list[float] = []
        try:
            self._ask(self.t["mock_start"])
            self.deadline = self.clock() + self.total
            for number, item in enumerate(items, 1):
                self.results.append(self.ask_item(item, number, n))
                last = self.results[-1]
                if last.outcome != "skipped":
                    points.append({"right": 1.0, "partial": 0.5, "wrong": 0.0}[last.outcome])
                if self.time_left() is not None and self.time_left() <= 0:
                    self.say(self.t["times_up"])
                    break
            else:
                if coding_exercise is not None:
                    points.append(self.ask_code(coding_exercise, n, n))
        except EndOfInput:
            self.say(self.t["eof"])
        except (QuitRequested, KeyboardInterrupt):
            self.say()
            self.say(self.t["quit"])
        except SaveFailed as exc:
            self.say(self.t["save_failed"].format(exc))
            return 1
        self.summary()
        answered = [r for r in self.results if r.outcome != "skipped"]
        if answered:
            budget = {r.item_id: (2 if r.form == "code" else 1) * self.seconds_per_question for r in answered}
            self.say(self.t["in_time"].format(sum(r.seconds <= budget[r.item_id] for r in answered), len(answered)))
            self.say(self.t["score"].format(points=round(sum(points), 2), n=n, pct=sum(points) / n))
        return 0

    def ask_code(self, exercise_id: str, number: int, total: int) -> float:
        """The coding question: the learner types a function, ``kd.check`` grades it; returns its score."""
        from kdcore.checking import EXERCISES, check   # imports torch: only for this question

        exercise = EXERCISES[exercise_id]
        self.say()
        self.say(self.t["header"].format(n=number, total=total, topic="kd.check", id=exercise_id))
        self.show_clock()
        summary = exercise.summary if self.lang == "en" else CODING_SUMMARY_ZH.get(exercise_id, exercise.summary)
        self.say(self.t["code_q"].format(signature=exercise.signature, summary=summary))
        self.say(self.t["code_hint"])
        self.say(self.t["mock_time"].format(format_seconds(2 * self.seconds_per_question)))
        start = self.clock()
        lines: list[str] = []
        prompt = self.time_left_prefix() + self.t["code_prompt"]
        while True:
            line = self._readline(prompt)
            if line.strip() == CODE_END:
                break
            if not lines and line.strip().lower() in SKIP_WORDS:
                self.say(self.t["skipped"])
                self.results.append(Result(exercise_id, "code", "skipped", self.clock() - start))
                return 0.0
            lines.append(line)
            prompt = self.t["code_prompt"]
        elapsed = self.clock() - start
        budget = 2 * self.seconds_per_question
        key = "time_ok" if elapsed <= budget else "time_over"
        self.say(self.t[key].format(format_seconds(elapsed), format_seconds(budget)))
        score = 0.0
        import math

        import torch
        import torch.nn.functional as F

        namespace: dict = {"__name__": "__mock_interview__", "torch": torch, "F": F, "math": math}
        try:
            exec(compile("\n".join(lines) + "\n", "<your code>", "exec"), namespace)  # noqa: S102 - the learner's own code
        except Exception as error:  # noqa: BLE001 - whatever the typed code raises
            self.say(self.t["code_error"].format(f"{type(error).__name__}: {error}"))
        else:
            fn = namespace.get(exercise_id)
            if not callable(fn):
                self.say(self.t["code_missing"].format(exercise_id))
            else:
                result = check(exercise_id, fn, raise_on_fail=False, verbose=False)
                self.say(result.feedback)
                score = result.score
                self.say(self.t["code_result"].format(score))
        self.results.append(Result(exercise_id, "code", "right" if score == 1.0 else "wrong", elapsed))
        return score

    def _readline(self, prompt: str) -> str:
        """One raw line of input (for code: no stripping, no quit words); EndOfInput at the end."""
        with LiveClock(self):
            self.out.write(prompt)
            self.out.flush()
            line = self.inp.readline()
        if not line:
            self.say()
            raise EndOfInput
        return line.rstrip("\n")


class LiveClock:
    """While waiting for an answer in a mock interview on a terminal, rewrite the clock line above the prompt
    every second (ANSI: save the cursor, go up one line, write, restore). Off when input or output is not a
    terminal, so tests and pipes see only the static ``[⏱ 1:23 left]`` prefix of the prompt."""

    def __init__(self, session: "Session", interval: float = 1.0):
        self.session, self.interval = session, interval
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def active(self) -> bool:
        s = self.session
        return (s.deadline is not None and all(getattr(stream, "isatty", lambda: False)() for stream in (s.inp, s.out)))

    def __enter__(self) -> "LiveClock":
        if self.active():
            self.thread = threading.Thread(target=self._tick, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()

    def _tick(self) -> None:
        s = self.session
        while not self.stop.wait(self.interval):
            left = s.time_left()
            text = s.t["clock"].format(left=format_seconds(max(left or 0, 0)), total=format_seconds(s.total))
            s.out.write(f"\x1b7\x1b[1A\r{text}\x1b[K\x1b8")
            s.out.flush()
