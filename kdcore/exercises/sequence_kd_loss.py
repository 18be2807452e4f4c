"""sequence_kd_loss — token-level distillation loss for language models. Taught in notebook 11; reference
``kdcore.distill.sequence_kd_loss``.

Contract (docs/EXERCISES.md, notebook 11): logits ``[B, L, V]``, ``mask [B, L]`` (1 = real token, bool or 0/1
numbers); ``T²·KL(softmax(t/T) ‖ softmax(s/T))`` summed over the vocabulary and averaged over the real tokens only
(padded positions do not count, whatever their logits); the teacher is detached.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdcore.checking.cases import cases, randn
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import TEACHER_GRAD_HINT

_MASK_DTYPES = {"float": torch.float32, "bool": torch.bool, "int64": torch.int64}


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, lengths: tuple[int, ...], padded_to: int, vocab: int, T: float | None = None,
           mask: str = "float", scale: float = 2.0, pad_logits: float | None = None):
    """Student and teacher logits ``[B, L, V]`` (Gaussian × scale), B = len(lengths), L = padded_to, V = vocab,
    and the mask ``[B, L]`` with ``lengths[i]`` real tokens at the start of sequence i, of dtype ``mask``.
    ``pad_logits``: the padded positions hold logits spread over ±pad_logits (the teacher's reversed)."""
    student = randn(len(lengths), padded_to, vocab, seed=seed, scale=scale)
    teacher = randn(len(lengths), padded_to, vocab, seed=seed + 1, scale=scale)
    real = torch.zeros(len(lengths), padded_to)
    for i, n in enumerate(lengths):
        real[i, :n] = 1
    if pad_logits is not None:
        padded = real == 0
        student[padded] = torch.linspace(-pad_logits, pad_logits, vocab)
        teacher[padded] = -torch.linspace(-pad_logits, pad_logits, vocab)
    return (student, teacher, real.to(_MASK_DTYPES[mask])), ({} if T is None else {"T": T})


CASES = cases(_build, [
    dict(lengths=(5, 2), padded_to=5, vocab=7, T=1.0, note="padding at the end, float mask"),
    dict(lengths=(1, 4, 3), padded_to=4, vocab=6, T=2.0, mask="bool", note="different lengths"),
    dict(lengths=(3, 3), padded_to=3, vocab=5, T=1.5, note="no padding (all ones)"),
    dict(lengths=(6, 3), padded_to=6, vocab=5, T=2.0, mask="int64", pad_logits=1e4,
         note="padded positions hold huge logits: they must not count"),
    dict(lengths=(4,), padded_to=6, vocab=4, note="single sequence, default T"),
    dict(lengths=(4, 2), padded_to=4, vocab=8, T=2.0, scale=1e3, atol=1e-3, note="logits of magnitude 1e3"),
    dict(lengths=(5, 2), padded_to=5, vocab=6, T=3.0, grad=(0, 1),
         note="gradient reaches the student logits, not the teacher's"),
])

# Mutants of the reference that no input can tell apart from it (python -m kdcore.checking.mutants sequence_kd_loss).
EQUIVALENT_MUTANTS = {
    "line +14, col 73: `2` → `3`": "changes only the text of the ValueError for a mask of the wrong shape (inside "
                                   "the f-string), not when it is raised",
    "line +14, col 73: `2` → `1`": "changes only the text of the ValueError for a mask of the wrong shape (inside "
                                   "the f-string), not when it is raised",
}


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants below that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _honest(student_logits, teacher_logits, mask, T=1.0):
    m = mask.float()                                                   # [B, L], 1 = real token
    log_p_s = F.log_softmax(student_logits / T, dim=-1)                # [B, L, V]
    log_p_t = F.log_softmax(teacher_logits.detach() / T, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)                 # [B, L], KL per position
    return T * T * (kl * m).sum() / m.sum()


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("padding mask ignored", hint="the padding mask is ignored: padded positions must not count (average over "
                                   "mask = 1 tokens only)"
      ).edit(_honest, "return T * T * (kl * m).sum() / m.sum()", "return T * T * kl.mean()")

wrong("divided by all positions", hint="divide by the number of real tokens (mask.sum()), not by B·L: padding must "
                                       "not dilute the loss"
      ).edit(_honest, "(kl * m).sum() / m.sum()", "(kl * m).sum() / m.numel()")

wrong("batchmean divides by B", hint="F.kl_div's 'batchmean' divides by the batch size B, not by the number of "
                                     "tokens: sum the masked per-token KL and divide by mask.sum()"
      ).edit(_honest, "(kl * m).sum() / m.sum()", "(kl * m).sum() / student_logits.shape[0]")

wrong("mean of per-sequence means", hint="average over all real tokens of the batch at once; a mean of "
                                         "per-sequence means over-weights short sequences"
      ).edit(_honest, "(kl * m).sum() / m.sum()", "((kl * m).sum(1) / m.sum(1)).mean()")

wrong("missing T²", hint="off by a factor of T²: multiply the KL by T**2"
      ).edit(_honest, "return T * T * (kl * m)", "return (kl * m)")

wrong("reversed KL", hint="KL direction reversed: the teacher's distribution is the target, KL(p_teacher ‖ p_student)"
      ).edit(_honest, "(log_p_t.exp() * (log_p_t - log_p_s))", "(log_p_s.exp() * (log_p_s - log_p_t))")

wrong("T on the student only", hint="soften both distributions with T, teacher too"
      ).edit(_honest, "teacher_logits.detach() / T", "teacher_logits.detach()")

wrong("mean over the vocabulary", hint="sum the KL over the vocabulary (a distribution's KL is a sum over its "
                                       "classes), do not average"
      ).edit(_honest, "(log_p_t - log_p_s)).sum(-1)", "(log_p_t - log_p_s)).mean(-1)")

wrong("log(softmax(x))", hint="log(softmax(x)) gives log(0) = −inf for large logits: use F.log_softmax"
      ).edit(_honest, "F.log_softmax(student_logits / T, dim=-1)", "torch.log(F.softmax(student_logits / T, dim=-1))")

wrong("teacher not detached", hint=TEACHER_GRAD_HINT).edit(_honest, "teacher_logits.detach()", "teacher_logits")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("boolean indexing + batchmean")
def ok_index(student_logits, teacher_logits, mask, T=1.0):
    keep = mask.bool()
    s, t = student_logits[keep], teacher_logits[keep].detach()   # [real tokens, V]
    return T ** 2 * F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean")


@correct("weighted sum, log_target")
def ok_weighted(student_logits, teacher_logits, mask, T=1.0):
    m = mask.to(student_logits.dtype)
    kl = F.kl_div(F.log_softmax(student_logits / T, -1), F.log_softmax(teacher_logits / T, -1).detach(),
                  reduction="none", log_target=True).sum(-1)
    return (kl * m).sum() / m.sum() * T * T
