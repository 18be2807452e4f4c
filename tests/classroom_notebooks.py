"""Notebook builders for the batch-grader tests: submissions of notebook 01 (softmax_t, kl_divergence,
soft_cross_entropy) written the way learners write them, correctly, wrongly, brokenly and with hostile intent.

Every submission carries a secret line (``# SECRET-<student>-<token>``) so that a test can tell whether any
student's text reached another student's feedback.
"""
from __future__ import annotations

import secrets
import textwrap

import nbformat
import torch

EXERCISE_IDS = ["softmax_t", "kl_divergence", "soft_cross_entropy"]  # notebook 01 of docs/EXERCISES.md

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

# Correct too, written differently (what different learners write).
CORRECT_ALTERNATIVES = {
    "softmax_t": [
        "if not T > 0:\n    raise ValueError('T must be positive')\n"
        "z = logits / T\nz = z - z.max(dim=-1, keepdim=True).values\ne = z.exp()\n"
        "return e / e.sum(dim=-1, keepdim=True)\n",
        "import torch.nn.functional as F\nif T <= 0:\n    raise ValueError('bad T')\n"
        "return F.log_softmax(logits / T, dim=-1).exp()\n",
    ],
    "kl_divergence": [
        "import torch.nn.functional as F\n"
        "return F.kl_div(torch.log(p_student), p_teacher, reduction='none').nan_to_num(0.0).sum(-1).mean()\n",
    ],
    "soft_cross_entropy": [
        "rows = []\nflat_t = p_teacher.reshape(-1, p_teacher.shape[-1])\nflat_s = p_student.reshape(-1, p_student.shape[-1])\n"
        "for t_row, s_row in zip(flat_t, flat_s):\n    rows.append(-(torch.xlogy(t_row, s_row)).sum())\n"
        "return torch.stack(rows).mean()\n",
    ],
}

WRONG = {  # classic mistakes
    "softmax_t": ["return torch.softmax(logits, dim=-1)\n",                      # forgot T
                  "return torch.softmax(logits * T, dim=-1)\n",                  # multiplied by T
                  "e = torch.exp(logits / T)\nreturn e / e.sum(dim=-1, keepdim=True)\n"],  # overflows at 1e4
    "kl_divergence": ["return (p_student * (p_student.log() - p_teacher.log())).sum(-1).mean()\n",  # reversed
                      "return (p_teacher * (p_teacher.log() - p_student.log())).sum()\n"],          # sum not mean
    "soft_cross_entropy": ["return (p_teacher * p_student.log()).sum(-1).mean()\n"],                # sign
}

UNSOLVED = 'raise NotImplementedError("Your code here")\n'


def function_source(exercise_id: str, body: str) -> str:
    return SIGNATURES[exercise_id] + textwrap.indent(body, "    ")


def solution_cell(exercise_id: str, body: str | None = None) -> str:
    region = "### BEGIN SOLUTION\n" + (body or CORRECT[exercise_id]) + "### END SOLUTION\n"
    return SIGNATURES[exercise_id] + textwrap.indent(region, "    ")


def correct_code() -> dict[str, str]:
    return {e: function_source(e, CORRECT[e]) for e in EXERCISE_IDS}


def with_body(exercise_id: str, body: str, base: dict[str, str] | None = None) -> dict[str, str]:
    code = dict(base or correct_code())
    code[exercise_id] = function_source(exercise_id, body)
    return code


def unsolved_code() -> dict[str, str]:
    return {e: function_source(e, UNSOLVED) for e in EXERCISE_IDS}


def notebook(code_by_exercise: dict[str, str | None], *, student: str = "", extra: list | None = None,
             order: list[str] | None = None, long_cells: bool = True) -> nbformat.NotebookNode:
    """A notebook in the course format; ``None`` deletes an exercise's cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    secret = f"# SECRET-{student or 'anon'}-{secrets.token_hex(6)}"
    cells = [nbformat.v4.new_markdown_cell("# 01 · Soft labels"),
             nbformat.v4.new_code_cell(f"{secret}\nimport torch\nimport kdcore as kd\ntorch.manual_seed(0)\n"
                                       "EPS = 1e-8")]
    for exercise_id in order or EXERCISE_IDS:
        code = code_by_exercise.get(exercise_id)
        if code is None:
            continue
        cells += [nbformat.v4.new_markdown_cell(f"### {exercise_id}"),
                  nbformat.v4.new_code_cell(code),
                  nbformat.v4.new_code_cell(f'kd.check("{exercise_id}", {exercise_id})')]
    if long_cells:
        # A long "experiment", the course's own demo code that fails when only definitions run, and
        # shell/magic lines: the grader's fast path runs none of them, and the feedback mentions none.
        cells += [nbformat.v4.new_code_cell("import time\ntime.sleep(600)  # a long training run"),
                  nbformat.v4.new_code_cell("P_T = p_t.sum()\nKL = kl_divergence(p_t, p_s)"),
                  nbformat.v4.new_code_cell("%time x = 1\n!echo hello")]
    cells += extra or []
    for index, cell in enumerate(cells):
        cell["id"] = f"c{index}"
    nb.cells = cells
    return nb


def secret_of(nb: nbformat.NotebookNode) -> str:
    return nb.cells[1].source.splitlines()[0][2:]


def expected_score(code: dict[str, str], exercise_id: str) -> float:
    """The grader's score for one function, computed here with check() (the independent reference)."""
    from kdcore.checking import check
    if code.get(exercise_id) is None:
        return 0.0
    namespace: dict = {"torch": torch}
    exec(code[exercise_id], namespace)
    return check(exercise_id, namespace[exercise_id], raise_on_fail=False, verbose=False).score
