"""sparsegpt_prune — SparseGPT for one Linear weight. Taught in notebook 13; reference
``kdcore.llm.prune.sparsegpt_prune``.

Contract (docs/EXERCISES.md): Frantar & Alistarh (2023, ICML), Algorithm 1 with the reference code's conventions:
``H ← H + damp·mean(diag H)·I`` (dead inputs ``H_jj = 0``: ``H_jj = 1`` and the column of ``w`` zeroed first),
``U = cholesky(H⁻¹)ᵀ`` (upper); blocks of ``blocksize`` columns, each block's mask chosen when the block starts
from the current (updated) weights: exactly ``round(sparsity·out·width)`` entries with the smallest ``w²/U_jj²``
pruned; columns in order, the error ``(w_j − q_j)/U_jj`` of column ``j`` spread over the later columns with row
``j`` of ``U``. Returns the pruned, updated weight (same shape). The grader checks, in this order: inputs not
modified, exact count of zeros per block, layer-output error ``‖(W' − W)Xᵀ‖`` no larger than magnitude pruning's
at the same sparsity on the calibration inputs, agreement with the reference (rtol 1e-4, atol 1e-5).
"""
from __future__ import annotations

import functools

import torch

from kdcore.checking.cases import case_name, derived_seed, gen, raises_case, randn
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import MUTATION_HINT, Case, compare_obs, compare_values
from kdcore.prune import magnitude_mask

TIMEOUT = 10.0


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, out: int, inp: int, sparsity: float, blocksize: int | None = None,
           damp: float | None = None, dead: bool = False, hsize: int | None = None, tokens: int = 96,
           double: bool = False):
    """Weight ``[out, inp]``, correlated calibration inputs ``X [tokens, inp]`` and ``H = 2·XᵀX/tokens``.
    ``dead``: input feature 1 is 0 on every token. ``hsize``: a Hessian of the wrong size. ``double``: float64
    w and H (the result must be float64 too, and the caller's w left alone). Returns
    ``((w, H, sparsity), kwargs)`` and keeps X for the observation."""
    w = randn(out, inp, seed=seed)
    mix = randn(inp, inp, seed=seed + 1) / inp ** 0.5 + torch.eye(inp)
    scale = torch.rand(inp, generator=gen(seed + 2)) * 2 + 0.2
    x = randn(tokens, inp, seed=seed + 3) @ mix * scale                        # [tokens, in]
    if dead:
        x[:, 1] = 0.0
    H = 2 * x.T @ x / tokens                                                   # [in, in]
    if hsize is not None:
        H = torch.eye(hsize)
    if double:
        w, H, x = w.double(), H.double(), x.double()
    kwargs = {k: v for k, v in {"blocksize": blocksize, "damp": damp}.items() if v is not None}
    return (w, H, sparsity), kwargs, x


def _block_zeros(q: torch.Tensor, blocksize: int) -> list[int]:
    return [int((q[:, i:i + blocksize] == 0).sum()) for i in range(0, q.shape[1], blocksize)]


def _observe(build):
    def observe(fn):
        (w, H, sparsity), kwargs, x = build()
        w0, H0 = w.clone(), H.clone()
        q = fn(w, H, sparsity, **kwargs)
        obs = {"out": q, "mutated": not (torch.equal(w0, w) and torch.equal(H0, H))}
        if isinstance(q, torch.Tensor) and q.shape == w0.shape and q.is_floating_point():
            obs["block_zeros"] = _block_zeros(q.detach(), kwargs.get("blocksize", 128))
            obs["output_error"] = float(((q.detach().double() - w0.double()) @ x.double().T).norm())
            magnitude = w0 * magnitude_mask(w0, sparsity)
            obs["magnitude_error"] = float(((magnitude.double() - w0.double()) @ x.double().T).norm())
        return obs
    return observe


def _compare(cand: dict, ref: dict):
    if "raised" in ref:
        return compare_obs(cand, ref)
    if cand.get("mutated") != ref["mutated"]:
        return "w or H was modified in place", MUTATION_HINT
    q, want = cand.get("out"), ref["out"]
    if not isinstance(q, torch.Tensor) or q.shape != want.shape or not q.is_floating_point():
        got = f"shape {tuple(q.shape)}, dtype {q.dtype}" if isinstance(q, torch.Tensor) else type(q).__name__
        return (f"expected the pruned weight, a float tensor of shape {tuple(want.shape)}, got {got}",
                "return the updated weight W' (same shape as w), not a mask")
    if cand["block_zeros"] != ref["block_zeros"]:
        return (f"zeros per block of columns: {cand['block_zeros']}, expected {ref['block_zeros']} "
                f"(round(sparsity · out · block width) in each block)", None)
    if cand["output_error"] > ref["magnitude_error"] * (1 + 1e-4):
        return (f"layer-output error ‖(W' − W)Xᵀ‖ = {cand['output_error']:.4g} is larger than magnitude pruning's "
                f"{ref['magnitude_error']:.4g} on the same calibration inputs", None)
    return compare_values(q, want, what="pruned weight", rtol=1e-4, atol=1e-5)


def _cases(rows: list[dict]) -> list[Case]:
    built = []
    for row in rows:
        row = dict(row)
        note, raises = row.pop("note", None), row.pop("raises", False)
        name = case_name(row, note=note, raises=raises)
        make = functools.partial(_build, derived_seed(name), **row)
        if raises:
            built.append(raises_case(name, lambda make=make: make()[:2]))
        else:
            built.append(Case(name, _observe(make), _compare))
    return built


CASES = _cases([
    dict(out=8, inp=16, sparsity=0.5, blocksize=16, note="one block"),
    dict(out=8, inp=16, sparsity=0.5, blocksize=4, note="four blocks: each block's mask from updated weights"),
    dict(out=6, inp=24, sparsity=0.3, blocksize=8),
    dict(out=5, inp=10, sparsity=0.6, blocksize=4, note="the last block is 2 columns wide"),
    dict(out=4, inp=12, sparsity=0.5, note="defaults blocksize=128, damp=0.01"),
    dict(out=6, inp=12, sparsity=0.5, blocksize=6, damp=0.1),
    dict(out=6, inp=12, sparsity=0.25, blocksize=12, dead=True, note="a dead input (H_jj = 0)"),
    dict(out=1, inp=12, sparsity=0.5, blocksize=12, note="single row"),
    dict(out=6, inp=12, sparsity=0.5, blocksize=4, double=True, note="float64 in, float64 out"),
    dict(out=4, inp=8, sparsity=0.0, blocksize=8, note="nothing pruned: w unchanged"),
    dict(out=4, inp=8, sparsity=1.0, raises=True),
    dict(out=4, inp=8, sparsity=0.5, hsize=6, raises=True, note="H of the wrong size"),
])


# Mutants of the reference that no input can tell apart from it (python -m kdcore.checking.mutants sparsegpt_prune).
EQUIVALENT_MUTANTS = {
    "line +28, col 9: `w.detach()` → `w`":
        "the values are the same; detach only keeps autograd from recording the whole sweep when w requires grad",
    "line +41, col 11: `Wt.T.to(w.dtype).contiguous()` → `Wt.T.to(w.dtype)`":
        "the same values in another memory layout (the grader compares values)",
}


# ----------------------------------------------------------------------------------------------------------
# an honest solution (float32): the wrong variants are edits of it
# ----------------------------------------------------------------------------------------------------------
def _honest(w, H, sparsity, blocksize=128, damp=0.01):
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if H.shape != (w.shape[1], w.shape[1]):
        raise ValueError(f"H must be [{w.shape[1]}, {w.shape[1]}], got {list(H.shape)}")
    W = w.clone().float()                                          # [out, in]
    H = H.clone().float()                                          # [in, in]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * torch.diag(H).mean() * torch.eye(H.shape[0])
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)   # H⁻¹ = UᵀU
    n_in = W.shape[1]
    for start in range(0, n_in, blocksize):
        end = min(start + blocksize, n_in)
        cols = W[:, start:end].clone()                             # the block, updated column by column
        done = torch.zeros_like(cols)                              # final values of the block's columns
        errs = torch.zeros_like(cols)                              # (w - q) / U_jj, column by column
        Ub = U[start:end, start:end]
        saliency = cols ** 2 / torch.diag(Ub).reshape(1, -1) ** 2
        k = round(sparsity * saliency.numel())
        prune = torch.zeros(saliency.numel(), dtype=torch.bool)
        prune[torch.argsort(saliency.flatten(), stable=True)[:k]] = True
        prune = prune.view(saliency.shape)
        for j in range(end - start):
            q = torch.where(prune[:, j], 0.0, cols[:, j])
            done[:, j] = q
            errs[:, j] = (cols[:, j] - q) / Ub[j, j]
            cols[:, j:] -= torch.outer(errs[:, j], Ub[j, j:])
        W[:, start:end] = done
        W[:, end:] -= errs @ U[start:end, end:]
    return W.to(w.dtype)


# ----------------------------------------------------------------------------------------------------------
# the misconceptions
# ----------------------------------------------------------------------------------------------------------
@wrong("no weight update", hint="SparseGPT is not only a mask: after pruning w_j, the kept weights of the later "
                                 "columns are updated by −(w_j/U_jj)·U_j,j: (the OBS correction) so that W·X "
                                 "changes as little as possible")
def mask_only(w, H, sparsity, blocksize=128, damp=0.01):
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if H.shape != (w.shape[1], w.shape[1]):
        raise ValueError(f"H must be [{w.shape[1]}, {w.shape[1]}], got {list(H.shape)}")
    H = H.clone().float()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    H += damp * torch.diag(H).mean() * torch.eye(H.shape[0])
    d = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True).diag()
    W = w.clone()
    W[:, dead] = 0
    for i1 in range(0, w.shape[1], blocksize):
        score = (W[:, i1:i1 + blocksize] / d[i1:i1 + blocksize]) ** 2
        keep = torch.ones(score.numel(), dtype=torch.bool)
        keep[torch.argsort(score.flatten(), stable=True)[:round(sparsity * score.numel())]] = False
        W[:, i1:i1 + blocksize] *= keep.view(score.shape)
    return W


wrong("block update of the later columns forgotten",
      hint="lazy batch updates: after a block, apply its accumulated error to all later columns, "
           "W[:, end:] -= errs @ U[start:end, end:]; without it the later blocks never see the correction"
      ).edit(_honest, "        W[:, end:] -= errs @ U[start:end, end:]\n", "")

wrong("mask by |w| only", hint="SparseGPT chooses the mask by the OBS saliency w²/U_jj² (U: Cholesky factor of "
                                "H⁻¹), not by |w|: weights on well-determined inputs are cheap to remove"
      ).edit(_honest, "saliency = cols ** 2 / torch.diag(Ub).reshape(1, -1) ** 2", "saliency = cols.abs()")

wrong("one mask from the original weights",
      hint="adaptive mask selection: choose each block's mask when the block starts, from the weights as already "
           "updated by the earlier blocks, not once for the whole matrix from the original weights"
      ).edit(_honest, "cols ** 2 / torch.diag(Ub)", "w.float()[:, start:end] ** 2 / torch.diag(Ub)")

wrong("full inverse instead of its Cholesky factor",
      hint="use the upper Cholesky factor U of H⁻¹ (torch.linalg.cholesky(H⁻¹, upper=True)): row j of U is the "
           "OBS update once the columns before j are fixed; the plain inverse's row j assumes they are still free"
      ).edit(_honest, "U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)",
             "U = torch.linalg.inv(H)")

wrong("damping ignored", hint="add damp·mean(diag H) to the diagonal of H before inverting (the damp argument)"
      ).edit(_honest, "    H += damp * torch.diag(H).mean() * torch.eye(H.shape[0])\n", "")

wrong("one weight too many per block",
      hint="prune exactly round(sparsity·numel) per block: the reference code's threshold sort(score)[k] with "
           "`score <= threshold` prunes k + 1"
      ).edit(_honest, "[:k]] = True", "[:k + 1]] = True")

wrong("pruned weights not exactly zero",
      hint="re-apply the mask: write the pruned values q (exact zeros) back, not the updated block, where "
           "w − ((w − 0)/d)·d leaves rounding residue like 1e-8 instead of 0"
      ).edit(_honest, "        W[:, start:end] = done\n", "        W[:, start:end] = cols\n")

wrong("sparsity not validated", hint="sparsity must be in [0, 1): raise ValueError naming it otherwise"
      ).edit(_honest, "if not 0.0 <= sparsity < 1.0:", "if not 0.0 <= sparsity <= 1.0:")


@wrong("weights updated in place", hint="do not modify the caller's w or H: clone them first (w.clone())")
def in_place(w, H, sparsity, blocksize=128, damp=0.01):
    q = _honest(w, H, sparsity, blocksize, damp)
    w.copy_(q)
    return w


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("no lazy batching: each column's update applied to every later column at once")
def ok_eager(w, H, sparsity, blocksize=128, damp=0.01):
    if sparsity < 0 or sparsity >= 1:
        raise ValueError("sparsity outside [0, 1)")
    n = w.shape[1]
    if tuple(H.shape) != (n, n):
        raise ValueError("H: wrong size")
    W = w.detach().double().clone()
    H = H.detach().double().clone()
    dead = H.diagonal() == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H.diagonal().add_(damp * H.diagonal().mean())
    U = torch.linalg.cholesky(torch.linalg.inv(H), upper=True)
    for b in range(0, n, blocksize):
        e = min(b + blocksize, n)
        sal = (W[:, b:e] / U.diagonal()[b:e]) ** 2
        k = round(sparsity * sal.numel())
        pruned = torch.zeros(sal.numel(), dtype=torch.bool)
        pruned[sal.flatten().sort(stable=True).indices[:k]] = True
        pruned = pruned.view_as(sal)
        for j in range(b, e):
            err = torch.where(pruned[:, j - b], W[:, j], 0.0) / U[j, j]
            W[:, j:] -= torch.outer(err, U[j, j:])
            W[pruned[:, j - b], j] = 0.0
    return W.to(w.dtype)


@correct("explicit inverse of the not-yet-processed columns (no Cholesky)")
def ok_explicit(w, H, sparsity, blocksize=128, damp=0.01):
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity={sparsity} is not in [0, 1)")
    rows, cols = w.shape
    if H.shape != (cols, cols):
        raise ValueError(f"H has shape {tuple(H.shape)}, expected ({cols}, {cols})")
    W, Hd = w.double().clone(), H.double().clone()
    dead = torch.diag(Hd) == 0
    Hd[dead, dead] = 1.0
    W[:, dead] = 0.0
    Hd = Hd + damp * torch.diag(Hd).mean() * torch.eye(cols, dtype=torch.float64)
    free = [torch.linalg.inv(Hd[j:, j:]) for j in range(cols)]       # inverse Hessian of columns j.. (still free)
    for b in range(0, cols, blocksize):
        e = min(b + blocksize, cols)
        sal = torch.stack([W[:, j] ** 2 / free[j][0, 0] for j in range(b, e)], dim=1)   # OBS cost w²/[H_F⁻¹]_jj
        k = round(sparsity * sal.numel())
        pruned = torch.zeros(sal.numel(), dtype=torch.bool)
        pruned[torch.argsort(sal.flatten(), stable=True)[:k]] = True
        pruned = pruned.view_as(sal)
        for j in range(b, e):
            p = pruned[:, j - b]
            W[p, j:] -= (W[p, j] / free[j][0, 0]).unsqueeze(1) * free[j][0].unsqueeze(0)
            W[p, j] = 0.0
    return W.to(w.dtype)
