"""dequantize — quantized integers back to floats. Taught in notebook 09; reference ``kdcore.quantize.dequantize``.

Contract (docs/EXERCISES.md): ``(q − zero_point)·scale`` as float32, for integer ``q`` of any integer dtype
(uint8 included: no wrap-around below the zero point) and for a scale / zero point given as numbers or 0-dim tensors;
a scale <= 0 raises ValueError.
"""
from __future__ import annotations

import torch

from kdcore.checking.cases import cases, gen
from kdcore.checking.catalogue import correct, wrong


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, dtype: str, shape: tuple[int, ...], levels: tuple[int, int], scale: float,
           zero_point: int, as_tensors: bool = False):
    """Random levels ``q`` in ``[low, high)`` of the given dtype; scale / zero point as numbers or 0-dim tensors."""
    low, high = levels
    q = torch.randint(low, high, shape, generator=gen(seed)).to(getattr(torch, dtype))
    if as_tensors:
        return (q, torch.tensor(scale), torch.tensor(zero_point)), {}
    return (q, scale, zero_point), {}


CASES = cases(_build, [
    dict(dtype="int32", shape=(4, 6), levels=(0, 256), scale=0.1, zero_point=128, note="unsigned levels"),
    dict(dtype="int8", shape=(3, 5), levels=(-128, 128), scale=0.05, zero_point=0, note="symmetric levels"),
    dict(dtype="uint8", shape=(5, 5), levels=(0, 256), scale=0.02, zero_point=100,
         note="q < zero_point must not wrap around"),
    dict(dtype="int32", shape=(4, 6), levels=(0, 256), scale=0.25, zero_point=3, as_tensors=True,
         note="scale and zero_point as 0-dim tensors"),
    dict(dtype="int64", shape=(2, 3, 4), levels=(0, 16), scale=0.5, zero_point=7, note="4-bit levels"),
    dict(dtype="int32", shape=(3, 3), levels=(0, 256), scale=-0.5, zero_point=0, raises=True),
    dict(dtype="int32", shape=(3, 3), levels=(0, 256), scale=0.0, zero_point=0, as_tensors=True, raises=True),
], rtol=1e-6, atol=1e-7, check_dtype="exact")

EQUIVALENT_MUTANTS = {
    "line +8, col 7: `or` → `and` in `q.is_floating_point() or q.is_complex() or q.dt...`":
        "differs only for a q that is not an integer tensor, outside the exercise's domain (the contract takes integer "
        "q; the library's TypeError is tested in tests/test_quantize.py)",
}


# ----------------------------------------------------------------------------------------------------------
# an honest solution (also a correct answer); the wrong variants below are one-line edits of it
# ----------------------------------------------------------------------------------------------------------
@correct("q.float()")
def _honest(q, scale, zero_point):
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return (q.float() - zero_point) * scale


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("zero point subtracted after scaling", hint="subtract the zero point first, then scale: (q − zero_point)·scale"
      ).edit(_honest, "(q.float() - zero_point) * scale", "q.float() * scale - zero_point")

wrong("zero point added", hint="subtract the zero point: (q − zero_point)·scale"
      ).edit(_honest, "q.float() - zero_point", "q.float() + zero_point")

wrong("divided by the scale", hint="multiply by the scale (quantizing divides, dequantizing multiplies)"
      ).edit(_honest, ") * scale", ") / scale")

wrong("uint8 arithmetic wraps around",
      hint="convert q to a wider type first (q.float() or q.to(torch.int32)): in uint8, q − zero_point wraps around "
           "below 0"
      ).edit(_honest, "(q.float() - zero_point) * scale", "((q - zero_point) * scale).float()")

wrong("float64 result", hint="return float32 (e.g. `.float()`), not float64"
      ).edit(_honest, "(q.float() - zero_point) * scale", "(q.double() - float(zero_point)) * float(scale)")

wrong("zero point ignored", hint="subtract the zero point: (q − zero_point)·scale"
      ).edit(_honest, "(q.float() - zero_point) * scale", "q.float() * scale")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("int32 then float32")
def ok_int(q, scale, zero_point):
    if torch.as_tensor(scale).item() <= 0:
        raise ValueError("scale must be > 0")
    return (q.to(torch.int32) - zero_point).to(torch.float32) * scale
