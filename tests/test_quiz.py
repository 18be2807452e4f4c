"""Tests of the interview quiz: the bank (schema, languages, answer keys, seed coverage, notebook and
exercise references, every stated number recomputed) and the runner (fed answers on standard input:
correct, wrong, garbage, end of input; progress kept and written atomically; export)."""
from __future__ import annotations

import ast
import copy
import io
import json
import math
import os
import re
import subprocess
import sys
import tomllib
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from quiz import bank as qbank
from quiz.bank import NOTEBOOKS, Bank, load_bank, seed_ids, validate
from quiz.cli import main
from quiz.export import to_html, to_markdown
from quiz.progress import Progress, ProgressError, default_progress_path
from quiz.session import Session, parse_number

ROOT = Path(__file__).resolve().parents[1]
BANK_PATH = ROOT / "quiz" / "bank.toml"
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def raw():
    with open(BANK_PATH, "rb") as fh:
        return tomllib.load(fh)


@pytest.fixture(scope="module")
def bank() -> Bank:
    return load_bank(BANK_PATH)


def exercise_ids() -> set[str]:
    """Exercise ids from the contract table of docs/EXERCISES.md (first column)."""
    text = (ROOT / "docs" / "EXERCISES.md").read_text(encoding="utf-8")
    ids = set()
    for line in text.splitlines():
        m = re.match(r"^\|\s*([a-z_0-9]+)\s*\|\s*\d\d\s*\|", line)
        if m:
            ids.add(m.group(1))
    assert len(ids) >= 20, "could not read the exercise table of docs/EXERCISES.md"
    return ids


# ───────────────────────────── the bank ─────────────────────────────

def test_bank_is_valid(raw):
    problems = validate(raw, known_seeds=seed_ids(), known_exercises=exercise_ids())
    assert problems == []


def test_every_seed_id_is_answered_by_an_item(bank):
    answered = {sid for it in bank.items for sid in it.seeds}
    missing = [sid for sid in seed_ids() if sid not in answered]
    assert missing == []
    assert len(seed_ids()) == 49          # 4 + 7 + 6 + 3 + 29 questions in the five seeds


def test_packaged_seed_list_matches_shared_copy():
    shared = ROOT.parent / "shared" / "seed_questions.tsv"
    if not shared.exists():
        pytest.skip("no ../shared/seed_questions.tsv next to this checkout")
    assert seed_ids(shared) == seed_ids()


def test_follow_ups_are_marked_and_name_what_they_follow(bank):
    followups = [it for it in bank.items if it.followup]
    assert len(followups) >= 10
    for it in followups:
        assert it.follows and not it.seeds


def test_both_languages_are_really_present(bank):
    for it in bank.items:
        texts_en = [it.question["en"], it.answer["en"], *it.key_points["en"]]
        texts_zh = [it.question["zh"], it.answer["zh"], *it.key_points["zh"]]
        if it.mc:
            texts_en += it.mc["options"]["en"]
        if it.tf:
            texts_en.append(it.tf["claim"]["en"])
            texts_zh.append(it.tf["claim"]["zh"])
        if it.correction:
            texts_en.append(it.correction["en"])
            texts_zh.append(it.correction["zh"])
        for text in texts_en:
            assert not CJK.search(text), f"{it.id}: Chinese characters in English text {text[:40]!r}"
        for text in [it.question["zh"], it.answer["zh"]] + ([it.correction["zh"]] if it.correction else []):
            assert CJK.search(text), f"{it.id}: no Chinese in {text[:40]!r}"
    assert all(CJK.search(t.title["zh"]) for t in bank.topics)


def test_answer_keys_are_valid(bank):
    for it in bank.items:
        assert it.forms, it.id
        if it.mc:
            n = len(it.mc["options"]["en"])
            assert 0 <= it.mc["answer"] < n and len(it.mc["options"]["zh"]) == n
        if it.tf:
            assert isinstance(it.tf["answer"], bool)
        if it.numeric:
            value, tol = it.numeric["value"], it.numeric["tolerance"]
            # a tolerance loose enough to accept a wrong answer would make the item meaningless
            assert 0 < tol <= max(0.01 * abs(value), 0.005) or (float(value).is_integer() and tol <= 0.5), it.id


def test_multiple_choice_answers_are_not_all_in_one_position(bank):
    """The bank stores the right option first, so the runner and the export must shuffle."""
    from quiz.export import option_order
    positions = {option_order(it).index(it.mc["answer"]) for it in bank.items if it.mc}
    assert len(positions) >= 3


def test_no_duplicates(bank):
    ids = [it.id for it in bank.items]
    assert len(ids) == len(set(ids))
    questions = [" ".join(it.question["en"].lower().split()) for it in bank.items]
    assert len(questions) == len(set(questions))
    for it in bank.items:
        if it.mc:
            for lang in ("en", "zh"):
                assert len(set(it.mc["options"][lang])) == len(it.mc["options"][lang]), it.id


def test_every_notebook_reference_exists(bank):
    """The lead guarantees these notebook file names (docs/CONTRIBUTING.md); each must exist in solutions/."""
    referenced = {it.notebook for it in bank.items}
    assert referenced <= set(NOTEBOOKS)
    missing = sorted(nb for nb in referenced if not (ROOT / "solutions" / nb).is_file())
    assert missing == [], f"notebooks referenced by the quiz but missing from solutions/: {missing}"


def test_every_exercise_reference_is_in_the_contract(bank):
    known = exercise_ids()
    assert {it.exercise for it in bank.items if it.exercise} <= known


def test_corrections_cover_the_known_seed_mistakes(bank):
    corrected = {it.correction["seed"] for it in bank.items if it.correction}
    for sid in ("001-C1", "000-Q1", "002-C3", "003-Q3", "004-Q15", "004-Q17"):
        assert sid in corrected, sid
    for it in bank.items:
        if it.correction:
            assert it.correction["seed"] in it.seed_ids


def _mutations():
    def drop_zh_question(r):
        del r["item"][0]["question"]["zh"]

    def bad_mc_answer(r):
        it = next(i for i in r["item"] if "mc" in i)
        it["mc"]["answer"] = len(it["mc"]["options"]["en"])

    def duplicate_id(r):
        r["item"][1]["id"] = r["item"][0]["id"]

    def unknown_seed(r):
        r["item"][0]["seeds"] = ["009-Q9"]

    def no_form(r):
        for form in ("mc", "numeric", "tf"):
            r["item"][0].pop(form, None)

    def unknown_notebook(r):
        r["item"][0]["notebook"] = "99_missing.ipynb"

    def correction_without_evidence(r):
        it = next(i for i in r["item"] if "correction" in i)
        it["correction"]["evidence"] = []

    def answer_too_long(r):
        r["item"][0]["answer"]["en"] = "One. Two. Three. Four. Five."

    def tf_not_bool(r):
        it = next(i for i in r["item"] if "tf" in i)
        it["tf"]["answer"] = "false"

    def zh_options_missing_one(r):
        it = next(i for i in r["item"] if "mc" in i)
        it["mc"]["options"]["zh"] = it["mc"]["options"]["zh"][:-1]

    return [drop_zh_question, bad_mc_answer, duplicate_id, unknown_seed, no_form, unknown_notebook,
            correction_without_evidence, answer_too_long, tf_not_bool, zh_options_missing_one]


@pytest.mark.parametrize("mutate", _mutations(), ids=lambda f: f.__name__)
def test_validator_reports_each_kind_of_problem(raw, mutate):
    broken = copy.deepcopy(raw)
    mutate(broken)
    assert validate(broken, known_seeds=seed_ids()) != []


def test_load_bank_reports_bad_toml_clearly(tmp_path):
    bad = tmp_path / "bank.toml"
    bad.write_text("[[item]]\nid = \n", encoding="utf-8")
    with pytest.raises(qbank.BankError, match="not valid TOML"):
        load_bank(bad)


# ───────────────────────────── every number, recomputed ─────────────────────────────

TEACHER = torch.tensor([[0.8, 0.1, 0.1]])
STUDENT = torch.tensor([[0.6, 0.3, 0.1]])


def _seed_ce() -> float:
    # F.cross_entropy with probability targets; log(p) are valid logits of p because rows sum to 1
    return F.cross_entropy(STUDENT.log(), TEACHER).item()


def _seed_kl() -> float:
    return F.kl_div(STUDENT.log(), TEACHER, reduction="batchmean").item()


def _conv_flops() -> float:
    from torch.utils.flop_counter import FlopCounterMode
    conv = torch.nn.Conv2d(3, 16, 3, padding=1, bias=False)
    with FlopCounterMode(display=False) as counter:
        conv(torch.zeros(1, 3, 32, 32))
    return counter.get_total_flops()


def _pruned_count() -> float:
    import torch.nn.utils.prune as prune
    layer = torch.nn.Linear(10, 1, bias=False)
    prune.l1_unstructured(layer, "weight", amount=0.25)
    return float((layer.weight_mask == 0).sum())


def _observer_qparams() -> tuple[float, int]:
    # MinMaxObserver's quint8 conventions as kdcore.quantize implements them; tests/test_quantize.py holds the
    # library to the observer's formulas (and to torch.ao's deprecated observers while torch ships them)
    from kdcore.quantize import quantize_affine
    _, scale, zero_point = quantize_affine(torch.tensor([-1.0, 3.0]), bits=8, symmetric=False)
    return scale, zero_point


def _csr_break_even() -> float:
    rows = cols = 256
    dense = 4 * rows * cols
    nnz = max(n for n in range(rows * cols + 1) if n * (4 + 4) + (rows + 1) * 4 < dense)
    return 1 - nnz / (rows * cols)


def _separable_params() -> float:
    dw = torch.nn.Conv2d(64, 64, 3, groups=64, bias=False)
    pw = torch.nn.Conv2d(64, 128, 1, bias=False)
    return float(sum(p.numel() for p in (*dw.parameters(), *pw.parameters())))


RECOMPUTE = {
    "kd-seed-loss-ce": _seed_ce,
    "kd-seed-loss-kl": _seed_kl,
    "kd-ce-equals-kl-gradient": lambda: -(TEACHER * TEACHER.log()).sum().item(),
    "kd-seed000-kl-div": lambda: F.kl_div(torch.tensor([[2.0, 1.0, 0.1]]), torch.tensor([[3.0, 1.0, 0.5]]),
                                          reduction="sum").item(),
    "kd-temperature": lambda: F.softmax(torch.tensor([2.0, 1.0, 0.0]) / 4, dim=-1)[0].item(),
    "fu-prune-count-rounding": _pruned_count,
    "prune-gradual-schedule": lambda: 0.9 + (0 - 0.9) * (1 - (500 - 0) / (10 * 100)) ** 3,
    "measure-compressed": _conv_flops,
    "fu-csr-break-even": _csr_break_even,
    "quant-scale": lambda: _observer_qparams()[0],
    "quant-zero-point": lambda: _observer_qparams()[1],
    "quant-weight-sharing": lambda: 32 / math.log2(16),
    "choose-methods": _separable_params,
    # notebook 12: the library's accounting and reference, and the KV-cache arithmetic written out
    "llm-bits-per-weight": lambda: __import__("kdcore.llm.quantize", fromlist=["x"]).bits_per_weight(4, 128, 4096),
    "llm-smoothquant": lambda: __import__("kdcore.llm.quantize", fromlist=["x"]).smoothquant_scales(
        torch.tensor([64.0]), torch.tensor([0.25]), 0.5).item(),
    "llm-kv-cache": lambda: 2 * 32 * 4096 * 2 / 2 ** 20,   # K and V × layers × d_model × fp16 bytes, in MiB
    # notebook 14: fp16 value + int32 id per stored entry; acceptance probability Σ min(p, q)
    "llm-topk-bytes": lambda: 20 * (torch.finfo(torch.float16).bits + torch.iinfo(torch.int32).bits) / 8,
    "llm-spec-acceptance-number": lambda: torch.minimum(torch.tensor([0.1, 0.3, 0.2, 0.4]),
                                                        torch.tensor([0.6, 0.3, 0.1, 0.0])).sum().item(),
}


def test_every_numeric_item_has_an_independent_recomputation(bank):
    numeric_ids = {it.id for it in bank.items if it.numeric}
    assert numeric_ids == set(RECOMPUTE)


@pytest.mark.parametrize("item_id", sorted(RECOMPUTE))
def test_numeric_answer_matches_recomputation(bank, item_id):
    item = next(it for it in bank.items if it.id == item_id)
    expected = RECOMPUTE[item_id]()
    # the stated value must be the computed one to within half the accepted tolerance
    assert abs(item.numeric["value"] - expected) <= item.numeric["tolerance"] / 2, (item_id, expected)


def test_seed_001_loss_of_016_is_not_produced_by_any_log_base():
    ce, kl = _seed_ce(), _seed_kl()
    for base in (2, math.e, 10):
        for value in (ce, kl):
            assert abs(value / math.log(base) - 0.16) > 0.01


def test_seed_000_loss_on_raw_logits_is_negative_or_nan():
    s = torch.tensor([[2.0, 1.0, 0.1]])
    assert F.kl_div(s, torch.tensor([[3.0, 1.0, 0.5]]), reduction="sum").item() < 0
    assert math.isnan(F.kl_div(s, torch.tensor([[3.0, -1.0, 0.5]]), reduction="sum").item())


# ───────────────────────────── true/false claims that code can decide ─────────────────────────────

def _ce_and_kl_have_same_gradient() -> bool:
    torch.manual_seed(0)
    logits = torch.randn(4, 5, requires_grad=True)
    teacher = F.softmax(torch.randn(4, 5), dim=-1)
    ce = -(teacher * F.log_softmax(logits, -1)).sum(-1).mean()
    g_ce, = torch.autograd.grad(ce, logits)
    kl = F.kl_div(F.log_softmax(logits, -1), teacher, reduction="batchmean")
    g_kl, = torch.autograd.grad(kl, logits)
    return torch.allclose(g_ce, g_kl, atol=1e-6)


def _seed_002_header_is_valid_python() -> bool:
    code = ("def select_compression_technique(model, device, performance Requirements):\n"
            "    return 'Pruning'\n")
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def _zeroed_weights_stay_zero() -> bool:
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 4)
    with torch.no_grad():
        layer.weight[:, :4] = 0
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        layer(torch.randn(16, 8)).pow(2).sum().backward()
        opt.step()
    return bool((layer.weight[:, :4] == 0).all())


def _global_pruning_same_fraction_per_layer() -> bool:
    import torch.nn.utils.prune as prune
    torch.manual_seed(0)
    a, b = torch.nn.Linear(20, 20), torch.nn.Linear(20, 20)
    with torch.no_grad():
        b.weight.mul_(10)          # layers with different weight scales
    prune.global_unstructured([(a, "weight"), (b, "weight")], prune.L1Unstructured, amount=0.5)
    frac_a = (a.weight_mask == 0).float().mean().item()
    frac_b = (b.weight_mask == 0).float().mean().item()
    return abs(frac_a - frac_b) < 1e-9


DECIDE = {
    "kd-ce-equals-kl-gradient": _ce_and_kl_have_same_gradient,
    "choose-code": _seed_002_header_is_valid_python,
    "prune-masked-finetune": _zeroed_weights_stay_zero,
    "fu-global-vs-layerwise": _global_pruning_same_fraction_per_layer,
}


@pytest.mark.parametrize("item_id", sorted(DECIDE))
def test_true_false_answer_matches_computation(bank, item_id):
    item = next(it for it in bank.items if it.id == item_id)
    assert item.tf["answer"] is DECIDE[item_id]()


# ───────────────────────────── the runner ─────────────────────────────

class AnswerBot(io.TextIOBase):
    """Standard input that answers what the runner just asked, by reading its output so far.

    ``policy(kind, item, shown)`` returns the line to type, or None for end of input; ``kind`` is one of
    topic, mc, numeric, tf, open, rate; ``shown`` maps letters to option texts for mc.
    """

    def __init__(self, out: io.StringIO, bank: Bank, policy, limit: int = 500):
        self.out, self.bank, self.policy, self.limit = out, bank, policy, limit
        self.by_id = {it.id: it for it in bank.items}
        self.typed: list[str] = []
        self.pending: list[str] = []

    def readline(self, size: int = -1) -> str:
        if len(self.typed) >= self.limit:
            return ""
        text = self.out.getvalue()
        last_line = text.rsplit("\n", 1)[-1]
        headers = re.findall(r"^\[\d+/\d+\] .* · ([a-z0-9-]+) \(", text, flags=re.M)
        item = self.by_id[headers[-1]] if headers else None
        block = text[text.rfind("\n[") + 1:] if headers else ""
        shown = dict(re.findall(r"^  ([a-h])\) (.*)$", block, flags=re.M))
        if self.pending:  # the rest of a multi-line answer (code)
            line = self.pending.pop(0)
            self.typed.append(line)
            return line + "\n"
        kinds = [("Press Enter to start", "start"), ("按回车开始", "start"), ("... ", "code"),
                 ("Pick a topic", "topic"), ("选择主题", "topic"), ("a/b", "mc"), ("a number", "numeric"),
                 ("一个数", "numeric"), ("t = true", "tf"), ("t = 对", "tf"), ("Answer aloud", "open"),
                 ("口头作答", "open"), ("How did you do", "rate"), ("自评", "rate")]
        kind = next(k for marker, k in kinds if marker in last_line)
        if kind == "code":
            exercise = re.findall(r"^\[\d+/\d+\] kd.check · ([a-z_0-9]+)$", text, flags=re.M)[-1]
            answer = self.policy(kind, exercise, shown)
        else:
            answer = self.policy(kind, item, shown)
        if answer is None:
            return ""
        first, *self.pending = answer.split("\n")
        self.typed.append(first)
        return first + "\n"


def right_answer(kind, item, shown):
    if kind in ("topic", "start"):
        return ""
    if kind == "code":  # item is the exercise id: the course's solution, typed in
        from kdcore.hints import solution_source
        return solution_source(item) + "\nend"
    if kind == "mc":
        correct = item.mc["options"]["en"][item.mc["answer"]]
        zh = item.mc["options"]["zh"][item.mc["answer"]]
        return next(letter for letter, text in shown.items() if text in (correct, zh))
    if kind == "numeric":
        return repr(item.numeric["value"])
    if kind == "tf":
        return "t" if item.tf["answer"] else "f"
    if kind == "open":
        return "my spoken answer"
    return "3"


def wrong_answer(kind, item, shown):
    if kind == "mc":
        correct = item.mc["options"]["en"][item.mc["answer"]]
        return next(letter for letter, text in shown.items() if text != correct)
    if kind == "numeric":
        return repr(item.numeric["value"] + 10 * item.numeric["tolerance"] + 1)
    if kind == "tf":
        return "f" if item.tf["answer"] else "t"
    if kind == "rate":
        return "1"
    return right_answer(kind, item, shown)


def run_quiz(args, policy, bank, tmp_path, limit=500):
    out, err = io.StringIO(), io.StringIO()
    bot = AnswerBot(out, bank, policy, limit=limit)
    progress = tmp_path / "progress.json"
    rc = main([*args, "--progress-file", str(progress), "--seed", "0"], stdin=bot, stdout=out, stderr=err)
    data = json.loads(progress.read_text(encoding="utf-8")) if progress.exists() else None
    return rc, out.getvalue(), err.getvalue(), data, bot


def test_all_correct_answers_score_full_marks(bank, tmp_path):
    n = len(bank.items_in(["soft_targets"]))
    rc, out, err, data, _ = run_quiz(["--topic", "soft_targets", "--count", "50"], right_answer, bank, tmp_path)
    assert rc == 0 and err == ""
    assert f"{n}/{n} auto-scored answers correct" in out
    assert out.count("✓ Correct.") == n
    assert set(data["items"]) == {it.id for it in bank.items_in(["soft_targets"])}
    assert all(r["seen"] == r["right"] == 1 and r["card"]["stability"] > 0 for r in data["items"].values())


def test_wrong_answers_are_shown_corrected_and_asked_again(bank, tmp_path):
    n = len(bank.items_in(["quantization"]))
    rc, out, err, data, _ = run_quiz(["--topic", "quantization", "--count", "50"], wrong_answer, bank, tmp_path)
    assert rc == 0
    first, again = out.split("Once more, the ones you missed:")
    assert first.count("✗ Not quite") == n
    assert len(re.findall(r"^\[\d+/\d+\] ", again, flags=re.M)) == n   # each missed item asked again
    assert "Correction of seed 004-Q15:" in out           # the correction is shown with the answer
    assert all(r["seen"] == 2 and r["right"] == 0 and r["last"] == "wrong" for r in data["items"].values())
    # next time (after FSRS's 10-minute relearning step), the missed items come first
    progress = Progress(tmp_path / "p.json", {k: Progress.load(tmp_path / "progress.json")[0].records[k]
                                              for k in data["items"]})
    ids = [it.id for it in bank.items]
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    assert set(progress.order(ids, now=later)[:n]) == set(data["items"])


def test_garbage_gets_a_clear_message_then_the_answer_counts(bank, tmp_path):
    answered: set[str] = set()

    def garbage_then_right(kind, item, shown):
        if kind in ("mc", "numeric", "tf") and item.id not in answered:
            answered.add(item.id)
            return "banana"
        return right_answer(kind, item, shown)

    n = len(bank.items_in(["measuring"]))
    rc, out, _, data, _ = run_quiz(["--topic", "measuring", "--count", "50"], garbage_then_right, bank, tmp_path)
    assert rc == 0
    assert f"{n}/{n} auto-scored answers correct" in out
    assert "Please type one letter from a to" in out
    assert "'banana' is not a number" in out
    assert "Please type t (true) or f (false)" in out


def test_persistent_garbage_skips_without_touching_progress(bank, tmp_path):
    rc, out, _, data, _ = run_quiz(["--topic", "soft_targets", "--count", "2"],
                                   lambda k, i, s: "" if k == "topic" else "???", bank, tmp_path)
    assert rc == 0
    assert out.count("No valid answer after 3 tries") == 2
    assert "2 skipped" in out
    assert data is None                                   # nothing answered, nothing written


def test_end_of_input_stops_cleanly_and_keeps_answers(bank, tmp_path):
    rc, out, err, data, bot = run_quiz(["--topic", "pruning", "--count", "5"], right_answer, bank, tmp_path,
                                       limit=2)
    assert rc == 0 and err == ""
    assert "End of input: stopping." in out
    assert len(data["items"]) == 2                        # both answers before the end were saved


def test_quit_keeps_saved_progress(bank, tmp_path):
    count = {"n": 0}

    def answer_then_quit(kind, item, shown):
        count["n"] += 1
        return "q" if count["n"] > 2 else right_answer(kind, item, shown)

    rc, out, _, data, _ = run_quiz(["--topic", "pruning", "--count", "5"], answer_then_quit, bank, tmp_path)
    assert rc == 0 and "Stopping." in out
    assert len(data["items"]) == 2


def test_interactive_topic_menu_and_unknown_topic(bank, tmp_path):
    rc, out, _, data, _ = run_quiz(["--count", "1"],
                                   lambda k, i, s: "quantization" if k == "topic" else right_answer(k, i, s),
                                   bank, tmp_path)
    assert rc == 0 and list(data["items"])[0] in {it.id for it in bank.items_in(["quantization"])}
    rc, out, err, _, _ = run_quiz(["--count", "1"], lambda k, i, s: "99", bank, tmp_path)
    assert rc == 2
    assert "Unknown topic '99'" in out and "no valid topic chosen" in err


def test_unknown_topic_on_the_command_line(bank, tmp_path):
    rc, out, err, data, _ = run_quiz(["--topic", "distilation"], right_answer, bank, tmp_path)
    assert rc == 2 and data is None
    assert "unknown topic 'distilation'" in err and "soft_targets" in err


@pytest.mark.parametrize("bad", [["--count", "0"], ["--count", "ten"], ["--lang", "fr"], ["--minutes", "-1"]])
def test_bad_options_give_usage_errors(bad, capsys):
    assert main(bad, stdin=io.StringIO(""), stdout=io.StringIO(), stderr=io.StringIO()) == 2
    assert "error" in capsys.readouterr().err


def test_corrupt_progress_file_is_kept_aside_not_lost(bank, tmp_path):
    progress = tmp_path / "progress.json"
    progress.write_text("{ this is not json", encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    bot = AnswerBot(out, bank, right_answer)
    rc = main(["--topic", "soft_targets", "--count", "1", "--progress-file", str(progress)], stdin=bot, stdout=out,
              stderr=err)
    assert rc == 0
    backups = list(tmp_path.glob("progress.json.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_text(encoding="utf-8") == "{ this is not json"
    assert "was not valid" in err.getvalue() and str(backups[0]) in err.getvalue()
    assert len(json.loads(progress.read_text(encoding="utf-8"))["items"]) == 1


def test_progress_file_with_wrong_structure_is_treated_as_corrupt(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"items": {"x": {"box": 99}}}), encoding="utf-8")
    progress, warning = Progress.load(path)
    assert progress.records == {} and "not valid" in warning
    assert not path.exists() and list(tmp_path.glob("p.json.corrupt-*"))


def test_unreadable_progress_path_is_a_clear_error(tmp_path):
    with pytest.raises(ProgressError, match="cannot read progress file"):
        Progress.load(tmp_path)                           # a directory, not a file


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "p.json"
    progress = Progress(path)
    progress.record("a", "right")
    progress.save()
    before = path.read_text(encoding="utf-8")
    progress.record("b", "wrong")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        progress.save()
    assert path.read_text(encoding="utf-8") == before     # old progress intact
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]  # no temporary file left behind


def test_progress_keeps_records_of_items_no_longer_in_the_bank(bank, tmp_path):
    path = tmp_path / "progress.json"
    path.write_text(json.dumps({"version": 1, "items": {"retired-item": {"box": 3, "due": "", "seen": 4,
                                                                         "right": 3, "last": "right"}}}))
    rc, _, _, data, _ = run_quiz(["--topic", "soft_targets", "--count", "1"], right_answer, bank, tmp_path)
    assert rc == 0 and data["items"]["retired-item"]["leitner"]["box"] == 3   # migrated, nothing lost
    assert data["items"]["retired-item"]["seen"] == 4 and data["items"]["retired-item"]["right"] == 3


def test_default_progress_path_is_outside_the_repository(tmp_path):
    assert default_progress_path({"KDCORE_QUIZ_HOME": str(tmp_path)}) == tmp_path / "progress.json"
    assert default_progress_path({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "kdcore" / "quiz_progress.json"
    home = default_progress_path({})
    assert ROOT not in home.parents and home.name == "quiz_progress.json"


def test_spaced_repetition_schedule():
    """FSRS: each right answer pushes the next review further out, a miss brings it back within minutes, and the
    items least likely to be recalled come first."""
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    p = Progress(Path("unused.json"))
    intervals = []
    t = now
    for _ in range(5):
        rec = p.record("a", "right", t)
        intervals.append(rec.due - t)
        t = rec.due
    assert intervals == sorted(intervals) and intervals[-1] > timedelta(days=20) > intervals[0]
    rec = p.record("a", "wrong", t)
    assert rec.due - t <= timedelta(minutes=10) and rec.last == "wrong" and rec.seen == 6 and rec.right == 5
    assert [r[1] for r in rec.reviews] == [3, 3, 3, 3, 3, 1]   # FSRS ratings: Good ×5, Again
    p.record("b", "right", t)
    p.record("c", "partial", t)
    assert p.order(["b", "new", "c", "a"], now=t)[0] == "new"      # nothing due yet: the new item first
    later = t + timedelta(hours=1)                                 # all three due: least recallable first
    order = p.order(["b", "new", "c", "a"], now=later)
    assert order[-1] == "new"
    assert [p.retrievability(i, later) for i in order[:3]] == sorted(p.retrievability(i, later) for i in order[:3])
    with pytest.raises(ValueError, match="outcome"):
        p.record("a", "maybe", now)


def test_chinese_session(bank, tmp_path):
    rc, out, _, _, _ = run_quiz(["--topic", "kd_core", "--count", "2", "--lang", "zh"], right_answer, bank,
                                tmp_path)
    assert rc == 0 and "✓ 正确。" in out and "参考答案：" in out
    assert any(it.question["zh"] in out for it in bank.items_in(["kd_core"]))


def test_mock_interview_mixes_topics_and_self_rates(bank, tmp_path):
    rc, out, _, data, _ = run_quiz(["--mock", "--count", "5", "--minutes", "12"], right_answer, bank, tmp_path)
    assert rc == 0
    assert "self-rated: 4 got it" in out and "Mock interview time:" in out
    topics = {next(it.topic for it in bank.items if it.id == iid) for iid in data["items"]}
    assert len(topics) == 4
    assert out.count("budget 2:00") == 4 and out.count("budget 4:00") == 1   # 4 spoken + 1 coding = 6 slots
    assert "kd.check: 100% of the cases passed." in out and "Score: 5/5 (100%)" in out


def test_mock_interview_reports_overtime(bank, tmp_path):
    ticks = iter([0.0, 200.0, 200.0, 200.0])
    out = io.StringIO()
    item = next(it for it in bank.items if it.id == "kd-temperature")
    session = Session(bank, Progress(tmp_path / "p.json"), inp=io.StringIO("said it\n2\n"), out=out, mock=True,
                      seconds_per_question=60, clock=lambda: next(ticks))
    assert session.run([item]) == 0
    assert "Time: 3:20, over the 1:00 budget." in out.getvalue()
    assert Progress.load(tmp_path / "p.json")[0].records["kd-temperature"].last == "partial"


def test_forms_rotate_with_each_visit(bank, tmp_path):
    """An item with mc and numeric forms is asked as mc, then numeric, then open, then mc again."""
    item = next(it for it in bank.items if it.id == "kd-temperature")
    assert item.forms == ("mc", "numeric")
    progress = Progress(tmp_path / "p.json")
    session = Session(bank, progress, inp=io.StringIO(), out=io.StringIO())
    seen = []
    for _ in range(4):
        seen.append(session.pick_form(item))
        progress.record(item.id, "right")
    assert seen == ["mc", "numeric", "open", "mc"]


@settings(max_examples=50, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12))
def test_parse_number_reads_what_python_prints(x):
    assert parse_number(repr(x)) == x
    assert parse_number(f"{x * 100!r}%") == pytest.approx(x, rel=1e-12, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="abcxyz!?;", min_size=1, max_size=8))
def test_parse_number_rejects_words(text):
    assert parse_number(text) is None


def test_parse_number_accepts_human_formats():
    assert parse_number("884,736") == 884736
    assert parse_number(" 50% ") == 0.5
    assert parse_number("１２") == 12
    assert parse_number("nan") is None and parse_number("inf") is None and parse_number("") is None


# ───────────────────────────── export ─────────────────────────────

class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.text, self.ids = [], []

    def handle_starttag(self, tag, attrs):
        self.ids += [v for k, v in attrs if k == "id"]

    def handle_data(self, data):
        self.text.append(data)


def test_export_with_answers_contains_every_item_and_correction(bank):
    md = to_markdown(bank, list(bank.items), lang="both", answers=True)
    page = to_html(bank, list(bank.items), lang="both", answers=True)
    parsed = _Collect()
    parsed.feed(page)
    text = "".join(parsed.text)
    assert set(parsed.ids) == {it.id for it in bank.items}
    for it in bank.items:
        assert it.question["en"] in md and it.question["zh"] in md
        assert it.answer["zh"] in text
        if it.correction:
            assert it.correction["en"] in md and it.correction["en"] in text


def test_export_without_answers_is_a_handout(bank):
    md = to_markdown(bank, list(bank.items), lang="en", answers=False)
    page = to_html(bank, list(bank.items), lang="zh", answers=False)
    for it in bank.items:
        assert it.question["en"] in md
        assert it.answer["en"] not in md and it.answer["zh"] not in page
        if it.correction:
            assert it.correction["en"] not in md
    assert "Model answer" not in md and "参考答案" not in page
    assert "<script" not in page


def test_export_via_command_line(tmp_path, bank):
    target = tmp_path / "handout.html"
    out = io.StringIO()
    assert main(["--export", "html", "--no-answers", "--topic", "soft_targets", "-o", str(target)],
                stdout=out, stderr=io.StringIO()) == 0
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<section") == len(bank.items_in(["soft_targets"]))
    out = io.StringIO()
    assert main(["--export", "md", "--lang", "zh"], stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue().startswith("# 模型压缩面试题")


def test_runs_from_any_folder_without_importing_torch(tmp_path):
    env = {**os.environ, "KDCORE_QUIZ_HOME": str(tmp_path)}
    probe = subprocess.run([sys.executable, "-c",
                            "import sys, quiz.cli, quiz.session, quiz.export, quiz.progress; "
                            "print('torch' in sys.modules)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and probe.stdout.strip() == "False"
    listing = subprocess.run([sys.executable, "-m", "quiz", "--list-topics"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and "soft_targets" in listing.stdout
    session = subprocess.run([sys.executable, "-m", "quiz", "--topic", "kd_core", "--count", "1"],
                             cwd=tmp_path, env=env, input="", capture_output=True, text=True, timeout=60)
    assert session.returncode == 0 and "End of input" in session.stdout


def test_follow_up_filter_and_open_mode(bank, tmp_path):
    rc, out, _, data, _ = run_quiz(["--topic", "soft_targets", "--followups", "only", "--open", "--count", "50"],
                                   right_answer, bank, tmp_path)
    followups = {it.id for it in bank.items_in(["soft_targets"]) if it.followup}
    assert rc == 0 and set(data["items"]) == followups
    assert out.count("Answer aloud") == len(followups) and "✓ Correct." not in out
    assert f"self-rated: {len(followups)} got it" in out


def test_failed_save_stops_the_session_with_a_clear_message(bank, tmp_path, monkeypatch):
    def disk_full(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Progress, "save", disk_full)
    rc, out, _, data, _ = run_quiz(["--topic", "soft_targets", "--count", "3"], right_answer, bank, tmp_path)
    assert rc == 1 and data is None
    assert "Could not save progress" in out and "No space left on device" in out
    assert out.count("[1/3]") == 1 and "[2/3]" not in out


def _course_reference_values() -> dict[str, float]:
    """The same numbers from the course's reference library (docs/EXERCISES.md), as a cross-check that the
    quiz and the notebooks teach the same values."""
    from kdcore import distill, measure, prune, quantize
    q, scale, zero_point = quantize.quantize_affine(torch.tensor([-1.0, 3.0]), bits=8, symmetric=False)
    return {
        "kd-seed-loss-ce": float(distill.soft_cross_entropy(TEACHER, STUDENT)),
        "kd-seed-loss-kl": float(distill.kl_divergence(TEACHER, STUDENT)),
        "kd-temperature": float(distill.softmax_t(torch.tensor([[2.0, 1.0, 0.0]]), T=4.0)[0, 0]),
        "fu-prune-count-rounding": float((~prune.magnitude_mask(torch.arange(1.0, 11.0), 0.25)).sum()),
        "prune-gradual-schedule": float(prune.sparsity_schedule(500, 0.0, 0.9, 0, 10, 100)),
        "measure-compressed": float(measure.conv2d_flops(3, 16, 3, 32)),
        "quant-scale": float(scale),
        "quant-zero-point": float(zero_point),
        "choose-methods": float(quantize.separable_params(64, 128, 3)[1]),
    }


def test_numeric_answers_agree_with_the_course_library(bank):
    values = _course_reference_values()
    for item_id, value in values.items():
        item = next(it for it in bank.items if it.id == item_id)
        assert abs(item.numeric["value"] - value) <= item.numeric["tolerance"] / 2, (item_id, value)
