"""attention_map — spatial attention map of a feature tensor (Zagoruyko & Komodakis). Taught in notebook 04;
reference ``kdcore.distill.attention_map``.

Contract (docs/EXERCISES.md): features ``[B, C, H, W]`` → ``[B, H·W]``: mean over channels of ``|A|^p``, flattened,
L2-normalised per sample.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdcore.checking.cases import cases, randn
from kdcore.checking.catalogue import correct, wrong


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, shape: tuple[int, int, int, int], p: float | None = None, relu: bool = False,
           sample_scales: tuple[float, ...] | None = None):
    """Gaussian features ``[B, C, H, W]`` (signed; ``relu``: non-negative; ``sample_scales``: one factor per
    sample); p omitted when None (the default p = 2 applies)."""
    features = randn(*shape, seed=seed)
    if relu:
        features = features.relu()
    if sample_scales is not None:
        features = features * torch.tensor(sample_scales).view(-1, 1, 1, 1)
    return (features,), ({} if p is None else {"p": p})


CASES = cases(_build, [
    dict(shape=(2, 3, 4, 4), p=2),
    dict(shape=(1, 8, 5, 3), p=1, note="non-square, signed features"),
    dict(shape=(3, 2, 6, 6), p=3, note="odd p on signed features"),
    dict(shape=(2, 4, 3, 3), note="default p"),
    dict(shape=(4, 16, 8, 8), p=2, relu=True, note="ReLU features"),
    dict(shape=(2, 1, 4, 4), p=4, note="single channel"),
    dict(shape=(2, 3, 4, 4), p=2, sample_scales=(1.0, 100.0), note="samples of very different scales"),
])

# Mutants of the reference that no input can tell apart from it (python -m kdcore.checking.mutants attention_map).
EQUIVALENT_MUTANTS = {
    "line +10, col 11: `dim=1` → `dim=-1` in `F.normalize(amap, p=2, dim=1)`":
        "amap is [B, H·W] (features are validated to be 4-D and flattened from dim 1), so dim 1 is dim -1",
}


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants below that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _honest(features, p=2):
    amap = features.abs().pow(p).mean(dim=1).flatten(1)   # [B, C, H, W] -> [B, H, W] -> [B, H·W]
    return F.normalize(amap, p=2, dim=1)


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("no absolute value", hint="take |A| before the power: A**p is negative for odd p on signed features (use "
                                ".abs().pow(p))"
      ).edit(_honest, "features.abs().pow(p)", "features.pow(p)")

wrong("not normalised", hint="L2-normalise each sample's map (F.normalize(am, dim=1)), so maps of different scales "
                             "compare"
      ).edit(_honest, "return F.normalize(amap, p=2, dim=1)", "return amap")

wrong("normalised over the whole batch", hint="normalise per sample (dim=1), not by one norm over the whole batch"
      ).edit(_honest, "return F.normalize(amap, p=2, dim=1)", "return amap / amap.norm()")

wrong("L1-normalised", hint="normalise with the L2 norm (p=2 in F.normalize), not the L1 norm"
      ).edit(_honest, "F.normalize(amap, p=2,", "F.normalize(amap, p=1,")


@wrong("not flattened", hint="flatten the spatial dims: the map is [B, H·W]")
def not_flattened(features, p=2):
    a = features.abs().pow(p).mean(dim=1)
    return a / a.flatten(1).norm(dim=1).view(-1, 1, 1)


wrong("mean over space instead of channels", hint="average over the channels (dim=1), keep the spatial positions: "
                                                  "[B, C, H, W] → [B, H·W]"
      ).edit(_honest, ".mean(dim=1).flatten(1)", ".mean(dim=(2, 3))")

wrong("p ignored", hint="use the p passed in: |A|**p (you always squared)"
      ).edit(_honest, "features.abs().pow(p)", "features.pow(2)")

wrong("max over channels", hint="the map is the *mean* over channels of |A|^p, not the max"
      ).edit(_honest, ".mean(dim=1)", ".amax(dim=1)")

wrong("features modified in place", hint="`.abs_()` / `.pow_()` modify the caller's features: use .abs() / .pow()"
      ).edit(_honest, "features.abs().pow(p)", "features.abs_().pow_(p)")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("sum over channels (same after normalising)")
def ok_sum(features, p=2):
    a = features.abs().pow(p).sum(dim=1).view(features.shape[0], -1)
    return a / a.norm(dim=1, keepdim=True)


@correct("manual L2 norm")
def ok_norm(features, p=2):
    a = features.abs().pow(p).mean(1).reshape(features.size(0), -1)
    return a / torch.linalg.vector_norm(a, dim=1, keepdim=True).clamp_min(1e-12)
