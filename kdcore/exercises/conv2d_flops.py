"""conv2d_flops — the FLOPs of one convolution. Taught in notebook 07; reference ``kdcore.measure.conv2d_flops``.

Contract (docs/EXERCISES.md): ``2·c_out·(c_in/groups)·kh·kw·H_out·W_out`` for batch 1, a multiply-add = 2 FLOPs,
bias not counted (``FlopCounterMode``'s convention); kernel_size and out_hw accept an int or a pair; arguments
below 1, or groups that do not divide both channel counts, raise ValueError.
"""
from __future__ import annotations

import math

from kdcore.checking.cases import cases
from kdcore.checking.catalogue import correct, wrong


def _build(seed: int, *, c_in: int, c_out: int, kernel: int | tuple, out: int | tuple, groups: int | None = None):
    """The integer arguments as given (no randomness: ``seed`` is unused)."""
    return (c_in, c_out, kernel, out), ({} if groups is None else {"groups": groups})


CASES = cases(_build, [
    dict(c_in=3, c_out=8, kernel=3, out=8),
    dict(c_in=16, c_out=32, kernel=(3, 5), out=(7, 9), note="kernel and output given as pairs"),
    dict(c_in=8, c_out=8, kernel=3, out=(4, 6), groups=2),
    dict(c_in=16, c_out=16, kernel=3, out=10, groups=16, note="depthwise"),
    dict(c_in=64, c_out=128, kernel=1, out=14, note="pointwise 1x1"),
    dict(c_in=32, c_out=64, kernel=3, out=8, note="DigitsCNN conv2"),
    dict(c_in=1, c_out=4, kernel=5, out=(28, 28), note="single input channel"),
    dict(c_in=6, c_out=1, kernel=3, out=5, note="single output channel"),
    dict(c_in=0, c_out=4, kernel=3, out=5, raises=True),
    dict(c_in=4, c_out=0, kernel=3, out=5, raises=True),
    dict(c_in=4, c_out=4, kernel=3, out=5, groups=0, raises=True),
    dict(c_in=4, c_out=6, kernel=3, out=5, groups=4, raises=True, note="groups divide c_in but not c_out"),
], rtol=0.0, atol=0.0)

EQUIVALENT_MUTANTS = {
    "line +16, col 24: `//` → `/` in `c_in // groups`":
        "groups is validated to divide c_in, so c_in / groups is the same whole number as a float; the grader "
        "compares values, not int vs float",
}


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _honest(c_in, c_out, kernel_size, out_hw, groups=1):
    (kh, kw), (h, w) = _pair(kernel_size), _pair(out_hw)
    if c_in < 1 or c_out < 1 or groups < 1 or c_in % groups or c_out % groups:
        raise ValueError("c_in, c_out and groups must be >= 1, and groups must divide c_in and c_out")
    return 2 * c_out * (c_in // groups) * kh * kw * h * w


# ----------------------------------------------------------------------------------------------------------
# the misconceptions
# ----------------------------------------------------------------------------------------------------------
wrong("MACs instead of FLOPs", hint="off by a factor of 2: one multiply-add is 2 FLOPs (FlopCounterMode's "
                                    "convention); you counted MACs"
      ).edit(_honest, "return 2 * c_out", "return c_out")

wrong("bias counted", hint="the bias is not counted (FlopCounterMode's convention)"
      ).edit(_honest, "kh * kw * h * w", "kh * kw * h * w + c_out * h * w")

wrong("groups ignored", hint="with groups, each output sees only c_in/groups input channels: divide c_in by groups"
      ).edit(_honest, "(c_in // groups)", "c_in")

wrong("groups divided twice", hint="divide only c_in by groups: every one of the c_out outputs still exists"
      ).edit(_honest, "2 * c_out * (c_in // groups)", "2 * (c_out // groups) * (c_in // groups)")

wrong("square kernel assumed", hint="kernel_size can be a pair (kh, kw): use kh·kw"
      ).edit(_honest, "kh * kw * h", "kh * kh * h")

wrong("square output assumed", hint="out_hw can be a pair (H, W): use H·W"
      ).edit(_honest, "kw * h * w", "kw * h * h")

wrong("output size ignored", hint="the kernel is applied at every output position: multiply by H_out·W_out"
      ).edit(_honest, "kh * kw * h * w", "kh * kw")

wrong("groups not validated", hint="groups must divide both c_in and c_out: raise ValueError otherwise (naming "
                                   "the arguments), as nn.Conv2d does"
      ).edit(_honest, " or c_in % groups or c_out % groups", "")


@wrong("pairs not accepted", hint="kernel_size and out_hw accept an int or a pair: turn an int k into (k, k)")
def int_only(c_in, c_out, kernel_size, out_hw, groups=1):
    if c_in < 1 or c_out < 1 or groups < 1 or c_in % groups or c_out % groups:
        raise ValueError("c_in, c_out and groups must be >= 1, and groups must divide c_in and c_out")
    return 2 * c_out * (c_in // groups) * kernel_size * kernel_size * out_hw * out_hw


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently
# ----------------------------------------------------------------------------------------------------------
@correct("math.prod over the pairs")
def ok_prod(c_in, c_out, kernel_size, out_hw, groups=1):
    if min(c_in, c_out, groups) < 1 or c_in % groups != 0 or c_out % groups != 0:
        raise ValueError(f"invalid conv: c_in={c_in}, c_out={c_out}, groups={groups}")
    k = kernel_size if isinstance(kernel_size, (tuple, list)) else (kernel_size, kernel_size)
    o = out_hw if isinstance(out_hw, (tuple, list)) else (out_hw, out_hw)
    macs_per_output = (c_in // groups) * math.prod(k)
    return 2 * macs_per_output * c_out * math.prod(o)
