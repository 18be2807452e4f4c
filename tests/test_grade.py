"""``python -m kdcore.grade`` and the stages of :mod:`kdcore.classroom`, one by one.

The whole pipeline on a class of 40 submissions, attackers included, is ``test_classroom_class.py``; the
nbgrader round trip is ``test_classroom_nbgrader.py``.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
import torch

import kdcore
import kdcore.distill
from classroom_notebooks import EXERCISE_IDS, WRONG, correct_code, expected_score, notebook, unsolved_code, with_body
from kdcore import _notebook, grade
from kdcore.classroom import batch, cli, lms, report, runner, sandbox
from kdcore.classroom.discover import Submission, discover
from kdcore.classroom.gradebook import StudentRow
from kdcore.classroom.judge import ExerciseResult, Result
from kdcore.classroom.reference_use import ReferenceUnavailable, reference_use, watching
from kdcore.checking import VARIANTS, ExerciseFailed, check

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# --- command line -------------------------------------------------------------------------------------------

@pytest.fixture
def no_grading(monkeypatch):
    """Usage errors must stop the command before any submission is graded."""
    def fail(*args, **kwargs):
        raise AssertionError("grading started although the command line was invalid")
    monkeypatch.setattr(batch, "grade", fail)


@pytest.mark.parametrize("argv, message", [
    (["does/not/exist"], "does not exist"),
    (["{empty}"], "contains no *.ipynb"),
    (["{nb}", "--exercises", "softmax_t,no_such_exercise"], "unknown id(s) no_such_exercise"),
    (["{nb}", "--jobs", "0"], "--jobs"),
    (["{nb}", "--timeout", "-1"], "--timeout"),
    (["{nb}", "--memory-mb", "100"], "--memory-mb"),
    (["{readme}"], "is not a notebook"),
    (["{nb}", "--csv", "{empty}"], "--csv {empty} is a folder"),
    (["{nb}", "--feedback", "{readme}"], "--feedback {readme} exists and is not a folder"),
    (["{nb}", "--csv", "{readme}/grades.csv"], "is not a folder"),
    (["{nb}", "--csv", "{nb}"], "would overwrite a submission"),
    (["{nb}", "--report", "{tmp}/report.pdf"], "must end in .html or .md"),
    (["{nb}", "--lms", "canvas"], "give --csv FILE too"),
    (["{nb}", "--resume"], "--resume needs the journal"),
    (["{nb}", "--csv", "{tmp}/g.csv", "--resume"], "no journal at"),
])
def test_usage_errors_exit_2_before_grading(tmp_path, capsys, no_grading, argv, message):
    (tmp_path / "empty").mkdir()
    nbformat.write(notebook(correct_code()), tmp_path / "a.ipynb")
    (tmp_path / "README.md").write_text("hi")
    values = {"empty": tmp_path / "empty", "nb": tmp_path / "a.ipynb", "readme": tmp_path / "README.md",
              "tmp": tmp_path}
    with pytest.raises(SystemExit) as exit_info:
        cli.main([a.format(**values) for a in argv])
    assert exit_info.value.code == 2
    assert message.format(**values) in capsys.readouterr().err


def test_kdcore_grade_is_the_command():
    assert grade.main is cli.main
    run = subprocess.run([sys.executable, "-m", "kdcore.grade", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and "--no-sandbox" in run.stdout


def test_no_sandbox_help_states_the_risk():
    text = " ".join(cli.build_parser().format_help().split())
    assert "WITHOUT a sandbox" in text and "overwrite other submissions" in text


def test_without_a_sandbox_a_class_is_refused(tmp_path, capsys, monkeypatch, no_grading):
    monkeypatch.setattr(sandbox, "probe", lambda: sandbox.SandboxProbe(False, "bubblewrap (`bwrap`) is not "
                                                                              "installed", None))
    for name in ("alice", "bob"):
        nbformat.write(notebook(correct_code()), tmp_path / f"{name}.ipynb")
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(tmp_path)])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no sandbox: bubblewrap (`bwrap`) is not installed" in err
    assert "apt-get install bubblewrap" in err and "--no-sandbox" in err


def test_student_names(tmp_path):
    for relative in ["alice.ipynb", "bob/01_soft_labels.ipynb", "bob/extra/02_kd.ipynb",
                     "carol/.ipynb_checkpoints/x-checkpoint.ipynb", "carol/x.ipynb"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("{}")
    found = discover([tmp_path, tmp_path / "alice.ipynb"])
    assert [(s.student, s.path.name) for s in found] == [
        ("alice", "alice.ipynb"), ("bob", "01_soft_labels.ipynb"), ("bob", "02_kd.ipynb"), ("carol", "x.ipynb")]


def test_fast_path_filter():
    source = textwrap.dedent("""\
        import torch
        from torch import nn
        N, M = 3, 4
        EPS: float = 1e-8
        SIZES = (64, 2 ** 5, 10)
        model = nn.Linear(3, 4)
        losses = fit(model)
        kd.check("softmax_t", softmax_t)
        class Net(nn.Module):
            pass
        def f(x):
            return x
        for i in range(3):
            pass
        x.attr = 1
        """)
    kept, error = _notebook.definitions(source + "%timeit f(1)\n!ls\n")
    assert error is None
    assert [node.lineno for node in kept] == [1, 2, 3, 4, 5, 9, 11]
    _, error = _notebook.definitions("def f(:\n    pass")
    assert isinstance(error, SyntaxError)
    assert _notebook.definitions("%%bash\nrm -rf /\n") == ([], None)


# --- uses-reference -----------------------------------------------------------------------------------------

EVASIONS = textwrap.dedent("""\
    import functools, torch
    import kdcore as kd
    import kdcore.distill
    from kdcore.distill import softmax_t as imported

    def honest(logits, T=1.0):
        if T <= 0:
            raise ValueError("T must be > 0")
        return torch.softmax(logits / T, dim=-1)

    def builds_on_another_exercise(logits, T=1.0):
        return kd.softmax_t(logits, T).log().exp() if False else torch.softmax(logits / T, -1)

    def wrapper(logits, T=1.0):
        return kd.softmax_t(logits, T)

    def module_path(logits, T=1.0):
        return kdcore.distill.softmax_t(logits, T)

    def module_dict(logits, T=1.0):
        return kdcore.distill.__dict__["softmax_t"](logits, T)

    def via_vars(logits, T=1.0):
        return vars(kdcore.distill)["softmax_t"](logits, T)

    def helper(x, T):
        return imported(x, T)

    def through_a_helper(logits, T=1.0):
        return helper(logits, T)

    partial = functools.partial(kd.softmax_t)
    partial_of_a_helper = functools.partial(helper)

    class Callable:
        def __init__(self):
            self.fn = kd.softmax_t
        def __call__(self, logits, T=1.0):
            return self.fn(logits, T)

    callable_object = Callable()
    lambda_ = lambda logits, T=1.0: kd.softmax_t(logits, T)

    @functools.wraps(kd.softmax_t)
    def decorated(*args, **kwargs):
        return kd.softmax_t(*args, **kwargs)

    def default_argument(logits, T=1.0, _f=kd.softmax_t):
        return _f(logits, T)

    def computed_name(logits, T=1.0):
        return getattr(kd, "".join(["soft", "max", "_t"]))(logits, T)
    """)


@pytest.fixture(scope="module")
def evasions() -> dict:
    namespace: dict = {}
    exec(compile(EVASIONS, "<code cell 1>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("name", ["imported", "wrapper", "module_path", "module_dict", "via_vars",
                                  "through_a_helper", "partial", "partial_of_a_helper", "callable_object",
                                  "lambda_", "decorated", "default_argument"])
def test_reference_use_is_found_before_running(evasions, name):
    assert "kdcore.distill.softmax_t" in reference_use("softmax_t", evasions[name])


@pytest.mark.parametrize("name", ["honest", "builds_on_another_exercise"])
def test_an_own_implementation_is_not_reference_use(evasions, name):
    assert reference_use("softmax_t", evasions[name]) is None
    assert reference_use("kl_divergence", evasions["wrapper"]) is None  # another exercise's reference is fine


def test_a_computed_name_is_caught_while_running(evasions):
    fn = evasions["computed_name"]
    logits = torch.randn(2, 5)
    original = kdcore.distill.softmax_t.__code__
    with watching("softmax_t") as watch:
        assert torch.allclose(fn(logits, 2.0), torch.softmax(logits / 2, -1))  # "count": still works
    assert watch.called == {"softmax_t"} and kdcore.distill.softmax_t.__code__ is original
    with watching("softmax_t", deny=True) as watch, pytest.raises(ReferenceUnavailable):
        fn(logits, 2.0)
    with watching("softmax_t") as watch:
        evasions["honest"](logits, 2.0)
    assert watch.called == set() and kdcore.distill.softmax_t.__code__ is original


@pytest.mark.parametrize("name", ["imported", "computed_name", "callable_object"])
def test_check_in_the_notebook_says_uses_reference(evasions, name, capsys):
    with pytest.raises(ExerciseFailed) as info:
        check("softmax_t", evasions[name])
    assert info.value.result.score == 0.0
    assert "softmax_t: uses kdcore's reference, no credit" in capsys.readouterr().out
    assert check("softmax_t", evasions["honest"], raise_on_fail=False, verbose=False).passed


# --- reading back from a scratch folder ---------------------------------------------------------------------

def test_results_are_read_back_without_following_links(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("another student's notebook")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "info.json").symlink_to(secret)
    os.mkfifo(scratch / "running.txt")
    (scratch / "big").write_bytes(b"x" * 2000)
    assert runner.read_regular(scratch / "info.json", 10_000) is None
    assert runner.read_regular(scratch / "running.txt", 10_000) is None  # a FIFO would block a plain open
    assert runner.read_regular(scratch / "big", 1000) is None
    assert runner.read_regular(secret, 1000) == b"another student's notebook"
    runner.empty_folder(scratch)
    assert list(scratch.iterdir()) == [] and secret.exists()


def test_hidden_paths_inside_mounted_folders_are_covered(tmp_path):
    probe = sandbox.SandboxProbe(True, "", "/usr/bin/bwrap")
    package = Path(kdcore.__file__).parent
    hidden = [package / "checking" / "core.py", package / "checking", tmp_path / "class"]
    command = sandbox.Bubblewrap(probe, hidden).command(tmp_path / "scratch")
    text = " ".join(command)
    assert f"--ro-bind /dev/null {package / 'checking' / 'core.py'}" in text
    assert f"--tmpfs {package / 'checking'}" in text
    assert str(tmp_path / "class") not in text  # not under any mounted folder: simply not mounted
    assert f"--bind {tmp_path / 'scratch'} /grading" in text
    for flag in ("--unshare-pid", "--unshare-net", "--unshare-user", "--die-with-parent", "--as-pid-1",
                 "--new-session", "--clearenv"):
        assert flag in command
    assert command[command.index("--cap-drop") + 1] == "ALL"


def test_the_environment_is_mounted_over_the_private_tmp(tmp_path):
    """A course checked out under /tmp keeps its interpreter and kdcore inside the sandbox: the environment's
    binds come after the tmpfs on /tmp (bubblewrap applies mounts in order; an earlier bind is hidden)."""
    command = sandbox.Bubblewrap(sandbox.SandboxProbe(True, "", "/usr/bin/bwrap"), []).command(tmp_path / "s")
    tmpfs = next(i for i in range(len(command) - 1) if command[i:i + 2] == ["--tmpfs", "/tmp"])
    for source, destination in sandbox.environment_mounts():
        bind = next(i for i in range(len(command) - 2) if command[i:i + 3] == ["--ro-bind", source, destination])
        assert bind > tmpfs, destination


# --- journal and resume -------------------------------------------------------------------------------------

def small_class(folder: Path) -> dict[str, dict]:
    plans = {"alice": correct_code(), "bob": with_body("softmax_t", WRONG["softmax_t"][0]), "carol": unsolved_code()}
    folder.mkdir(parents=True)
    for student, code in plans.items():
        nbformat.write(notebook(code, student=student, long_cells=False), folder / f"{student}.ipynb")
    return plans


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    return {row["student"]: row for row in csv.DictReader(io.StringIO(path.read_text()))}


def test_an_interrupted_batch_resumes_to_the_same_gradebook(tmp_path):
    """SIGTERM after the first result: exit 130, no gradebook, the journal keeps what was judged; --resume
    grades only the rest and writes the gradebook an uninterrupted run gives (checked against check())."""
    plans = small_class(tmp_path / "class")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "kdcore.grade", str(tmp_path / "class"), "--csv", str(out / "g.csv"),
               "--no-sandbox", "--timeout", "60"]
    env = {**os.environ, "KDCORE_PROGRESS": "0"}
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    journal = out / "g.csv.journal.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    lines = journal.read_text().splitlines()
    if first.returncode == 0:
        pytest.skip("the batch finished before it could be interrupted")
    assert first.returncode == 130, err[-2000:]
    assert "--resume" in err and not (out / "g.csv").exists()
    assert 2 <= len(lines) <= 3
    judged = {json.loads(line)["label"] for line in lines[1:]}
    with open(journal, "ab") as handle:
        handle.write(b'{"label": "torn')  # a write cut short by the kill
    again = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    labels = []
    for line in journal.read_text().splitlines()[1:]:
        try:
            labels.append(json.loads(line)["label"])
        except ValueError:
            assert line == '{"label": "torn', line  # the torn line, left alone and ended
    assert journal.read_text().count('{"label": "torn\n') == 1
    assert sorted(labels) == sorted(str(tmp_path / "class" / f"{s}.ipynb") for s in plans)  # each judged once
    assert judged <= set(labels)
    table = read_csv(out / "g.csv")
    for student, code in plans.items():
        assert {e: float(table[student][e]) for e in EXERCISE_IDS} == pytest.approx(
            {e: round(expected_score(code, e), 2) for e in EXERCISE_IDS}, abs=1e-9), student


def test_a_journal_of_other_settings_is_not_resumed(tmp_path, capsys, no_grading):
    small_class(tmp_path / "class")
    journal = tmp_path / "g.csv.journal.jsonl"
    journal.write_text(json.dumps({"kdcore_journal": 1, "settings": {"timeout": 1}}) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(tmp_path / "class"), "--csv", str(tmp_path / "g.csv"), "--resume"])
    assert exit_info.value.code == 2
    assert "written with other settings" in capsys.readouterr().err


def test_killing_the_parent_without_a_sandbox_costs_only_that_submission(tmp_path):
    """Without a sandbox a submission can kill the process that forked it; the next submission is graded
    by a new one (before, two innocent students were marked crashed)."""
    folder = tmp_path / "class"
    folder.mkdir()
    killer = with_body("softmax_t", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                                    "return torch.softmax(logits / T, -1)\n", unsolved_code())
    nbformat.write(notebook(killer, long_cells=False), folder / "a_killer.ipynb")
    for name in ("b_honest", "c_honest"):
        nbformat.write(notebook(correct_code(), long_cells=False), folder / f"{name}.ipynb")
    run = subprocess.run([sys.executable, "-m", "kdcore.grade", str(folder), "--csv", str(tmp_path / "g.csv"),
                          "--no-sandbox", "--timeout", "60"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "KDCORE_PROGRESS": "0"})
    assert run.returncode == 0, run.stderr[-2000:]
    table = read_csv(tmp_path / "g.csv")
    assert table["a_killer"]["status"] == "crashed"
    assert [(table[s]["total"], table[s]["status"]) for s in ("b_honest", "c_honest")] == [("3.00", "ok")] * 2


# --- gradebook files ----------------------------------------------------------------------------------------

def fake_rows() -> tuple[list[StudentRow], list[str]]:
    columns = ["softmax_t", "kl_divergence"]
    forgot_t = next(v for v in VARIANTS["softmax_t"])
    other = VARIANTS["softmax_t"][1]
    def row(student, scores, misconceptions, status="ok"):
        result = Result(Submission(student, Path(f"{student}.ipynb"), f"{student}.ipynb"), "0", status,
                        {c: ExerciseResult(s, "ok", "", misconceptions.get(c, [])) for c, s in scores.items()})
        return StudentRow(student, scores, status, [result])
    rows = [row("<b>ann</b>", {"softmax_t": 0.5, "kl_divergence": 1.0}, {"softmax_t": [forgot_t.name]}),
            row("ben", {"softmax_t": 0.4, "kl_divergence": 1.0}, {"softmax_t": [forgot_t.name, other.name]}),
            row("cy", {"softmax_t": 1.0, "kl_divergence": 0.0}, {}, "uses-reference")]
    return rows, columns


def test_lms_files():
    rows, columns = fake_rows()
    canvas = list(csv.reader(io.StringIO(lms.lms_csv("canvas", rows, columns))))
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "kdcore softmax_t",
                         "kdcore kl_divergence"]
    assert canvas[2] == ["ben", "", "", "ben", "", "0.40", "1.00"]
    moodle = list(csv.reader(io.StringIO(lms.lms_csv("moodle", rows, columns))))
    assert moodle[0] == ["username", "kdcore softmax_t", "kdcore kl_divergence"] and moodle[3] == ["cy", "1.00", "0.00"]
    with pytest.raises(ValueError, match="lms must be one of canvas, moodle"):
        lms.lms_csv("blackboard", rows, columns)


def test_class_report(tmp_path):
    rows, columns = fake_rows()
    summary = report.summarize(rows, columns)
    assert [(m.name, m.students) for m in summary.misconceptions] == [
        (VARIANTS["softmax_t"][0].name, ["<b>ann</b>", "ben"]), (VARIANTS["softmax_t"][1].name, ["ben"])]
    assert [(e.exercise, e.passed, e.histogram["1"], e.histogram["0"]) for e in summary.exercises] == [
        ("softmax_t", 1, 1, 0), ("kl_divergence", 2, 2, 1)]
    assert summary.statuses == {"uses-reference": ["cy"]}
    report.class_report(rows, columns, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "&lt;b&gt;ann&lt;/b&gt;" in html and "<b>ann</b>" not in html  # names are escaped
    assert html.count("data:image/png;base64,") == 1
    report.class_report(rows, columns, tmp_path / "r.md")
    assert "| 2 | `softmax_t` |" in (tmp_path / "r.md").read_text()


def test_inside_the_sandbox(tmp_path):
    """What a process in the grader's sandbox sees and may do (the zygote replaced by a shell)."""
    found = sandbox.probe()
    if not found.available:
        message = f"isolation test skipped: no usable bubblewrap sandbox ({found.reason}); {sandbox.install_hint()}"
        print(message, file=sys.stderr)
        pytest.skip(message)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    neighbour = tmp_path / "other-student.ipynb"
    neighbour.write_text("{}")
    package = Path(kdcore.__file__).parent
    command = sandbox.Bubblewrap(found, [neighbour]).command(scratch)
    script = f"""
        grep CapEff /proc/self/status
        echo first-pid: $(ls /proc | grep '^[0-9]' | sort -n | head -1)
        test -d /proc/{os.getpid()} && echo grader-visible
        echo interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ')
        touch {package}/x 2>/dev/null && echo package-writable
        touch /usr/x 2>/dev/null && echo usr-writable
        mkdir /x 2>/dev/null && echo root-writable
        mount -o remount,rw /usr 2>/dev/null && echo remounted
        test -e {neighbour} && echo neighbour-visible
        test -e {tmp_path} && echo tmp-visible
        touch /grading/ok && echo scratch-writable
        unshare --user true 2>/dev/null && echo nested-userns
        echo home: $HOME
    """
    run = subprocess.run([*command[:command.index("--")], "--", "/bin/sh", "-c", script], capture_output=True,
                         text=True, timeout=60)
    lines = run.stdout.split("\n")
    assert "CapEff:\t0000000000000000" in lines, run.stdout + run.stderr
    assert "first-pid: 1" in lines  # a PID namespace of its own
    assert "interfaces: lo" in lines  # no network but the loopback
    for forbidden in ("grader-visible", "package-writable", "usr-writable", "root-writable", "remounted", "neighbour-visible",
                      "tmp-visible", "nested-userns"):
        assert forbidden not in lines, forbidden
    assert "scratch-writable" in lines and (scratch / "ok").exists()
    assert "home: /tmp" in lines
