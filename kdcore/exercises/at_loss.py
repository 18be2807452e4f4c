"""at_loss — attention-transfer loss between student and teacher feature maps. Taught in notebook 04; reference
``kdcore.distill.at_loss``.

Contract (docs/EXERCISES.md, notebook 04): ``(attention_map(s) − attention_map(t)).pow(2).mean()``; works when the
channel counts differ; batch and spatial sizes must match, else ValueError; the teacher's features are a
constant (no gradient reaches them).
"""
from __future__ import annotations

import torch.nn.functional as F

from kdcore.checking.cases import cases, randn
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import TEACHER_GRAD_HINT


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, student: tuple[int, int, int, int], teacher: tuple[int, int, int, int],
           p: float | None = None):
    """Gaussian student and teacher features of the given ``[B, C, H, W]`` shapes; p omitted when None."""
    return (randn(*student, seed=seed), randn(*teacher, seed=seed + 1)), ({} if p is None else {"p": p})


CASES = cases(_build, [
    dict(student=(2, 4, 5, 5), teacher=(2, 4, 5, 5), p=2, note="same channels"),
    dict(student=(2, 3, 6, 6), teacher=(2, 8, 6, 6), p=2, note="different channels"),
    dict(student=(1, 2, 4, 4), teacher=(1, 5, 4, 4), p=1, note="single sample"),
    dict(student=(3, 4, 3, 3), teacher=(3, 6, 3, 3), note="default p"),
    dict(student=(2, 3, 4, 4), teacher=(2, 3, 5, 5), raises=True, note="spatial sizes differ"),
    dict(student=(2, 3, 4, 4), teacher=(2, 6, 4, 4), p=2, grad=(0, 1),
         note="gradient reaches the student features, not the teacher's"),
])


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants below that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _map(features, p):
    """attention_map: [B, C, H, W] -> [B, H·W], channel mean of |A|^p, L2-normalised per sample."""
    return F.normalize(features.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def _honest(student_features, teacher_features, p=2):
    s, t = student_features, teacher_features
    if s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[2:]:
        raise ValueError("student and teacher features must have the same batch and spatial sizes")
    return (_map(s, p) - _map(t.detach(), p)).pow(2).mean()


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("sum instead of mean", hint="average the squared differences (.mean()), do not sum them"
      ).edit(_honest, ".pow(2).mean()", ".pow(2).sum()")

wrong("per-sample sum, batch mean", hint="the contract is the mean over all entries (samples × positions): "
                                         ".pow(2).mean()"
      ).edit(_honest, ".pow(2).mean()", ".pow(2).sum(dim=1).mean()")

wrong("norm of the difference", hint="square the differences and average (.pow(2).mean()); the paper's ‖·‖ per "
                                     "sample is not the contract"
      ).edit(_honest, ".pow(2).mean()", ".norm(dim=1).mean()")

wrong("maps not normalised", hint="compare L2-normalised attention maps (attention_map), otherwise the loss depends "
                                  "on feature scale"
      ).edit(_honest, "(_map(s, p) - _map(t.detach(), p))",
             "(s.abs().pow(p).mean(1).flatten(1) - t.detach().abs().pow(p).mean(1).flatten(1))")


@wrong("teacher map interpolated",
       hint="different spatial sizes are an error here: raise ValueError (pick layers with matching sizes)")
def interpolated(student_features, teacher_features, p=2):
    t = teacher_features.detach()
    if t.shape[2:] != student_features.shape[2:]:
        t = F.interpolate(t, size=student_features.shape[2:], mode="bilinear", align_corners=False)
    return (_map(student_features, p) - _map(t, p)).pow(2).mean()


@wrong("raw features compared",
       hint="compare attention maps (channel mean of |A|^p, normalised), not the raw features: the channel counts "
            "may differ")
def raw_features(student_features, teacher_features, p=2):
    return F.mse_loss(student_features, teacher_features.detach())


wrong("p ignored", hint="pass p on to the attention maps"
      ).edit(_honest, "(_map(s, p) - _map(t.detach(), p))", "(_map(s, 2) - _map(t.detach(), 2))")

wrong("no size check", hint="check the spatial sizes first and raise ValueError with a clear message (not a "
                            "RuntimeError from broadcasting)"
      ).edit(_honest, """    if s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[2:]:
        raise ValueError("student and teacher features must have the same batch and spatial sizes")
""", "")

wrong("teacher not detached", hint=TEACHER_GRAD_HINT).edit(_honest, "_map(t.detach(), p)", "_map(t, p)")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("F.mse_loss of maps")
def ok_mse(student_features, teacher_features, p=2):
    if student_features.shape[-2:] != teacher_features.shape[-2:]:
        raise ValueError("spatial sizes differ")
    return F.mse_loss(_map(student_features, p), _map(teacher_features.detach(), p))


@correct("sum-based maps")
def ok_manual(student_features, teacher_features, p=2):
    if student_features.shape[2:] != teacher_features.shape[2:]:
        raise ValueError("spatial sizes differ")

    def amap(f):
        a = f.abs().pow(p).sum(1).flatten(1)
        return a / a.norm(dim=1, keepdim=True)
    return ((amap(student_features) - amap(teacher_features.detach())) ** 2).mean()
