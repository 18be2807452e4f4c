"""Quantization and weight sharing. Taught in notebook 09 (quantize_affine, dequantize, kmeans_share,
separable_params; grading modules in ``kdcore/exercises/<id>.py``) and used by 07 and 10.

* :func:`quantize_affine` / :func:`dequantize`: per-tensor uniform quantization with PyTorch's
  ``MinMaxObserver`` conventions (for bits=8 the scale and zero point are those of
  ``torch.ao.quantization.MinMaxObserver``: quint8 per-tensor affine, qint8 per-tensor symmetric).
* :func:`quantize_per_channel`: one scale / zero point per output channel (``PerChannelMinMaxObserver``).
* :func:`fake_quantize_model`: a copy of a model whose Linear/Conv weights went through
  quantize → dequantize (simulated "weight-only" quantization, to measure the accuracy cost).
* :func:`kmeans_share`: weight sharing by 1-D k-means (Han et al., "Deep Compression", ICLR 2016).
* :func:`separable_params`: parameter counts of a standard vs a depthwise-separable convolution.

The affine map is ``x ≈ (q - zero_point) · scale`` with integer ``q`` in ``[qmin, qmax]``:
asymmetric (unsigned) ``[0, 2^bits - 1]``, symmetric (signed) ``[-2^(bits-1), 2^(bits-1) - 1]``.
Quantized values ``q`` are returned as ``torch.int32`` tensors for every bit width (2..16).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from kdcore import _validate as v

__all__ = ["quantize_affine", "dequantize", "quantize_per_channel", "fake_quantize_model",
           "kmeans_share", "separable_params"]

EPS = torch.finfo(torch.float32).eps  # smallest scale (MinMaxObserver's default eps)
Q_DTYPE = torch.int32


def _bits(bits: object) -> int:
    return v.integer("bits", bits, minimum=2, maximum=16)


def _qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    if symmetric:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def _qparams(min_val: torch.Tensor, max_val: torch.Tensor, qmin: int, qmax: int,
             symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale (float32) and zero point (int64) from a range, computed as MinMaxObserver does (float32)."""
    min_neg = torch.clamp(min_val.float(), max=0.0)   # the range always contains 0, so that 0.0 is exact
    max_pos = torch.clamp(max_val.float(), min=0.0)
    if symmetric:
        scale = torch.maximum(-min_neg, max_pos) / (float(qmax - qmin) / 2)
        scale = torch.clamp(scale, min=EPS)
        zero_point = torch.zeros_like(scale, dtype=torch.int64)
    else:
        scale = torch.clamp((max_pos - min_neg) / float(qmax - qmin), min=EPS)
        zero_point = torch.clamp(qmin - torch.round(min_neg / scale).to(torch.int64), qmin, qmax)
    return scale, zero_point


def _quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int,
              qmax: int) -> torch.Tensor:
    """``clamp(round(x / scale) + zero_point, qmin, qmax)``; torch.round rounds half to even."""
    q = torch.round(x.float() / scale) + zero_point
    return torch.clamp(q, qmin, qmax).to(Q_DTYPE)


def _float_input(name: str, x: object) -> torch.Tensor:
    x = v.finite(name, v.tensor(name, x, floating=True))
    if x.numel() == 0:
        raise ValueError(f"{name} must have at least one element, got shape {tuple(x.shape)}")
    return x.detach()


def quantize_affine(x: torch.Tensor, bits: int = 8,
                    symmetric: bool = False) -> tuple[torch.Tensor, float, int]:
    """Per-tensor uniform quantization; returns ``(q, scale, zero_point)``.

    x: any shape, float.  q: same shape, ``torch.int32``, values in ``[qmin, qmax]``.
    The range ``[min(x), max(x)]`` is first widened to contain 0.
    asymmetric: ``qmin, qmax = 0, 2^bits-1``, ``scale = (max - min)/(qmax - qmin)``,
    ``zero_point = clamp(qmin - round(min/scale), qmin, qmax)``;
    symmetric: ``qmin, qmax = -2^(bits-1), 2^(bits-1)-1``, ``scale = max(|min|, |max|)/((qmax - qmin)/2)``,
    ``zero_point = 0``.  ``scale >= float32 eps`` (an all-zero tensor gets eps, so no division by 0).
    ``q = clamp(round(x/scale) + zero_point, qmin, qmax)`` with round-half-to-even (as torch.round).
    """
    x = _float_input("x", x)
    bits = _bits(bits)
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    qmin, qmax = _qrange(bits, symmetric)
    scale, zero_point = _qparams(x.min(), x.max(), qmin, qmax, symmetric)
    q = _quantize(x, scale, zero_point, qmin, qmax)
    return q, float(scale), int(zero_point)


def dequantize(q: torch.Tensor, scale: float | torch.Tensor,
               zero_point: int | torch.Tensor) -> torch.Tensor:
    """``(q - zero_point) · scale`` as float32.

    q: integer tensor.  scale / zero_point: numbers (per tensor) or tensors that broadcast against ``q``
    (per channel, e.g. the keep-dim tensors returned by :func:`quantize_per_channel`).
    """
    q = v.tensor("q", q)
    if q.is_floating_point() or q.is_complex() or q.dtype == torch.bool:
        raise TypeError(f"q must be an integer tensor, got dtype {q.dtype}")
    if isinstance(scale, torch.Tensor):
        if not bool((scale > 0).all()) or not bool(torch.isfinite(scale).all()):
            raise ValueError("scale must be finite and > 0")
    else:
        v.positive("scale", scale)
    if isinstance(zero_point, torch.Tensor):
        if zero_point.is_floating_point():
            raise TypeError(f"zero_point must be an integer (tensor), got dtype {zero_point.dtype}")
    else:
        v.integer("zero_point", zero_point)
    try:
        return ((q.to(torch.int64) - zero_point).to(torch.float32) * scale).to(torch.float32)
    except RuntimeError as err:  # shapes that do not broadcast
        raise ValueError(f"scale and zero_point must broadcast against q {tuple(q.shape)}: {err}") from None


def _channel_view(weight: torch.Tensor, axis: int) -> torch.Tensor:
    """[..., C (at axis), ...] → [C, rest]."""
    return weight.movedim(axis, 0).reshape(weight.shape[axis], -1)


def _keepdim(values: torch.Tensor, weight: torch.Tensor, axis: int) -> torch.Tensor:
    """[C] → shape of ``weight`` with every dim except ``axis`` set to 1 (broadcasts against weight)."""
    shape = [1] * weight.dim()
    shape[axis] = weight.shape[axis]
    return values.reshape(shape)


def quantize_per_channel(weight: torch.Tensor, bits: int = 8, axis: int = 0,
                         symmetric: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-output-channel quantization; returns ``(q, scale, zero_point)``.

    weight: e.g. Linear [out, in] or Conv [out, in/groups, kh, kw]; ``axis`` is the channel dimension
    (0 = output channels).  Each slice along ``axis`` gets its own range, with the formulas of
    :func:`quantize_affine`.  q: int32 of weight's shape; scale (float32) and zero_point (int64) have
    weight's shape with every dimension except ``axis`` equal to 1, so ``dequantize(q, scale, zero_point)``
    broadcasts correctly; ``scale.flatten()`` equals ``PerChannelMinMaxObserver``'s scales for bits=8
    (qint8 per_channel_symmetric / quint8 per_channel_affine).
    Why per channel: output channels can differ in range by orders of magnitude, and one per-tensor
    scale would waste most levels on the small channels (Krishnamoorthi 2018).
    """
    w = _float_input("weight", weight)
    if w.dim() == 0:
        raise ValueError("weight must have at least 1 dimension (the channels), got a 0-D tensor")
    bits = _bits(bits)
    axis = v.integer("axis", axis, minimum=-w.dim(), maximum=w.dim() - 1) % w.dim()
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    rows = _channel_view(w, axis)
    if rows.shape[1] == 0:
        raise ValueError(f"weight must have at least one element per channel, got shape {tuple(w.shape)}")
    qmin, qmax = _qrange(bits, symmetric)
    scale, zero_point = _qparams(rows.min(dim=1).values, rows.max(dim=1).values, qmin, qmax, symmetric)
    scale, zero_point = _keepdim(scale, w, axis), _keepdim(zero_point, w, axis)
    return _quantize(w, scale, zero_point, qmin, qmax), scale, zero_point


def _quantile_rows(rows: torch.Tensor, q: float) -> torch.Tensor:
    """Per-row quantile with linear interpolation (as torch.quantile / numpy's default), without
    torch.quantile's 16M-element input limit.  rows: [R, n] → [R]."""
    ordered = rows.sort(dim=1).values
    pos = q * (rows.shape[1] - 1)
    lo = int(pos)
    hi = min(lo + 1, rows.shape[1] - 1)
    frac = pos - lo
    return ordered[:, lo] * (1 - frac) + ordered[:, hi] * frac


def _fake_quantize_weight(w: torch.Tensor, bits: int, axis: int | None, symmetric: bool,
                          calibration: str, percentile: float) -> torch.Tensor:
    rows = _channel_view(w, axis) if axis is not None else w.reshape(1, -1)
    if calibration == "minmax":
        lo, hi = rows.min(dim=1).values, rows.max(dim=1).values
    elif symmetric:  # clip |w| at its percentile: outliers saturate, the bulk gets finer steps
        hi = _quantile_rows(rows.abs(), percentile / 100)
        lo = -hi
    else:
        lo = _quantile_rows(rows, 1 - percentile / 100)
        hi = _quantile_rows(rows, percentile / 100)
    qmin, qmax = _qrange(bits, symmetric)
    scale, zero_point = _qparams(lo, hi, qmin, qmax, symmetric)
    if axis is not None:
        scale, zero_point = _keepdim(scale, w, axis), _keepdim(zero_point, w, axis)
    else:
        scale, zero_point = scale.reshape(()), zero_point.reshape(())
    return dequantize(_quantize(w, scale, zero_point, qmin, qmax), scale, zero_point).to(w.dtype)


def fake_quantize_model(model: nn.Module, bits: int = 8, per_channel: bool = True, symmetric: bool = True,
                        calibration: str = "minmax", percentile: float = 99.9) -> nn.Module:
    """A deep copy of ``model`` whose Linear / Conv weights are replaced by quantize → dequantize.

    Simulates weight quantization in float32 so that the accuracy cost can be measured with the usual
    evaluation code.  ``model`` itself is never modified.  Biases stay float (in integer inference they
    are int32 with scale ``s_weight · s_input``, whose rounding error is negligible); activations are
    not quantized here.
    per_channel: one range per output channel (axis 0; axis 1 for ConvTranspose) instead of per tensor.
    calibration: ``"minmax"`` uses the full range; ``"percentile"`` clips the range at the
    ``percentile``-th percentile (of |w| if symmetric, else the [100 - p, p] percentiles), trading clipping
    error on a few outliers for finer steps on the rest.  percentile must be in (50, 100].
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    bits = _bits(bits)
    for name, flag in (("per_channel", per_channel), ("symmetric", symmetric)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    v.one_of("calibration", calibration, ("minmax", "percentile"))
    percentile = v.real("percentile", percentile)
    if not 50 < percentile <= 100:
        raise ValueError(f"percentile must be in (50, 100], got {percentile!r}")

    quantized = copy.deepcopy(model)
    for module in quantized.modules():
        if not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) or module.weight is None:
            continue
        w = module.weight.detach()
        axis = (1 if getattr(module, "transposed", False) else 0) if per_channel else None
        with torch.no_grad():
            module.weight.copy_(_fake_quantize_weight(w, bits, axis, symmetric, calibration, percentile))
    return quantized


def _nearest(values: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid for each value (ties → lower index); chunked to bound memory."""
    chunk = max(1, 2 ** 22 // codebook.numel())
    parts = [(part.unsqueeze(1) - codebook).abs().argmin(dim=1) for part in values.split(chunk)]
    return torch.cat(parts)


def kmeans_share(weight: torch.Tensor, k: int, iters: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight sharing by 1-D k-means (Han et al., Deep Compression, 2016); returns ``(codebook, indices)``.

    weight: any shape.  codebook: [k] float32; indices: int64 of weight's shape, so that
    ``codebook[indices]`` approximates ``weight``.  Storing ``ceil(log2 k)``-bit indices plus the codebook
    instead of 32-bit floats compresses about ``32 / log2(k)`` times.
    Algorithm: centroids initialised linearly between min and max (Han et al. found linear init best,
    as it keeps the rare large weights), then at most ``iters`` Lloyd iterations (assign each weight to its
    nearest centroid, move each centroid to the mean of its weights; a centroid with no weights keeps its
    value).  Deterministic; stops early when the centroids stop moving.
    """
    w = _float_input("weight", weight)
    k = v.integer("k", k, minimum=1)
    iters = v.integer("iters", iters, minimum=0)
    values = w.flatten().double()
    codebook = torch.linspace(values.min().item(), values.max().item(), k, dtype=torch.float64)
    for _ in range(iters):
        assign = _nearest(values, codebook)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, values)
        counts = torch.bincount(assign, minlength=k)
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), codebook)
        if torch.equal(updated, codebook):
            break
        codebook = updated
    codebook = codebook.float()
    indices = _nearest(w.flatten().float(), codebook).reshape(w.shape)
    return codebook, indices


def separable_params(c_in: int, c_out: int, k: int) -> tuple[int, int]:
    """Parameters (no bias) of a k×k convolution c_in → c_out: ``(standard, depthwise-separable)``.

    standard: ``c_in·c_out·k²``; separable = depthwise k×k (``c_in·k²``) + pointwise 1×1 (``c_in·c_out``).
    The ratio is ``1/c_out + 1/k²``, about 8-9× fewer for k = 3 (MobileNet, Howard et al. 2017).
    """
    c_in = v.integer("c_in", c_in, minimum=1)
    c_out = v.integer("c_out", c_out, minimum=1)
    k = v.integer("k", k, minimum=1)
    return c_in * c_out * k * k, c_in * k * k + c_in * c_out
