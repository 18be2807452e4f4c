"""quantize_affine — per-tensor uniform (affine / symmetric) quantization. Taught in notebook 09; reference
``kdcore.quantize.quantize_affine``.

Contract (docs/EXERCISES.md): ``(q, scale, zero_point)``; the range ``[min, max]`` is widened to include 0;
asymmetric: ``qmin, qmax = 0, 2^bits − 1``, ``scale = (max − min)/(qmax − qmin)``,
``zero_point = clamp(qmin − round(min/scale), qmin, qmax)``; symmetric: ``qmin, qmax = −2^(bits−1), 2^(bits−1) − 1``,
``scale = max(|min|, |max|)/((qmax − qmin)/2)``, ``zero_point = 0``; ``scale ≥ float32 eps``;
``q = clamp(round(x/scale) + zero_point, qmin, qmax)`` as integers, rounding half to even. For bits=8 these are
PyTorch's MinMaxObserver conventions; the reference is the judge here, and tests/test_quantize.py cross-checks it
against the observer where ``torch.ao.quantization`` (deprecated) is still installed.
"""
from __future__ import annotations

from functools import partial

import torch

from kdcore.checking.cases import cases, gen, randn
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import MUTATION_HINT, Observation, compare_values, type_name

EPS = torch.finfo(torch.float32).eps


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _one_outlier(n: int, seed: int) -> torch.Tensor:
    return torch.cat([randn(n - 1, seed=seed, scale=0.1), torch.tensor([8.0])])


# the kinds of input x, by the name a case shows
_INPUTS = {
    "gaussian": lambda shape, seed: randn(*shape, seed=seed),
    "shifted gaussian": lambda shape, seed: randn(*shape, seed=seed, scale=2) + 0.5,
    "all positive": lambda shape, seed: torch.rand(*shape, generator=gen(seed)) + 1.0,
    "all negative": lambda shape, seed: -torch.rand(*shape, generator=gen(seed)) - 0.5,
    "mostly negative": lambda shape, seed: randn(*shape, seed=seed) - 1.5,
    "zeros": lambda shape, seed: torch.zeros(*shape),
    "one outlier": lambda shape, seed: _one_outlier(shape[0], seed),
    # symmetric 8-bit: max |x| = 127.5 gives scale 1, so x / scale are exact halves (round half to even, then clamp)
    "exact halves": lambda shape, seed: torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 127.5, -127.5]),
}


def _build(seed: int, *, x: str, shape: tuple[int, ...], bits: int | None = None, symmetric: bool | None = None):
    """Input ``x`` of a kind in ``_INPUTS``; bits / symmetric omitted from the call when None."""
    kwargs = {k: v for k, v in {"bits": bits, "symmetric": symmetric}.items() if v is not None}
    return (_INPUTS[x](shape, seed),), kwargs


def _as_number(value):
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def _compare(cand: Observation, ref: Observation, *, flips: bool = True):
    """q as integers equal up to a few ±1 flips (float32 vs float64 ties; none when ``flips`` is False), scale to
    1e-5, zero point exactly."""
    if cand.get("mutated") != ref["mutated"]:
        return "x was modified", MUTATION_HINT
    out, (rq, rscale, rzp) = cand.get("out"), ref["out"]
    if not isinstance(out, list) or len(out) != 3:
        return f"expected a tuple (q, scale, zero_point), got {type_name(out)}", None
    q, scale, zp = out
    if not isinstance(q, torch.Tensor) or q.shape != rq.shape:
        return f"q: expected a tensor of shape {tuple(rq.shape)}, got {type_name(q)}", None
    if q.is_floating_point() != rq.is_floating_point():
        return (f"q has dtype {str(q.dtype).replace('torch.', '')}, expected an integer tensor",
                "return q as integers: torch.round(...).clamp(qmin, qmax).to(torch.int32)")
    s, z = _as_number(scale), _as_number(zp)
    if s is None or z is None:
        return f"scale and zero_point must be numbers, got {type_name(scale)} and {type_name(zp)}", None
    if float(z) != round(float(z)) and float(rzp) == round(float(rzp)):
        return (f"zero_point = {z:.6g} is not an integer",
                "the zero point is an integer: qmin − round(min / scale) (then clamped to [qmin, qmax])")
    failure = compare_values(float(s), float(rscale), what="scale", rtol=1e-5, atol=1e-12)
    if failure:
        return failure
    if z != rzp:
        return f"zero_point: expected {rzp}, got {z}", None
    diff = (q.double() - rq.double()).abs()
    # float32 vs float64 arithmetic may flip a value sitting exactly between two levels: allow a few ±1
    allowed = max(1, rq.numel() // 100) if flips else 0
    if diff.max() > 1 or int((diff > 0).sum()) > allowed:
        return (f"q: {int((diff > 0).sum())} of {rq.numel()} values differ (max difference "
                f"{diff.max().item():.0f})", None)
    return None


CASES = cases(_build, [
    dict(x="shifted gaussian", shape=(4, 8), bits=8, symmetric=False),
    dict(x="shifted gaussian", shape=(4, 8), bits=8, symmetric=True),
    dict(x="gaussian", shape=(20,), bits=4, symmetric=False),
    dict(x="all positive", shape=(3, 5), bits=8, symmetric=False, note="the range is widened to include 0"),
    dict(x="all negative", shape=(3, 5), bits=8, symmetric=False),
    dict(x="zeros", shape=(2, 3), bits=8, symmetric=False, note="scale = float32 eps"),
    dict(x="mostly negative", shape=(30,), bits=8, symmetric=True, note="|min| > max"),
    dict(x="gaussian", shape=(5, 5), bits=3, symmetric=True),
    dict(x="one outlier", shape=(41,), bits=8, symmetric=False),
    dict(x="gaussian", shape=(6, 6), note="defaults bits=8, asymmetric (called without them)"),
    dict(x="zeros", shape=(2, 3), bits=8, symmetric=True, note="scale = float32 eps"),
    dict(x="exact halves", shape=(7,), bits=8, symmetric=True, compare=partial(_compare, flips=False),
         note="round half to even; 127.5 → 128 clamped to 127"),
], compare=_compare)

EQUIVALENT_MUTANTS = {
    "line +19, col 14: `float(scale)` → `scale`":
        "the scale is then a 0-dim float32 tensor of the same value; the grader compares values, and a 0-dim tensor "
        "and a number are interchangeable in the contract",
    "line +19, col 28: `int(zero_point)` → `zero_point`":
        "the zero point is then a 0-dim int64 tensor of the same value; the grader compares values, and a 0-dim "
        "tensor and a number are interchangeable in the contract",
}


# ----------------------------------------------------------------------------------------------------------
# an honest solution (also a correct answer); the wrong variants below that differ from it by one line are
# edits of it
# ----------------------------------------------------------------------------------------------------------
@correct("float32 tensors, as MinMaxObserver computes")
def _honest(x, bits=8, symmetric=False):
    lo, hi = x.min().clamp(max=0.0), x.max().clamp(min=0.0)     # widen the range to include 0
    if symmetric:
        qmin, qmax = -2 ** (bits - 1), 2 ** (bits - 1) - 1
        scale = torch.maximum(-lo, hi) / ((qmax - qmin) / 2)
    else:
        qmin, qmax = 0, 2 ** bits - 1
        scale = (hi - lo) / (qmax - qmin)
    # at least float32 eps: an all-zero x must not give scale 0 (then x / scale = NaN)
    scale = torch.clamp(scale, min=EPS)
    zero_point = 0 if symmetric else int(torch.clamp(qmin - torch.round(lo / scale), qmin, qmax))
    q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.int32)
    return q, float(scale), zero_point


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("q left as floats", hint="return q as an integer tensor (`.to(torch.int32)`)"
      ).edit(_honest, ".to(torch.int32)", "")

wrong("truncation instead of rounding", hint="round to the nearest level (torch.round), do not truncate with "
                                             ".int() / .long()"
      ).edit(_honest, "torch.round(x / scale)", "torch.trunc(x / scale)")

wrong("floor instead of rounding", hint="round to the nearest level (torch.round), not floor"
      ).edit(_honest, "torch.round(x / scale)", "torch.floor(x / scale)")

wrong("range not widened to include 0",
      hint="widen [min, max] to include 0 first (min = min(min, 0), max = max(max, 0)), as MinMaxObserver: then 0 is "
           "exactly representable (zero padding, ReLU outputs)"
      ).edit(_honest, "lo, hi = x.min().clamp(max=0.0), x.max().clamp(min=0.0)", "lo, hi = x.min(), x.max()")


@wrong("zero point not clamped",
       hint="the zero point must lie in [qmin, qmax]: clamp it (and widen the range to include 0)")
def zero_point_unclamped(x, bits=8, symmetric=False):
    if symmetric:
        return _honest(x, bits, symmetric)
    qmin, qmax = 0, 2 ** bits - 1
    lo, hi = x.min(), x.max()                               # not widened to include 0 ...
    scale = torch.clamp((hi - lo) / (qmax - qmin), min=EPS)
    zero_point = int(qmin - torch.round(lo / scale))        # ... and not clamped: it can leave [qmin, qmax]
    q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.int32)
    return q, float(scale), zero_point


wrong("zero point not an integer", hint="the zero point is an integer: qmin − round(min / scale)"
      ).edit(_honest, "int(torch.clamp(qmin - torch.round(lo / scale), qmin, qmax))", "float(qmin - lo / scale)")

wrong("symmetric scale divided by 127",
      hint="MinMaxObserver's symmetric scale is max(|min|, |max|) / ((qmax − qmin) / 2) = max/127.5 for 8 bits, "
           "not max/127"
      ).edit(_honest, "torch.maximum(-lo, hi) / ((qmax - qmin) / 2)", "torch.maximum(-lo, hi) / qmax")


@wrong("symmetric on the unsigned range",
       hint="symmetric quantization uses the signed range [−2^(bits−1), 2^(bits−1) − 1] with zero point 0")
def symmetric_unsigned(x, bits=8, symmetric=False):
    if not symmetric:
        return _honest(x, bits, symmetric)
    qmin, qmax = 0, 2 ** bits - 1                   # the unsigned range, shifted by a zero point of 2^(bits−1)
    scale = max(abs(x.min().item()), abs(x.max().item()), 0.0) / ((qmax - qmin) / 2)
    scale = max(float(torch.tensor(scale)), EPS)
    zero_point = 2 ** (bits - 1)
    return torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.int32), scale, zero_point


wrong("asymmetric on the signed range", hint="asymmetric quantization uses the unsigned range [0, 2^bits − 1] (quint8)"
      ).edit(_honest, "qmin, qmax = 0, 2 ** bits - 1", "qmin, qmax = -2 ** (bits - 1), 2 ** (bits - 1) - 1")

wrong("no minimum scale", hint="an all-zero tensor gives scale 0 and x / 0 = NaN: clamp the scale to at least "
                               "float32 eps"
      ).edit(_honest, "    scale = torch.clamp(scale, min=EPS)\n", "")

wrong("bits ignored", hint="use the bits argument: qmax = 2**bits − 1 (asymmetric)"
      ).edit(_honest, "    lo, hi =", "    bits = 8\n    lo, hi =")

wrong("divided by 2^bits", hint="there are 2^bits levels but 2^bits − 1 steps: scale = (max − min) / (qmax − qmin)"
      ).edit(_honest, "scale = (hi - lo) / (qmax - qmin)", "scale = (hi - lo) / 2 ** bits")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("Python floats")
def ok_python(x, bits=8, symmetric=False):
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    if symmetric:
        qmin, qmax = -2 ** (bits - 1), 2 ** (bits - 1) - 1
        scale = max(max(-lo, hi) / ((qmax - qmin) / 2), EPS)
        zp = 0
    else:
        qmin, qmax = 0, 2 ** bits - 1
        scale = max((hi - lo) / (qmax - qmin), EPS)
        zp = min(max(qmin - round(lo / scale), qmin), qmax)
    q = (x / scale).round().add(zp).clamp(qmin, qmax).long()
    return q, scale, zp
