"""gptq_quantize — GPTQ for one Linear layer. Taught in notebook 12; reference ``kdcore.llm.quantize.gptq_quantize``.

Contract (docs/EXERCISES.md): IST-DASLab/gptq's ``fasterquant`` without act-order or static groups. ``H = 2·XᵀX/n``
``[in, in]``; dead inputs (``H_ii = 0``) get ``H_ii = 1`` and a zero weight column; ``H += damp·mean(diag H)·I``;
``U = chol(H⁻¹)`` upper; columns in order: quantize column i on its group's grid (``quantize_groupwise``'s
asymmetric grid, computed from the current, error-updated weights when the group's first column is reached),
``e = (w_i − q_i)/U_ii``, ``w_j −= e·U_ij`` for ``j > i``. With ``H = I`` it equals ``quantize_groupwise``; on its
calibration inputs its layer-output error is never larger than RTN's.

Cases use float64 weights and Hessians, so that rounding decisions cannot flip between correct implementations
that order the arithmetic differently.
"""
from __future__ import annotations

import torch

from kdcore.checking.cases import cases, gen
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import compare_obs

TIMEOUT = 20.0


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, out: int, inp: int, n: int = 64, bits: int | None = None,
           group_size: int | None | str = "default", damp: float | None = None, hessian: str = "data",
           dead: int | None = None, bad: str | None = None):
    """A float64 weight ``[out, inp]`` and ``H = 2·XᵀX/n`` of correlated inputs ``X [n, inp]`` (``hessian="eye"``:
    the identity); ``dead``: an input that is always 0; ``bad``: an invalid argument."""
    g = gen(seed)
    w = torch.randn(out, inp, generator=g, dtype=torch.float64)
    mix = torch.randn(inp, inp, generator=g, dtype=torch.float64) / inp ** 0.5 + torch.eye(inp, dtype=torch.float64)
    x = torch.randn(n, inp, generator=g, dtype=torch.float64) @ mix * 0.7
    if dead is not None:
        x[:, dead] = 0.0
    H = torch.eye(inp, dtype=torch.float64) if hessian == "eye" else 2.0 * x.T @ x / n
    if bad == "H not square":
        H = H[:, :-1]
    elif bad == "H of the wrong size":
        H = H[:-2, :-2]
    elif bad == "NaN weight":
        w[0, 1] = float("nan")
    kwargs = {k: val for k, val in {"bits": bits, "damp": damp}.items() if val is not None}
    if group_size != "default":
        kwargs["group_size"] = group_size
    return (w, H), kwargs


CASES = cases(_build, [
    dict(out=8, inp=16, bits=4, group_size=None),
    dict(out=6, inp=32, bits=3, group_size=8),
    dict(out=4, inp=24, bits=2, group_size=12),
    dict(out=5, inp=16, bits=8, group_size=None),
    dict(out=3, inp=40, n=200, note="defaults bits=4, group_size=None, damp=0.01"),
    dict(out=6, inp=16, bits=4, group_size=8, hessian="eye", note="H = identity: equals round-to-nearest"),
    dict(out=4, inp=16, bits=3, group_size=None, hessian="eye"),
    dict(out=6, inp=32, n=12, bits=4, group_size=16, note="12 calibration rows < 32 inputs: H is singular, damping "
                                                             "makes it invertible"),
    dict(out=4, inp=16, bits=4, group_size=8, damp=0.1),
    dict(out=4, inp=16, bits=3, group_size=None, damp=0.0, note="no damping on a full-rank H"),
    dict(out=4, inp=16, bits=3, group_size=8, damp=1.0),
    dict(out=5, inp=16, bits=4, group_size=8, dead=3, note="input 3 is always 0 (dead)"),
    dict(out=5, inp=16, bits=3, group_size=None, damp=0.0, dead=9, note="dead input, no damping"),
    dict(out=5, inp=16, bits=4, group_size=4, damp=1.0, dead=3, note="dead input: its H_ii = 1 enters mean(diag H)"),
    dict(out=4, inp=8, bits=4, bad="H not square", raises=True),
    dict(out=4, inp=8, bits=4, bad="H of the wrong size", raises=True),
    dict(out=4, inp=8, bits=4, bad="NaN weight", raises=True),
    dict(out=4, inp=8, bits=1, raises=True, note="bits below 2"),
    dict(out=4, inp=8, bits=9, raises=True, note="bits above 8"),
    dict(out=4, inp=12, bits=4, group_size=5, raises=True, note="group_size does not divide the input dimension"),
    dict(out=4, inp=8, bits=4, damp=-0.1, raises=True),
    dict(out=4, inp=8, bits=4, damp=1.5, raises=True),
], rtol=1e-6, atol=1e-8)


PROPERTY = "layer-output error on the calibration inputs not larger than round-to-nearest's"


def _graded(fn):
    """``fn`` whose tensor result is returned as ``{"weight": Q, PROPERTY: bool}``: the error ``tr((W−Q) H (W−Q)ᵀ)``
    (``∝ ‖(W−Q)X‖²``) compared with round-to-nearest's on the same grid (``quantize_groupwise``)."""
    from kdcore.llm.quantize import quantize_groupwise

    def call(*args, **kwargs):
        q = fn(*args, **kwargs)
        w, H = args[0], args[1]
        if not isinstance(q, torch.Tensor) or q.shape != w.shape:
            return q
        rtn = quantize_groupwise(w, kwargs.get("bits", 4), kwargs.get("group_size"))
        err = lambda d: torch.einsum("ri,ij,rj->", d.double(), H.double(), d.double()).item()  # noqa: E731
        return {"weight": q, PROPERTY: bool(err(w - q) <= err(w - rtn) * (1 + 1e-9) + 1e-12)}
    return call


for _case in CASES:    # every case observes the property as well as the weight
    _case.observe = (lambda observe: lambda fn: observe(_graded(fn)))(_case.observe)


EQUIVALENT_MUTANTS: dict[str, str] = {}


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants below that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _grid(block, bits):
    qmax = 2 ** bits - 1
    lo, hi = block.amin(dim=1, keepdim=True), block.amax(dim=1, keepdim=True)
    scale = (hi - lo).clamp(min=1e-5) / qmax
    return scale, torch.clamp(-torch.round(lo / scale), 0, qmax)


def _round(col, scale, zero, bits):
    return (torch.clamp(torch.round(col / scale) + zero, 0, 2 ** bits - 1) - zero) * scale


def _validate(w, H, bits, group_size, damp):
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in [2, 8], got {bits}")
    if H.shape != (w.shape[1], w.shape[1]):
        raise ValueError(f"H must be [in, in] = [{w.shape[1]}, {w.shape[1]}], got {tuple(H.shape)}")
    g = w.shape[1] if group_size is None else group_size
    if w.shape[1] % g:
        raise ValueError("group_size must divide the input dimension")
    if not 0 <= damp <= 1:
        raise ValueError("damp must be in [0, 1]")
    if torch.isnan(w).any() or torch.isnan(H).any():
        raise ValueError("w and H must not contain NaN")
    return g


def _honest(w, H, bits=4, group_size=None, damp=0.01):
    g = _validate(w, H, bits, group_size, damp)
    W, H = w.clone(), H.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * torch.diag(H).mean() * torch.eye(H.shape[0], dtype=H.dtype)
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    for i in range(W.shape[1]):
        if i % g == 0:
            scale, zero = _grid(W[:, i:i + g], bits)
        q = _round(W[:, i:i + 1], scale, zero, bits)[:, 0]
        Q[:, i] = q
        err = (W[:, i] - q) / U[i, i]
        W[:, i:] -= err[:, None] * U[i, i:][None, :]
    return Q


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("no error update (plain RTN)",
      hint="after quantizing column i, spread its error over the columns not yet quantized: "
           "W[:, i:] -= ((w_i - q_i) / U[i, i]) ⊗ U[i, i:]; without it GPTQ is round-to-nearest"
      ).edit(_honest, "        W[:, i:] -= err[:, None] * U[i, i:][None, :]\n", "")

wrong("Hessian not dampened",
      hint="add damp · mean(diag H) to the diagonal before inverting: with fewer calibration rows than inputs H is "
           "singular (Cholesky fails), and even when it is not, the contract includes the dampening"
      ).edit(_honest, "    H += damp * torch.diag(H).mean() * torch.eye(H.shape[0], dtype=H.dtype)\n", "")

wrong("damping not scaled by mean(diag H)",
      hint="GPTQ's damping is relative: damp · mean(diag(H)) · I, not damp · I"
      ).edit(_honest, "H += damp * torch.diag(H).mean() * torch.eye", "H += damp * torch.eye")

wrong("inverse Hessian instead of its Cholesky factor",
      hint="the error is spread with the rows of U = chol(H⁻¹) (upper), which equals the OBS update with the "
           "inverse Hessian of the columns still unquantized; rows of the full H⁻¹ use stale information"
      ).edit(_honest, "U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)",
             "U = torch.linalg.inv(H)")

wrong("error not divided by the pivot U[i, i]",
      hint="the update is ((w_i − q_i) / U[i, i]) · U[i, j]: divide the error by the diagonal entry"
      ).edit(_honest, "err = (W[:, i] - q) / U[i, i]", "err = W[:, i] - q")

wrong("dead inputs not handled",
      hint="an input that is always 0 has H_ii = 0: set H_ii = 1 and zero that weight column (its value never "
           "reaches the output), as the GPTQ code does"
      ).edit(_honest, "    H[dead, dead] = 1\n    W[:, dead] = 0\n", "")

wrong("grids from the original weights (static groups)",
      hint="the contract computes a group's grid when its first column is reached, from the error-updated "
           "weights (GPTQ's default); grids fixed in advance are the static_groups=True option"
      ).edit(_honest, "scale, zero = _grid(W[:, i:i + g], bits)", "scale, zero = _grid(w[:, i:i + g], bits)")

wrong("Cholesky factor of H instead of H⁻¹",
      hint="GPTQ needs the upper Cholesky factor of the (dampened) INVERSE Hessian: "
           "U = cholesky(cholesky_inverse(cholesky(H)), upper=True), not cholesky(H)"
      ).edit(_honest, "U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)",
             "U = torch.linalg.cholesky(H, upper=True)")

wrong("error sign flipped",
      hint="subtract: W[:, j] -= e · U[i, j] with e = (w_i − q_i) / U[i, i], which moves the remaining columns to "
           "compensate the rounding of column i"
      ).edit(_honest, "W[:, i:] -= err[:, None]", "W[:, i:] += err[:, None]")

wrong("input modified in place",
      hint="work on copies (W = w.clone(), H = H.clone()): the caller's weight and Hessian must not change"
      ).edit(_honest, "W, H = w.clone(), H.clone()", "W = w")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("OBS form: explicit inverse, eliminated column by column (Frantar et al. eqs. 2-3)")
def ok_obs(w, H, bits=4, group_size=None, damp=0.01):
    g = _validate(w, H, bits, group_size, damp)
    W, H = w.clone(), H.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H = H + damp * torch.diag(H).mean() * torch.eye(len(H), dtype=H.dtype)
    Hinv = torch.linalg.inv(H)
    Q = torch.zeros_like(W)
    for i in range(W.shape[1]):
        if i % g == 0:
            scale, zero = _grid(W[:, i:i + g], bits)
        Q[:, i] = _round(W[:, i:i + 1], scale, zero, bits)[:, 0]
        W = W - torch.outer((W[:, i] - Q[:, i]) / Hinv[i, i], Hinv[i])
        Hinv = Hinv - torch.outer(Hinv[:, i], Hinv[i]) / Hinv[i, i]
    return Q


@correct("lazy batch updates, blocks of 4 columns (the paper's Algorithm 1)")
def ok_blocked(w, H, bits=4, group_size=None, damp=0.01):
    g = _validate(w, H, bits, group_size, damp)
    W, H = w.clone(), H.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H[range(len(H)), range(len(H))] += damp * torch.diag(H).mean()
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    for b0 in range(0, W.shape[1], 4):
        b1 = min(b0 + 4, W.shape[1])
        E = torch.zeros(W.shape[0], b1 - b0, dtype=W.dtype)
        for i in range(b0, b1):
            if i % g == 0:
                scale, zero = _grid(torch.cat([W[:, i:b1], W[:, b1:]], dim=1)[:, :g], bits)
            Q[:, i] = _round(W[:, i:i + 1], scale, zero, bits)[:, 0]
            E[:, i - b0] = (W[:, i] - Q[:, i]) / U[i, i]
            W[:, i:b1] -= E[:, i - b0:i - b0 + 1] * U[i:i + 1, i:b1]
        W[:, b1:] -= E @ U[b0:b1, b1:]
    return Q
