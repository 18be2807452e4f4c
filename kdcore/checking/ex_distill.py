"""Cases and misconception catalogue of the distillation exercises (notebooks 01-04, 11).

Every wrong variant is code a candidate really writes; its hint is shown when a learner's outputs match it.
Correct alternatives (``CORRECT``) are different but valid solutions that must pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cases import call_case, labels, probs, randn, raises_case
from .core import (Case, Exercise, Observation, Variant, compare_values, grads, module_state, register,
                   tensor_snapshot, changed, TEACHER_GRAD_HINT)


def _check_T(T: float) -> None:
    if T <= 0:
        raise ValueError(f"T must be > 0, got {T}")


# ===================================================================================================
# sequence_kd_loss
# ===================================================================================================
def _seq_inputs(b: int, length: int, v: int, seed: int, lengths: list[int], scale: float = 2.0):
    s = randn(b, length, v, seed=seed, scale=scale)
    t = randn(b, length, v, seed=seed + 1, scale=scale)
    mask = torch.zeros(b, length)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return s, t, mask


def _seq_case(name, b, length, v, seed, lengths, T=None, *, mask_dtype=torch.float32, scale=2.0, pad_logits=None,
              **kw) -> Case:
    def build():
        s, t, mask = _seq_inputs(b, length, v, seed, lengths, scale)
        if pad_logits is not None:
            pad = mask == 0
            s[pad] = pad_logits
            t[pad] = -pad_logits
        kwargs = {} if T is None else {"T": T}
        return (s, t, mask.to(mask_dtype)), kwargs
    return call_case(name, build, **kw)


def _seq_cases() -> list[Case]:
    return [
        _seq_case("padding at the end (float mask), [2, 5, 7], T=1", 2, 5, 7, 91, [5, 2], 1.0),
        _seq_case("bool mask, different lengths, [3, 4, 6], T=2", 3, 4, 6, 92, [1, 4, 3], 2.0, mask_dtype=torch.bool),
        _seq_case("no padding (all ones), [2, 3, 5], T=1.5", 2, 3, 5, 93, [3, 3], 1.5),
        _seq_case("padded positions hold huge logits (int mask): they must not count", 2, 6, 5, 94, [6, 3], 2.0,
                  mask_dtype=torch.int64, pad_logits=torch.linspace(-1e4, 1e4, 5)),
        _seq_case("single sequence [1, 6, 4], default T", 1, 6, 4, 95, [4]),
        _seq_case("logits of magnitude 1e3, T=2", 2, 4, 8, 96, [4, 2], 2.0, scale=1e3, atol=1e-3),
        _seq_case("gradient w.r.t. the student logits, T=3", 2, 5, 6, 97, [5, 2], 3.0, grad=(0, None)),
    ]


def _token_kl(s, t, T):
    log_p_s = F.log_softmax(s / T, dim=-1)
    log_p_t = F.log_softmax(t.detach() / T, dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)


def _seq_no_mask(student_logits, teacher_logits, mask, T=1.0):
    return T * T * _token_kl(student_logits, teacher_logits, T).mean()


def _seq_all_positions(student_logits, teacher_logits, mask, T=1.0):
    kl = _token_kl(student_logits, teacher_logits, T) * mask.float()
    return T * T * kl.sum() / mask.numel()


def _seq_batchmean(student_logits, teacher_logits, mask, T=1.0):
    kl = F.kl_div(F.log_softmax(student_logits / T, -1), F.softmax(teacher_logits.detach() / T, -1),
                  reduction="none").sum(-1)
    return T * T * (kl * mask.float()).sum() / student_logits.shape[0]


def _seq_per_sequence(student_logits, teacher_logits, mask, T=1.0):
    m = mask.float()
    kl = _token_kl(student_logits, teacher_logits, T) * m
    return T * T * (kl.sum(1) / m.sum(1)).mean()


def _seq_no_T2(student_logits, teacher_logits, mask, T=1.0):
    m = mask.float()
    return (_token_kl(student_logits, teacher_logits, T) * m).sum() / m.sum()


def _seq_reversed(student_logits, teacher_logits, mask, T=1.0):
    m = mask.float()
    kl = _token_kl(teacher_logits.detach(), student_logits, T)
    return T * T * (kl * m).sum() / m.sum()


def _seq_T_student_only(student_logits, teacher_logits, mask, T=1.0):
    m = mask.float()
    log_p_s = F.log_softmax(student_logits / T, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach(), dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    return T * T * (kl * m).sum() / m.sum()


def _seq_vocab_mean(student_logits, teacher_logits, mask, T=1.0):
    m = mask.float()
    log_p_s = F.log_softmax(student_logits / T, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach() / T, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).mean(-1)
    return T * T * (kl * m).sum() / m.sum()


def _seq_log_softmax_naive(student_logits, teacher_logits, mask, T=1.0):
    m = mask.float()
    p_t = torch.softmax(teacher_logits.detach() / T, -1)
    kl = (p_t * (torch.log(p_t) - torch.log(torch.softmax(student_logits / T, -1)))).sum(-1)
    return T * T * (kl * m).sum() / m.sum()


def _seq_ok_index(student_logits, teacher_logits, mask, T=1.0):
    keep = mask.bool()
    s, t = student_logits[keep], teacher_logits[keep].detach()
    return T ** 2 * F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean")


def _seq_ok_weighted(student_logits, teacher_logits, mask, T=1.0):
    m = mask.to(student_logits.dtype)
    kl = F.kl_div(F.log_softmax(student_logits / T, -1), F.log_softmax(teacher_logits / T, -1).detach(),
                  reduction="none", log_target=True).sum(-1)
    return (kl * m).sum() / m.sum() * T * T


register(
    Exercise("sequence_kd_loss", "11", "sequence_kd_loss(student_logits, teacher_logits, mask, T=1.0)",
             _seq_cases(), "kdcore.distill.sequence_kd_loss",
             "T²·KL per token, summed over the vocabulary, averaged over the real (mask = 1) tokens"),
    wrong=[
        Variant("padding mask ignored", _seq_no_mask,
                "the padding mask is ignored: padded positions must not count (average over mask = 1 tokens only)"),
        Variant("divided by all positions", _seq_all_positions,
                "divide by the number of real tokens (mask.sum()), not by B·L: padding must not dilute the loss"),
        Variant("batchmean divides by B", _seq_batchmean,
                "F.kl_div's 'batchmean' divides by the batch size B, not by the number of tokens: sum the "
                "masked per-token KL and divide by mask.sum()"),
        Variant("mean of per-sequence means", _seq_per_sequence,
                "average over all real tokens of the batch at once; a mean of per-sequence means over-weights "
                "short sequences"),
        Variant("missing T²", _seq_no_T2, "off by a factor of T²: multiply the KL by T**2"),
        Variant("reversed KL", _seq_reversed,
                "KL direction reversed: the teacher's distribution is the target, KL(p_teacher ‖ p_student)"),
        Variant("T on the student only", _seq_T_student_only, "soften both distributions with T, teacher too"),
        Variant("mean over the vocabulary", _seq_vocab_mean,
                "sum the KL over the vocabulary (a distribution's KL is a sum over its classes), do not average"),
        Variant("log(softmax(x))", _seq_log_softmax_naive,
                "log(softmax(x)) gives log(0) = −inf for large logits: use F.log_softmax"),
    ],
    correct=[Variant("boolean indexing + batchmean", _seq_ok_index, ""),
             Variant("weighted sum, log_target", _seq_ok_weighted, "")],
)

