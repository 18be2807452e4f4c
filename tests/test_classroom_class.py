"""A class of 40 submissions through ``python -m kdcore.grade`` with the sandbox on.

Honest learners (correct, written in different ways), wrong answers with known misconceptions, an unsolved
notebook, broken notebooks (invalid JSON, deleted and duplicated cells, syntax errors, endless loops, exits,
a segfault, a memory hog) and hostile ones, one or more per attack on the grader: read the others, overwrite
the others and the grader's backups, write outside the scratch folder (the user cache, the kdcore package),
tamper with the gradebook after the grader exits, kill the grader and the grading process's parent, spawn
and detach children, forge results, and use kdcore's own reference (alias, import, functools.partial,
a module's __dict__, wrappers, getattr with a computed name).

Hostile code is given the real paths it would need (the class folder, the grader's temporary folder, the
output folder, the user cache, the kdcore package): only the sandbox stands between it and them.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

import kdcore
from classroom_notebooks import (CORRECT, CORRECT_ALTERNATIVES, EXERCISE_IDS, UNSOLVED, WRONG, correct_code,
                                 expected_score, function_source, notebook, secret_of, unsolved_code, with_body)
from kdcore.classroom import sandbox

TIMEOUT = 20  # seconds per submission
MARKER = f"kdcorefixture{os.getpid()}x{int(time.time())}"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _require_sandbox() -> None:
    found = sandbox.probe()
    if not found.available:
        message = (f"isolation tests skipped: no usable bubblewrap sandbox ({found.reason}); "
                   f"{sandbox.install_hint()}")
        print(message, file=sys.stderr)
        pytest.skip(message)


# --- the class ----------------------------------------------------------------------------------------

def hostile_cell(exercise_id: str, attack: str, body: str, paths: dict[str, str]) -> str:
    """A cell whose helper ``_attack`` runs when the function is defined (a default argument) and again
    when it is graded."""
    constants = "".join(f"{k} = {v!r}\n" for k, v in paths.items())
    signature = SIG_HEAD[exercise_id]
    return (constants + "def _attack():\n" + textwrap.indent(textwrap.dedent(attack), "    ")
            + f"\n\n{signature}, _at_definition=_attack()):\n" + textwrap.indent(textwrap.dedent(body), "    "))


SIG_HEAD = {"softmax_t": "def softmax_t(logits, T=1.0", "kl_divergence": "def kl_divergence(p_teacher, p_student"}

ATTACKS = {
    # read every other submission (class folder, the grader's copies, through /proc) and echo it back
    "reader": ("""\
        import glob, os
        found = []
        for pattern in [CLASS + '/**/*.ipynb', TMPROOT + '/**/*.ipynb', '/proc/*/cwd/**/*.ipynb',
                        '/proc/*/root' + CLASS + '/**/*.ipynb', '/*/*.ipynb', '/tmp/**/*.ipynb']:
            for path in glob.glob(pattern, recursive=True):
                try:
                    found.append(open(path, errors='replace').read())
                except Exception:
                    pass
        for pid in os.listdir('/proc'):
            if pid.isdigit():
                try:
                    found.append(open('/proc/%s/cmdline' % pid, 'rb').read().decode(errors='replace'))
                except Exception:
                    pass
        return '\\n'.join(found)
        """, "raise RuntimeError('LEAK ' + _attack())\n"),
    # overwrite every notebook it can find, the others' and the grader's backups
    "overwriter": ("""\
        import glob
        for pattern in [CLASS + '/**/*.ipynb', TMPROOT + '/**/*.ipynb', '/proc/*/cwd/**/*.ipynb',
                        '/proc/*/root' + CLASS + '/**/*.ipynb']:
            for path in glob.glob(pattern, recursive=True):
                try:
                    open(path, 'w').write('{}')
                except Exception:
                    pass
        """, "_attack()\nreturn logits * 0\n"),
    # write outside its folder: the user cache (a data set), the kdcore package, the outputs, /tmp
    "outside_writer": ("""\
        import os
        for target in [HOME + '/.cache/kdcore/mnist1d_poison.npz', KDCORE + '/checking/_poison_' + MARK + '.py',
                       KDCORE + '/_poison_' + MARK + '.py', OUT + '/poison_' + MARK, CLASS + '/poison_' + MARK,
                       TMPROOT + '/poison_' + MARK, '/tmp/poison_' + MARK, HOME + '/poison_' + MARK]:
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                open(target, 'w').write('poison')
            except Exception:
                pass
        try:
            open(KDCORE + '/checking/core.py', 'a').close()  # the first step of patching the checker
            open(OUT + '/poison_' + MARK + '_core_writable', 'w').close()
        except Exception:
            pass
        """, "_attack()\nreturn logits * 0\n"),
    # a detached daemon that rewrites the gradebook and the journal after the grader has finished
    "tamperer": ("""\
        import os, subprocess, time
        subprocess.Popen(['sh', '-c', 'sleep 600', MARK + '-tamper'], start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                end = time.time() + 60
                while time.time() < end:
                    for path in [OUT + '/grades.csv', OUT + '/grades.csv.journal.jsonl']:
                        try:
                            if os.path.exists(path):
                                open(path, 'w').write('student,total\\ntamperer,999\\n')
                        except Exception:
                            pass
                    try:
                        open(OUT + '/heartbeat_' + MARK, 'w').write(str(time.time()))
                    except Exception:
                        pass
                    time.sleep(0.1)
            os._exit(0)
        """, "return logits * 0\n"),
    # kill the grader (found through /proc) and the grading process's parent
    "killer": ("""\
        import os, signal
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            try:
                os.kill(os.getppid(), sig)
            except Exception:
                pass
        try:
            os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)
        except Exception:
            pass
        for pid in os.listdir('/proc'):
            if pid.isdigit() and int(pid) != os.getpid():
                try:
                    command = open('/proc/%s/cmdline' % pid, 'rb').read()
                    if CLASS.encode() in command or TMPROOT.encode() in command:
                        os.kill(int(pid), signal.SIGKILL)
                except Exception:
                    pass
        """, "_attack()\nreturn logits * 0\n"),
    # 20 children, some in new sessions, and a double-forked daemon
    "spawner": ("""\
        import os, subprocess
        for i in range(20):
            subprocess.Popen(['sh', '-c', 'sleep 600', MARK + '-child%d' % i])
        for i in range(3):
            subprocess.Popen(['sh', '-c', 'sleep 600', MARK + '-session%d' % i], start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp('sh', ['sh', '-c', 'sleep 600', MARK + '-daemon'])
            os._exit(0)
        """, "return logits * 0\n"),
}

# Forge the results: save the reference's observations as its own, for an exercise it defines wrongly and for
# one it does not define, mark the run done, and leave before the real grading writes anything.
FORGER = """\
def _forge():
    import os, torch, kdcore
    from kdcore.checking import run_candidate
    for name in ['kl_divergence', 'soft_cross_entropy']:
        try:
            observations = run_candidate(name, getattr(kdcore.distill, name), case_timeout=5)
            torch.save({'observations': observations, 'error': None, 'memory': False, 'reference': None},
                       '/grading/obs-' + name + '.pt')
        except BaseException:
            pass
    open('/grading/done', 'w').close()
    os._exit(0)

def kl_divergence(p_teacher, p_student, _forged=_forge()):
    return (p_teacher * 0).sum()
"""

# A graded softmax_t that is, or calls, kdcore's reference (each cell replaces the learner's own).
USES_REFERENCE = {
    "ref_alias": "softmax_t = kd.softmax_t\n",
    "ref_import": "from kdcore.distill import softmax_t\n",
    "ref_partial": "import functools\n\ndef softmax_t(logits, T=1.0, _impl=functools.partial(kd.softmax_t)):\n"
                   "    return _impl(logits, T)\n",
    "ref_module_dict": "import kdcore.distill\n\ndef softmax_t(logits, T=1.0):\n"
                       "    return kdcore.distill.__dict__['softmax_t'](logits, T)\n",
    "ref_wrapper": "def softmax_t(logits, T=1.0):\n    if T <= 0:\n        raise ValueError('T must be > 0')\n"
                   "    scaled = kd.softmax_t(logits, T)\n    return scaled\n",
    "ref_getattr": "def softmax_t(logits, T=1.0):\n    name = ''.join(['soft', 'max', '_t'])\n"
                   "    return getattr(kd, name)(logits, T)\n",
    "ref_class": "class _Impl:\n    fn = staticmethod(kd.softmax_t)\n\nsoftmax_t = _Impl.fn\n",
}


def build_class(folder: Path, paths: dict[str, str]) -> dict[str, dict]:
    """Write the class; returns student -> {"code", "status", "kind", "path", "secret"}."""
    plan: dict[str, dict] = {}

    def add(student: str, nb, *, kind: str, code=None, status="ok", path=None):
        path = path or folder / f"{student}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = None
        if isinstance(nb, (bytes, str)):
            path.write_bytes(nb if isinstance(nb, bytes) else nb.encode())
        else:
            secret = secret_of(nb)
            nbformat.write(nb, path)
        plan[student] = {"code": code or {}, "status": status, "kind": kind, "path": path, "secret": secret}

    # honest: the same answers, and answers written differently
    for n in range(4):
        add(f"correct{n}", notebook(correct_code(), student=f"correct{n}"), kind="honest", code=correct_code())
    alternatives = [dict(zip(EXERCISE_IDS, combo)) for combo in [
        (CORRECT_ALTERNATIVES["softmax_t"][0], CORRECT_ALTERNATIVES["kl_divergence"][0], CORRECT["soft_cross_entropy"]),
        (CORRECT_ALTERNATIVES["softmax_t"][1], CORRECT["kl_divergence"], CORRECT_ALTERNATIVES["soft_cross_entropy"][0])]]
    for n, bodies in enumerate(alternatives):
        code = {e: function_source(e, bodies[e]) for e in EXERCISE_IDS}
        add(f"different{n}", notebook(code, student=f"different{n}"), kind="honest", code=code)
    add("dana", notebook(correct_code(), student="dana"), kind="honest", code=correct_code(),
        path=folder / "dana" / "01_soft_labels.ipynb")
    add("erin", notebook(correct_code(), student="erin", order=EXERCISE_IDS[::-1]), kind="honest",
        code=correct_code(), path=folder / "erin" / "my work (final).ipynb")
    big = notebook(correct_code(), student="huge_output")
    big.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="x" * 50_000_000)]
    add("huge_output", big, kind="honest", code=correct_code())
    code = with_body("softmax_t", WRONG["softmax_t"][0])
    dup = notebook(code, student="duplicate_last_right",
                   extra=[nbformat.v4.new_code_cell(function_source("softmax_t", CORRECT["softmax_t"]))])
    add("duplicate_last_right", dup, kind="honest", code=correct_code())

    # wrong, with known misconceptions
    for exercise_id, bodies in WRONG.items():
        for k, body in enumerate(bodies):
            code = with_body(exercise_id, body)
            add(f"wrong_{exercise_id}_{k}", notebook(code, student=f"wrong_{exercise_id}_{k}"), kind="wrong", code=code)
    add("unsolved", notebook(unsolved_code(), student="unsolved"), kind="wrong", code=unsolved_code())

    # broken
    add("invalid_json", b'{"cells": [{"cell_type": "code", "source": "def softmax_t(', kind="broken", status="invalid")
    code = correct_code()
    code["kl_divergence"] = None  # the exercise cell and its check were deleted
    add("deleted_cell", notebook(code, student="deleted_cell"), kind="broken", code={e: c for e, c in code.items() if c})
    dup = notebook(correct_code(), student="duplicate_last_wrong",
                   extra=[nbformat.v4.new_code_cell(function_source("softmax_t", WRONG["softmax_t"][0]))])
    add("duplicate_last_wrong", dup, kind="broken", code=with_body("softmax_t", WRONG["softmax_t"][0]))
    code = correct_code()
    code["kl_divergence"] = code["kl_divergence"].replace("-> torch.Tensor:", "-> torch.Tensor")
    add("syntax_error", notebook(code, student="syntax_error"), kind="broken",
        code={e: c for e, c in code.items() if e != "kl_divergence"})
    code = correct_code()
    code["softmax_t"] = ("def _spin():\n    while True:\n        pass\n\n"
                         "def softmax_t(logits, T=1.0, _hang=_spin()):\n    return torch.softmax(logits / T, -1)\n")
    add("loop_at_definition", notebook(code, student="loop_at_definition"), kind="broken", status="timeout")
    code = with_body("kl_divergence", "while True:\n    pass\n")
    add("loop_in_function", notebook(code, student="loop_in_function"), kind="broken", status="timeout",
        code={e: c for e, c in code.items() if e != "kl_divergence"})
    code = with_body("softmax_t", "import sys\nsys.exit(3)\n")
    add("sys_exit", notebook(code, student="sys_exit"), kind="broken",
        code={e: c for e, c in code.items() if e != "softmax_t"})
    code = with_body("kl_divergence", "import os\nos._exit(1)\n")
    add("os_exit", notebook(code, student="os_exit"), kind="broken", status="crashed",
        code={e: c for e, c in code.items() if e != "kl_divergence"})
    code = with_body("soft_cross_entropy", "import ctypes\nctypes.string_at(0)\n")  # segmentation fault
    add("segfault", notebook(code, student="segfault"), kind="broken", status="crashed",
        code={e: c for e, c in code.items() if e != "soft_cross_entropy"})
    code = with_body("soft_cross_entropy", "hog = bytearray(3 * 2**30)\nreturn hog\n")
    add("memory_hog", notebook(code, student="memory_hog"), kind="broken", status="memory",
        code={e: c for e, c in code.items() if e != "soft_cross_entropy"})

    # hostile: the attack sits in softmax_t; the other exercises are left unsolved (no credit to gain)
    for student, (attack, body) in ATTACKS.items():
        code = unsolved_code()
        code["softmax_t"] = hostile_cell("softmax_t", attack, body, paths)
        add(student, notebook(code, student=student), kind="hostile")
    code = unsolved_code()
    code["kl_divergence"] = FORGER
    code["soft_cross_entropy"] = None
    add("forger", notebook(code, student="forger"), kind="hostile")
    for student, cell in USES_REFERENCE.items():
        code = correct_code()
        code["softmax_t"] = cell
        add(student, notebook(code, student=student), kind="reference", status="uses-reference",
            code={e: c for e, c in code.items() if e != "softmax_t"})
    return plan


# --- running the grader ---------------------------------------------------------------------------------

def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, sha256(p)) for p in sorted(folder.rglob("*")) if p.is_file()}


def processes_matching(*needles: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in command for n in needles):
            found.append(f"{entry}: {command[:200]}")
    return found


def grade_command(folder: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "kdcore.grade", str(folder), "--csv", str(out / "grades.csv"),
            "--feedback", str(out / "feedback"), "--report", str(out / "report.html"),
            "--report", str(out / "report.md"), "--lms", "canvas", "--lms", "moodle", "--jobs", "2",
            "--timeout", str(TIMEOUT), "--case-timeout", "1", "--memory-mb", "2048"]


def run_grader(folder: Path, out: Path, home: Path, tmproot: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("KDCORE_CACHE", "XDG_CACHE_HOME")}
    # the grader's own matplotlib cache (for the report's chart) goes elsewhere: HOME is watched for writes
    env.update({"HOME": str(home), "TMPDIR": str(tmproot), "KDCORE_PROGRESS": "0",
                "MPLCONFIGDIR": str(tmproot.parent / "grader-matplotlib")})
    start = time.perf_counter()
    run = subprocess.run(grade_command(folder, out), capture_output=True, text=True, timeout=900, env=env)
    return run, time.perf_counter() - start


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    _require_sandbox()
    root = tmp_path_factory.mktemp("class")
    folder, out, home, tmproot = root / "submissions", root / "out", root / "home", root / "tmp"
    for path in (home / ".cache" / "kdcore", tmproot):
        path.mkdir(parents=True)
    (home / ".cache" / "kdcore" / "mnist1d_data.npz").write_bytes(b"a cached data set")
    paths = {"CLASS": str(folder), "TMPROOT": str(tmproot), "OUT": str(out), "HOME": str(home),
             "KDCORE": str(Path(kdcore.__file__).parent), "MARK": MARKER}
    plan = build_class(folder, paths)
    before = {"class": tree(folder), "home": tree(home), "kdcore": sorted(p.name for p in Path(kdcore.__file__).parent.rglob("*")
                                                                          if "__pycache__" not in p.parts)}
    run, seconds = run_grader(folder, out, home, tmproot)
    print(f"\nclass of {len(plan)} submissions graded in {seconds:.1f} s (sandbox on, --jobs 2)", file=sys.stderr)
    leftovers = processes_matching(MARKER, str(tmproot))
    gradebook_at_exit = (out / "grades.csv").read_text() if (out / "grades.csv").exists() else None
    time.sleep(1.0)  # a surviving daemon rewrites the gradebook every 0.1 s
    yield {"plan": plan, "run": run, "out": out, "folder": folder, "home": home, "tmproot": tmproot,
           "before": before, "leftovers": leftovers, "gradebook_at_exit": gradebook_at_exit, "root": root,
           "seconds": seconds}
    for path in Path(kdcore.__file__).parent.rglob(f"_poison_{MARKER}*"):  # only if containment failed
        path.unlink()


def read_csv(text: str) -> dict[str, dict[str, str]]:
    return {row["student"]: row for row in csv.DictReader(io.StringIO(text))}


def rows(graded) -> dict[str, dict[str, str]]:
    return read_csv((graded["out"] / "grades.csv").read_text())


def feedback(graded, student: str) -> str:
    return (graded["out"] / "feedback" / f"{student}.md").read_text()


# --- what must hold -----------------------------------------------------------------------------------------

def test_the_class_has_every_kind_of_submission(graded):
    kinds = [p["kind"] for p in graded["plan"].values()]
    assert len(kinds) >= 30
    assert {k: kinds.count(k) for k in set(kinds)} == {"honest": 10, "wrong": 7, "broken": 10, "hostile": 7,
                                                        "reference": 7}


def test_the_batch_completes_although_submissions_attack_the_grader(graded):
    run = graded["run"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert set(rows(graded)) == set(graded["plan"])


def test_every_honest_student_gets_full_marks(graded):
    table = rows(graded)
    for student, plan in graded["plan"].items():
        if plan["kind"] == "honest":
            assert float(table[student]["total"]) == len(EXERCISE_IDS), student
            assert table[student]["status"] == "ok", student


def test_scores_match_check_in_this_process(graded):
    """Honest, wrong, unsolved and broken notebooks score what check() gives their functions here."""
    table = rows(graded)
    for student, plan in graded["plan"].items():
        if plan["kind"] == "hostile":
            continue
        want = {e: round(expected_score(plan["code"], e), 2) for e in EXERCISE_IDS}
        got = {e: float(table[student][e]) for e in EXERCISE_IDS}
        assert got == pytest.approx(want, abs=1e-9), student


def test_every_wrong_answer_is_rejected_with_its_hint(graded):
    from kdcore.checking import check
    table = rows(graded)
    for student, plan in graded["plan"].items():
        if plan["kind"] != "wrong" or student == "unsolved":
            continue
        exercise_id = student.split("_", 1)[1].rsplit("_", 1)[0]
        assert float(table[student][exercise_id]) < 1.0, student
        namespace: dict = {"torch": __import__("torch")}
        exec(plan["code"][exercise_id], namespace)
        report = check(exercise_id, namespace[exercise_id], raise_on_fail=False, verbose=False).feedback
        text = feedback(graded, student)
        assert "hint:" in report and report.strip() in text, student
    assert "not implemented yet" in feedback(graded, "unsolved")


def test_statuses_say_what_happened(graded):
    table = rows(graded)
    for student, plan in graded["plan"].items():
        if plan["kind"] != "hostile":
            assert table[student]["status"] == plan["status"], student


def test_every_hostile_submission_gets_no_credit(graded):
    table = rows(graded)
    for student, plan in graded["plan"].items():
        if plan["kind"] == "hostile":
            assert float(table[student]["total"]) == 0.0, (student, table[student])
        if plan["kind"] == "reference":
            assert float(table[student]["softmax_t"]) == 0.0, student
            assert "uses kdcore's reference" in feedback(graded, student), student


def test_every_submission_is_byte_identical_afterwards(graded):
    assert tree(graded["folder"]) == graded["before"]["class"]
    assert "changed" not in graded["run"].stderr


def test_no_process_is_left(graded):
    assert graded["leftovers"] == []
    assert processes_matching(MARKER, str(graded["tmproot"])) == []


def test_nothing_is_written_outside_the_scratch_folders(graded):
    assert tree(graded["home"]) == graded["before"]["home"]  # the user cache included
    package = Path(kdcore.__file__).parent
    assert sorted(p.name for p in package.rglob("*") if "__pycache__" not in p.parts) == graded["before"]["kdcore"]
    assert list(graded["tmproot"].iterdir()) == []  # the grader's private folder is gone too
    assert not list(Path("/tmp").glob(f"poison_{MARKER}*"))
    outputs = sorted(str(p.relative_to(graded["out"])) for p in graded["out"].rglob("*") if p.is_file())
    expected = ["grades.canvas.csv", "grades.csv", "grades.csv.journal.jsonl", "grades.moodle.csv", "report.html",
                "report.md"] + [f"feedback/{s}.md" for s in graded["plan"]]
    assert outputs == sorted(expected)


def test_the_gradebook_cannot_be_tampered_with_after_the_grader_exits(graded):
    assert graded["gradebook_at_exit"] is not None
    assert (graded["out"] / "grades.csv").read_text() == graded["gradebook_at_exit"]
    assert "tamperer" in graded["gradebook_at_exit"] and "999" not in graded["gradebook_at_exit"]


def test_no_student_sees_another_students_work(graded):
    secrets = {s: p["secret"] for s, p in graded["plan"].items() if p["secret"]}
    for student in graded["plan"]:
        text = feedback(graded, student)
        leaked = [other for other, secret in secrets.items() if other != student and secret in text]
        assert leaked == [], (student, leaked)
    assert "LEAK" in feedback(graded, "reader")  # its own error message is shown (capped), and nothing else


def test_feedback_holds_only_the_students_own_cases_errors_and_hints(graded):
    for student in graded["plan"]:
        text = feedback(graded, student)
        assert "name 'p_t'" not in text and "NameError" not in text, student  # the notebook's demo cells
        assert "def _case" not in text and "BEGIN SOLUTION" not in text, student
        assert max(len(line) for line in text.splitlines()) <= 320, student
    assert "SyntaxError" in feedback(graded, "syntax_error")
    assert "No function named `kl_divergence`" in feedback(graded, "deleted_cell")
    assert "died" in feedback(graded, "os_exit")


def test_the_reference_gets_no_credit_however_it_is_reached(graded):
    table = rows(graded)
    for student in USES_REFERENCE:
        assert table[student]["status"] == "uses-reference", student
        assert [float(table[student][e]) for e in EXERCISE_IDS] == [0.0, 1.0, 1.0], student


def test_the_class_report_ranks_the_misconceptions(graded):
    from kdcore.checking import VARIANTS
    text = (graded["out"] / "report.md").read_text()
    html = (graded["out"] / "report.html").read_text()
    assert "data:image/png;base64," in text and '<img alt="' in html
    table = text.split("## Misconceptions, most common first", 1)[1].split("\n## ", 1)[0]
    counts = [int(m) for m in re.findall(r"^\| (\d+) \| `", table, flags=re.M)]
    assert counts and counts == sorted(counts, reverse=True)
    # the misconception of the "forgot T" submission is named, with its hint and the student
    line = next(line for line in table.splitlines() if "wrong_softmax_t_0" in line)
    assert any(v.hint.replace("|", "\\|") in line for v in VARIANTS["softmax_t"])
    assert "uses-reference" in text and "ref_alias" in text


def test_lms_files_carry_the_gradebook_scores(graded):
    table = rows(graded)
    canvas = list(csv.reader(io.StringIO((graded["out"] / "grades.canvas.csv").read_text())))
    assert canvas[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert canvas[0][5:] == [f"kdcore {e}" for e in EXERCISE_IDS]
    for line in canvas[1:]:
        assert line[3] == line[0] and line[5:] == [table[line[0]][e] for e in EXERCISE_IDS]
    moodle = list(csv.reader(io.StringIO((graded["out"] / "grades.moodle.csv").read_text())))
    assert moodle[0] == ["username", *(f"kdcore {e}" for e in EXERCISE_IDS)]
    assert {line[0]: line[1:] for line in moodle[1:]} == {s: [r[e] for e in EXERCISE_IDS] for s, r in table.items()}


def test_the_gradebook_equals_a_run_without_the_attackers(graded, tmp_path):
    """The honest, wrong and unsolved students, graded alone, get the rows they got next to the attackers."""
    quiet = tmp_path / "submissions"
    keep = [s for s, p in graded["plan"].items() if p["kind"] in ("honest", "wrong")]
    for student in keep:
        source = graded["plan"][student]["path"]
        target = quiet / source.relative_to(graded["folder"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    (tmp_path / "home").mkdir()
    (tmp_path / "tmp").mkdir()
    run, _ = run_grader(quiet, tmp_path / "out", tmp_path / "home", tmp_path / "tmp")
    assert run.returncode == 0, run.stderr[-3000:]
    alone = (tmp_path / "out" / "grades.csv").read_text().splitlines()
    together = graded["gradebook_at_exit"].splitlines()
    assert alone[0] == together[0]
    assert alone[1:] == [line for line in together[1:] if line.split(",")[0] in keep]
