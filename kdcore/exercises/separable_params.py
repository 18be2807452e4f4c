"""separable_params — parameters of a standard vs a depthwise-separable convolution. Taught in notebook 09;
reference ``kdcore.quantize.separable_params``.

Contract (docs/EXERCISES.md): ``(standard, separable)`` without bias: ``c_in·c_out·k²`` and ``c_in·k² + c_in·c_out``
(a depthwise k×k conv, one filter per input channel, then a pointwise 1×1 conv); exact integers; an argument below 1
raises ValueError.
"""
from __future__ import annotations

from torch import nn

from kdcore.checking.cases import cases
from kdcore.checking.catalogue import correct, wrong


# ----------------------------------------------------------------------------------------------------------
# cases: plain integers, compared exactly
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, c_in: int, c_out: int, k: int):
    return (c_in, c_out, k), {}


CASES = cases(_build, [
    dict(c_in=3, c_out=64, k=3),
    dict(c_in=32, c_out=64, k=3),
    dict(c_in=16, c_out=16, k=1, note="1x1 kernel"),
    dict(c_in=1, c_out=8, k=5),
    dict(c_in=64, c_out=128, k=7),
    dict(c_in=128, c_out=256, k=3),
    dict(c_in=8, c_out=1, k=3, note="single output channel"),
    dict(c_in=0, c_out=8, k=3, raises=True),
    dict(c_in=8, c_out=0, k=3, raises=True),
    dict(c_in=8, c_out=8, k=0, raises=True),
], rtol=0.0, atol=0.0)


# ----------------------------------------------------------------------------------------------------------
# an honest solution (also a correct answer); most wrong variants below are one-line edits of it
# ----------------------------------------------------------------------------------------------------------
@correct("closed form")
def _honest(c_in, c_out, k):
    if min(c_in, c_out, k) < 1:
        raise ValueError(f"c_in, c_out and k must be >= 1, got {c_in}, {c_out}, {k}")
    standard = c_in * c_out * k * k
    separable = c_in * k * k + c_in * c_out      # depthwise k×k (one filter per input channel) + pointwise 1×1
    return standard, separable


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("depthwise over the output channels",
      hint="the depthwise k×k conv has one filter per *input* channel: c_in·k², then the 1×1 pointwise c_in·c_out"
      ).edit(_honest, "separable = c_in * k * k", "separable = c_out * k * k")

wrong("pointwise conv forgotten", hint="a depthwise-separable conv is depthwise (c_in·k²) + pointwise 1×1 (c_in·c_out)"
      ).edit(_honest, "separable = c_in * k * k + c_in * c_out", "separable = c_in * k * k")

wrong("k instead of k²", hint="a k×k kernel has k² weights per channel pair"
      ).edit(_honest, " * k * k", " * k", count=2)

wrong("bias counted", hint="count weights only, no bias"
      ).edit(_honest, "    return standard, separable",
             "    return standard + c_out, separable + c_in + c_out      # each conv's bias")

wrong("order swapped", hint="return (standard, separable), in this order"
      ).edit(_honest, "return standard, separable", "return separable, standard")

wrong("ratio returned", hint="return the two counts (standard, separable), not their ratio"
      ).edit(_honest, "return standard, separable", "return separable / standard")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("nn.Conv2d on the meta device")
def ok_modules(c_in, c_out, k):
    for name, value in (("c_in", c_in), ("c_out", c_out), ("k", k)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    def count(*layers):
        return sum(p.numel() for layer in layers for p in layer.parameters())
    standard = nn.Conv2d(c_in, c_out, k, bias=False, device="meta")
    depthwise = nn.Conv2d(c_in, c_in, k, groups=c_in, bias=False, device="meta")
    pointwise = nn.Conv2d(c_in, c_out, 1, bias=False, device="meta")
    return count(standard), count(depthwise, pointwise)
