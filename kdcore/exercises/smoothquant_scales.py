"""smoothquant_scales — SmoothQuant's migration scales. Taught in notebook 12; reference
``kdcore.llm.quantize.smoothquant_scales``.

Contract (docs/EXERCISES.md): ``smooth_lm`` of mit-han-lab/smoothquant: ``s_j = max|X_j|^α / max(max|W_j|,
1e-5)^(1−α)``, clamped to ≥ 1e-5, from ``x_absmax [in]`` (per input channel, over tokens) and ``w_absmax [in]``
(per input channel, over output rows); ``alpha`` outside [0, 1], different lengths, negative or NaN entries:
ValueError; integer tensors: TypeError.
"""
from __future__ import annotations

import torch

from kdcore.checking.cases import cases, gen
from kdcore.checking.catalogue import correct, wrong


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, n: int, alpha: float | None = None, outlier: bool = True, zero_x: bool = False,
           zero_w: bool = False, bad: str | None = None):
    """Per-channel maxima of |activations| (a few outlier channels, as in LLMs) and of |weights|."""
    g = gen(seed)
    x_absmax = torch.rand(n, generator=g) * 2 + 0.1
    w_absmax = torch.rand(n, generator=g) * 0.5 + 0.02
    if outlier:
        x_absmax[1] = 60.0
    if zero_x:
        x_absmax[0] = 0.0
    if zero_w:
        w_absmax[-1] = 0.0
    if bad == "lengths differ":
        w_absmax = w_absmax[:-1]
    elif bad == "negative activation maximum":
        x_absmax[2] = -0.5
    elif bad == "negative weight maximum":
        w_absmax[2] = -0.5
    elif bad == "integer activation maxima":
        x_absmax = x_absmax.round().long()
    elif bad == "integer weight maxima":
        w_absmax = (w_absmax * 10).round().long()
    elif bad == "NaN":
        w_absmax[0] = float("nan")
    return (x_absmax, w_absmax), ({} if alpha is None else {"alpha": alpha})


CASES = cases(_build, [
    dict(n=8, alpha=0.5),
    dict(n=16, alpha=0.8, note="alpha = 0.8: more of the difficulty moved into the weights"),
    dict(n=6, alpha=0.3),
    dict(n=12, note="default alpha = 0.5"),
    dict(n=6, alpha=0.0, note="alpha = 0: s = 1 / max|W|"),
    dict(n=6, alpha=1.0, note="alpha = 1: s = max|X|"),
    dict(n=8, alpha=0.5, outlier=False),
    dict(n=6, alpha=0.5, zero_x=True, note="a channel whose activations are all 0: s clamped to 1e-5"),
    dict(n=6, alpha=0.5, zero_w=True, note="a weight column of zeros: max|W| clamped to 1e-5"),
    dict(n=6, alpha=1.5, raises=True),
    dict(n=6, alpha=-0.1, raises=True),
    dict(n=6, alpha=0.5, bad="lengths differ", raises=True),
    dict(n=6, alpha=0.5, bad="negative activation maximum", raises=True),
    dict(n=6, alpha=0.5, bad="negative weight maximum", raises=True),
    dict(n=6, alpha=0.5, bad="integer activation maxima", raises=True),
    dict(n=6, alpha=0.5, bad="integer weight maxima", raises=True),
    dict(n=6, alpha=0.5, bad="NaN", raises=True),
], rtol=1e-5, atol=1e-9)

EQUIVALENT_MUTANTS: dict[str, str] = {}


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants below that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _validate(x_absmax, w_absmax, alpha):
    if not (x_absmax.is_floating_point() and w_absmax.is_floating_point()):
        raise TypeError("the maxima must be floating-point tensors")
    if not 0 <= alpha <= 1:
        raise ValueError("alpha must be in [0, 1]")
    if x_absmax.shape != w_absmax.shape:
        raise ValueError("x_absmax and w_absmax must have the same length")
    if torch.isnan(x_absmax).any() or torch.isnan(w_absmax).any() or (x_absmax < 0).any() or (w_absmax < 0).any():
        raise ValueError("the maxima must be finite and >= 0")


def _honest(x_absmax, w_absmax, alpha=0.5):
    _validate(x_absmax, w_absmax, alpha)
    w_absmax = w_absmax.clamp(min=1e-5)
    s = x_absmax.pow(alpha) / w_absmax.pow(1 - alpha)
    return s.clamp(min=1e-5)


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("alpha on the wrong side",
      hint="alpha is the exponent of the ACTIVATION maximum: s = max|X|^alpha / max|W|^(1 − alpha); larger alpha "
           "migrates more difficulty from the activations into the weights"
      ).edit(_honest, "s = x_absmax.pow(alpha) / w_absmax.pow(1 - alpha)",
             "s = x_absmax.pow(1 - alpha) / w_absmax.pow(alpha)")

wrong("ratio inverted",
      hint="s divides the activations (x / s) and multiplies the weights (w · s), so it must be large where the "
           "activations are large: max|X|^alpha on top"
      ).edit(_honest, "s = x_absmax.pow(alpha) / w_absmax.pow(1 - alpha)",
             "s = w_absmax.pow(1 - alpha) / x_absmax.pow(alpha)")

wrong("product instead of ratio",
      hint="s = max|X|^alpha DIVIDED by max|W|^(1 − alpha): after migration both ranges become "
           "max|X|^(1−alpha)·max|W|^alpha"
      ).edit(_honest, "s = x_absmax.pow(alpha) / w_absmax.pow(1 - alpha)",
             "s = x_absmax.pow(alpha) * w_absmax.pow(1 - alpha)")

wrong("square root whatever alpha",
      hint="use the alpha argument: s = max|X|^alpha / max|W|^(1 − alpha) (0.5 is only the default)"
      ).edit(_honest, "s = x_absmax.pow(alpha) / w_absmax.pow(1 - alpha)",
             "s = x_absmax.sqrt() / w_absmax.sqrt()")

wrong("no clamp on the weight maxima",
      hint="clamp max|W| to at least 1e-5 before dividing (a pruned or zero weight column gives 0 and s = inf)"
      ).edit(_honest, "    w_absmax = w_absmax.clamp(min=1e-5)\n", "")

wrong("no clamp on the result",
      hint="clamp s to at least 1e-5: a channel with all-zero activations gives s = 0, and x / s is then 0/0"
      ).edit(_honest, "    return s.clamp(min=1e-5)", "    return s")

@wrong("alpha not validated",
       hint="alpha is a migration strength in [0, 1]: raise ValueError naming alpha outside that range")
def no_alpha_check(x_absmax, w_absmax, alpha=0.5):
    if not (x_absmax.is_floating_point() and w_absmax.is_floating_point()):
        raise TypeError("the maxima must be floating-point tensors")
    if x_absmax.shape != w_absmax.shape:
        raise ValueError("x_absmax and w_absmax must have the same length")
    if torch.isnan(x_absmax).any() or torch.isnan(w_absmax).any() or (x_absmax < 0).any() or (w_absmax < 0).any():
        raise ValueError("the maxima must be finite and >= 0")
    return (x_absmax.pow(alpha) / w_absmax.clamp(min=1e-5).pow(1 - alpha)).clamp(min=1e-5)


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("in log space")
def ok_log(x_absmax, w_absmax, alpha=0.5):
    _validate(x_absmax, w_absmax, alpha)
    log_s = alpha * torch.log(x_absmax) - (1 - alpha) * torch.log(torch.clamp(w_absmax, min=1e-5))
    return torch.exp(log_s).clamp(min=1e-5)     # log(0) = -inf → exp → 0 → clamped, as the reference


@correct("one channel at a time with Python floats")
def ok_loop(x_absmax, w_absmax, alpha=0.5):
    _validate(x_absmax, w_absmax, alpha)
    out = [max(a ** alpha / max(b, 1e-5) ** (1 - alpha), 1e-5) for a, b in zip(x_absmax.tolist(), w_absmax.tolist())]
    return torch.tensor(out, dtype=x_absmax.dtype)
