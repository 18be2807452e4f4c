"""What a learner reads after ``kd.check``: the report's shape, report-or-raise, the hint in the exception, kd.hint.

The report-or-raise decision is tested three ways: the rule itself (environment x kernel), a real kernel started
the way a Jupyter server starts one for an open notebook (``JPY_SESSION_NAME``) versus the way nbclient/nbval start
one, and (in tests/test_browser.py) JupyterLab itself.
"""
from __future__ import annotations

import re

import nbformat
import pytest
import torch

import kdcore as kd
from kdcore.checking import CORRECT, EXERCISES, REFERENCES, VARIANTS, CheckResult, ExerciseFailed, check, judge, run_candidate
from kdcore.checking import core
from kdcore.hints import hint_text, solution_source

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _no_t_squared(student_logits, teacher_logits, labels, T=4.0, alpha=0.9):
    soft = torch.nn.functional.kl_div(torch.log_softmax(student_logits / T, -1),
                                      torch.softmax(teacher_logits.detach() / T, -1), reduction="batchmean")
    return alpha * soft + (1 - alpha) * torch.nn.functional.cross_entropy(student_logits, labels)


def _failed(result: CheckResult) -> list:
    return [c for c in result.cases if not c.passed]


# --- the report -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eid,variant", [(e, v) for e in ("kd_loss", "magnitude_mask", "softmax_t")
                                         for v in VARIANTS[e]], ids=lambda x: getattr(x, "name", x))
def test_each_hint_once_one_line_per_failed_case_passes_in_one_line(eid, variant):
    result = judge(eid, run_candidate(eid, variant.fn))
    lines = result.feedback.splitlines()
    failed = _failed(result)
    assert not result.passed and lines[0] == f"{eid}: {len(result.cases) - len(failed)}/{len(result.cases)} cases passed"
    hints = [line.strip()[len("hint: "):] for line in lines if line.strip().startswith("hint:")]
    assert len(hints) == len(set(hints)) == len({c.hint for c in failed if c.hint})  # each distinct hint once
    assert "as above" not in result.feedback
    assert sum(line.lstrip().startswith("✗ ") for line in lines) == len(failed)  # one line per failed case
    passed_lines = [line for line in lines if line.lstrip().startswith("✓")]
    assert len(passed_lines) == (1 if len(failed) < len(result.cases) else 0)
    # the hint comes before the cases it explains: the line after the header is a hint when any case has one
    if hints:
        assert lines[1].strip().startswith("hint:")
    for case in failed:  # every failed case sits under its own hint
        at = next(i for i, line in enumerate(lines) if line.strip().startswith(f"✗ {case.name}"))
        above = [line.strip() for line in lines[1:at] if line.strip().startswith("hint:")]
        if case.hint:
            assert above and above[-1] == f"hint: {case.hint}"


def test_a_pass_is_one_line_and_no_repr_is_echoed(capsys):
    result = check("kd_loss", CORRECT["kd_loss"][0].fn)
    assert capsys.readouterr().out == f"kd_loss: all {len(EXERCISES['kd_loss'].cases)} cases passed — well done!\n"
    assert result.shown
    result._ipython_display_()            # what a notebook does with a cell's last value: nothing more
    assert capsys.readouterr().out == ""
    quiet = check("kd_loss", CORRECT["kd_loss"][0].fn, verbose=False)
    quiet._ipython_display_()             # a result not shown yet prints its report when displayed
    assert f"all {len(EXERCISES['kd_loss'].cases)} cases passed" in ANSI.sub("", capsys.readouterr().out)


def test_the_exception_carries_the_report_with_the_hint():
    with pytest.raises(ExerciseFailed) as info:
        check("kd_loss", _no_t_squared, verbose=False)
    text = str(info.value)
    assert "did you forget to multiply the soft term by T**2?" in text
    traceback = ANSI.sub("", "\n".join(info.value._render_traceback_()))  # what IPython, nbval and nbgrader show
    assert traceback.startswith("ExerciseFailed: kd_loss: 2/12 cases passed")
    assert "hint: off by a factor of T²" in traceback.splitlines()[1]


# --- report or raise ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("env,kernel,session,mode", [
    ("raise", True, True, "raise"), ("report", False, False, "report"), (" Report ", False, False, "report"),
    (None, True, True, "report"),      # JupyterLab: a kernel the server started for an open notebook
    (None, True, False, "raise"),      # nbclient, nbval, nbgrader: a kernel without a notebook session
    (None, False, True, "raise"),      # a subprocess started from a notebook cell (e.g. !python script.py)
    (None, False, False, "raise"),     # plain Python, pytest
])
def test_failure_mode_rule(monkeypatch, env, kernel, session, mode):
    monkeypatch.delenv("KDCORE_CHECK", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    if env is not None:
        monkeypatch.setenv("KDCORE_CHECK", env)
    if session:
        monkeypatch.setenv("JPY_SESSION_NAME", "/course/notebooks/02_kd_loss.ipynb")
    monkeypatch.setattr(core, "_in_ipython_kernel", lambda: kernel)
    assert core.failure_mode() == mode


def test_bad_mode_names_the_variable_and_the_values(monkeypatch):
    monkeypatch.setenv("KDCORE_CHECK", "loud")
    with pytest.raises(ValueError, match="KDCORE_CHECK must be 'raise' or 'report'.*'loud'"):
        check("kd_loss", _no_t_squared)


def test_report_mode_returns_the_failed_result(monkeypatch, capsys):
    monkeypatch.setenv("KDCORE_CHECK", "report")
    result = check("kd_loss", _no_t_squared)
    assert not result.passed and result.score == pytest.approx(2 / 12)
    assert "hint: off by a factor of T²" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed):  # an explicit argument wins over the environment
        check("kd_loss", _no_t_squared, raise_on_fail=True, verbose=False)


NOTEBOOK = [
    "import kdcore as kd\n\ndef kd_loss(student_logits, teacher_logits, labels, T=4.0, alpha=0.9):\n"
    "    raise NotImplementedError('Your code here')",
    'kd.check("kd_loss", kd_loss)',
    "def separable_params(c_in, c_out, k):\n"
    "    if min(c_in, c_out, k) < 1:\n        raise ValueError('c_in, c_out and k must be >= 1')\n"
    "    return c_in * c_out * k * k, c_in * k * k + c_in * c_out\n"
    'kd.check("separable_params", separable_params)',
    "after = 'ran'\nprint(after)",
]


def _run(env_session: bool, monkeypatch) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    monkeypatch.delenv("KDCORE_CHECK", raising=False)  # the rule decides, as for a learner
    if env_session:
        monkeypatch.setenv("JPY_SESSION_NAME", "/course/notebooks/02_kd_loss.ipynb")
    else:
        monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in NOTEBOOK])
    NotebookClient(nb, kernel_name="python3", timeout=300, allow_errors=env_session is False).execute()
    return nb


def test_a_kernel_of_an_open_notebook_reports_and_runs_on(monkeypatch):
    """Run All as JupyterLab does it (errors stop the run): every cell runs, the failure is on screen in red."""
    nb = _run(True, monkeypatch)
    failed, passed, last = nb.cells[1].outputs, nb.cells[2].outputs, nb.cells[3].outputs
    assert [o.output_type for o in failed] == ["stream"] and failed[0].name == "stderr"
    assert "\x1b[31m" in failed[0].text and "kd_loss: not implemented yet" in failed[0].text
    assert [o.output_type for o in passed] == ["stream"]            # the report only: no CheckResult(...) echo
    assert "separable_params: all" in passed[0].text
    assert last[0].text == "ran\n"


def test_a_batch_kernel_raises_with_the_report_as_traceback(monkeypatch):
    """nbclient (what nbval and nbgrader use): the check cell errors and its traceback is the report."""
    nb = _run(False, monkeypatch)
    errors = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "ExerciseFailed"
    assert "kd_loss: not implemented yet" in ANSI.sub("", "\n".join(errors[0].traceback))
    assert not [o for o in nb.cells[1].outputs if o.output_type == "stream"]  # not printed twice
    assert [o.output_type for o in nb.cells[2].outputs] == ["stream"]


# --- kd.hint ---------------------------------------------------------------------------------------------

def test_hints_go_from_the_cases_to_the_mistakes_to_the_solution(capsys, monkeypatch):
    from kdcore import hints

    monkeypatch.setattr(hints, "_shown", {})
    shown = []
    for _ in range(4):
        kd.hint("kd_loss")
        shown.append(capsys.readouterr().out)
    assert shown[0].startswith("Hint 1/3 for kd_loss") and all(c.name in shown[0] for c in EXERCISES["kd_loss"].cases)
    assert "forget to multiply the soft term by T**2" not in shown[0]
    assert shown[1].startswith("Hint 2/3") and all(v.hint in shown[1] for v in VARIANTS["kd_loss"])
    assert shown[2].startswith("Hint 3/3") and "def kd_loss(" in shown[2] and "return alpha * T**2" in shown[2]
    assert "BEGIN SOLUTION" not in shown[2]
    assert shown[3] == shown[2]  # the last hint stays the solution
    with pytest.raises(ValueError, match="level must be an integer from 1 to 3"):
        hint_text("kd_loss", 4)
    with pytest.raises(ValueError, match="unknown exercise_id"):
        kd.hint("kd_los")


@pytest.mark.parametrize("eid", sorted(EXERCISES))
def test_every_exercise_has_a_solution_to_show(eid):
    source = solution_source(eid)
    assert f"def {eid}(" in source and "### " not in source
