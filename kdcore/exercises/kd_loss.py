"""kd_loss — Hinton's distillation loss. Taught in notebook 02; reference ``kdcore.distill.kd_loss``.

Contract (docs/EXERCISES.md): ``alpha·T²·KL(softmax(t/T) ‖ softmax(s/T))`` (batch-mean) ``+ (1−alpha)·CE(s, y)``
at T = 1; a scalar; differentiable w.r.t. the student logits only; finite for logits of magnitude 1e3.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdcore.checking.cases import call_case, cases, labels, randn
from kdcore.checking.catalogue import correct, edited, wrong
from kdcore.checking.core import TEACHER_GRAD_HINT


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, n: int, c: int, T: float | None = None, alpha: float | None = None, scale: float = 2.0):
    """Student and teacher logits ``[n, c]`` (Gaussian × scale) and labels ``[n]``; T/alpha omitted when None."""
    student, teacher = randn(n, c, seed=seed, scale=scale), randn(n, c, seed=seed + 1, scale=scale)
    kwargs = {k: v for k, v in {"T": T, "alpha": alpha}.items() if v is not None}
    return (student, teacher, labels(n, c, seed + 2)), kwargs


_FIXED_S = torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]])
_FIXED_T = torch.tensor([[3.0, 0.5, -0.5], [0.0, 4.0, 1.0]])

CASES = [
    call_case("fixed example (2 rows, 3 classes), T=4, alpha=0.9",
              lambda: ((_FIXED_S.clone(), _FIXED_T.clone(), torch.tensor([0, 1])), {"T": 4.0, "alpha": 0.9})),
    *cases(_build, [
        dict(n=8, c=10, T=2.0, alpha=0.5),
        dict(n=16, c=5, T=4.0, alpha=0.9),
        dict(n=8, c=10, T=1.0, alpha=0.3),
        dict(n=1, c=7, T=3.0, alpha=0.7, note="single row"),
        dict(n=6, c=4, note="defaults T=4, alpha=0.9 (called without them)"),
        dict(n=6, c=8, T=5.0, alpha=1.0, note="soft term only"),
        dict(n=6, c=8, T=3.0, alpha=0.0, note="hard cross-entropy only"),
        dict(n=8, c=10, T=4.0, alpha=0.9, scale=1e3, atol=1e-3, note="logits of magnitude 1e3"),
        dict(n=8, c=6, T=2.0, alpha=0.6, grad=(0, 1), note="gradient w.r.t. the student only"),
        dict(n=4, c=12, T=8.0, alpha=0.9, grad=(0, 1)),
        dict(n=0, c=5, T=4.0, alpha=0.9, raises=True, note="empty batch"),
    ]),
]

# Mutants of the reference that no input can tell apart from it (python -m kdcore.checking.mutants kd_loss).
EQUIVALENT_MUTANTS = {
    "line +20, col 14: `dim=-1` → `dim=1` in `F.log_softmax(s / T, dim=-1)`":
        "the logits are validated to be 2-D [N, C], where dim 1 is dim -1",
    "line +21, col 14: `dim=-1` → `dim=1` in `F.log_softmax(t.detach() / T, dim=-1)`":
        "the logits are validated to be 2-D [N, C], where dim 1 is dim -1",
}


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants below that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _honest(student_logits, teacher_logits, labels, T=4.0, alpha=0.9):
    if student_logits.shape[0] == 0:
        raise ValueError("student_logits must have at least one row")
    p_teacher = F.softmax(teacher_logits.detach() / T, dim=-1)
    log_p_student = F.log_softmax(student_logits / T, dim=-1)
    soft = F.kl_div(log_p_student, p_teacher, reduction="batchmean")
    hard = F.cross_entropy(student_logits, labels)
    return alpha * T * T * soft + (1 - alpha) * hard


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
@wrong("seed 000: F.kl_div on raw logits",
       hint="F.kl_div(input, target) needs input = log_softmax(student/T) and target = softmax(teacher/T); seed "
            "000's F.kl_div(logits_student, logits_teacher, reduction='sum') passes raw logits (and drops T, "
            "alpha and the label term)")
def seed_000(student_logits, teacher_logits, labels, T=4.0, alpha=0.9):
    return F.kl_div(student_logits, teacher_logits, reduction="sum")


wrong("missing T²", hint="off by a factor of T²: did you forget to multiply the soft term by T**2? (it keeps the "
                         "soft gradients' size independent of T)"
      ).edit(_honest, "alpha * T * T * soft", "alpha * soft")

wrong("T instead of T²", hint="the soft term is scaled by T**2, not by T"
      ).edit(_honest, "alpha * T * T * soft", "alpha * T * soft")

wrong("reduction='mean'", hint="reduction='mean' divides by batch × classes: use reduction='batchmean' (sum over "
                               "classes, mean over rows)"
      ).edit(_honest, 'reduction="batchmean"', 'reduction="mean"')

wrong("reduction='sum'", hint="reduction='sum' adds up the whole batch: divide by the batch size "
                              "(reduction='batchmean')"
      ).edit(_honest, 'reduction="batchmean"', 'reduction="sum"')

wrong("reversed KL", hint="KL direction reversed: the teacher's distribution is the target, "
                          "KL(p_teacher ‖ p_student) = F.kl_div(log_softmax(s/T), softmax(t/T))"
      ).edit(_honest, "F.kl_div(log_p_student, p_teacher,",
             "F.kl_div(F.log_softmax(teacher_logits.detach() / T, dim=-1), log_p_student.exp(),")

wrong("T on the student only", hint="the temperature must soften both distributions: softmax(teacher / T) as "
                                    "well as student / T"
      ).edit(_honest, "teacher_logits.detach() / T", "teacher_logits.detach()")

wrong("T on the teacher only", hint="the temperature must soften both distributions: log_softmax(student / T) "
                                    "as well"
      ).edit(_honest, "F.log_softmax(student_logits / T", "F.log_softmax(student_logits")

wrong("alpha on the wrong term", hint="alpha weights the soft (teacher) term: alpha·T²·KL + (1−alpha)·CE; you "
                                      "swapped them"
      ).edit(_honest, "alpha * T * T * soft + (1 - alpha) * hard", "(1 - alpha) * T * T * soft + alpha * hard")

wrong("T applied to the hard-label term", hint="the hard cross-entropy with the labels uses the plain logits "
                                               "(T = 1), not student / T"
      ).edit(_honest, "F.cross_entropy(student_logits, labels)", "F.cross_entropy(student_logits / T, labels)")

wrong("softmax over dim 0", hint="softmax over the wrong dimension: classes are the last dim (dim=-1 / dim=1), "
                                 "not the batch"
      ).edit(_honest, "dim=-1", "dim=0", count=2)

wrong("log(softmax(x))", hint="log(softmax(x)) underflows to log(0) = −inf for large logits: use F.log_softmax"
      ).edit(_honest, "F.log_softmax(student_logits / T, dim=-1)", "torch.log(F.softmax(student_logits / T, dim=-1))")

wrong("teacher not detached", hint=TEACHER_GRAD_HINT).edit(_honest, "teacher_logits.detach()", "teacher_logits")

wrong("per-sample vector", hint="return a scalar: average the per-sample losses over the batch"
      ).edit(_honest, """soft = F.kl_div(log_p_student, p_teacher, reduction="batchmean")
    hard = F.cross_entropy(student_logits, labels)""",
             """soft = F.kl_div(log_p_student, p_teacher, reduction="none").sum(-1)
    hard = F.cross_entropy(student_logits, labels, reduction="none")""")

wrong("T hard-coded", hint="the T argument is ignored (hard-coded 4?): use the T passed in"
      ).edit(_honest, "    p_teacher =", "    T = 4.0\n    p_teacher =")

wrong("alpha hard-coded", hint="the alpha argument is ignored (hard-coded 0.9?): use the alpha passed in"
      ).edit(_honest, "    p_teacher =", "    alpha = 0.9\n    p_teacher =")

wrong("soft cross-entropy instead of KL",
      hint="you used the soft cross-entropy −Σ p_t·log p_s; the contract is KL, which is smaller by the teacher's "
           "entropy (same gradient, different value)"
      ).edit(_honest, 'F.kl_div(log_p_student, p_teacher, reduction="batchmean")',
             "-(p_teacher * log_p_student).sum(-1).mean()")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("F.kl_div batchmean, dim=1, T ** 2")
def ok_functional(student_logits, teacher_logits, labels, T=4.0, alpha=0.9):
    if student_logits.shape[0] == 0:
        raise ValueError("student_logits must have at least one row")
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=1),
                    F.softmax(teacher_logits.detach() / T, dim=1), reduction="batchmean")
    return alpha * (T ** 2) * soft + (1.0 - alpha) * F.cross_entropy(student_logits, labels)


@correct("nn.KLDivLoss with log_target, teacher under no_grad")
def ok_module(student_logits, teacher_logits, labels, T=4.0, alpha=0.9):
    if len(student_logits) < 1:
        raise ValueError(f"empty batch: student_logits has shape {tuple(student_logits.shape)}")
    with torch.no_grad():
        log_p_t = F.log_softmax(teacher_logits / T, dim=-1)
    soft = nn.KLDivLoss(reduction="batchmean", log_target=True)(F.log_softmax(student_logits / T, dim=-1), log_p_t)
    return alpha * T * T * soft + (1 - alpha) * nn.CrossEntropyLoss()(student_logits, labels)


@correct("hand-written log_softmax sums")
def ok_manual(student_logits, teacher_logits, labels, T=4.0, alpha=0.9):
    if not student_logits.numel():
        raise ValueError("student_logits is empty")
    log_p_t = torch.log_softmax(teacher_logits.detach() / T, dim=-1)
    log_p_s = torch.log_softmax(student_logits / T, dim=-1)
    soft = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()
    hard = F.nll_loss(torch.log_softmax(student_logits, dim=-1), labels)
    return alpha * T * T * soft + (1 - alpha) * hard
