"""topk_kd_loss — distillation from stored top-k teacher logits. Taught in notebook 14; reference
``kdcore.llm.distill.topk_kd_loss``.

Contract (docs/EXERCISES.md): ``student_logits [B, L, V]``, ``topk_values`` / ``topk_indices [B, L, k]`` (the
teacher's logits, or log-probabilities, at its k stored token ids), ``mask [B, L]``; the teacher renormalised over
its k stored tokens, ``p̃ = softmax(topk_values/T)``; the student over all V tokens, ``q = softmax(s/T)`` gathered at
the stored ids; ``T²·Σ_k p̃·(log p̃ − log q)`` averaged over the real tokens; k larger than V, an all-zero mask
raise ValueError.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdcore.checking.cases import cases, gen, randn
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import TEACHER_GRAD_HINT


def _build(seed: int, *, b: int, l: int, v: int, k: int, T: float | None = None, mask: str = "float",
           stored: str = "logits", order: str = "topk", scale: float = 2.0, pad_logits: float | None = None):
    """Student logits ``[b, l, v]`` and the teacher's top-k ``(values, indices)`` ``[b, l, k]``.

    stored: "logits" (raw teacher logits) or "log_probs" (log_softmax over the full vocabulary, then kept);
    order: "topk" (as torch.topk returns them, descending) or "shuffled"; k > v builds indices 0..k-1 (invalid)."""
    student = randn(b, l, v, seed=seed, scale=scale)
    teacher = randn(b, l, v, seed=seed + 1, scale=scale * 1.5)
    if stored == "log_probs":
        teacher = F.log_softmax(teacher, dim=-1)
    if k <= v:
        values, indices = teacher.topk(k, dim=-1)
        if order == "shuffled":
            perm = torch.randperm(k, generator=gen(seed + 3))
            values, indices = values[..., perm], indices[..., perm]
    else:
        indices = torch.arange(k).repeat(b, l, 1) % v
        values = randn(b, l, k, seed=seed + 4)
    lengths = torch.randint(1, l + 1, (b,), generator=gen(seed + 2))
    lengths[0] = max(1, l - 2)
    m = torch.arange(l)[None, :] < lengths[:, None]
    if mask == "ones":
        m = torch.ones(b, l, dtype=torch.bool)
    elif mask == "zeros":
        m = torch.zeros(b, l, dtype=torch.bool)
    if pad_logits is not None:
        student[~m] = pad_logits
        values[~m] = -pad_logits
    m = m if mask == "bool" else m.float()
    return (student, values, indices, m), ({} if T is None else {"T": T})


CASES = cases(_build, [
    dict(b=2, l=5, v=10, k=3, T=1.0, note="k = 3 of 10, logits stored"),
    dict(b=2, l=4, v=8, k=5, T=2.0, mask="bool", note="k = 5 of 8, T = 2"),
    dict(b=2, l=4, v=7, k=7, T=1.5, mask="ones", note="k = V: the full forward KL"),
    dict(b=3, l=3, v=9, k=1, T=1.0, note="k = 1: cross-entropy on the teacher's argmax"),
    dict(b=2, l=4, v=10, k=4, T=1.0, stored="log_probs", note="log-probabilities stored instead of logits"),
    dict(b=2, l=4, v=10, k=4, T=2.0, stored="log_probs", order="shuffled",
         note="log-probabilities, k entries in any order"),
    dict(b=2, l=6, v=6, k=3, pad_logits=50.0, note="padded positions hold huge logits: they must not count"),
    dict(b=1, l=5, v=12, k=6, note="single sequence, default T"),
    dict(b=2, l=4, v=10, k=4, T=2.0, scale=1e3, atol=1e-3, rtol=1e-3, note="logits of magnitude 1e3"),
    dict(b=2, l=4, v=8, k=3, T=3.0, grad=(0, 1), note="gradient w.r.t. the student only"),
    dict(b=2, l=3, v=5, k=6, raises=True, note="k larger than the vocabulary"),
    dict(b=2, l=3, v=8, k=3, mask="zeros", raises=True, note="all-zero mask"),
])


# ----------------------------------------------------------------------------------------------------------
# an honest solution
# ----------------------------------------------------------------------------------------------------------
def _honest(student_logits, topk_values, topk_indices, mask, T=1.0):
    if topk_indices.shape[-1] > student_logits.shape[-1]:
        raise ValueError("k must not exceed the vocabulary size")
    m = mask.bool()
    if not m.any():
        raise ValueError("mask must mark at least one real token")
    log_p = F.log_softmax(topk_values.detach() / T, dim=-1)                  # renormalised over the k
    log_q = F.log_softmax(student_logits / T, dim=-1).gather(-1, topk_indices)  # student over all V
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)                         # [B, L]
    return T * T * kl[m].mean()


# ----------------------------------------------------------------------------------------------------------
# the misconceptions
# ----------------------------------------------------------------------------------------------------------
wrong("top-k without renormalisation",
      hint="the stored k probabilities do not sum to 1 (the tail is missing): renormalise them, "
           "p̃ = softmax(topk_values / T) over the k entries, instead of using exp(values) as they are"
      ).edit(_honest, "log_p = F.log_softmax(topk_values.detach() / T, dim=-1)", "log_p = topk_values.detach() / T")

@wrong("unstored tokens given logit 0",
       hint="scattering the k values into zeros gives every unstored token logit 0, i.e. real probability mass; "
            "the teacher is renormalised over its k stored tokens only (unstored tokens have probability 0)")
def zeros_elsewhere(student_logits, topk_values, topk_indices, mask, T=1.0):
    if topk_indices.shape[-1] > student_logits.shape[-1] or not mask.bool().any():
        raise ValueError("k > V or all-zero mask")
    full = torch.zeros_like(student_logits).scatter(-1, topk_indices, topk_values.detach())
    log_p = F.log_softmax(full / T, dim=-1)                        # the tail gets exp(0) weight each
    log_q = F.log_softmax(student_logits / T, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return T * T * kl[mask.bool()].mean()


wrong("student renormalised over the k tokens too",
      hint="the student is a distribution over the whole vocabulary: take log_softmax over all V, then gather the "
           "stored ids (renormalising the student over the k tokens leaves its tail unconstrained)"
      ).edit(_honest, "F.log_softmax(student_logits / T, dim=-1).gather(-1, topk_indices)",
             "F.log_softmax(student_logits.gather(-1, topk_indices) / T, dim=-1)")

wrong("student's own top-k gathered",
      hint="gather the student's log-probabilities at the teacher's stored ids (topk_indices), not at the "
           "student's own top-k tokens"
      ).edit(_honest, "F.log_softmax(student_logits / T, dim=-1).gather(-1, topk_indices)",
             "F.log_softmax(student_logits / T, dim=-1).topk(topk_indices.shape[-1], dim=-1).values")

wrong("direction swapped", hint="distil with the forward KL(teacher ‖ student) = Σ p̃·(log p̃ − log q): the "
                                "expectation is under the (renormalised) teacher"
      ).edit(_honest, "kl = (log_p.exp() * (log_p - log_q))", "kl = (log_q.exp() * (log_q - log_p))")

wrong("mask ignored", hint="padded positions were averaged in: select the real tokens before the mean"
      ).edit(_honest, "return T * T * kl[m].mean()", "return T * T * kl.mean()")

wrong("mean over padded positions", hint="divide by the number of real tokens (mask.sum()), not by B·L"
      ).edit(_honest, "return T * T * kl[m].mean()", "return T * T * (kl * m).mean()")

wrong("T² omitted", hint="off by a factor of T²: multiply by T**2 (as in kd_loss and sequence_kd_loss)"
      ).edit(_honest, "return T * T * kl[m].mean()", "return kl[m].mean()")

wrong("T² applied twice", hint="the loss is scaled by T**2 once, not T**4"
      ).edit(_honest, "return T * T * kl[m].mean()", "return T ** 4 * kl[m].mean()")

wrong("T on the student only", hint="soften the stored teacher values by T as well: softmax(topk_values / T)"
      ).edit(_honest, "F.log_softmax(topk_values.detach() / T, dim=-1)", "F.log_softmax(topk_values.detach(), dim=-1)")

wrong("teacher not detached", hint=TEACHER_GRAD_HINT).edit(_honest, "topk_values.detach()", "topk_values")

wrong("k not validated", hint="raise ValueError when k (topk_indices.shape[-1]) exceeds the vocabulary size V"
      ).edit(_honest, """    if topk_indices.shape[-1] > student_logits.shape[-1]:
        raise ValueError("k must not exceed the vocabulary size")
""", "")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently
# ----------------------------------------------------------------------------------------------------------
@correct("cross-entropy minus the teacher's entropy, weighted mean")
def ok_cross_entropy(student_logits, topk_values, topk_indices, mask, T=1.0):
    if topk_values.size(-1) > student_logits.size(-1) or mask.sum() == 0:
        raise ValueError("k > V or all-zero mask")
    p = torch.softmax(topk_values.detach() / T, dim=2)
    log_q = torch.gather(torch.log_softmax(student_logits / T, dim=2), 2, topk_indices)
    ce = -(p * log_q).sum(2)
    neg_h = (p * torch.log_softmax(topk_values.detach() / T, dim=2)).sum(2)
    w = mask.float()
    return T * T * ((ce + neg_h) * w).sum() / w.sum()


@correct("scatter into a full distribution with -inf elsewhere, F.kl_div")
def ok_scatter(student_logits, topk_values, topk_indices, mask, T=1.0):
    if topk_indices.shape[-1] > student_logits.shape[-1] or not mask.bool().any():
        raise ValueError("k > V or all-zero mask")
    full = torch.full_like(student_logits, float("-inf")).scatter(-1, topk_indices, topk_values.detach() / T)
    p = torch.softmax(full, dim=-1)                                  # exactly 0 off the stored ids
    kl = F.kl_div(F.log_softmax(student_logits / T, dim=-1), p, reduction="none").sum(-1)
    return T * T * kl[mask.bool()].mean()
