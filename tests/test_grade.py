"""``python -m kdcore.grade``: a batch of ~30 generated submissions, correct, wrong and broken.

The expected score of every student is computed independently, in this process, with
``kdcore.checking.check(..., raise_on_fail=False)`` on the functions the submission defines; the batch grader
(fresh processes, fast path, parent-side judging) must reproduce it exactly, and the broken submissions must
cost only themselves.
"""
from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
import torch

from kdcore import _notebook, grade
from kdcore.checking import EXERCISES, check

EXERCISE_IDS = ["softmax_t", "kl_divergence", "soft_cross_entropy"]  # notebook 01 of docs/EXERCISES.md
TIMEOUT = 20  # seconds per submission

# --- function bodies --------------------------------------------------------------------------------

SIGNATURES = {
    "softmax_t": 'def softmax_t(logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:\n'
                 '    """Softmax of logits / T over the last dim; logits [..., C] -> [..., C]."""\n',
    "kl_divergence": 'def kl_divergence(p_teacher: torch.Tensor, p_student: torch.Tensor) -> torch.Tensor:\n'
                     '    """Batch-mean KL(p_teacher || p_student) in nats; rows [..., C] -> scalar."""\n',
    "soft_cross_entropy": 'def soft_cross_entropy(p_teacher: torch.Tensor, p_student: torch.Tensor) -> torch.Tensor:\n'
                          '    """Batch-mean -sum p_teacher * log p_student; rows [..., C] -> scalar."""\n',
}

CORRECT = {
    "softmax_t": "if T <= 0:\n    raise ValueError(f'T must be > 0, got {T}')\n"
                 "return torch.softmax(logits / T, dim=-1)\n",
    "kl_divergence": "# xlogy gives 0 * log 0 = 0 where the teacher is 0\n"
                     "terms = torch.xlogy(p_teacher, p_teacher) - torch.xlogy(p_teacher, p_student)\n"
                     "return terms.sum(dim=-1).mean()\n",
    "soft_cross_entropy": "return -torch.xlogy(p_teacher, p_student).sum(dim=-1).mean()\n",
}

WRONG = {  # classic mistakes
    "softmax_t": ["return torch.softmax(logits, dim=-1)\n",                      # forgot T
                  "return torch.softmax(logits * T, dim=-1)\n",                  # multiplied by T
                  "e = torch.exp(logits / T)\nreturn e / e.sum(dim=-1, keepdim=True)\n"],  # overflows at 1e4
    "kl_divergence": ["return (p_student * (p_student.log() - p_teacher.log())).sum(-1).mean()\n",  # reversed
                      "return (p_teacher * (p_teacher.log() - p_student.log())).sum()\n"],          # sum not mean
    "soft_cross_entropy": ["return (p_teacher * p_student.log()).sum(-1).mean()\n"],                # sign
}


def function_source(exercise_id: str, body: str) -> str:
    return SIGNATURES[exercise_id] + textwrap.indent(body, "    ")


def solution_cell(exercise_id: str) -> str:
    region = "### BEGIN SOLUTION\n" + CORRECT[exercise_id] + "### END SOLUTION\n"
    return SIGNATURES[exercise_id] + textwrap.indent(region, "    ")


def notebook(code_by_exercise: dict[str, str | None], *, extra: list | None = None,
             order: list[str] | None = None) -> nbformat.NotebookNode:
    """A notebook in the course format; ``None`` deletes an exercise's cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells = [nbformat.v4.new_markdown_cell("# 01 · Soft labels"),
             nbformat.v4.new_code_cell("import torch\nimport kdcore as kd\ntorch.manual_seed(0)\nEPS = 1e-8")]
    for exercise_id in order or EXERCISE_IDS:
        code = code_by_exercise.get(exercise_id)
        if code is None:
            continue
        cells += [nbformat.v4.new_markdown_cell(f"### {exercise_id}"),
                  nbformat.v4.new_code_cell(code),
                  nbformat.v4.new_code_cell(f'kd.check("{exercise_id}", {exercise_id})')]
    # A long "experiment" and shell/magic lines: the grader's fast path must not run them.
    cells += [nbformat.v4.new_code_cell("import time\ntime.sleep(600)  # a long training run"),
              nbformat.v4.new_code_cell("%time x = 1\n!echo hello")]
    cells += extra or []
    for index, cell in enumerate(cells):
        cell["id"] = f"c{index}"
    nb.cells = cells
    return nb


def correct_code() -> dict[str, str]:
    return {e: function_source(e, CORRECT[e]) for e in EXERCISE_IDS}


def with_body(exercise_id: str, body: str) -> dict[str, str]:
    code = correct_code()
    code[exercise_id] = function_source(exercise_id, body)
    return code


# --- the batch --------------------------------------------------------------------------------------

def build_submissions(folder: Path) -> dict[str, dict]:
    """Write ~30 submissions; returns student -> {"code": functions to score in-process, "status": ...}."""
    plan: dict[str, dict] = {}

    def add(student: str, nb, *, code=None, status="ok", path=None):
        path = path or folder / f"{student}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(nb, (bytes, str)):
            path.write_bytes(nb if isinstance(nb, bytes) else nb.encode())
        else:
            nbformat.write(nb, path)
        plan[student] = {"code": code or {}, "status": status, "path": path}

    for n in range(8):
        add(f"correct{n}", notebook(correct_code()), code=correct_code())
    # in a sub-folder with a course-style file name: the student is the folder
    add("dana", notebook(correct_code()), code=correct_code(), path=folder / "dana" / "01_soft_labels.ipynb")
    for exercise_id, bodies in WRONG.items():
        for k, body in enumerate(bodies):
            code = with_body(exercise_id, body)
            add(f"wrong_{exercise_id}_{k}", notebook(code), code=code)

    # an infinite loop while defining the functions: only the per-submission timeout stops it
    code = correct_code()
    code["softmax_t"] = "def _spin():\n    while True:\n        pass\n\n" \
                        "def softmax_t(logits, T=1.0, _hang=_spin()):\n    return torch.softmax(logits / T, -1)\n"
    add("loop_at_definition", notebook(code), status="timeout")
    # an infinite loop inside one function: the per-case timeout stops each case
    code = with_body("kl_divergence", "while True:\n    pass\n")
    add("loop_in_function", notebook(code), code={e: c for e, c in code.items() if e != "kl_divergence"})
    code = with_body("softmax_t", "import sys\nsys.exit(3)\n")
    add("sys_exit", notebook(code), code={e: c for e, c in code.items() if e != "softmax_t"})
    code = with_body("kl_divergence", "import os\nos._exit(1)\n")
    add("os_exit", notebook(code), code={e: c for e, c in code.items() if e != "kl_divergence"},
        status="crashed")
    code = with_body("soft_cross_entropy", "import ctypes\nctypes.string_at(0)\n")  # segmentation fault
    add("segfault", notebook(code), code={e: c for e, c in code.items() if e != "soft_cross_entropy"},
        status="crashed")
    code = correct_code()
    code["kl_divergence"] = code["kl_divergence"].replace("-> torch.Tensor:", "-> torch.Tensor")
    add("syntax_error", notebook(code), code={e: c for e, c in code.items() if e != "kl_divergence"})
    add("invalid_json", b'{"cells": [{"cell_type": "code", "source": "def softmax_t(', status="invalid")
    big = notebook(correct_code())
    big.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="x" * 100_000_000)]
    add("huge_output", big, code=correct_code())
    # duplicated exercise cell: the last definition wins (both orders)
    code = correct_code()
    dup = notebook(code, extra=[nbformat.v4.new_code_cell(function_source("softmax_t", WRONG["softmax_t"][0]))])
    add("duplicate_last_wrong", dup, code=with_body("softmax_t", WRONG["softmax_t"][0]))
    code = with_body("softmax_t", WRONG["softmax_t"][0])
    dup = notebook(code, extra=[nbformat.v4.new_code_cell(function_source("softmax_t", CORRECT["softmax_t"]))])
    add("duplicate_last_right", dup, code=correct_code())
    code = correct_code()
    code["kl_divergence"] = None  # the exercise cell and its check were deleted
    add("deleted_cell", notebook(code), code={e: c for e, c in code.items() if c})
    # hostile: a wrong softmax_t that patches the grader and the references before running
    hostile_body = textwrap.dedent("""\
        import kdcore, kdcore.checking, kdcore.distill
        class _Pass:
            passed, score, feedback, cases = True, 1.0, "all good", []
        kdcore.checking.judge = lambda *a, **k: _Pass()
        kdcore.checking.check = lambda *a, **k: _Pass()
        kdcore.distill.softmax_t = lambda logits, T=1.0: torch.softmax(logits, dim=-1)
        kdcore.softmax_t = kdcore.distill.softmax_t
        return torch.softmax(logits, dim=-1)
        """)
    code = with_body("softmax_t", hostile_body)
    add("hostile_patcher", notebook(code), code=with_body("softmax_t", WRONG["softmax_t"][0]))
    # tries to overwrite its own file, at definition time and while being graded
    target = folder / "overwriter.ipynb"
    write = f"open({str(target)!r}, 'w').write('{{}}')"
    code = correct_code()
    code["softmax_t"] = (f"def _clobber():\n    {write}\n\n"
                         f"def softmax_t(logits, T=1.0, _x=_clobber()):\n    {write}\n"
                         "    return torch.softmax(logits / T, dim=-1)\n")
    add("overwriter", notebook(code), code=with_body("softmax_t", "return torch.softmax(logits / T, dim=-1)\n"))
    # 3 GiB at once: more than the --memory-mb 2048 given below (this machine could allocate it otherwise)
    code = with_body("soft_cross_entropy", "hog = bytearray(3 * 2**30)\nreturn hog\n")
    add("memory_hog", notebook(code), code={e: c for e, c in code.items() if e != "soft_cross_entropy"},
        status="memory")
    # a renamed file with its cells in another order
    add("erin", notebook(correct_code(), order=EXERCISE_IDS[::-1]), code=correct_code(),
        path=folder / "erin" / "my work (final).ipynb")
    return plan


def expected_score(code: dict[str, str], exercise_id: str) -> float:
    """The grader's score for one function, computed here with check() (the independent reference)."""
    if exercise_id not in code:
        return 0.0
    namespace: dict = {"torch": torch}
    exec(code[exercise_id], namespace)
    return check(exercise_id, namespace[exercise_id], raise_on_fail=False, verbose=False).score


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("grade")
    submissions = root / "submissions"
    plan = build_submissions(submissions)
    hashes = {p: sha256(p) for p in submissions.rglob("*") if p.is_file()}
    out = root / "out"
    command = [sys.executable, "-m", "kdcore.grade", str(submissions), "--csv", str(out / "grades.csv"),
               "--feedback", str(out / "feedback"), "--jobs", "2", "--timeout", str(TIMEOUT),
               "--case-timeout", "1", "--memory-mb", "2048"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=400)
    return {"plan": plan, "hashes": hashes, "out": out, "run": run, "command": command,
            "submissions": submissions}


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    return {row["student"]: row for row in csv.DictReader(io.StringIO(path.read_text()))}


def test_batch_completes_with_exit_code_0(batch):
    run = batch["run"]
    assert run.returncode == 0, run.stderr[-3000:]
    for student in batch["plan"]:
        assert student in run.stdout  # the terminal table has a row per student


def test_gradebook_scores_match_in_process_check(batch):
    rows = read_csv(batch["out"] / "grades.csv")
    assert list(next(iter(rows.values())).keys()) == ["student", *EXERCISE_IDS, "total", "status"]
    assert set(rows) == set(batch["plan"])
    for student, plan in batch["plan"].items():
        row = rows[student]
        want = {e: expected_score(plan["code"], e) for e in EXERCISE_IDS}
        got = {e: float(row[e]) for e in EXERCISE_IDS}
        assert got == pytest.approx({e: round(w, 2) for e, w in want.items()}, abs=1e-9), student
        assert float(row["total"]) == pytest.approx(round(sum(want.values()), 2), abs=0.011), student


def test_statuses(batch):
    rows = read_csv(batch["out"] / "grades.csv")
    assert {s: rows[s]["status"] for s in rows} == {s: p["status"] for s, p in batch["plan"].items()}


def test_correct_submissions_score_full_marks(batch):
    rows = read_csv(batch["out"] / "grades.csv")
    for student in ["correct0", "dana", "huge_output", "erin", "duplicate_last_right"]:
        assert float(rows[student]["total"]) == len(EXERCISE_IDS), student
    # the hostile submission's patches did not help it: it scores what its wrong softmax_t deserves
    assert float(rows["hostile_patcher"]["softmax_t"]) < 1.0


def test_submissions_are_unchanged(batch):
    after = {p: sha256(p) for p in batch["submissions"].rglob("*") if p.is_file()}
    assert after == batch["hashes"]
    assert "overwriter.ipynb was changed during grading" in batch["run"].stderr


def test_feedback_reports(batch):
    folder = batch["out"] / "feedback"
    assert sorted(p.stem for p in folder.glob("*.md")) == sorted(batch["plan"])
    for student, plan in batch["plan"].items():
        text = (folder / f"{student}.md").read_text()
        assert f"Status: **{plan['status']}**" in text
        assert "def _case" not in text and "BEGIN SOLUTION" not in text  # no grader or solution code
    assert "No function named `kl_divergence`" in (folder / "deleted_cell.md").read_text()
    assert "SyntaxError" in (folder / "syntax_error.md").read_text()
    assert "died" in (folder / "os_exit.md").read_text()
    assert "timeout" in (folder / "loop_at_definition.md").read_text()


def test_feedback_for_a_wrong_answer_matches_check(batch):
    """The per-case lines and hints in the report are the grader's feedback for that function."""
    code = with_body("softmax_t", WRONG["softmax_t"][0])
    namespace: dict = {"torch": torch}
    exec(code["softmax_t"], namespace)
    feedback = check("softmax_t", namespace["softmax_t"], raise_on_fail=False, verbose=False).feedback
    text = (batch["out"] / "feedback" / "wrong_softmax_t_0.md").read_text()
    assert feedback.strip() and feedback.strip() in text
    assert "hint:" in text  # the likely misconception is named


def test_rerun_reproduces_the_gradebook(batch, tmp_path, capsys):
    """Re-grading (a subset, serially, in this process) reproduces the same rows byte for byte."""
    students = ["correct0", "wrong_kl_divergence_0", "syntax_error", "deleted_cell"]
    paths = [str(batch["plan"][s]["path"]) for s in students]
    again = tmp_path / "again.csv"
    code = grade.main([*paths, "--csv", str(again), "--exercises", ",".join(EXERCISE_IDS),
                       "--timeout", str(TIMEOUT)])
    assert code == 0, capsys.readouterr().err[-3000:]
    first = (batch["out"] / "grades.csv").read_text().splitlines()
    lines = again.read_text().splitlines()
    assert lines[0] == first[0]
    assert sorted(lines[1:]) == sorted(line for line in first[1:] if line.split(",")[0] in students)


@pytest.mark.parametrize("argv, message", [
    (["does/not/exist"], "does not exist"),
    (["{empty}"], "contains no *.ipynb"),
    (["{nb}", "--exercises", "softmax_t,no_such_exercise"], "unknown id(s) no_such_exercise"),
    (["{nb}", "--jobs", "0"], "--jobs"),
    (["{nb}", "--timeout", "-1"], "--timeout"),
    (["{nb}", "--memory-mb", "100"], "--memory-mb"),
    (["{readme}"], "is not a notebook"),
])
def test_usage_errors_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    nbformat.write(notebook(correct_code()), tmp_path / "a.ipynb")
    (tmp_path / "README.md").write_text("hi")
    values = {"empty": tmp_path / "empty", "nb": tmp_path / "a.ipynb", "readme": tmp_path / "README.md"}
    with pytest.raises(SystemExit) as exit_info:
        grade.main([a.format(**values) for a in argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_student_names(tmp_path):
    for relative in ["alice.ipynb", "bob/01_soft_labels.ipynb", "bob/extra/02_kd.ipynb",
                     "carol/.ipynb_checkpoints/x-checkpoint.ipynb", "carol/x.ipynb"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("{}")
    found = grade.discover([tmp_path, tmp_path / "alice.ipynb"])
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
    kept_lines = [node.lineno for node in kept]
    assert kept_lines == [1, 2, 3, 4, 5, 9, 11]
    _, error = _notebook.definitions("def f(:\n    pass")
    assert isinstance(error, SyntaxError)
    assert _notebook.definitions("%%bash\nrm -rf /\n") == ([], None)
    assert _notebook.parse_check_cell('kd.check("kd_loss", kd_loss)') == _notebook.CheckCall("kd_loss", "kd_loss")
    assert _notebook.parse_check_cell('x = 1\nkd.check("kd_loss", kd_loss)') is None


def test_exercise_catalogue_has_the_fixture_ids():
    assert all(EXERCISES[e].notebook == "01" for e in EXERCISE_IDS)


def test_lost_exit_status_of_a_finished_worker_is_not_a_crash(tmp_path, monkeypatch):
    """multiprocessing's fork server can report exit code 255 when it loses a child's status; a worker
    that wrote `done` (after saving every exercise's outputs) still counts as finished. (A worker that dies
    before `done` is a crash: the os_exit submission of the batch above.)"""
    path = tmp_path / "student.ipynb"
    nbformat.write(notebook(correct_code()), path)
    real_wait = grade._Child.wait

    def wait_reporting_255(self, timeout):
        code = real_wait(self, timeout)
        return 255 if code == 0 and self.popen is None else code

    monkeypatch.setattr(grade._Child, "wait", wait_reporting_255)
    options = grade._Options(exercises=EXERCISE_IDS, timeout=TIMEOUT, case_timeout=None, memory_mb=0, threads=1)
    workdir = tmp_path / "work"
    workdir.mkdir()
    raw = grade.run_submission(path, workdir, options)
    assert raw["status"] == "ok" and raw["notes"] == []
    assert sorted(raw["records"]) == sorted(EXERCISE_IDS)

