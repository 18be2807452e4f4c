"""softmax_t — softmax with temperature. Taught in notebook 01; reference ``kdcore.distill.softmax_t``.

Contract (docs/EXERCISES.md): softmax of ``logits / T`` over the last dim (rows sum to 1); finite for logits of
magnitude 1e4; ``T <= 0`` raises ValueError.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdcore.checking.cases import call_case, cases, randn
from kdcore.checking.catalogue import correct, wrong


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, shape: tuple[int, ...], T: float | None = None, scale: float = 1.0):
    """Gaussian logits of ``shape`` (× scale); T omitted when None (the default T = 1 applies)."""
    return (randn(*shape, seed=seed, scale=scale),), ({} if T is None else {"T": T})


_ONE_ROW = torch.tensor([[1.0, 2.0, 3.0]])
# exp(1e4) is inf in float32: only a max-subtracted softmax stays finite; the second row has two near-ties
_HUGE = torch.tensor([[1e4, 0.0, -1e4], [1e4, 1e4 - 1.0, 5e3]])
_TOLERANCE = dict(rtol=1e-5, atol=1e-6)

CASES = [
    call_case("fixed example [[1, 2, 3]], T=1", lambda: ((_ONE_ROW.clone(),), {"T": 1.0}), **_TOLERANCE),
    call_case("fixed example [[1, 2, 3]], T=2 (flatter)", lambda: ((_ONE_ROW.clone(),), {"T": 2.0}), **_TOLERANCE),
    *cases(_build, [
        dict(shape=(4, 10), T=0.5, scale=2.0, note="sharper"),
        dict(shape=(3, 5, 7), T=3.0, scale=3.0, note="softmax over the last dim of a 3-D tensor"),
        dict(shape=(1, 6), note="single row, default T"),
    ], **_TOLERANCE),
    call_case("logits of magnitude 1e4, T=1", lambda: ((_HUGE.clone(),), {"T": 1.0}), **_TOLERANCE),
    call_case("logits of magnitude 1e4, T=4", lambda: ((_HUGE.clone(),), {"T": 4.0}), **_TOLERANCE),
    *cases(_build, [
        dict(shape=(2, 3), T=0.0, raises=True),
        dict(shape=(2, 3), T=-1.0, raises=True),
    ]),
]


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants below that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _honest(logits, T=1.0):
    if T <= 0:
        raise ValueError(f"T must be > 0, got {T}")
    return torch.softmax(logits / T, dim=-1)


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("softmax over dim 0", hint="softmax over the wrong dimension: the classes are the last dim, use dim=-1 "
                                 "(dim=0 mixes rows)"
      ).edit(_honest, "dim=-1", "dim=0")

wrong("softmax over dim 1", hint="dim=1 is the class dim only for 2-D inputs: use dim=-1 so [..., C] inputs work too"
      ).edit(_honest, "dim=-1", "dim=1")

wrong("temperature ignored", hint="the temperature is ignored: divide the logits by T first"
      ).edit(_honest, "logits / T", "logits")

wrong("multiplied by T", hint="divide the logits by T (softmax(logits / T)), do not multiply"
      ).edit(_honest, "logits / T", "logits * T")


@wrong("exp without max subtraction",
       hint="exp(logits) overflows to inf for large logits (inf/inf = NaN): subtract the row maximum first, or use "
            "torch.softmax, which does")
def naive_exp(logits, T=1.0):
    if T <= 0:
        raise ValueError(f"T must be > 0, got {T}")
    e = torch.exp(logits / T)
    return e / e.sum(dim=-1, keepdim=True)


wrong("no check of T", hint="T <= 0 is not a temperature: raise ValueError (logits / 0 silently gives NaN)"
      ).edit(_honest, '    if T <= 0:\n        raise ValueError(f"T must be > 0, got {T}")\n', "")

wrong("in-place division", hint="`logits /= T` changes the caller's tensor: use `logits / T` (out of place)"
      ).edit(_honest, "    return torch.softmax(logits / T,", "    logits /= T\n    return torch.softmax(logits,")

wrong("log-softmax returned", hint="you returned log-probabilities: return softmax, rows summing to 1"
      ).edit(_honest, "torch.softmax", "torch.log_softmax")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("F.softmax")
def ok_functional(logits, T=1.0):
    if not T > 0:
        raise ValueError("T must be positive")
    return F.softmax(logits / T, dim=-1)


@correct("manual, max subtracted")
def ok_manual(logits, T=1.0):
    if T <= 0:
        raise ValueError(f"T must be > 0, got {T}")
    z = logits / T
    z = z - z.max(dim=-1, keepdim=True).values
    e = z.exp()
    return e / e.sum(dim=-1, keepdim=True)


@correct("exp(log_softmax)")
def ok_exp_log(logits, T=1.0):
    if T <= 0:
        raise ValueError(f"T must be > 0, got {T}")
    return torch.exp(torch.log_softmax(logits / T, dim=-1))
