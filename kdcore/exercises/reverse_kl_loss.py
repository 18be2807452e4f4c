"""reverse_kl_loss — token-level KL(student ‖ teacher). Taught in notebook 14; reference
``kdcore.llm.distill.reverse_kl_loss``.

Contract (docs/EXERCISES.md): logits ``[B, L, V]``, ``mask [B, L]`` (1 = real token); ``T²·KL(softmax(s/T) ‖
softmax(t/T))`` summed over the vocabulary, averaged over the real tokens only; gradient to the student only; an
all-zero mask or different vocabulary sizes raise ValueError (MiniLLM, Gu et al. 2024, per-token form).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdcore.checking.cases import cases, gen, randn
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import TEACHER_GRAD_HINT


def _build(seed: int, *, b: int, l: int, v: int, T: float | None = None, mask: str = "float",
           scale: float = 2.0, pad_logits: float | None = None, v_teacher: int | None = None):
    """Student / teacher logits ``[b, l, v]`` and a mask with rows of random lengths (each >= 1 real token).

    mask: "float" | "bool" | "int" | "ones" | "zeros"; pad_logits: the value written into the padded positions
    of both logit tensors (garbage that must not count); v_teacher: a different teacher vocabulary size."""
    student = randn(b, l, v, seed=seed, scale=scale)
    teacher = randn(b, l, v if v_teacher is None else v_teacher, seed=seed + 1, scale=scale)
    lengths = torch.randint(1, l + 1, (b,), generator=gen(seed + 2))
    lengths[0] = max(1, l - 2)                                       # at least one padded position when l > 2
    m = torch.arange(l)[None, :] < lengths[:, None]                  # [b, l] bool
    if mask == "ones":
        m = torch.ones(b, l, dtype=torch.bool)
    elif mask == "zeros":
        m = torch.zeros(b, l, dtype=torch.bool)
    if pad_logits is not None:
        student[~m], teacher[~m] = pad_logits, -pad_logits
    m = {"float": m.float(), "bool": m, "int": m.long(), "ones": m.float(), "zeros": m.float()}[mask]
    return (student, teacher, m), ({} if T is None else {"T": T})


CASES = cases(_build, [
    dict(b=2, l=5, v=7, T=1.0, note="padding at the end (float mask)"),
    dict(b=3, l=4, v=6, T=2.0, mask="bool", note="bool mask, rows of different lengths"),
    dict(b=2, l=3, v=5, T=1.5, mask="ones", note="no padding"),
    dict(b=2, l=6, v=4, T=1.0, mask="int", pad_logits=50.0,
         note="padded positions hold huge logits: they must not count"),
    dict(b=1, l=6, v=4, note="single sequence, default T"),
    dict(b=2, l=4, v=9, T=2.0, scale=1e3, atol=1e-3, rtol=1e-3, note="logits of magnitude 1e3"),
    dict(b=2, l=4, v=5, T=4.0, scale=0.3, note="nearly uniform distributions, T=4"),
    dict(b=3, l=5, v=6, T=3.0, grad=(0, 1), note="gradient w.r.t. the student only"),
    dict(b=2, l=3, v=8, T=1.0, grad=(0, 1)),
    dict(b=2, l=3, v=5, mask="zeros", raises=True, note="all-zero mask"),
    dict(b=2, l=3, v=5, v_teacher=6, raises=True, note="vocabulary sizes differ"),
])


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants below that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _honest(student_logits, teacher_logits, mask, T=1.0):
    if student_logits.shape[-1] != teacher_logits.shape[-1]:
        raise ValueError("student_logits and teacher_logits must have the same vocabulary size")
    m = mask.bool()
    if not m.any():
        raise ValueError("mask must mark at least one real token")
    log_q = F.log_softmax(student_logits / T, dim=-1)                 # student
    log_p = F.log_softmax(teacher_logits.detach() / T, dim=-1)        # teacher, a constant
    kl = (log_q.exp() * (log_q - log_p)).sum(dim=-1)                  # [B, L], KL(q ‖ p) per position
    return T * T * kl[m].mean()


# ----------------------------------------------------------------------------------------------------------
# the misconceptions
# ----------------------------------------------------------------------------------------------------------
wrong("direction swapped (forward KL)",
      hint="that is the forward KL(teacher ‖ student), Σ p·(log p − log q); the reverse KL takes the expectation "
           "under the student: Σ q·(log q − log p) with q = softmax(student/T)"
      ).edit(_honest, "kl = (log_q.exp() * (log_q - log_p))", "kl = (log_p.exp() * (log_p - log_q))")

wrong("F.kl_div with the student as input",
      hint="F.kl_div(input, target) computes KL(target ‖ exp(input)): for KL(student ‖ teacher) the *teacher's* "
           "log-probabilities are the input and the student's the target (log_target=True)"
      ).edit(_honest, "kl = (log_q.exp() * (log_q - log_p)).sum(dim=-1)",
             'kl = F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(dim=-1)')

wrong("log-probabilities passed as probabilities",
      hint="F.kl_div(log_p_teacher, log_q_student) without log_target=True reads the target as probabilities; "
           "pass log_target=True (or the student's probabilities)"
      ).edit(_honest, "kl = (log_q.exp() * (log_q - log_p)).sum(dim=-1)",
             'kl = F.kl_div(log_p, log_q, reduction="none").sum(dim=-1)')

wrong("mask ignored", hint="padded positions were averaged in: select the real tokens (kl[mask.bool()]) before "
                           "taking the mean"
      ).edit(_honest, "return T * T * kl[m].mean()", "return T * T * kl.mean()")

wrong("mean over padded positions",
      hint="you zeroed the padding but divided by every position (B·L); divide by the number of real tokens, "
           "mask.sum()"
      ).edit(_honest, "return T * T * kl[m].mean()", "return T * T * (kl * m).mean()")

wrong("sum over tokens instead of mean", hint="average over the real tokens: the loss must not grow with the "
                                              "number of tokens in the batch"
      ).edit(_honest, "return T * T * kl[m].mean()", "return T * T * kl[m].sum()")

wrong("T² omitted", hint="off by a factor of T²: multiply by T**2 so the gradient's size does not depend on T"
      ).edit(_honest, "return T * T * kl[m].mean()", "return kl[m].mean()")

wrong("T² applied twice", hint="the loss is scaled by T**2 once, not T**4"
      ).edit(_honest, "return T * T * kl[m].mean()", "return T ** 4 * kl[m].mean()")

wrong("T on the student only", hint="divide both the student's and the teacher's logits by T"
      ).edit(_honest, "teacher_logits.detach() / T", "teacher_logits.detach()")

wrong("teacher not detached", hint=TEACHER_GRAD_HINT).edit(_honest, "teacher_logits.detach()", "teacher_logits")

wrong("log(softmax(x))", hint="log(softmax(x)) underflows to log(0) = −inf for large logits: use F.log_softmax"
      ).edit(_honest, "log_q = F.log_softmax(student_logits / T, dim=-1)",
             "log_q = torch.log(F.softmax(student_logits / T, dim=-1))")

wrong("no validation", hint="raise ValueError for an all-zero mask (the mean over no tokens is undefined) and "
                            "for student and teacher vocabularies of different sizes"
      ).edit(_honest, """    if student_logits.shape[-1] != teacher_logits.shape[-1]:
        raise ValueError("student_logits and teacher_logits must have the same vocabulary size")
    m = mask.bool()
    if not m.any():
        raise ValueError("mask must mark at least one real token")
""", "    m = mask.bool()\n")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently
# ----------------------------------------------------------------------------------------------------------
def _validate(student_logits, teacher_logits, mask):
    if student_logits.shape[-1] != teacher_logits.shape[-1] or mask.sum() == 0:
        raise ValueError("vocabulary sizes differ or the mask is all zeros")


@correct("F.kl_div(teacher, student, log_target=True), weighted mean")
def ok_kl_div(student_logits, teacher_logits, mask, T=1.0):
    _validate(student_logits, teacher_logits, mask)
    with torch.no_grad():
        log_p = F.log_softmax(teacher_logits / T, dim=2)
    kl = F.kl_div(log_p, F.log_softmax(student_logits / T, dim=2), reduction="none", log_target=True).sum(2)
    m = mask.to(kl.dtype)
    return (T ** 2) * (kl * m).sum() / m.sum()


@correct("entropy and cross-entropy terms, flattened tokens")
def ok_entropy(student_logits, teacher_logits, mask, T=1.0):
    _validate(student_logits, teacher_logits, mask)
    V = student_logits.shape[-1]
    keep = mask.reshape(-1).bool()
    s = student_logits.reshape(-1, V)[keep] / T
    t = teacher_logits.detach().reshape(-1, V)[keep] / T
    q = torch.softmax(s, -1)
    neg_entropy = (q * torch.log_softmax(s, -1)).sum(-1)
    cross = -(q * torch.log_softmax(t, -1)).sum(-1)
    return T * T * (neg_entropy + cross).mean()
