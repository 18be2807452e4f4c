"""awq_scales — AWQ's activation-aware per-channel scales. Taught in notebook 12; reference
``kdcore.llm.quantize.awq_scales``.

Contract (docs/EXERCISES.md): llm-awq's ``_search_module_scale`` for one Linear ``w [out, in]`` with inputs
``x [n, in]``: ``a = mean|x|`` per input channel; for ``α = k/grid``, ``k = 0 .. grid−1``: ``s = clamp(a^α, min=1e-4)``,
``s ← s / sqrt(max(s)·min(s))``, error ``mean((x wᵀ − x Ŵᵀ)²)`` with ``Ŵ = quantize_groupwise(w·s, bits,
group_size)/s``; return the ``s [in]`` of the smallest error (the first on ties). ``x`` not ``[n ≥ 1, in]`` or
``grid < 1``: ValueError; integer ``x``: TypeError.
"""
from __future__ import annotations

import torch

from kdcore.checking.cases import cases, gen
from kdcore.checking.catalogue import correct, wrong


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, out: int, inp: int, n: int = 48, bits: int | None = None,
           group_size: int | None | str = "default", grid: int | None = None, salient: int | None = 2,
           dead: int | None = None, zero_w: bool = False, bad: str | None = None):
    """A Gaussian weight ``[out, inp]`` and inputs ``[n, inp]`` whose channel scales vary (``salient``: one channel
    10× larger, the case AWQ is for; ``dead``: a channel that is always 0); ``bad``: an invalid argument."""
    g = gen(seed)
    w = torch.randn(out, inp, generator=g)
    x = torch.randn(n, inp, generator=g) * torch.rand(inp, generator=g).add(0.2)   # uneven channel magnitudes
    if salient is not None:
        x[:, salient] *= 10.0
    if dead is not None:
        x[:, dead] = 0.0
    if zero_w:
        w = torch.zeros_like(w)
    if bad == "x with the wrong number of columns":
        x = x[:, :-1]
    elif bad == "integer inputs":
        x = x.round().long()
    kwargs = {k: val for k, val in {"bits": bits, "grid": grid}.items() if val is not None}
    if group_size != "default":
        kwargs["group_size"] = group_size
    return (w, x), kwargs


CASES = cases(_build, [
    dict(out=8, inp=16, bits=3, group_size=8),
    dict(out=6, inp=32, bits=4, group_size=16, grid=10),
    dict(out=4, inp=16, bits=2, group_size=None),
    dict(out=5, inp=24, bits=3, group_size=8, salient=None, note="no salient channel"),
    dict(out=4, inp=128, n=32, note="defaults bits=4, group_size=64, grid=20"),
    dict(out=6, inp=16, bits=3, group_size=8, grid=1, note="grid=1: only alpha = 0, s = 1"),
    dict(out=6, inp=16, bits=3, group_size=16, grid=3),
    dict(out=4, inp=16, bits=3, group_size=8, dead=5, note="input 5 is always 0"),
    dict(out=4, inp=16, n=1, bits=3, group_size=8, note="a single input row"),
    dict(out=4, inp=16, bits=3, group_size=8, grid=5, zero_w=True, note="all weights 0: every alpha ties, the "
                                                                          "first (alpha = 0, s = 1) is kept"),
    dict(out=4, inp=16, bits=9, group_size=8, raises=True, note="bits above 8"),
    dict(out=4, inp=16, n=0, bits=3, group_size=8, raises=True, note="no input rows"),
    dict(out=4, inp=16, bits=3, group_size=8, bad="integer inputs", raises=True),
    dict(out=4, inp=16, bits=3, group_size=6, raises=True, note="group_size does not divide the input dimension"),
    dict(out=4, inp=16, bits=3, group_size=8, grid=0, raises=True),
    dict(out=4, inp=16, bits=3, group_size=8, bad="x with the wrong number of columns", raises=True),
], rtol=1e-4, atol=1e-6)

_EMPTY = ("with no input rows mean|x| is NaN, and quantize_groupwise then refuses the NaN-scaled weight with a "
          "ValueError as well: the explicit check only makes the message clearer")
EQUIVALENT_MUTANTS = {
    "line +15, col 49: `0` → `-1`": _EMPTY, "line +15, col 43: `0` → `1`": _EMPTY,
    "line +15, col 43: `0` → `-1`": _EMPTY,
    "line +16, col 60: `1` → `0`": "only the text of the error message changes",
    "line +30, col 14: `(reference - x @ w_hat.T).pow(2).mean().item()` → `(reference - x @ w_hat.T).pow(2).mean()`":
        "the error is then a 0-dim tensor; comparing it with `best` (a float or such a tensor) gives the same order",
}


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants below that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _q(w, bits, group_size):
    from kdcore.llm.quantize import quantize_groupwise
    return quantize_groupwise(w, bits, group_size)


def _validate(w, x, bits, group_size, grid):
    if not x.is_floating_point():
        raise TypeError("x must be a floating-point tensor")
    if x.dim() != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"x must be [n, {w.shape[1]}]")
    if grid < 1:
        raise ValueError("grid must be >= 1")
    if not 2 <= bits <= 8:
        raise ValueError("bits must be in [2, 8]")
    if group_size is not None and w.shape[1] % group_size:
        raise ValueError("group_size must divide the input dimension")


def _honest(w, x, bits=4, group_size=64, grid=20):
    _validate(w, x, bits, group_size, grid)
    a = x.abs().mean(dim=0)
    y = x @ w.T
    best, best_s = float("inf"), None
    for k in range(grid):
        s = a.pow(k / grid).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        w_hat = _q(w * s, bits, group_size) / s
        err = (y - x @ w_hat.T).pow(2).mean().item()
        if err < best:
            best, best_s = err, s
    return best_s


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("scales applied but not undone",
      hint="the quantized layer is Q(w·s)/s: divide by s again (in a model, 1/s is folded into the previous "
           "operation); Q(w·s) alone is a different layer"
      ).edit(_honest, "w_hat = _q(w * s, bits, group_size) / s", "w_hat = _q(w * s, bits, group_size)")

wrong("error on the weights, not on the outputs",
      hint="AWQ chooses alpha by the layer-OUTPUT error mean((x wᵀ − x ŵᵀ)²) on the calibration inputs; the weight "
           "error ignores which input channels are large, which is the whole point"
      ).edit(_honest, "err = (y - x @ w_hat.T).pow(2).mean().item()", "err = (w - w_hat).pow(2).mean().item()")

wrong("max |x| instead of mean |x|",
      hint="AWQ's activation statistic is the mean magnitude per input channel, x.abs().mean(0) (SmoothQuant uses "
           "the maximum)"
      ).edit(_honest, "a = x.abs().mean(dim=0)", "a = x.abs().amax(dim=0)")

wrong("mean over the wrong dimension",
      hint="one scale per INPUT channel: average |x| over the rows (dim=0), giving a vector of length in"
      ).edit(_honest, "a = x.abs().mean(dim=0)", "a = x.abs().mean(dim=1)")

wrong("scales not normalised",
      hint="llm-awq normalises s by sqrt(max(s)·min(s)) so that the scales sit around 1; the returned s must be "
           "the normalised one"
      ).edit(_honest, "        s = s / (s.max() * s.min()).sqrt()\n", "")

wrong("alpha grid from linspace(0, 1, grid)",
      hint="alpha takes the values k / grid for k = 0 .. grid − 1 (0 included, 1 excluded), as llm-awq's "
           "`for ratio in range(n_grid): ratio = ratio / n_grid`; linspace(0, 1, grid) is another grid"
      ).edit(_honest, "s = a.pow(k / grid).clamp(min=1e-4)", "s = a.pow(k / max(grid - 1, 1)).clamp(min=1e-4)")

wrong("no search: alpha fixed at 0.5",
      hint="alpha is searched: try every grid value and keep the scales with the smallest layer-output error"
      ).edit(_honest, "s = a.pow(k / grid).clamp(min=1e-4)", "s = a.pow(0.5).clamp(min=1e-4)")

wrong("scales inverted (w / s and s back)",
      hint="multiply the weight columns by s (large for salient channels) before quantizing and divide after: "
           "Q(w·s)/s protects the large-activation channels; Q(w/s)·s does the opposite"
      ).edit(_honest, "w_hat = _q(w * s, bits, group_size) / s", "w_hat = _q(w / s, bits, group_size) * s")

wrong("no clamp on the scales",
      hint="clamp a^alpha to at least 1e-4 before normalising: a channel whose inputs are all 0 gives s = 0, and "
           "w·s / s is then 0/0"
      ).edit(_honest, "s = a.pow(k / grid).clamp(min=1e-4)", "s = a.pow(k / grid)")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("all alphas at once, argmin over a stacked error vector")
def ok_vectorised(w, x, bits=4, group_size=64, grid=20):
    _validate(w, x, bits, group_size, grid)
    a = x.abs().mean(0)
    candidates = []
    errors = []
    for alpha in torch.arange(grid, dtype=torch.float64) / grid:
        s = a.pow(float(alpha)).clamp(min=1e-4)
        s = s / torch.sqrt(s.max() * s.min())
        candidates.append(s)
        d = w - _q(w * s, bits, group_size) / s
        errors.append(((x @ d.T) ** 2).mean())
    return candidates[int(torch.stack(errors).argmin())]     # argmin returns the first minimum


@correct("error through a Linear module")
def ok_module(w, x, bits=4, group_size=64, grid=20):
    _validate(w, x, bits, group_size, grid)
    layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    mean_abs = x.abs().sum(0) / x.shape[0]
    with torch.no_grad():
        layer.weight.copy_(w)
        target = layer(x)
        best_err, best_s = None, None
        for k in range(grid):
            s = torch.clamp(mean_abs ** (k / grid), min=1e-4)
            s = s / torch.sqrt(torch.max(s) * torch.min(s))
            layer.weight.copy_(_q(w * s[None, :], bits, group_size) / s[None, :])
            err = torch.mean((layer(x) - target) ** 2).item()
            if best_err is None or err < best_err:
                best_err, best_s = err, s
    return best_s
