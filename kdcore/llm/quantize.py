"""Quantizing LLMs: group-wise weights, GPTQ, AWQ, SmoothQuant, and the KV cache. Taught in notebook 12
(quantize_groupwise, gptq_quantize, awq_scales, smoothquant_scales; grading modules in
``kdcore/exercises/<id>.py``). Which code to study: the four references below are written to be read; the
paper's GPTQ applies its updates lazily in blocks of 128 columns for speed (llm-compressor's
``quantize_weight`` does, and benchmarks/bench_gptq.py times both), with the same result.

Exercises (references, each following one published convention exactly):

* :func:`quantize_groupwise` — round-to-nearest (RTN) with one scale (and zero point) per group of
  ``group_size`` consecutive *input* columns of each output row; llm-awq's ``pseudo_quantize_tensor``.
* :func:`gptq_quantize` — GPTQ (Frantar et al., ICLR 2023), the reference ``fasterquant`` loop of
  IST-DASLab/gptq: columns in order, each column's rounding error spread over the columns not yet
  quantized through the upper Cholesky factor of the dampened inverse Hessian.
* :func:`awq_scales` — AWQ (Lin et al., MLSys 2024) per-input-channel scales ``s = mean|x|^α``
  (normalised), ``α`` searched on a grid to minimise the layer-output error (llm-awq's
  ``_search_module_scale``, applied to one Linear).
* :func:`smoothquant_scales` — SmoothQuant (Xiao et al., ICML 2023) ``s_j = max|X_j|^α / max|W_j|^(1−α)``
  (``smooth_lm`` of mit-han-lab/smoothquant).

Around them: whole-model helpers that apply each method to a :class:`~kdcore.llm.gpt.GPT` (layer by layer,
calibration inputs through forward hooks), simulated W8A8 (:class:`FakeQuantLinear`), KV-cache quantization
as KIVI does it (Liu et al., ICML 2024: keys per channel, values per token; :class:`QuantizedKVCache`), and
the real storage cost (:func:`bits_per_weight`, :func:`quantized_size_bytes`).

All of it is *fake* (simulated) quantization: weights are quantized and immediately dequantized to float, so
the accuracy cost is measured exactly while the arithmetic stays in float32. Shapes: a Linear weight is
``w [out, in]`` (PyTorch's layout), its inputs ``x [n, in]``, so the layer computes ``x @ w.T``.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdcore import _validate as v

from .gpt import GPT, KVCache, block_linear_names

__all__ = ["quantize_groupwise", "gptq_quantize", "awq_scales", "smoothquant_scales",
           "layer_output_error", "bits_per_weight", "quantized_size_bytes",
           "quantize_model_rtn", "quantize_model_gptq", "quantize_model_awq", "FakeQuantLinear",
           "quantize_model_w8a8", "activation_absmax", "fake_quantize_activation",
           "quantize_keys_per_channel", "quantize_values_per_token", "quantize_per_token",
           "QuantizedKVCache", "kv_cache_bytes_per_token"]

SCALE_EPS = 1e-5   # llm-awq's clamp on a group's range (an all-equal group keeps a non-zero scale)


# ----------------------------------------------------------------------------------------- checks
def _weight(name: str, w: object) -> torch.Tensor:
    w = v.finite(name, v.tensor(name, w, ndim=2, floating=True))
    if w.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(w.shape)}")
    return w.detach()


def _bits(bits: object, low: int = 2, high: int = 8) -> int:
    return v.integer("bits", bits, minimum=low, maximum=high)


def _group(group_size: object, in_features: int) -> int:
    """``None`` (one group per row) → ``in_features``; otherwise it must divide ``in_features``."""
    if group_size is None:
        return in_features
    group_size = v.integer("group_size", group_size, minimum=1)
    if in_features % group_size:
        raise ValueError(f"group_size must divide the input dimension {in_features} (or be None for one "
                         f"group per row), got {group_size}")
    return group_size


# ------------------------------------------------------------------------------- group-wise RTN
def quantize_groupwise(w: torch.Tensor, bits: int = 4, group_size: int | None = 64,
                       symmetric: bool = False) -> torch.Tensor:
    """Fake-quantised copy of ``w [out, in]`` (same shape and dtype), round-to-nearest per group.

    Each output row is cut into groups of ``group_size`` consecutive input columns (``None``: the whole
    row, i.e. per output channel); every group gets its own grid. llm-awq's ``pseudo_quantize_tensor``:

    * asymmetric (default): ``scale = max(max − min, 1e-5) / (2^bits − 1)``,
      ``zero = clamp(−round(min / scale), 0, 2^bits − 1)`` (an **integer** zero point),
      ``q = clamp(round(w / scale) + zero, 0, 2^bits − 1)``, result ``(q − zero) · scale``;
    * symmetric: ``scale = max(absmax, 1e-5) / (2^(bits−1) − 1)``, ``q = clamp(round(w / scale),
      −2^(bits−1), 2^(bits−1) − 1)``, result ``q · scale``.

    ``round`` is ``torch.round`` (half to even). ``bits`` in 2..8.
    """
    w = _weight("w", w)
    bits = _bits(bits)
    g = _group(group_size, w.shape[1])
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    out_f, in_f = w.shape
    groups = w.reshape(out_f, in_f // g, g)                      # [out, in/g, g]: rows cut into groups
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = groups.abs().amax(dim=-1, keepdim=True).clamp(min=SCALE_EPS) / qmax   # [out, in/g, 1]
        q = torch.clamp(torch.round(groups / scale), -qmax - 1, qmax)
        deq = q * scale
    else:
        qmax = 2 ** bits - 1
        low = groups.amin(dim=-1, keepdim=True)
        high = groups.amax(dim=-1, keepdim=True)
        scale = (high - low).clamp(min=SCALE_EPS) / qmax                              # [out, in/g, 1]
        zero = torch.clamp(-torch.round(low / scale), 0, qmax)                        # integer zero point
        q = torch.clamp(torch.round(groups / scale) + zero, 0, qmax)
        deq = (q - zero) * scale
    return deq.reshape(out_f, in_f).to(w.dtype)


def layer_output_error(w: torch.Tensor, w_hat: torch.Tensor, x: torch.Tensor) -> float:
    """``‖x (w − ŵ)ᵀ‖²_F / n``: the squared error the quantized layer adds to its outputs, per input row."""
    d = (w - w_hat).to(x.dtype)                                   # [out, in]
    return float((x @ d.T).pow(2).sum() / x.shape[0])


# ------------------------------------------------------------------------------------------ GPTQ
def gptq_quantize(w: torch.Tensor, H: torch.Tensor, bits: int = 4, group_size: int | None = None,
                  damp: float = 0.01) -> torch.Tensor:
    """GPTQ for one Linear: the fake-quantised weight ``[out, in]`` (same dtype as ``w``).

    ``H [in, in]`` is the layer's input Hessian ``2·XᵀX / n`` (:func:`kdcore.llm.eval.hessian`). As the
    reference code (IST-DASLab/gptq ``fasterquant``; no act-order, no static groups) does:

    1. dead inputs (``H_ii == 0``): ``H_ii ← 1`` and the column of ``w`` set to 0;
    2. dampening: ``H ← H + damp · mean(diag H) · I``;
    3. ``U = chol(H⁻¹)ᵀ`` (upper Cholesky factor of the inverse);
    4. for each column ``i`` in order: ``q_i = RTN(w_i)`` on the grid of its group (grid computed from the
       *current*, already error-updated weights when the group's first column is reached; one grid per row
       when ``group_size`` is None), ``e = (w_i − q_i) / U_ii``, ``w_{:, j} −= e · U_ij`` for every ``j > i``.

    The grid is :func:`quantize_groupwise`'s asymmetric one, so with ``H = I`` (no error to spread: ``U`` is
    diagonal) the result equals ``quantize_groupwise(w, bits, group_size)``. Computed in ``w``'s dtype (at
    least float32), on the transpose ``Wᵀ [in, out]`` so that each column is a contiguous row (twice as fast on
    a CPU). The paper's code applies step 4's updates lazily, 128 columns at a time, for GPU speed; the result
    is the same, so this reference updates column by column.
    """
    w, H, bits, g, damp = _gptq_args(w, H, bits, group_size, damp)
    H = H.clone()                                                  # [in, in]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    H += damp * torch.diag(H).mean() * torch.eye(len(H), dtype=H.dtype)
    U = _upper_cholesky_of_inverse(H)                              # [in, in], upper triangular
    Wt = w.T.clone(memory_format=torch.contiguous_format)          # [in, out] copy: row i = column i of w
    Wt[dead] = 0.0                                                 # a dead input's weights never matter
    Qt = torch.zeros_like(Wt)
    for i in range(len(Wt)):
        if i % g == 0:                                             # a group starts: its grid, from current W
            scale, zero = _asym_grid(Wt[i:i + g].T, bits)          # [out] each
        Qt[i] = _asym_round(Wt[i], scale, zero, bits)
        err = (Wt[i] - Qt[i]) / U[i, i]                            # [out]
        Wt[i:] -= U[i, i:, None] * err[None, :]                    # spread over the columns not yet quantized
    return Qt.T.to(w.dtype)


def _gptq_args(w, H, bits, group_size, damp) -> tuple[torch.Tensor, torch.Tensor, int, int, float]:
    """Validated ``(w, H, bits, group_size, damp)``; ``w`` and ``H`` detached, in ``w``'s dtype (≥ float32)."""
    w = _weight("w", w)
    H = v.finite("H", v.tensor("H", H, ndim=2, floating=True))
    bits = _bits(bits)
    in_f = w.shape[1]
    if tuple(H.shape) != (in_f, in_f):
        raise ValueError(f"H must be square [in, in] = [{in_f}, {in_f}] for w of shape {tuple(w.shape)}, "
                         f"got {tuple(H.shape)}")
    g = _group(group_size, in_f)
    damp = v.real("damp", damp)
    if not 0.0 <= damp <= 1.0:
        raise ValueError(f"damp must be in [0, 1] (a fraction of the mean diagonal of H), got {damp}")
    dtype = torch.promote_types(w.dtype, torch.float32)
    return w.to(dtype), H.detach().to(dtype), bits, g, damp


def _upper_cholesky_of_inverse(H: torch.Tensor) -> torch.Tensor:
    """``U`` with ``UᵀU = H⁻¹`` (``H`` symmetric positive definite), as GPTQ computes it."""
    try:
        L = torch.linalg.cholesky(H)
    except torch.linalg.LinAlgError:
        raise ValueError("H is not positive definite even after dampening: pass H = 2·XᵀX/n, or raise damp") \
            from None
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)


def _asym_grid(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and integer zero point ``[rows]`` of :func:`quantize_groupwise`'s asymmetric grid for ``w [rows, g]``."""
    qmax = 2 ** bits - 1
    low, high = w.amin(dim=1), w.amax(dim=1)
    scale = (high - low).clamp(min=SCALE_EPS) / qmax
    return scale, torch.clamp(-torch.round(low / scale), 0, qmax)


def _asym_round(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    return (torch.clamp(torch.round(w / scale) + zero, 0, 2 ** bits - 1) - zero) * scale


# ------------------------------------------------------------------------------------------- AWQ
def awq_scales(w: torch.Tensor, x: torch.Tensor, bits: int = 4, group_size: int | None = 64,
               grid: int = 20) -> torch.Tensor:
    """AWQ's per-input-channel scales ``s [in]`` for one Linear ``w [out, in]`` with inputs ``x [n, in]``.

    llm-awq's search: ``a = mean|x|`` over the rows (per input channel); for ``α = k / grid``,
    ``k = 0 .. grid − 1``: ``s = clamp(a^α, min=1e-4)``, normalised ``s ← s / sqrt(max(s)·min(s))``; the
    quantized layer is ``Q(w·diag(s))·diag(s)⁻¹`` (:func:`quantize_groupwise`, asymmetric); its error is
    ``mean((x wᵀ − x Ŵᵀ)²)``. Returns the ``s`` of the smallest error (the first one on ties). ``α = 0``
    gives ``s = 1`` (plain RTN), so the result is never worse than RTN on ``x``.

    Apply it as ``Q(w * s) / s`` (:func:`quantize_model_awq`); in a deployed model ``1/s`` is folded into
    the previous operation (LayerNorm, or the previous Linear's rows).
    """
    w = _weight("w", w)
    x = v.finite("x", v.tensor("x", x, ndim=2, floating=True))
    if x.shape[1] != w.shape[1] or x.shape[0] == 0:
        raise ValueError(f"x must be [n >= 1, in = {w.shape[1]}] for w of shape {tuple(w.shape)}, "
                         f"got {tuple(x.shape)}")
    bits = _bits(bits)
    _group(group_size, w.shape[1])
    grid = v.integer("grid", grid, minimum=1)
    x = x.to(w.dtype)
    a = x.abs().mean(dim=0)                                       # [in]: mean |activation| per channel
    reference = x @ w.T                                           # [n, out]
    best, best_s = math.inf, None
    for k in range(grid):
        alpha = k / grid
        s = a.pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()                        # [in], geometric middle at 1
        w_hat = quantize_groupwise(w * s[None, :], bits, group_size) / s[None, :]
        err = (reference - x @ w_hat.T).pow(2).mean().item()
        if err < best:
            best, best_s = err, s
    return best_s


# ----------------------------------------------------------------------------------- SmoothQuant
def smoothquant_scales(x_absmax: torch.Tensor, w_absmax: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """SmoothQuant's migration scales ``s [in]``: ``s_j = max|X_j|^α / max|W_j|^(1−α)``.

    ``x_absmax [in]``: per input channel, the largest ``|x|`` over the calibration tokens;
    ``w_absmax [in]``: per input channel (a *column* of ``w [out, in]``), the largest ``|w|`` over the
    output rows. As ``smooth_lm``: ``w_absmax`` clamped to ≥ 1e-5 and ``s`` clamped to ≥ 1e-5. The layer
    then computes ``(x / s) (w · s)ᵀ``: the same output, with the activation range divided by ``s``
    (α = 0.5 balances the two; larger α moves more of the difficulty into the weights).
    """
    x_absmax = v.finite("x_absmax", v.tensor("x_absmax", x_absmax, ndim=1, floating=True))
    w_absmax = v.finite("w_absmax", v.tensor("w_absmax", w_absmax, ndim=1, floating=True))
    v.same_shape("x_absmax", x_absmax, "w_absmax", w_absmax)
    if (x_absmax < 0).any() or (w_absmax < 0).any():
        raise ValueError("x_absmax and w_absmax are maxima of absolute values: they must be >= 0")
    alpha = v.in_unit_interval("alpha", alpha)
    return (x_absmax.pow(alpha) / w_absmax.clamp(min=SCALE_EPS).pow(1 - alpha)).clamp(min=SCALE_EPS)


# ------------------------------------------------------------------------------ storage accounting
def bits_per_weight(bits: int, group_size: int | None, in_features: int, symmetric: bool = False,
                    scale_bits: int = 16, zero_bits: int | None = None) -> float:
    """Real storage per weight: ``bits`` plus each group's scale (fp16 by default) and, when asymmetric,
    its integer zero point (``zero_bits``, default ``bits``: packed like the weights, as GPTQ's kernels
    store them), shared by the group's ``group_size`` weights. ``group_size=None``: one group per row
    (``in_features`` weights)."""
    bits = v.integer("bits", bits, minimum=1, maximum=32)
    g = _group(group_size, v.integer("in_features", in_features, minimum=1))
    v.integer("scale_bits", scale_bits, minimum=0)
    zero = 0 if symmetric else (bits if zero_bits is None else v.integer("zero_bits", zero_bits, minimum=0))
    return bits + (scale_bits + zero) / g


def quantized_size_bytes(model: nn.Module, layer_names: Sequence[str], bits: int | None,
                         group_size: int | None = None, symmetric: bool = False) -> int:
    """Bytes to store ``model`` with the named Linears' weights at :func:`bits_per_weight` and every other
    tensor (embeddings, biases, LayerNorms, tied head counted once) at its own dtype. ``bits=None``: all
    at their own dtype (the float model's size)."""
    modules = dict(model.named_modules())
    quantized = {id(modules[n].weight) for n in layer_names} if bits is not None else set()
    total_bits = 0.0
    for p in model.parameters():                     # parameters() yields a shared (tied) tensor once
        if id(p) in quantized:
            total_bits += p.numel() * bits_per_weight(bits, group_size, p.shape[1], symmetric)
        else:
            total_bits += p.numel() * p.element_size() * 8
    return int(math.ceil(total_bits / 8))


# ------------------------------------------------------------------------ whole-model application
def _calib_inputs(model: GPT, names: Sequence[str], batches: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    from .eval import collect_inputs
    return collect_inputs(model, names, batches)


@torch.no_grad()
def quantize_model_rtn(model: GPT, bits: int, group_size: int | None = 64, symmetric: bool = False,
                       layer_names: Sequence[str] | None = None) -> GPT:
    """A copy of ``model`` whose block Linears (or ``layer_names``) went through :func:`quantize_groupwise`."""
    out = copy.deepcopy(model)
    for name in layer_names or block_linear_names(out):
        layer = out.get_submodule(name)
        layer.weight.copy_(quantize_groupwise(layer.weight, bits, group_size, symmetric))
    return out


def _embed(model: GPT, batches: Sequence[torch.Tensor]) -> torch.Tensor:
    """The residual stream entering block 0 for the calibration ``batches``: ``[N, T, C]``."""
    idx = torch.cat(list(batches))                                  # [N, T]
    pos = torch.arange(idx.shape[1])
    return model.drop(model.wte(idx) + model.wpe(pos))


@torch.no_grad()
def quantize_model_gptq(model: GPT, batches: Sequence[torch.Tensor], bits: int, group_size: int | None = None,
                        damp: float = 0.01) -> GPT:
    """A copy of ``model`` whose block Linears went through :func:`gptq_quantize`, block after block as the
    GPTQ paper does: block ``i``'s Hessians come from the calibration ``batches`` passed through blocks
    ``0 .. i−1`` *already quantized*, so each block corrects for the error of the ones before it. The
    residual stream is carried from block to block (two passes of one block per block, not whole-model passes).
    """
    from .eval import collect_inputs, hessian
    out = copy.deepcopy(model).eval()
    x = _embed(out, batches)                                        # [N, T, C]
    for block in out.h:
        names = [n for n, m in block.named_modules() if isinstance(m, nn.Linear)]   # attn.c_attn, ...
        xs = collect_inputs(block, names, [x])                      # {name: [N·T, in]}
        for name in names:
            layer = block.get_submodule(name)
            layer.weight.copy_(gptq_quantize(layer.weight, hessian(xs[name]), bits, group_size, damp))
        x = block(x)                                                # through the quantized block
    return out


@torch.no_grad()
def quantize_model_awq(model: GPT, batches: Sequence[torch.Tensor], bits: int, group_size: int | None = 64,
                       grid: int = 20, max_rows: int = 2048, layer_names: Sequence[str] | None = None) -> GPT:
    """A copy of ``model`` with each block Linear replaced by ``Q(w·s)/s`` (:func:`awq_scales` searched on
    at most ``max_rows`` evenly spaced calibration inputs of that layer, taken from the float model)."""
    out = copy.deepcopy(model)
    names = list(layer_names or block_linear_names(out))
    xs = _calib_inputs(out, names, batches)
    for name in names:
        layer = out.get_submodule(name)
        x = xs[name]
        x = x[torch.linspace(0, len(x) - 1, min(max_rows, len(x))).long()]   # [≤ max_rows, in]
        s = awq_scales(layer.weight, x, bits, group_size, grid)
        layer.weight.copy_(quantize_groupwise(layer.weight * s, bits, group_size) / s)
    return out


# --------------------------------------------------------------------------- activations and W8A8
def fake_quantize_activation(x: torch.Tensor, bits: int = 8, per_token: bool = False) -> torch.Tensor:
    """Dynamic symmetric absmax quantization of activations ``x [..., in]``: one scale for the whole tensor
    (``per_token=False``, SmoothQuant's per-tensor dynamic setting) or one per token (last-dim row)."""
    bits = _bits(bits, 2, 16)
    qmax = 2 ** (bits - 1) - 1
    if per_token:
        scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=SCALE_EPS) / qmax
    else:
        scale = x.abs().amax().clamp(min=SCALE_EPS) / qmax
    return torch.clamp(torch.round(x / scale), -qmax - 1, qmax) * scale


class FakeQuantLinear(nn.Module):
    """Simulated W8A8 Linear: ``fq(x / s) @ Q(w · s)ᵀ + b``.

    ``w`` quantized once per output channel, symmetric (``quantize_groupwise(..., group_size=None,
    symmetric=True)``); activations quantized on the fly (:func:`fake_quantize_activation`); ``s`` the
    SmoothQuant scales (``None``: no smoothing). In a deployed model ``1/s`` is folded into the previous
    LayerNorm; dividing here is the same arithmetic.
    """

    def __init__(self, linear: nn.Linear, w_bits: int = 8, a_bits: int = 8, smooth: torch.Tensor | None = None,
                 per_token: bool = False) -> None:
        super().__init__()
        s = torch.ones(linear.in_features) if smooth is None else smooth.detach().float()
        self.register_buffer("smooth", s)                                    # [in]
        w = quantize_groupwise(linear.weight.detach() * s, w_bits, None, symmetric=True)
        self.register_buffer("weight", w)                                    # [out, in]
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        self.a_bits, self.per_token = a_bits, per_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = fake_quantize_activation(x / self.smooth, self.a_bits, self.per_token)
        return F.linear(x, self.weight, self.bias)


def activation_absmax(model: GPT, batches: Sequence[torch.Tensor],
                      layer_names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Per input channel, the largest ``|x|`` seen by each named Linear on ``batches``: ``{name: [in]}``."""
    names = list(layer_names or block_linear_names(model))
    return {n: x.abs().amax(dim=0) for n, x in _calib_inputs(model, names, batches).items()}


@torch.no_grad()
def quantize_model_w8a8(model: GPT, batches: Sequence[torch.Tensor] | None = None, alpha: float | None = None,
                        w_bits: int = 8, a_bits: int = 8, per_token: bool = False,
                        layer_names: Sequence[str] | None = None) -> GPT:
    """A copy of ``model`` whose block Linears are :class:`FakeQuantLinear`; with ``alpha`` (and the
    calibration ``batches`` it needs) each gets SmoothQuant scales, without it no smoothing."""
    out = copy.deepcopy(model)
    names = list(layer_names or block_linear_names(out))
    absmax = activation_absmax(out, batches, names) if alpha is not None else {}
    for name in names:
        layer = out.get_submodule(name)
        smooth = None
        if alpha is not None:
            smooth = smoothquant_scales(absmax[name], layer.weight.abs().amax(dim=0), alpha)
        parent, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent), child, FakeQuantLinear(layer, w_bits, a_bits, smooth, per_token))
    return out


# ---------------------------------------------------------------------------------- KV cache (KIVI)
def _minmax_fake_quant(x: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Asymmetric min-max fake quantization with one (scale, min) pair per slice along ``dim`` (KIVI's
    quantizer: float offset = the minimum, ``q = round((x − min) / scale)``)."""
    low = x.amin(dim=dim, keepdim=True)
    high = x.amax(dim=dim, keepdim=True)
    scale = (high - low).clamp(min=SCALE_EPS) / (2 ** bits - 1)
    return torch.round((x - low) / scale) * scale + low


def quantize_keys_per_channel(k: torch.Tensor, bits: int) -> torch.Tensor:
    """Keys ``[B, h, T, hd]`` quantized **per channel**: one grid per (batch, head, channel) over the T
    tokens (KIVI: a few key channels carry large values in every token, so grids follow channels)."""
    v.tensor("k", k, ndim=4, floating=True)
    return _minmax_fake_quant(k, _bits(bits), dim=2)


def quantize_values_per_token(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Values ``[B, h, T, hd]`` quantized **per token**: one grid per (batch, head, token) over the
    head's channels (KIVI: value errors mix through the attention weights token by token)."""
    v.tensor("x", x, ndim=4, floating=True)
    return _minmax_fake_quant(x, _bits(bits), dim=3)


def quantize_per_token(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Alias of :func:`quantize_values_per_token` for keys: the *per-token* key layout KIVI argues against."""
    return quantize_values_per_token(x, bits)


class QuantizedKVCache(KVCache):
    """A KV cache storing keys and values in ``bits`` (simulated), KIVI-style.

    Positions are quantized a ``group`` of tokens at a time, when the group is complete: keys per
    channel over the group's tokens (``key_axis="channel"``; ``"token"`` for the per-token comparison),
    values per token. The most recent positions of an incomplete group stay in full precision (KIVI's
    residual), so what attention reads is ``[quantized groups | float residual and new tokens]``; a group
    is read in quantized form from the call after the one that completed it (no query ever sees a grid
    computed from tokens after it).
    """

    def __init__(self, n_layer: int, bits: int = 4, group: int = 32, key_axis: str = "channel",
                 value_bits: int | None = None) -> None:
        super().__init__(n_layer)
        self.bits = _bits(bits)
        self.value_bits = self.bits if value_bits is None else _bits(value_bits)
        self.group = v.integer("group", group, minimum=1)
        self.key_axis = v.one_of("key_axis", key_axis, ("channel", "token"))
        self.n_quantized = [0] * n_layer          # per layer: positions already stored in quantized form

    def update(self, layer: int, k: torch.Tensor, v_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = super().update(layer, k, v_)      # [B, h, T_all, hd]: what attention reads now
        done = self.n_quantized[layer]                    # (earlier groups already quantized, the rest float)
        full = (keys.shape[2] // self.group) * self.group  # positions in complete groups
        if full > done:                                   # groups completed by this call: stored quantized,
            new_k, new_v = [], []                         # read quantized from the next call on
            for s in range(done, full, self.group):
                kg, vg = keys[:, :, s:s + self.group], values[:, :, s:s + self.group]
                new_k.append(quantize_keys_per_channel(kg, self.bits) if self.key_axis == "channel"
                             else quantize_per_token(kg, self.bits))
                new_v.append(quantize_values_per_token(vg, self.value_bits))
            self.keys[layer] = torch.cat([keys[:, :, :done], *new_k, keys[:, :, full:]], dim=2)
            self.values[layer] = torch.cat([values[:, :, :done], *new_v, values[:, :, full:]], dim=2)
            self.n_quantized[layer] = full
        return keys, values

    def crop(self, length: int) -> None:
        super().crop(length)
        # a cropped group is no longer complete: keep its (already rounded) values, count only whole groups
        self.n_quantized = [min(n, (length // self.group) * self.group) for n in self.n_quantized]


def kv_cache_bytes_per_token(n_layer: int, n_embd: int, n_head: int, bits: int | None, group: int = 32,
                             key_axis: str = "channel", param_bytes: int = 2) -> float:
    """Bytes one token adds to the KV cache: keys and values, ``2 · n_layer · n_embd`` numbers, at ``bits``
    (``None``: float32), plus the grids' scale and minimum (``param_bytes`` each, fp16 by default) as
    :class:`QuantizedKVCache` lays them out: keys per channel share a grid per channel over ``group`` tokens
    (``n_embd / group`` grids per token and layer), keys per token and values have one grid per token and
    head (``n_head``)."""
    v.integer("n_layer", n_layer, minimum=1)
    v.integer("n_embd", n_embd, minimum=1)
    v.integer("n_head", n_head, minimum=1)
    v.integer("group", group, minimum=1)
    v.one_of("key_axis", key_axis, ("channel", "token"))
    if bits is None:
        return float(2 * n_layer * n_embd * 4)
    bits = _bits(bits)
    values = 2 * n_layer * n_embd * bits / 8
    key_grids = n_embd / group if key_axis == "channel" else n_head
    return values + n_layer * (key_grids + n_head) * 2 * param_bytes
