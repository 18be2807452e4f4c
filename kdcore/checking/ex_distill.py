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
# attention_map / at_loss
# ===================================================================================================
def _am_cases() -> list[Case]:
    kw = dict(rtol=1e-4, atol=1e-6)
    return [
        call_case("random [2, 3, 4, 4], p=2", lambda: ((randn(2, 3, 4, 4, seed=61),), {"p": 2}), **kw),
        call_case("non-square [1, 8, 5, 3], p=1 (signed features)", lambda: ((randn(1, 8, 5, 3, seed=62),), {"p": 1}), **kw),
        call_case("odd p=3 on signed features [3, 2, 6, 6]", lambda: ((randn(3, 2, 6, 6, seed=63),), {"p": 3}), **kw),
        call_case("default p, [2, 4, 3, 3]", lambda: ((randn(2, 4, 3, 3, seed=64),), {}), **kw),
        call_case("ReLU features [4, 16, 8, 8], p=2", lambda: ((randn(4, 16, 8, 8, seed=65).relu(),), {"p": 2}), **kw),
        call_case("single channel [2, 1, 4, 4], p=4", lambda: ((randn(2, 1, 4, 4, seed=66),), {"p": 4}), **kw),
        call_case("samples of very different scales [2, 3, 4, 4], p=2",
                  lambda: ((randn(2, 3, 4, 4, seed=67) * torch.tensor([1.0, 100.0]).view(2, 1, 1, 1),), {"p": 2}),
                  **kw),
    ]


def _am_no_abs(features, p=2):
    return F.normalize(features.pow(p).mean(dim=1).flatten(1), dim=1)


def _am_no_norm(features, p=2):
    return features.abs().pow(p).mean(dim=1).flatten(1)


def _am_batch_norm(features, p=2):
    a = features.abs().pow(p).mean(dim=1).flatten(1)
    return a / a.norm()


def _am_l1(features, p=2):
    return F.normalize(features.abs().pow(p).mean(dim=1).flatten(1), p=1, dim=1)


def _am_not_flat(features, p=2):
    a = features.abs().pow(p).mean(dim=1)
    return a / a.flatten(1).norm(dim=1).view(-1, 1, 1)


def _am_spatial_mean(features, p=2):
    return F.normalize(features.abs().pow(p).mean(dim=(2, 3)), dim=1)


def _am_p_fixed(features, p=2):
    return F.normalize(features.pow(2).mean(dim=1).flatten(1), dim=1)


def _am_max(features, p=2):
    return F.normalize(features.abs().pow(p).amax(dim=1).flatten(1), dim=1)


def _am_inplace(features, p=2):
    a = features.abs_().pow_(p)
    return F.normalize(a.mean(dim=1).flatten(1), dim=1)


def _am_ok_sum(features, p=2):
    a = features.abs().pow(p).sum(dim=1).view(features.shape[0], -1)
    return a / a.norm(dim=1, keepdim=True)


def _am_ok_norm(features, p=2):
    a = features.abs().pow(p).mean(1).reshape(features.size(0), -1)
    return a / torch.linalg.vector_norm(a, dim=1, keepdim=True).clamp_min(1e-12)


register(
    Exercise("attention_map", "04", "attention_map(features, p=2)", _am_cases(), "kdcore.distill.attention_map",
             "[B, C, H, W] → [B, H·W]: channel mean of |A|^p, flattened, L2-normalised per sample"),
    wrong=[
        Variant("no absolute value", _am_no_abs,
                "take |A| before the power: A**p is negative for odd p on signed features (use .abs().pow(p))"),
        Variant("not normalised", _am_no_norm,
                "L2-normalise each sample's map (F.normalize(am, dim=1)), so maps of different scales compare"),
        Variant("normalised over the whole batch", _am_batch_norm,
                "normalise per sample (dim=1), not by one norm over the whole batch"),
        Variant("L1-normalised", _am_l1, "normalise with the L2 norm (p=2 in F.normalize), not the L1 norm"),
        Variant("not flattened", _am_not_flat, "flatten the spatial dims: the map is [B, H·W]"),
        Variant("mean over space instead of channels", _am_spatial_mean,
                "average over the channels (dim=1), keep the spatial positions: [B, C, H, W] → [B, H·W]"),
        Variant("p ignored", _am_p_fixed, "use the p passed in: |A|**p (you always squared)"),
        Variant("max over channels", _am_max, "the map is the *mean* over channels of |A|^p, not the max"),
        Variant("features modified in place", _am_inplace,
                "`.abs_()` / `.pow_()` modify the caller's features: use .abs() / .pow()"),
    ],
    correct=[Variant("sum over channels (same after normalising)", _am_ok_sum, ""),
             Variant("manual L2 norm", _am_ok_norm, "")],
)


def _at_cases() -> list[Case]:
    return [
        call_case("same channels [2, 4, 5, 5], p=2",
                  lambda: ((randn(2, 4, 5, 5, seed=71), randn(2, 4, 5, 5, seed=72)), {"p": 2})),
        call_case("different channels: student 3, teacher 8, [2, *, 6, 6]",
                  lambda: ((randn(2, 3, 6, 6, seed=73), randn(2, 8, 6, 6, seed=74)), {"p": 2})),
        call_case("single sample, p=1: [1, 2, 4, 4] vs [1, 5, 4, 4]",
                  lambda: ((randn(1, 2, 4, 4, seed=75), randn(1, 5, 4, 4, seed=76)), {"p": 1})),
        call_case("default p, [3, 4, 3, 3] vs [3, 6, 3, 3]",
                  lambda: ((randn(3, 4, 3, 3, seed=77), randn(3, 6, 3, 3, seed=78)), {})),
        raises_case("spatial sizes differ (4x4 vs 5x5): ValueError",
                    lambda: ((randn(2, 3, 4, 4, seed=79), randn(2, 3, 5, 5, seed=80)), {})),
        call_case("gradient reaches the student features, [2, 3, 4, 4] vs [2, 6, 4, 4]",
                  lambda: ((randn(2, 3, 4, 4, seed=81), randn(2, 6, 4, 4, seed=82)), {"p": 2}),
                  grad=(0, None)),
    ]


def _amap(f, p=2):
    return F.normalize(f.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def _check_spatial(s, t):
    if s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[2:]:
        raise ValueError("student and teacher features must have the same batch and spatial sizes")


def _at_sum(student_features, teacher_features, p=2):
    _check_spatial(student_features, teacher_features)
    return (_amap(student_features, p) - _amap(teacher_features, p)).pow(2).sum()


def _at_sample_sum(student_features, teacher_features, p=2):
    _check_spatial(student_features, teacher_features)
    return (_amap(student_features, p) - _amap(teacher_features, p)).pow(2).sum(dim=1).mean()


def _at_norm(student_features, teacher_features, p=2):
    _check_spatial(student_features, teacher_features)
    return (_amap(student_features, p) - _amap(teacher_features, p)).norm(dim=1).mean()


def _at_no_normalise(student_features, teacher_features, p=2):
    _check_spatial(student_features, teacher_features)
    a_s = student_features.abs().pow(p).mean(1).flatten(1)
    a_t = teacher_features.abs().pow(p).mean(1).flatten(1)
    return (a_s - a_t).pow(2).mean()


def _at_interpolate(student_features, teacher_features, p=2):
    t = teacher_features
    if t.shape[2:] != student_features.shape[2:]:
        t = F.interpolate(t, size=student_features.shape[2:], mode="bilinear", align_corners=False)
    return (_amap(student_features, p) - _amap(t, p)).pow(2).mean()


def _at_raw(student_features, teacher_features, p=2):
    return F.mse_loss(student_features, teacher_features)


def _at_p_fixed(student_features, teacher_features, p=2):
    _check_spatial(student_features, teacher_features)
    return (_amap(student_features, 2) - _amap(teacher_features, 2)).pow(2).mean()


def _at_no_check(student_features, teacher_features, p=2):
    return (_amap(student_features, p) - _amap(teacher_features, p)).pow(2).mean()


def _at_ok(student_features, teacher_features, p=2):
    if student_features.shape[-2:] != teacher_features.shape[-2:]:
        raise ValueError("spatial sizes differ")
    return F.mse_loss(_amap(student_features, p), _amap(teacher_features.detach(), p))


def _at_ok_manual(student_features, teacher_features, p=2):
    if student_features.shape[2:] != teacher_features.shape[2:]:
        raise ValueError("spatial sizes differ")

    def amap(f):
        a = f.abs().pow(p).sum(1).flatten(1)
        return a / a.norm(dim=1, keepdim=True)
    return ((amap(student_features) - amap(teacher_features)) ** 2).mean()


register(
    Exercise("at_loss", "04", "at_loss(student_features, teacher_features, p=2)", _at_cases(),
             "kdcore.distill.at_loss", "(attention_map(s) − attention_map(t)).pow(2).mean()"),
    wrong=[
        Variant("sum instead of mean", _at_sum, "average the squared differences (.mean()), do not sum them"),
        Variant("per-sample sum, batch mean", _at_sample_sum,
                "the contract is the mean over all entries (samples × positions): .pow(2).mean()"),
        Variant("norm of the difference", _at_norm,
                "square the differences and average (.pow(2).mean()); the paper's ‖·‖ per sample is not the contract"),
        Variant("maps not normalised", _at_no_normalise,
                "compare L2-normalised attention maps (attention_map), otherwise the loss depends on feature scale"),
        Variant("teacher map interpolated", _at_interpolate,
                "different spatial sizes are an error here: raise ValueError (pick layers with matching sizes)"),
        Variant("raw features compared", _at_raw,
                "compare attention maps (channel mean of |A|^p, normalised), not the raw features: the channel "
                "counts may differ"),
        Variant("p ignored", _at_p_fixed, "pass p on to the attention maps"),
        Variant("no size check", _at_no_check,
                "check the spatial sizes first and raise ValueError with a clear message (not a RuntimeError "
                "from broadcasting)"),
    ],
    correct=[Variant("F.mse_loss of maps", _at_ok, ""), Variant("sum-based maps", _at_ok_manual, "")],
)


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

