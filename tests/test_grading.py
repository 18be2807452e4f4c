"""Tests of the grader (kdcore.checking): references pass, every catalogued wrong variant fails with its own
hint, every correct alternative passes, observations survive a process boundary, and a candidate cannot
make the judge pass by patching kdcore."""
from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

import kdcore.distill
from kdcore.checking import (CORRECT, EXERCISES, REFERENCES, VARIANTS, CheckResult, ExerciseFailed, check, judge,
                            run_candidate)
from kdcore.checking import core

ROOT = Path(__file__).resolve().parents[1]
IDS = sorted(EXERCISES)
WRONG = [(eid, v) for eid in IDS for v in VARIANTS[eid]]
RIGHT = [(eid, v) for eid in IDS for v in CORRECT[eid]]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _ids_in_contract() -> set[str]:
    text = (ROOT / "docs" / "EXERCISES.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| ([a-z0-9_]+) \| \d\d \|", text, flags=re.M))


def _grade(eid, fn) -> CheckResult:
    if fn is REFERENCES[eid]:  # check() gives the reference itself no credit (uses-reference): judge it directly
        return judge(eid, run_candidate(eid, fn, case_timeout=EXERCISES[eid].timeout))
    return check(eid, fn, raise_on_fail=False, verbose=False)


def test_every_contract_id_is_registered_with_a_reference_and_a_catalogue():
    contract = _ids_in_contract()
    assert len(contract) >= 22
    assert contract == set(EXERCISES)
    for eid in contract:
        assert REFERENCES[eid] is not None, eid
        assert len(VARIANTS[eid]) >= 4, eid
        assert CORRECT[eid], eid
        assert len(EXERCISES[eid].cases) >= 4, eid
        assert len({c.name for c in EXERCISES[eid].cases}) == len(EXERCISES[eid].cases), eid


@pytest.mark.parametrize("eid", IDS)
def test_reference_passes_with_full_score(eid):
    result = _grade(eid, REFERENCES[eid])
    assert result.passed, result.feedback
    assert result.score == 1.0
    assert all(c.passed for c in result.cases)


@pytest.mark.parametrize("eid,variant", WRONG, ids=[f"{e}:{v.name}" for e, v in WRONG])
def test_wrong_variant_fails_and_gets_its_hint(eid, variant):
    result = _grade(eid, variant.fn)
    assert not result.passed
    assert 0.0 <= result.score < 1.0
    assert variant.hint in result.feedback, result.feedback


@pytest.mark.parametrize("eid,variant", RIGHT, ids=[f"{e}:{v.name}" for e, v in RIGHT])
def test_correct_alternative_passes(eid, variant):
    result = _grade(eid, variant.fn)
    assert result.passed, result.feedback


@pytest.mark.parametrize("eid", IDS)
def test_not_implemented_gives_the_not_implemented_hint_and_raises(eid):
    def stub(*args, **kwargs):
        raise NotImplementedError("write your solution here")

    with pytest.raises(AssertionError) as info:
        check(eid, stub, verbose=False)
    assert isinstance(info.value, ExerciseFailed)
    result = info.value.result
    assert result.score == 0.0
    assert all(c.hint == core.NOT_IMPLEMENTED_HINT for c in result.cases)
    assert result.feedback.startswith(f"{eid}: {core.NOT_IMPLEMENTED_HINT}")
    short = info.value._render_traceback_()
    assert isinstance(short, list) and len(short) == 1 and eid in short[0]


@pytest.mark.parametrize("eid", IDS)
def test_observations_round_trip_through_torch_save(eid):
    for fn in (REFERENCES[eid], VARIANTS[eid][0].fn):
        observations = run_candidate(eid, fn)
        assert len(observations) == len(EXERCISES[eid].cases)
        buffer = io.BytesIO()
        torch.save(observations, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=True)
        direct, via_disk = judge(eid, observations), judge(eid, loaded)
        assert (direct.passed, direct.score, direct.feedback) == (via_disk.passed, via_disk.score, via_disk.feedback)


def test_check_summarises_a_pass_in_one_line_and_returns_the_result(capsys):
    result = check("kd_loss", CORRECT["kd_loss"][0].fn)
    out = capsys.readouterr().out.splitlines()
    assert out == [f"kd_loss: all {len(EXERCISES['kd_loss'].cases)} cases passed — well done!"]
    assert isinstance(result, CheckResult) and result.exercise_id == "kd_loss"


def test_failure_report_names_the_case_and_the_misconception(capsys):
    def no_t_squared(student_logits, teacher_logits, labels, T=4.0, alpha=0.9):
        soft = torch.nn.functional.kl_div(torch.log_softmax(student_logits / T, -1),
                                          torch.softmax(teacher_logits.detach() / T, -1), reduction="batchmean")
        return alpha * soft + (1 - alpha) * torch.nn.functional.cross_entropy(student_logits, labels)

    with pytest.raises(ExerciseFailed):
        check("kd_loss", no_t_squared)
    out = capsys.readouterr().out
    assert "✗ n=8, c=10, T=2, alpha=0.5" in out
    assert "passed: n=8, c=10, T=1, alpha=0.3" in out  # T = 1: T² changes nothing, so this case passes
    assert "did you forget to multiply the soft term by T**2?" in out


def test_unknown_id_and_non_callable():
    with pytest.raises(ValueError, match="known ids: .*kd_loss"):
        check("kd_los", lambda: None)
    with pytest.raises(TypeError, match="callable"):
        check("kd_loss", 3.0)
    with pytest.raises(ValueError):
        run_candidate("nope", print)


def test_generic_hints_when_no_variant_matches():
    def nan_loss(student_logits, teacher_logits, labels, T=4.0, alpha=0.9):
        return student_logits.sum() * float("nan")

    result = _grade("kd_loss", nan_loss)
    assert not result.passed and core.FINITE_HINT in result.feedback

    def mutating_softmax(logits, T=1.0):
        if T <= 0:
            raise ValueError("T must be > 0")
        logits.mul_(2.0)
        return torch.softmax(logits / (2.0 * T), dim=-1)

    result = _grade("softmax_t", mutating_softmax)
    assert not result.passed and core.MUTATION_HINT in result.feedback
    assert "raises on shape=[2, 3], T=0" in result.feedback.splitlines()[-1]  # the passed cases' line


def test_time_limit_per_case_reports_a_failed_case():
    def slow(c_in, c_out, k):
        time.sleep(1.0)
        return c_in * c_out * k * k, c_in * k * k + c_in * c_out

    observations = run_candidate("separable_params", slow, case_timeout=0.05)
    assert all(o["error_type"] == "TimeoutError" for o in observations)
    result = judge("separable_params", observations)
    assert result.score == 0.0 and "too slow" in result.feedback


def test_patching_kdcore_inside_the_candidate_cannot_fool_the_judge(monkeypatch):
    """The candidate re-binds kdcore.distill.kd_loss to itself while it runs, so that a judge that looked the
    reference up again would compare the candidate with itself. The judge uses REFERENCES, captured when
    kdcore.checking was imported, so the wrong answer is still caught."""
    original = kdcore.distill.kd_loss

    def cheat(student_logits, teacher_logits, labels, T=4.0, alpha=0.9):
        kdcore.distill.kd_loss = cheat
        return (student_logits * 0).sum()

    monkeypatch.setattr(kdcore.distill, "kd_loss", original)  # restored by monkeypatch afterwards
    observations = run_candidate("kd_loss", cheat)
    assert kdcore.distill.kd_loss is cheat  # the patch happened...
    result = judge("kd_loss", observations)
    assert not result.passed and result.score == 0.0  # ...and changed nothing
    assert REFERENCES["kd_loss"] is original


def test_judge_in_a_separate_process_matches(tmp_path):
    """run_candidate here, judge in a fresh interpreter (how the batch grader uses the two halves)."""
    wrong = next(v for v in VARIANTS["separable_params"] if v.name == "k instead of k²")
    path = tmp_path / "obs.pt"
    torch.save(run_candidate("separable_params", wrong.fn), path)
    code = ("import sys, torch; from kdcore.checking import judge; "
            "r = judge('separable_params', torch.load(sys.argv[1], weights_only=True)); "
            "print(r.passed, r.score); print(r.feedback)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    passed, score = done.stdout.split("\n")[0].split()
    direct = judge("separable_params", run_candidate("separable_params", wrong.fn))
    assert passed == "False" and float(score) == pytest.approx(direct.score) and direct.score < 1
    assert wrong.hint in done.stdout


def test_seed_001_example_values():
    """The contract's numbers for seed 001's example: CE = 0.7593, KL = 0.1203 (nats)."""
    kl_case, ce_case = EXERCISES["kl_divergence"].cases[0], EXERCISES["soft_cross_entropy"].cases[0]
    assert kl_case.observe(REFERENCES["kl_divergence"])["out"].item() == pytest.approx(0.1203, abs=5e-5)
    assert ce_case.observe(REFERENCES["soft_cross_entropy"])["out"].item() == pytest.approx(0.7593, abs=5e-5)


def test_conv2d_flops_cases_agree_with_flop_counter_mode():
    """The grader's independent closed form (a correct alternative) against PyTorch's own FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode
    closed_form = CORRECT["conv2d_flops"][0].fn
    for c_in, c_out, k, hw, groups in [(3, 8, 3, 8, 1), (8, 8, (3, 5), (4, 6), 2), (16, 16, 3, 10, 16)]:
        kh, kw = (k, k) if isinstance(k, int) else k
        h, w = (hw, hw) if isinstance(hw, int) else hw
        conv = torch.nn.Conv2d(c_in, c_out, (kh, kw), groups=groups)
        with FlopCounterMode(display=False) as counter:
            conv(torch.zeros(1, c_in, h + kh - 1, w + kw - 1))
        assert counter.get_total_flops() == closed_form(c_in, c_out, k, hw, groups=groups)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=8),
       st.floats(-0.5, 0.5, allow_nan=False))
def test_compare_values_tolerance(values, delta):
    """Within rtol the comparison passes; a relative change well beyond rtol (and atol) fails."""
    ref = torch.tensor(values, dtype=torch.float32)
    cand = ref * (1 + delta)
    failure = core.compare_values(cand, ref, rtol=1e-4, atol=1e-6)
    change = (cand.double() - ref.double()).abs()
    if bool((change <= 1e-6 + 1e-4 * ref.double().abs()).all()):
        assert failure is None
    else:
        assert failure is not None


@settings(max_examples=25, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=6))
def test_plain_values_survive_weights_only_load(value):
    buffer = io.BytesIO()
    torch.save(core.plain(value), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == core.plain(value)


def test_plain_turns_unknown_objects_into_descriptions():
    obs = core.plain({"m": torch.nn.Linear(2, 2), "t": (torch.ones(2), 3)})
    assert obs["m"]["__type__"] == "Linear" and isinstance(obs["t"], list)
    buffer = io.BytesIO()
    torch.save(obs, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)
