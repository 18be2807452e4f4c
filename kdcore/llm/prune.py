"""Pruning the Linear layers of a language model without retraining: Wanda, N:M masks, SparseGPT.

One Linear at a time, from calibration statistics of its input ``X`` ``[tokens, in]``:

- ``wanda_mask``  (Sun et al., 2024, ICLR, "A Simple and Effective Pruning Approach for Large Language
  Models"): score ``|W_ij| * ||X_j||_2``, compared within each output row;
- ``nm_mask``: N:M semi-structured sparsity (keep ``n`` of every ``m`` consecutive input weights), the
  pattern NVIDIA's Sparse Tensor Cores accelerate for 2:4;
- ``sparsegpt_prune`` (Frantar & Alistarh, 2023, ICML, "SparseGPT: Massive Language Models Can Be
  Accurately Pruned in One-Shot"): masks chosen block by block with the OBS saliency and the remaining
  weights updated with the inverse Hessian ``H = 2 X^T X / tokens`` so that ``W X`` changes as little as
  possible.

Mask convention as in ``kdcore.prune``: a bool tensor of the weight's shape, ``True`` = keep. Weights are
``[out_features, in_features]`` as in ``nn.Linear``; every comparison group lies along the input dimension
of one output row (Wanda, N:M) or within a block of input columns (SparseGPT), never across layers.
"""
from __future__ import annotations

import torch

from .. import _validate as v

__all__ = ["wanda_mask", "nm_mask", "sparsegpt_prune", "sparsegpt_prune_nm"]


def _weight(w: torch.Tensor) -> torch.Tensor:
    v.tensor("w", w, ndim=2, floating=True)
    return v.finite("w", w)


def _sparsity(sparsity: float) -> float:
    """Sparsity in [0, 1): pruning every weight of a layer is not a pruning method."""
    value = v.real("sparsity", sparsity)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return value


def _prune_lowest_per_row(score: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask pruning the ``k`` lowest scores of every row; ties: the lower column index goes first."""
    mask = torch.ones_like(score, dtype=torch.bool)
    if k:
        order = torch.sort(score, dim=1, stable=True).indices  # stable: equal scores stay in column order
        mask.scatter_(1, order[:, :k], False)
    return mask


# --------------------------------------------------------------------------------------------------
# Wanda
# --------------------------------------------------------------------------------------------------

def wanda_mask(w: torch.Tensor, x_norm: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Wanda keep-mask of one Linear weight.

    Args:
        w: weight ``[out_features, in_features]``; not modified.
        x_norm: ``[in_features]``, the L2 norm of each input feature over all calibration tokens,
            ``||X_j||_2 = sqrt(sum_t X_tj^2)`` (``x.norm(dim=0)`` for ``x`` of shape ``[tokens, in]``).
        sparsity: fraction in [0, 1) of each row to prune.

    Returns:
        bool mask of ``w.shape``, True = keep. In every output row exactly ``round(sparsity * in_features)``
        entries are pruned: those with the smallest score ``|W_ij| * x_norm_j`` (the paper's per-output
        comparison group); among equal scores the lower column index is pruned first.
    """
    _weight(w)
    v.tensor("x_norm", x_norm, ndim=1, floating=True)
    v.finite("x_norm", x_norm)
    if x_norm.numel() != w.shape[1]:
        raise ValueError(f"x_norm must have one entry per input feature of w (length {w.shape[1]}), "
                         f"got length {x_norm.numel()}")
    if x_norm.numel() and x_norm.min() < 0:
        raise ValueError("x_norm must be non-negative (an L2 norm per input feature), got a negative entry")
    sparsity = _sparsity(sparsity)
    score = w.detach().abs() * x_norm.detach().to(w.dtype)  # [out, in]: x_norm broadcast along each row
    return _prune_lowest_per_row(score, round(sparsity * w.shape[1]))


# --------------------------------------------------------------------------------------------------
# N:M semi-structured
# --------------------------------------------------------------------------------------------------

def _check_nm(n: int, m: int, in_features: int) -> tuple[int, int]:
    m = v.integer("m", m, minimum=1)
    n = v.integer("n", n, minimum=1, maximum=m)
    if in_features % m:
        raise ValueError(f"m must divide the input dimension: w has in_features = {in_features}, "
                         f"which is not a multiple of m = {m}")
    return n, m


def nm_mask(w: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """N:M keep-mask: in every group of ``m`` consecutive weights along the input dimension keep ``n``.

    Args:
        w: ``[out_features, in_features]`` with ``in_features % m == 0``; not modified. Pass a score
            instead of the weight to choose by it (e.g. Wanda's ``w.abs() * x_norm`` for Wanda N:M).
        n: weights kept per group, in [1, m].
        m: group length, >= 1.

    Returns:
        bool mask of ``w.shape``, True = keep: the ``n`` largest ``|w|`` of each group (groups
        ``w[r, g*m:(g+1)*m]``); among equal ``|w|`` the lower index is pruned first. 2:4 is the pattern
        of NVIDIA's Sparse Tensor Cores (Ampere and later).
    """
    _weight(w)
    n, m = _check_nm(n, m, w.shape[1])
    groups = w.detach().abs().reshape(w.shape[0], -1, m)          # [out, in/m, m]
    mask = _prune_lowest_per_row(groups.reshape(-1, m), m - n)   # one row per group
    return mask.reshape(w.shape)


# --------------------------------------------------------------------------------------------------
# SparseGPT
# --------------------------------------------------------------------------------------------------

def _check_hessian(H: torch.Tensor, in_features: int) -> torch.Tensor:
    v.tensor("H", H, ndim=2, floating=True)
    if H.shape != (in_features, in_features):
        raise ValueError(f"H must be the [in, in] Hessian of w's inputs, i.e. of shape "
                         f"({in_features}, {in_features}), got {tuple(H.shape)}")
    return v.finite("H", H)


def _inverse_hessian_factor(H: torch.Tensor, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U, dead)``: upper Cholesky factor of the dampened inverse Hessian (``H^-1 = U^T U``, float64) and
    the bool mask of dead inputs.

    Dead inputs (``H_jj = 0``: a feature that is zero on every calibration token) get ``H_jj = 1`` and their
    weight column is zeroed by the caller, as in the reference implementations (GPTQ, SparseGPT). Row ``j``
    of ``U`` is what OBS needs when columns ``0..j-1`` are already fixed: ``U_jj^2`` is the ``[j, j]`` entry
    of the inverse of ``H`` restricted to the columns ``j..in-1``, and ``U_j: / U_jj`` is the update.
    """
    H = H.detach().to(torch.float64).clone()
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0
    H.diagonal().add_(damp * torch.diagonal(H).mean())
    L, info = torch.linalg.cholesky_ex(H)
    if info:
        raise ValueError("H + damp * mean(diag H) * I is not positive definite; H must be a Hessian "
                         "2 X^T X / tokens of the calibration inputs (symmetric, positive semi-definite); "
                         f"increase damp (got {damp})")
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True), dead


def _sparsegpt(w: torch.Tensor, H: torch.Tensor, sparsity: float, blocksize: int, damp: float,
               nm: tuple[int, int] | None) -> torch.Tensor:
    """Shared core of the unstructured and N:M versions (inputs already validated).

    Works on the transpose ``Wt = W^T [in, out]``: the algorithm walks over W's columns, and in ``Wt`` each is a
    contiguous row (about 2x faster on CPU than strided columns; the arithmetic is the same).
    """
    rows, cols = w.shape
    U, dead = _inverse_hessian_factor(H, damp)
    Wt = w.detach().to(torch.float64).T.clone()            # [in, out]
    Wt[dead] = 0.0
    d = torch.diagonal(U)                                  # [in]
    d_list = d.tolist()
    for i1 in range(0, cols, blocksize):                   # lazy batches of `blocksize` columns
        i2 = min(i1 + blocksize, cols)
        block = Wt[i1:i2]                                  # [B, out] view, updated in place
        U1 = U[i1:i2, i1:i2]                               # [B, B]
        err = torch.empty_like(block)                      # [B, out]: (w - q) / U_jj of each column
        if nm is None:
            # adaptive mask selection: OBS saliency w^2 / U_jj^2 of the block's *current* (already updated)
            # weights; the lowest round(sparsity * out * B) of the whole block pruned, flat order of W's block
            score = (block / d[i1:i2, None]) ** 2          # [B, out]
            keep = _prune_lowest_per_row(score.T.reshape(1, -1), round(sparsity * score.numel()))
            pruned = ~keep.reshape(rows, i2 - i1).T        # [B, out]
        else:
            pruned = torch.zeros_like(block, dtype=torch.bool)
        drop = pruned.to(block.dtype)                      # 1.0 where pruned
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:          # N:M: choose this group's mask when reaching it
                n, m = nm
                score = (block[i:i + m] / d[i1 + i:i1 + i + m, None]) ** 2      # [m, out]
                pruned[i:i + m] = ~_prune_lowest_per_row(score.T, m - n).T
                drop[i:i + m] = pruned[i:i + m].to(block.dtype)
            err[i] = block[i] * drop[i] / d_list[i1 + i]   # (w - q) / U_ii, q = 0 where pruned else w
            # OBS update of this column and the ones after it in the block: column i becomes q
            block[i:].addr_(U1[i, i:], err[i], alpha=-1.0)
        block.masked_fill_(pruned, 0.0)                    # exact zeros (the update leaves ~1e-17)
        Wt[i2:] -= U[i1:i2, i2:].T @ err                   # the block's accumulated update, once
    return Wt.T.to(w.dtype).contiguous()


def _check_sparsegpt(w, H, blocksize, damp) -> tuple[int, float]:
    _weight(w)
    _check_hessian(H, w.shape[1])
    blocksize = v.integer("blocksize", blocksize, minimum=1)
    damp = v.real("damp", damp)
    if not 0.0 <= damp <= 1.0:
        raise ValueError(f"damp must be in [0, 1] (a fraction of the mean diagonal of H), got {damp!r}")
    return blocksize, damp


def sparsegpt_prune(w: torch.Tensor, H: torch.Tensor, sparsity: float, blocksize: int = 128,
                    damp: float = 0.01) -> torch.Tensor:
    """SparseGPT: prune one Linear weight and update the kept weights to compensate (Algorithm 1).

    Args:
        w: weight ``[out_features, in_features]``; not modified.
        H: ``[in, in]`` Hessian of the layer-output error, ``H = 2 X^T X / tokens`` for calibration inputs
            ``X [tokens, in]``; not modified.
        sparsity: fraction in [0, 1) to prune.
        blocksize: columns per block (``B_s`` of the paper): the mask is chosen per block, and the block's
            update is applied to the later columns at once (lazy batch updates).
        damp: fraction in [0, 1] of ``mean(diag H)`` added to the diagonal before inverting (``lambda``).

    Returns:
        the pruned, updated weight (``w.dtype``, shape of ``w``). Columns are processed left to right; for
        column ``j`` of a block ``U = chol(H^-1)^T`` (upper Cholesky factor of the dampened inverse), every
        pruned entry's error ``(w_j - 0) / U_jj`` is spread over the later columns with ``U_j,j:`` (the OBS
        update restricted to the columns not yet fixed). When the block starts, its mask prunes exactly
        ``round(sparsity * out_features * block_width)`` entries of the block, those with the smallest
        ``w^2 / U_jj^2`` of the current (already updated) weights, all rows together; ties: lower flat index
        first. Computed in float64. Dead inputs (``H_jj = 0``) have their column zeroed, as in the
        reference code (github.com/IST-DASLab/sparsegpt), which this follows except that its threshold
        ``sort(score)[int(sparsity * numel)]`` with ``<=`` prunes one entry more than asked.
    """
    blocksize, damp = _check_sparsegpt(w, H, blocksize, damp)
    sparsity = _sparsity(sparsity)
    return _sparsegpt(w, H, sparsity, blocksize, damp, None)


def sparsegpt_prune_nm(w: torch.Tensor, H: torch.Tensor, n: int = 2, m: int = 4, blocksize: int = 128,
                       damp: float = 0.01) -> torch.Tensor:
    """SparseGPT with an N:M pattern: keep ``n`` of every ``m`` consecutive input weights of each row.

    As :func:`sparsegpt_prune`, but the mask of each group of ``m`` columns is chosen when the algorithm
    reaches the group, from the weights as updated so far: the ``m - n`` lowest ``w^2 / U_jj^2`` of each
    row's group are pruned (the paper's Section 3.4). ``blocksize`` must be a multiple of ``m`` so that no
    group straddles two blocks, and ``in_features`` a multiple of ``m``.
    """
    blocksize, damp = _check_sparsegpt(w, H, blocksize, damp)
    n, m = _check_nm(n, m, w.shape[1])
    if blocksize % m:
        raise ValueError(f"blocksize must be a multiple of m = {m} (an N:M group may not straddle two "
                         f"blocks), got {blocksize}")
    return _sparsegpt(w, H, 0.0, blocksize, damp, (n, m))
