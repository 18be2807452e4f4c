"""quantize_groupwise — group-wise round-to-nearest weight quantization. Taught in notebook 12; reference
``kdcore.llm.quantize.quantize_groupwise``.

Contract (docs/EXERCISES.md): llm-awq's ``pseudo_quantize_tensor``. ``w [out, in]`` → fake-quantised weight of the
same shape and dtype; groups of ``group_size`` consecutive input columns of each output row (``None``: the whole
row). Asymmetric: ``scale = max(max − min, 1e-5)/(2^bits − 1)``, integer ``zero = clamp(−round(min/scale), 0,
2^bits − 1)``, ``(clamp(round(w/scale) + zero, 0, 2^bits − 1) − zero)·scale``; symmetric: ``scale = max(absmax,
1e-5)/(2^(bits−1) − 1)``, ``clamp(round(w/scale), −2^(bits−1), 2^(bits−1) − 1)·scale``. Bits outside 2..8, a group
size that does not divide ``in``, NaN weights: ValueError.
"""
from __future__ import annotations

import torch

from kdcore.checking.cases import cases, randn
from kdcore.checking.catalogue import correct, wrong


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, out: int, inp: int, bits: int | None = None, group_size: int | None | str = "default",
           symmetric: bool | None = None, shift: float = 0.0, constant_group: bool = False, zero_row: bool = False,
           nan: bool = False):
    """A Gaussian weight ``[out, inp]`` (+ ``shift``: all-positive or all-negative groups); ``bits`` /
    ``symmetric`` omitted when None and ``group_size`` omitted when "default" (the function's defaults)."""
    w = randn(out, inp, seed=seed) * 0.5 + shift
    if constant_group:
        w[0, :] = 0.25                 # max == min: the 1e-5 clamp keeps the scale non-zero
    if zero_row:
        w[1, :] = 0.0                  # absmax == 0 (symmetric): the same clamp
    if nan:
        w[1, 2] = float("nan")
    kwargs = {k: val for k, val in {"bits": bits, "symmetric": symmetric}.items() if val is not None}
    if group_size != "default":
        kwargs["group_size"] = group_size
    return (w,), kwargs


CASES = cases(_build, [
    dict(out=4, inp=16, bits=4, group_size=8),
    dict(out=6, inp=12, bits=3, group_size=4),
    dict(out=3, inp=32, bits=2, group_size=16),
    dict(out=5, inp=8, bits=8, group_size=8),
    dict(out=4, inp=16, bits=4, group_size=None, note="one group per output row"),
    dict(out=8, inp=4, bits=4, group_size=None, note="more rows than columns"),
    dict(out=4, inp=128, note="defaults bits=4, group_size=64, asymmetric"),
    dict(out=4, inp=16, bits=4, group_size=8, symmetric=True),
    dict(out=3, inp=12, bits=3, group_size=None, symmetric=True),
    dict(out=4, inp=16, bits=3, group_size=8, shift=2.0, note="all-positive groups: the zero point is clamped to 0"),
    dict(out=4, inp=16, bits=3, group_size=8, shift=-2.0, note="all-negative groups: zero point clamped to 2^bits−1"),
    dict(out=3, inp=8, bits=4, group_size=4, constant_group=True, note="a constant row (max = min)"),
    dict(out=3, inp=8, bits=4, group_size=4, symmetric=True, zero_row=True, note="symmetric, a row of zeros"),
    dict(out=3, inp=8, bits=1, group_size=4, raises=True, note="bits below 2"),
    dict(out=3, inp=8, bits=9, group_size=4, raises=True, note="bits above 8"),
    dict(out=3, inp=12, bits=4, group_size=5, raises=True, note="group_size does not divide the input dimension"),
    dict(out=3, inp=8, bits=4, group_size=4, nan=True, raises=True, note="NaN weight"),
], rtol=1e-5, atol=1e-6)

EQUIVALENT_MUTANTS = {
    "line +25, col 12: `torch.clamp(torch.round(groups / scale), -qmax ...` → `torch.round(groups / scale)`":
        "symmetric codes never leave [-qmax, qmax]: scale = absmax / qmax, so |w / scale| <= qmax for every w of "
        "the group (and below 1e-5 the clamped scale only makes |w / scale| smaller)",
    "line +25, col 61: `1` → `2`": "the lower bound -qmax - 1 is never reached (|w / scale| <= qmax), so any "
                                   "bound at or below -qmax gives the same codes",
    "line +25, col 61: `1` → `0`": "the lower bound -qmax - 1 is never reached (|w / scale| <= qmax), so any "
                                   "bound at or below -qmax gives the same codes",
}


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants below that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _honest(w, bits=4, group_size=64, symmetric=False):
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in [2, 8], got {bits}")
    out_f, in_f = w.shape
    g = in_f if group_size is None else group_size
    if in_f % g:
        raise ValueError(f"group_size must divide {in_f}")
    if torch.isnan(w).any():
        raise ValueError("w contains NaN")
    x = w.reshape(out_f, in_f // g, g)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5) / qmax
        q = torch.clamp(torch.round(x / scale), -qmax - 1, qmax)
        deq = q * scale
    else:
        qmax = 2 ** bits - 1
        lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)
        scale = (hi - lo).clamp(min=1e-5) / qmax
        zero = torch.clamp(-torch.round(lo / scale), 0, qmax)
        q = torch.clamp(torch.round(x / scale) + zero, 0, qmax)
        deq = (q - zero) * scale
    return deq.reshape(out_f, in_f)


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
@wrong("groups along the output dimension",
      hint="a group is group_size consecutive INPUT columns of one output row (w.reshape(out, in // g, g)); "
           "you grouped down the columns, across output rows")
def groups_along_output(w, bits=4, group_size=64, symmetric=False):
    return _honest(w.t(), bits, group_size, symmetric).t()

wrong("zero point not rounded",
      hint="the zero point is an integer: zero = clamp(-round(min / scale), 0, 2**bits - 1); without the round, "
           "0.0 is no longer exactly representable"
      ).edit(_honest, "torch.clamp(-torch.round(lo / scale), 0, qmax)", "torch.clamp(-lo / scale, 0, qmax)")

wrong("2^bits levels in the scale",
      hint="b bits give 2**bits levels but 2**bits - 1 steps: scale = (max - min) / (2**bits - 1)"
      ).edit(_honest, "scale = (hi - lo).clamp(min=1e-5) / qmax", "scale = (hi - lo).clamp(min=1e-5) / 2 ** bits")

wrong("integer codes returned",
      hint="return the fake-quantised weight (q - zero)·scale, in the weight's units, not the integer codes q"
      ).edit(_honest, "        deq = (q - zero) * scale", "        deq = q")

wrong("zero point not subtracted",
      hint="dequantize as (q - zero)·scale: the codes q are offset by the zero point"
      ).edit(_honest, "        deq = (q - zero) * scale", "        deq = q * scale")

wrong("range widened to contain 0",
      hint="that is PyTorch's MinMaxObserver (and GPTQ's) convention; the contract follows llm-awq: the group's "
           "own min and max, with the zero point clamped to [0, 2**bits - 1]"
      ).edit(_honest, "lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)",
             "lo, hi = x.amin(dim=-1, keepdim=True).clamp(max=0), x.amax(dim=-1, keepdim=True).clamp(min=0)")

wrong("codes not clamped",
      hint="clamp round(w/scale) + zero to [0, 2**bits - 1]: when the zero point was clamped (all-positive or "
           "all-negative groups) the codes leave the range"
      ).edit(_honest, "q = torch.clamp(torch.round(x / scale) + zero, 0, qmax)", "q = torch.round(x / scale) + zero")

wrong("truncation instead of rounding",
      hint="round to the nearest level (torch.round), do not truncate (int(), floor)"
      ).edit(_honest, "q = torch.clamp(torch.round(x / scale) + zero, 0, qmax)",
             "q = torch.clamp(torch.floor(x / scale) + zero, 0, qmax)")

wrong("symmetric: 2^(bits-1) as the largest code",
      hint="a signed b-bit code ranges over [-2**(b-1), 2**(b-1) - 1]: symmetric scale = absmax / (2**(bits-1) - 1)"
      ).edit(_honest, "        qmax = 2 ** (bits - 1) - 1", "        qmax = 2 ** (bits - 1)")

wrong("symmetric flag ignored", hint="with symmetric=True use the signed absmax grid (no zero point)"
      ).edit(_honest, "    if symmetric:", "    if False:")

wrong("one scale for the whole tensor",
      hint="every group needs its own scale and zero point: reduce over the last axis of [out, in // g, g] "
           "(dim=-1, keepdim=True), not over the whole tensor"
      ).edit(_honest, "lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)",
             "lo, hi = x.amin(), x.amax()")

wrong("scale not clamped",
      hint="a constant group has max = min, so scale = 0 and w/scale is NaN: clamp the range to at least 1e-5 "
           "as llm-awq does"
      ).edit(_honest, "scale = (hi - lo).clamp(min=1e-5) / qmax", "scale = (hi - lo) / qmax")

wrong("no validation",
      hint="check the arguments: bits in 2..8, a group_size that divides the input dimension, no NaN, and raise "
           "ValueError naming the argument"
      ).edit(_honest, """    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in [2, 8], got {bits}")
""", "")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
def _check(w, bits, group_size):
    if not 2 <= bits <= 8:
        raise ValueError("bits must be in 2..8")
    if w.isnan().any():
        raise ValueError("w has NaN")
    g = w.shape[1] if group_size is None else group_size
    if w.shape[1] % g:
        raise ValueError("group_size must divide in_features")
    return g


@correct("loop over groups, python ints for the levels")
def ok_loop(w, bits=4, group_size=64, symmetric=False):
    g = _check(w, bits, group_size)
    out = torch.empty_like(w)
    for c in range(0, w.shape[1], g):
        block = w[:, c:c + g]
        if symmetric:
            top = 2 ** (bits - 1) - 1
            s = block.abs().max(dim=1, keepdim=True).values.clamp_min(1e-5) / top
            out[:, c:c + g] = (block / s).round().clamp(-top - 1, top) * s
        else:
            top = 2 ** bits - 1
            mn, mx = block.min(dim=1, keepdim=True).values, block.max(dim=1, keepdim=True).values
            s = (mx - mn).clamp_min(1e-5) / top
            z = (-(mn / s).round()).clamp(0, top)
            out[:, c:c + g] = ((block / s).round().add(z).clamp(0, top) - z) * s
    return out


@correct("view as [-1, group_size] as llm-awq does")
def ok_flat_groups(w, bits=4, group_size=64, symmetric=False):
    g = _check(w, bits, group_size)
    x = w.reshape(-1, g)                      # consecutive input columns of a row stay together
    if symmetric:
        hi = 2 ** (bits - 1) - 1
        s = x.abs().amax(1, keepdim=True).clamp(min=1e-5) / hi
        y = torch.clamp(torch.round(x / s), -hi - 1, hi) * s
    else:
        hi = 2 ** bits - 1
        s = (x.amax(1, keepdim=True) - x.amin(1, keepdim=True)).clamp(min=1e-5) / hi
        z = (-torch.round(x.amin(1, keepdim=True) / s)).clamp(0, hi)
        y = (torch.clamp(torch.round(x / s) + z, 0, hi) - z) * s
    return y.reshape(w.shape)
