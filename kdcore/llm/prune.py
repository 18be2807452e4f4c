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

Then a whole GPT: ``prune_gpt`` applies one of them block by block (calibration inputs taken through the blocks
already pruned), and the structured side: ``head_importance`` (Michel et al., 2019, NeurIPS, "Are Sixteen Heads
Really Better than One?"), ``remove_heads`` / ``remove_neurons`` building a physically smaller model.

Mask convention as in ``kdcore.prune``: a bool tensor of the weight's shape, ``True`` = keep. Weights are
``[out_features, in_features]`` as in ``nn.Linear``; every comparison group lies along the input dimension
of one output row (Wanda, N:M) or within a block of input columns (SparseGPT), never across layers.
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .. import _validate as v
from ..prune import _new_linear
from ..prune import magnitude_mask as _magnitude_mask
from .gpt import GPT, CausalSelfAttention, KVCache

__all__ = ["wanda_mask", "nm_mask", "sparsegpt_prune", "sparsegpt_prune_nm", "prune_gpt", "linear_sparsity",
           "head_importance", "HeadSubsetAttention", "remove_heads", "neuron_scores", "remove_neurons", "keep_top"]


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
    v.tensor("x_norm", x_norm, ndim=1)
    v.finite("x_norm", x_norm)
    if x_norm.numel() != w.shape[1]:
        raise ValueError(f"x_norm must have one entry per input feature of w (length {w.shape[1]}), "
                         f"got length {x_norm.numel()}")
    if x_norm.numel() and x_norm.min() < 0:
        raise ValueError("x_norm must be non-negative (an L2 norm per input feature), got a negative entry")
    sparsity = _sparsity(sparsity)
    score = w.abs() * x_norm.to(w.dtype)  # [out, in]: x_norm broadcast along each row (a bool mask: no autograd)
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
    groups = w.abs().reshape(w.shape[0], -1, m)                   # [out, in/m, m]
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


def _sweep_block(block: torch.Tensor, U1: torch.Tensor, pruned: torch.Tensor,
                 nm: tuple[int, int] | None = None) -> torch.Tensor:
    """Process one block's columns left to right, in place; returns their errors ``[B, out]``.

    ``block`` is ``W[:, i1:i2]`` transposed, ``[B, out]`` (each of W's columns a contiguous row, about 2x faster
    on CPU than strided columns; same arithmetic); ``U1`` the block's ``[B, B]`` part of the Cholesky factor;
    ``pruned`` ``[B, out]`` the block's mask (True = prune), or all False with ``nm = (n, m)``: then each group of
    ``m`` columns gets its mask when the sweep reaches it, the ``m - n`` lowest ``w^2 / U_jj^2`` of each row.
    """
    d = torch.diagonal(U1)                                 # [B]
    d_list = d.tolist()
    drop = pruned.to(block.dtype)                          # 1.0 where pruned
    err = torch.empty_like(block)                          # [B, out]: (w - q) / U_jj of each column
    for i in range(block.shape[0]):
        if nm is not None and i % nm[1] == 0:              # N:M: this group's mask from its current weights
            n, m = nm
            score = (block[i:i + m] / d[i:i + m, None]) ** 2                    # [m, out]
            pruned[i:i + m] = ~_prune_lowest_per_row(score.T, m - n).T
            drop[i:i + m] = pruned[i:i + m].to(block.dtype)
        err[i] = block[i] * drop[i] / d_list[i]            # (w - q) / U_ii, q = 0 where pruned else w
        # OBS update of this column and the ones after it in the block: column i becomes q
        block[i:].addr_(U1[i, i:], err[i], alpha=-1.0)
    block.masked_fill_(pruned, 0.0)                        # exact zeros (the update leaves ~1e-17)
    return err


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
    rows, cols = w.shape
    U, dead = _inverse_hessian_factor(H, damp)             # [in, in] upper, H^-1 = U^T U
    Wt = w.detach().to(torch.float64).T.clone()            # [in, out]: W's columns as contiguous rows
    Wt[dead] = 0.0
    d = torch.diagonal(U)                                  # [in]
    for i1 in range(0, cols, blocksize):                   # lazy batches of `blocksize` columns
        i2 = min(i1 + blocksize, cols)
        block = Wt[i1:i2]                                  # [B, out] view, updated in place
        # adaptive mask selection: OBS saliency w^2 / U_jj^2 of the block's *current* (already updated) weights;
        # the lowest round(sparsity * out * B) of the whole block pruned (ties: flat order of W's block)
        score = (block / d[i1:i2, None]) ** 2              # [B, out]
        keep = _prune_lowest_per_row(score.T.reshape(1, -1), round(sparsity * score.numel()))
        pruned = ~keep.reshape(rows, i2 - i1).T            # [B, out]
        err = _sweep_block(block, U[i1:i2, i1:i2], pruned)
        Wt[i2:] -= U[i1:i2, i2:].T @ err                   # the block's accumulated update, once
    return Wt.T.to(w.dtype).contiguous()


def sparsegpt_prune_nm(w: torch.Tensor, H: torch.Tensor, n: int = 2, m: int = 4, blocksize: int = 128,
                       damp: float = 0.01) -> torch.Tensor:
    """SparseGPT with an N:M pattern: keep ``n`` of every ``m`` consecutive input weights of each row.

    As :func:`sparsegpt_prune`, but the mask of each group of ``m`` columns is chosen when the algorithm
    reaches the group, from the weights as updated so far: the ``m - n`` lowest ``w^2 / U_jj^2`` of each
    row's group are pruned (the paper's N:M extension). ``blocksize`` must be a multiple of ``m`` so that no
    group straddles two blocks, and ``in_features`` a multiple of ``m``.
    """
    blocksize, damp = _check_sparsegpt(w, H, blocksize, damp)
    n, m = _check_nm(n, m, w.shape[1])
    if blocksize % m:
        raise ValueError(f"blocksize must be a multiple of m = {m} (an N:M group may not straddle two "
                         f"blocks), got {blocksize}")
    U, dead = _inverse_hessian_factor(H, damp)
    Wt = w.detach().to(torch.float64).T.clone()            # [in, out]
    Wt[dead] = 0.0
    for i1 in range(0, w.shape[1], blocksize):
        i2 = min(i1 + blocksize, w.shape[1])
        block = Wt[i1:i2]                                  # [B, out] view
        err = _sweep_block(block, U[i1:i2, i1:i2], torch.zeros_like(block, dtype=torch.bool), (n, m))
        Wt[i2:] -= U[i1:i2, i2:].T @ err
    return Wt.T.to(w.dtype).contiguous()


# --------------------------------------------------------------------------------------------------
# A whole GPT, block by block (the one-shot recipe of SparseGPT and Wanda)
# --------------------------------------------------------------------------------------------------

METHODS = ("magnitude", "wanda", "sparsegpt")
BLOCK_LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # in forward order


def _check_gpt(model: object) -> nn.Module:
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a kdcore.llm.gpt.GPT, got {type(model).__name__}")
    return model


def _embed(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """The residual stream entering block 0, ``[B, T, C]`` (as ``GPT.forward`` computes it)."""
    pos = torch.arange(idx.shape[1], device=idx.device)
    return model.drop(model.wte(idx) + model.wpe(pos))


def _per_block(name: str, value, n_layer: int) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_layer
    if len(values) != n_layer:
        raise ValueError(f"{name} must be one value or one per block ({n_layer}), got {len(values)}")
    return values


def _prune_linear(layer: nn.Linear, method: str, x: torch.Tensor | None, sparsity: float,
                  nm: tuple[int, int] | None, blocksize: int, damp: float) -> None:
    """Prune ``layer.weight`` in place from its calibration inputs ``x [tokens, in]``."""
    w = layer.weight.detach()
    if method == "sparsegpt":
        H = (2 * x.T @ x / x.shape[0]).double()    # [in, in]; float32 products (4x faster), sums of 1e4 terms
        new = (sparsegpt_prune_nm(w, H, *nm, blocksize=blocksize, damp=damp) if nm
               else sparsegpt_prune(w, H, sparsity, blocksize=blocksize, damp=damp))
    else:
        score = w.abs() if method == "magnitude" else w.abs() * x.norm(dim=0)  # Wanda: |W_ij| * ||X_j||
        if nm:
            keep = nm_mask(score, *nm)
        elif method == "magnitude":
            keep = _magnitude_mask(w, sparsity)                               # one threshold per matrix
        else:
            keep = wanda_mask(w, x.norm(dim=0), sparsity)                     # per output row
        new = w * keep
    layer.weight.data.copy_(new)


@torch.no_grad()
def prune_gpt(model: nn.Module, method: str, calibration: list[torch.Tensor] | None = None,
              sparsity: float | list[float] = 0.5, nm: tuple[int, int] | None = None,
              blocks: list[int] | None = None, blocksize: int = 128, damp: float = 0.01) -> nn.Module:
    """One-shot pruning of a GPT's block Linears; returns a pruned copy (``model`` is not modified).

    Args:
        model: a :class:`kdcore.llm.gpt.GPT`; its embeddings and output head stay dense.
        method: ``"magnitude"`` (smallest ``|W|`` of each matrix), ``"wanda"`` (:func:`wanda_mask`, per row) or
            ``"sparsegpt"`` (:func:`sparsegpt_prune`).
        calibration: token batches ``[B, T]`` (e.g. ``kdcore.llm.eval.calib_batches``); needed by Wanda and
            SparseGPT.
        sparsity: fraction in [0, 1) of each Linear, or one per block (non-uniform sparsity).
        nm: ``(n, m)`` for N:M sparsity instead of ``sparsity`` (Wanda N:M ranks ``|W| * ||X||`` in each group).
        blocks: indices of the blocks to prune (default: all), e.g. ``[2]`` to measure one block's sensitivity.

    Blocks are pruned in order, as the papers do: the calibration batches are run to block ``i`` through the
    blocks *already pruned*, so each layer's statistics are those of the inputs it will see after pruning.
    The four Linears of one block are pruned from one pass (inputs recorded with forward hooks).
    """
    from .eval import collect_inputs
    _check_gpt(model)
    v.one_of("method", method, METHODS)
    n_layer = len(model.h)
    if method != "magnitude" and not calibration:
        raise ValueError(f"calibration must be a non-empty list of token batches for method={method!r}")
    sparsities = [_sparsity(s) for s in _per_block("sparsity", sparsity, n_layer)]
    if nm is not None:
        if not (isinstance(nm, tuple) and len(nm) == 2):
            raise TypeError(f"nm must be a tuple (n, m) or None, got {nm!r}")
        _check_nm(nm[0], nm[1], model.config.n_embd)
    chosen = list(range(n_layer)) if blocks is None else [v.integer("blocks[i]", b, minimum=0, maximum=n_layer - 1)
                                                          for b in blocks]
    if not chosen:
        raise ValueError("blocks must name at least one block (or be None for all)")
    pruned = copy.deepcopy(model).eval()
    hidden = None if method == "magnitude" else [_embed(pruned, batch) for batch in calibration]  # [B, T, C] each
    for i, block in enumerate(pruned.h):
        if i in chosen:
            inputs = {} if hidden is None else collect_inputs(block, BLOCK_LINEARS, hidden)  # {name: [tokens, in]}
            for name in BLOCK_LINEARS:
                _prune_linear(block.get_submodule(name), method, inputs.get(name), sparsities[i], nm, blocksize, damp)
        if i >= max(chosen):
            break                                 # nothing left to prune: the later blocks stay as they are
        if hidden is not None:
            hidden = [block(h) for h in hidden]   # the next block sees this block's pruned outputs
    return pruned


def linear_sparsity(model: nn.Module) -> float:
    """Fraction of zero weights over the blocks' Linears (embeddings and head excluded)."""
    _check_gpt(model)
    weights = [block.get_submodule(n).weight for block in model.h for n in BLOCK_LINEARS]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


# --------------------------------------------------------------------------------------------------
# Structured: attention heads and MLP neurons
# --------------------------------------------------------------------------------------------------

def _check_windows(batch: object, vocab_size: int) -> torch.Tensor:
    v.tensor("batch", batch, ndim=2)
    if batch.dtype != torch.long:
        raise TypeError(f"batch must hold int64 token ids, got dtype {batch.dtype}")
    if batch.shape[1] < 2:
        raise ValueError(f"batch must be windows [B, T + 1] with T >= 1 (inputs batch[:, :-1], targets "
                         f"batch[:, 1:]), got shape {tuple(batch.shape)}")
    if batch.numel() and not (0 <= int(batch.min()) and int(batch.max()) < vocab_size):
        raise ValueError(f"batch must hold token ids in [0, {vocab_size - 1}], got values in "
                         f"[{int(batch.min())}, {int(batch.max())}]")
    return batch


def head_importance(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Importance of every attention head, Michel, Levy & Neubig (2019, NeurIPS), eq. 4 on one batch.

    Args:
        model: a :class:`kdcore.llm.gpt.GPT` (its ``head_mask`` multiplies each head's output by a gate).
        batch: token windows ``[B, T + 1]`` (int64): inputs ``batch[:, :-1]``, next-token targets ``batch[:, 1:]``.

    Returns:
        ``[n_layer, n_head]`` float32: ``|dL/d xi_h|`` at ``xi = 1`` (all gates open), where ``L`` is the mean
        next-token cross-entropy over the ``B * T`` positions and ``xi_h`` the gate of head ``h``. By a
        first-order Taylor expansion it estimates how much the loss changes when the head is removed
        (``xi_h = 0``). The model runs in eval mode (no dropout); its parameters and their ``.grad`` are left
        unchanged. The paper averages ``|dL/d xi_h|`` over the data; summing this over several batches does
        that (as Hugging Face's bertology example does), and the paper then normalises each layer's scores
        by their L2 norm before ranking heads globally.
    """
    _check_gpt(model)
    cfg = model.config
    _check_windows(batch, cfg.vocab_size)
    if any(isinstance(b.attn, HeadSubsetAttention) for b in model.h):
        raise ValueError("model has heads removed already; head_importance needs the original attention layers")
    gate = torch.ones(cfg.n_layer, cfg.n_head, requires_grad=True)         # xi, one gate per head
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(batch[:, :-1], head_mask=gate)                      # [B, T, V]
            loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
            (grad,) = torch.autograd.grad(loss, gate)                          # parameters' .grad untouched
    finally:
        model.train(was_training)
    return grad.abs()


class HeadSubsetAttention(CausalSelfAttention):
    """Causal self-attention with ``n_head`` heads of width ``head_dim`` (``n_head * head_dim`` may be less
    than ``n_embd``): what remains of a :class:`~kdcore.llm.gpt.CausalSelfAttention` after heads are removed.

    ``c_attn`` ``[3 * n_head * head_dim, n_embd]`` (q, k, v of the kept heads), ``c_proj`` ``[n_embd,
    n_head * head_dim]``. Same forward (KV cache included); with no head left the output is ``c_proj``'s bias.
    """

    def __init__(self, c_attn: nn.Linear, c_proj: nn.Linear, n_head: int, head_dim: int, dropout: float) -> None:
        nn.Module.__init__(self)
        self.n_head, self.head_dim, self.dropout = n_head, head_dim, dropout
        self.c_attn, self.c_proj = c_attn, c_proj

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, _ = x.shape
        h, hd = self.n_head, self.head_dim
        # [B, T, 3*h*hd] -> q, k, v each [B, h, T, hd] (also for h = 0, where split() would fail)
        q, k, v_ = self.c_attn(x).view(B, T, 3, h, hd).permute(2, 0, 3, 1, 4).unbind(0)
        past = 0
        if cache is not None:
            past = cache.layer_length(layer)
            k, v_ = cache.update(layer, k, v_)                     # [B, h, past + T, hd]
        drop = self.dropout if self.training else 0.0
        if h == 0:
            y = q                                                  # [B, 0, T, hd]: nothing to attend with
        elif past == 0:
            y = F.scaled_dot_product_attention(q, k, v_, dropout_p=drop, is_causal=True)
        else:
            allowed = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v_, attn_mask=allowed, dropout_p=drop)
        if head_mask is not None:
            y = y * head_mask.view(1, h, 1, 1).to(y.dtype)
        y = y.transpose(1, 2).reshape(B, T, h * hd)                # [B, T, h*hd]
        return F.dropout(self.c_proj(y), drop, self.training)


def _keep_list(name: str, keep: object, sizes: list[int]) -> list[torch.Tensor]:
    if not isinstance(keep, (list, tuple)) or len(keep) != len(sizes):
        raise ValueError(f"{name} must be a list of one bool tensor per block ({len(sizes)}), got "
                         f"{type(keep).__name__}" + (f" of length {len(keep)}" if isinstance(keep, (list, tuple)) else ""))
    out = []
    for i, (k, size) in enumerate(zip(keep, sizes)):
        v.tensor(f"{name}[{i}]", k, ndim=1)
        if k.dtype != torch.bool or k.numel() != size:
            raise ValueError(f"{name}[{i}] must be a bool tensor of length {size} (True = keep), got dtype "
                             f"{k.dtype} and length {k.numel()}")
        out.append(k)
    return out


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` holding copies of ``weight`` and ``bias``; zero-size (everything removed) is allowed."""
    with warnings.catch_warnings():  # torch warns that initialising a zero-element weight is a no-op
        warnings.filterwarnings("ignore", "Initializing zero-element tensors")
        return _new_linear(weight, bias)


def remove_heads(model: nn.Module, keep: list[torch.Tensor]) -> nn.Module:
    """A physically smaller copy of ``model`` without the attention heads where ``keep[i]`` is False.

    ``keep[i]``: bool ``[n_head_i]`` for block ``i`` (True = keep). For a removed head, its rows of q, k and v in
    ``c_attn`` (weight and bias) and its columns of ``c_proj`` are dropped; the result computes exactly what
    the original computes with those heads' gates at 0 (``head_mask``). ``model`` is not modified; its
    ``config`` is copied unchanged (the pruned model has no single ``n_head``; pass no ``head_mask``).
    """
    _check_gpt(model)
    sizes = [b.attn.n_head for b in model.h]
    keep = _keep_list("keep", keep, sizes)
    slim = copy.deepcopy(model)
    for block, k in zip(slim.h, keep):
        attn = block.attn
        C = attn.c_attn.in_features
        h, hd = attn.n_head, attn.c_attn.out_features // (3 * attn.n_head)
        idx = torch.arange(h * hd).view(h, hd)[k].flatten()                 # kept channels within q (or k, v)
        rows = torch.cat([idx, idx + h * hd, idx + 2 * h * hd])               # the same channels of q, k and v
        bias = attn.c_attn.bias
        c_attn = _linear(attn.c_attn.weight.detach()[rows], None if bias is None else bias.detach()[rows])
        c_proj = _linear(attn.c_proj.weight.detach()[:, idx],
                         None if attn.c_proj.bias is None else attn.c_proj.bias.detach())
        assert c_attn.in_features == C
        block.attn = HeadSubsetAttention(c_attn, c_proj, int(k.sum()), hd, attn.dropout)
    return slim


def neuron_scores(model: nn.Module, calibration: list[torch.Tensor]) -> list[torch.Tensor]:
    """A structured Wanda score for every MLP neuron: ``||a_j||_2 * ||W_proj[:, j]||_2``.

    ``a_j`` is neuron ``j``'s activation (the input of ``mlp.c_proj``) over all calibration tokens of the dense
    model, and ``W_proj[:, j]`` the column that writes it into the residual stream: the size of what the neuron
    contributes. Returns one ``[hidden]`` tensor per block.
    """
    from .eval import collect_inputs
    _check_gpt(model)
    names = [f"h.{i}.mlp.c_proj" for i in range(len(model.h))]
    acts = collect_inputs(model, names, calibration)                          # {name: [tokens, hidden]}
    return [acts[n].norm(dim=0) * model.get_submodule(n).weight.detach().norm(dim=0) for n in names]


def remove_neurons(model: nn.Module, keep: list[torch.Tensor]) -> nn.Module:
    """A physically smaller copy of ``model`` without the MLP neurons where ``keep[i]`` is False.

    ``keep[i]``: bool ``[hidden_i]`` for block ``i``: the rows of ``mlp.c_fc`` (and bias entries) and the columns of
    ``mlp.c_proj`` that are kept. Equals the original with those neurons' activations set to 0.
    """
    _check_gpt(model)
    sizes = [b.mlp.c_fc.out_features for b in model.h]
    keep = _keep_list("keep", keep, sizes)
    slim = copy.deepcopy(model)
    for block, k in zip(slim.h, keep):
        fc, proj = block.mlp.c_fc, block.mlp.c_proj
        block.mlp.c_fc = _linear(fc.weight.detach()[k], None if fc.bias is None else fc.bias.detach()[k])
        block.mlp.c_proj = _linear(proj.weight.detach()[:, k], None if proj.bias is None else proj.bias.detach())
    return slim


def keep_top(scores: list[torch.Tensor] | torch.Tensor, fraction: float, scope: str = "layer") -> list[torch.Tensor]:
    """Keep-masks removing the ``round(fraction * count)`` lowest scores, per block (``scope="layer"``) or over
    all blocks together (``"global"``, scores of each block first divided by their L2 norm, as Michel et al.
    do). ``scores``: one 1-D tensor per block (or a 2-D tensor, one row per block). Ties: lower index first."""
    rows = [s.detach().float().flatten() for s in scores]
    fraction = v.in_unit_interval("fraction", fraction)
    v.one_of("scope", scope, ("layer", "global"))
    if scope == "layer":
        return [_prune_lowest_per_row(s[None], round(fraction * s.numel()))[0] for s in rows]
    normed = [s / s.norm().clamp_min(torch.finfo(s.dtype).tiny) for s in rows]
    flat = torch.cat(normed)
    keep = _prune_lowest_per_row(flat[None], round(fraction * flat.numel()))[0]
    return list(keep.split([s.numel() for s in rows]))
