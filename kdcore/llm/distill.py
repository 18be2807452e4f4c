"""Token-level distillation losses for language models: reverse KL, generalized JSD, top-k teacher logits.

All three share the convention of :func:`kdcore.distill.sequence_kd_loss` (forward KL, notebook 11):

* ``student_logits`` ``[B, L, V]`` float; ``teacher_logits`` ``[B, L, V]`` (or stored top-k, see
  :func:`topk_kd_loss`); ``mask`` ``[B, L]``, bool or 0/1 numbers (1 = a real token, 0 = padding);
* a divergence per position, summed over the vocabulary, then the **mean over the real tokens only**
  (padded positions contribute nothing, whatever their logits); an all-zero mask raises ValueError;
* the temperature divides both logits (``softmax(s/T)``, ``softmax(t/T)``) and the loss is multiplied by
  ``T²``, as in Hinton et al. (2015), so the gradient's size does not depend on T; at the default T = 1 the
  factor is 1 and each loss is exactly the paper's;
* the teacher is a constant: teacher tensors are detached, gradients reach the student only;
* natural logarithms (nats), everything through ``log_softmax`` (finite for logits of magnitude 1e3).

Directions, with p = teacher and q = student (Gu et al. 2024's and Agarwal et al. 2024's notation):
forward KL(p ‖ q) = Σ p log(p/q) is *mode covering* (q must be > 0 wherever p is), reverse
KL(q ‖ p) = Σ q log(q/p) is *mode seeking* (q is punished for mass where p is small, not for missing a mode).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kdcore import _validate as v
from kdcore.distill import _logits

__all__ = ["reverse_kl_loss", "generalized_jsd_loss", "topk_kd_loss", "kl_per_token",
           "generalized_jsd_per_token"]


# ---------------------------------------------------------------------------------------------------
# argument checks shared by the three losses
# ---------------------------------------------------------------------------------------------------
def _mask(mask: object, shape: torch.Size) -> torch.Tensor:
    """A bool ``[B, L]`` mask with at least one real token."""
    m = v.tensor("mask", mask, ndim=2)
    if m.shape != shape:
        raise ValueError(f"mask must have shape [B, L] = {tuple(shape)}, got {tuple(m.shape)}")
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("mask must contain only 0 and 1 (or be a bool tensor)")
        m = m == 1
    if not bool(m.any()):
        raise ValueError("mask must mark at least one real token (it is all zeros): "
                         "the mean over no tokens is undefined")
    return m


def _student_teacher(student_logits: object, teacher_logits: object, mask: object,
                     T: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    s = _logits("student_logits", student_logits, ndim=3)
    t = _logits("teacher_logits", teacher_logits, ndim=3)
    if s.shape[-1] != t.shape[-1]:
        raise ValueError(f"student_logits and teacher_logits must have the same vocabulary size (last dim), "
                         f"got V = {s.shape[-1]} and V = {t.shape[-1]}")
    v.same_shape("student_logits", s, "teacher_logits", t)
    m = _mask(mask, s.shape[:2])
    return s, t, m, v.positive("T", T)


def _topk_inputs(student_logits: object, topk_values: object, topk_indices: object, mask: object,
                 T: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Checked inputs of :func:`topk_kd_loss`: ``(s, values, int64 indices, bool mask, T)``."""
    s = _logits("student_logits", student_logits, ndim=3)
    values = _logits("topk_values", topk_values, ndim=3)
    idx = v.tensor("topk_indices", topk_indices, ndim=3)
    if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.is_complex():
        raise TypeError(f"topk_indices must be an integer tensor of token ids, got dtype {idx.dtype}")
    if values.shape != idx.shape:
        raise ValueError(f"topk_values and topk_indices must have the same shape [B, L, k], "
                         f"got {tuple(values.shape)} and {tuple(idx.shape)}")
    if values.shape[:2] != s.shape[:2]:
        raise ValueError(f"topk_values must have the student's [B, L] = {tuple(s.shape[:2])} leading dims, "
                         f"got shape {tuple(values.shape)}")
    V, k = s.shape[-1], values.shape[-1]
    if k > V:
        raise ValueError(f"topk_indices holds k = {k} tokens per position, larger than the vocabulary "
                         f"V = {V} of student_logits: k must be in [1, {V}]")
    idx = idx.long()
    if int(idx.min()) < 0 or int(idx.max()) >= V:
        raise ValueError(f"topk_indices must be token ids in [0, {V - 1}], got values in "
                         f"[{int(idx.min())}, {int(idx.max())}]")
    if k > 1 and bool((idx.sort(dim=-1).values.diff(dim=-1) == 0).any()):
        raise ValueError("topk_indices must be distinct within each position (a token stored twice would be "
                         "counted twice in the renormalised teacher distribution)")
    return s, values, idx, _mask(mask, s.shape[:2]), v.positive("T", T)


# ---------------------------------------------------------------------------------------------------
# per-position divergences from log-probabilities (shape [...] from [..., V])
# ---------------------------------------------------------------------------------------------------
def kl_per_token(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a ‖ b) = Σ_v a (log a − log b) per position, from log-probabilities [..., V] → [...].

    Forward KL is ``kl_per_token(log_p_teacher, log_q_student)``, reverse KL the arguments swapped.
    ``exp(log a)`` underflows to exactly 0 for very negative log-probabilities and 0 · finite = 0, so no
    0·log 0 special case is needed (log_softmax of finite logits is never -inf)."""
    return (log_a.exp() * (log_a - log_b)).sum(dim=-1)


def generalized_jsd_per_token(log_p: torch.Tensor, log_q: torch.Tensor, beta: float) -> torch.Tensor:
    """Agarwal et al. (2024), eq. (1): ``β·KL(p ‖ m) + (1−β)·KL(q ‖ m)`` with ``m = β·p + (1−β)·q``,
    for 0 < β < 1; p = teacher, q = student.

    log m is a logsumexp of ``log β + log p`` and ``log(1−β) + log q``: mixing the *probabilities*, not the
    log-probabilities (mixing log-probabilities was a real bug in a maintained trainer, TRL issue #2202)."""
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log1p(-beta)]), dim=0)
    return beta * kl_per_token(log_p, log_m) + (1.0 - beta) * kl_per_token(log_q, log_m)


# ---------------------------------------------------------------------------------------------------
# the three losses
# ---------------------------------------------------------------------------------------------------
def reverse_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                    T: float = 1.0) -> torch.Tensor:
    """Token-level reverse KL, ``T² · KL(softmax(s/T) ‖ softmax(t/T))`` summed over the vocabulary and
    averaged over the real tokens; a scalar.

    student_logits, teacher_logits: [B, L, V]; mask: [B, L] (1 = real token).  The teacher is detached.
    The expectation is under the student: the student pays for putting mass where the teacher has little,
    not for ignoring one of the teacher's modes (mode seeking).

    MiniLLM (Gu et al., 2024, ICLR) minimises the *sequence-level* reverse KL with a policy gradient on
    sequences the student samples; this is its per-token form (the "single-step" term of MiniLLM's
    gradient decomposition; also GKD's divergence at β = 1), to be applied on student-generated text for
    the on-policy recipe or on any text otherwise.
    """
    s, t, m, T = _student_teacher(student_logits, teacher_logits, mask, T)
    per_token = kl_per_token(F.log_softmax(s / T, dim=-1), F.log_softmax(t.detach() / T, dim=-1))
    return T * T * per_token[m].mean()


def generalized_jsd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                         beta: float = 0.5, T: float = 1.0) -> torch.Tensor:
    """The generalized Jensen-Shannon divergence of GKD (Agarwal et al., 2024, ICLR, eq. 1), token level:
    ``T² · [β·KL(p ‖ m) + (1−β)·KL(q ‖ m)]``, ``m = β·p + (1−β)·q``, p = softmax(t/T) the teacher,
    q = softmax(s/T) the student; summed over the vocabulary, averaged over the real tokens; a scalar.

    Limits of ``beta`` (as in the paper, after Huszár 2015; checked numerically in the tests):
    ``JSD(β)/β → KL(p ‖ q)``, the **forward** KL, as β → 0, and ``JSD(β)/(1−β) → KL(q ‖ p)``, the
    **reverse** KL, as β → 1.  JSD(β) itself tends to 0 at both ends, so (as TRL's GKDTrainer does)
    ``beta = 0`` returns the forward KL and ``beta = 1`` the reverse KL exactly, not 0: the loss is
    discontinuous in β at the two endpoints by design.  β = 0.5 is the symmetric JSD (at most log 2).

    student_logits, teacher_logits: [B, L, V]; mask: [B, L]; beta in [0, 1].  Teacher detached.
    """
    s, t, m, T = _student_teacher(student_logits, teacher_logits, mask, T)
    beta = v.in_unit_interval("beta", beta)
    log_p = F.log_softmax(t.detach() / T, dim=-1)
    log_q = F.log_softmax(s / T, dim=-1)
    if beta == 0.0:
        per_token = kl_per_token(log_p, log_q)            # forward KL(p ‖ q)
    elif beta == 1.0:
        per_token = kl_per_token(log_q, log_p)            # reverse KL(q ‖ p)
    else:
        per_token = generalized_jsd_per_token(log_p, log_q, beta)
    return T * T * per_token[m].mean()


def topk_kd_loss(student_logits: torch.Tensor, topk_values: torch.Tensor, topk_indices: torch.Tensor,
                 mask: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Forward-KL distillation from stored top-k teacher logits; a scalar.

    student_logits: [B, L, V]; topk_values: [B, L, k] float, the teacher's logits at ``topk_indices``
    ([B, L, k] integer token ids in [0, V), distinct within a position), as ``torch.topk`` returns them;
    k <= V.  The teacher distribution is **renormalised over its k stored tokens**,
    ``p̃ = softmax(topk_values / T)`` over the k entries (log-probabilities work too: a per-position shift
    does not change a softmax).  The student is a full distribution over all V tokens,
    ``q = softmax(s / T)``, gathered at the stored ids.  Loss per position
    ``Σ_{j in top-k} p̃_j (log p̃_j − log q_j)`` = KL(p̃ ‖ q), times T², mean over the real tokens.

    The missing mass: the teacher's probability outside its top k is not stored; renormalising hands it to
    the k stored tokens in proportion to their probabilities, and p̃ is 0 on every other token, so the
    student is taught to put *no* mass on the tail (its best answer is q = p̃, not q = p).  At k = 1 the
    loss is ``T²`` times the cross-entropy on the teacher's argmax token (hard pseudo-labels); at k = V it
    equals :func:`kdcore.distill.sequence_kd_loss` on the full teacher logits.
    """
    s, values, idx, m, T = _topk_inputs(student_logits, topk_values, topk_indices, mask, T)
    log_p_tilde = F.log_softmax(values.detach() / T, dim=-1)             # [B, L, k], renormalised teacher
    log_q = F.log_softmax(s / T, dim=-1).gather(-1, idx)                 # [B, L, k], student over all V
    per_token = kl_per_token(log_p_tilde, log_q)                         # [B, L], KL(p̃ ‖ q)
    return T * T * per_token[m].mean()
