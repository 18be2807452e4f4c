"""Measuring a model: parameters, FLOPs, storage (dense and CSR) and CPU latency.

Taught in notebook 07 (count_parameters, conv2d_flops, csr_bytes; latency as interleaved ratios) and used by
05–10 and the benchmarks. Exercise records: ``kdcore/exercises/manifest.toml``; grading modules with the wrong
answers candidates write: ``kdcore/exercises/<id>.py``.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator

import torch
from torch import nn

from . import _validate as v

__all__ = ["count_parameters", "conv2d_flops", "model_flops", "csr_bytes", "model_size_bytes", "measure_latency",
           "compare_latency"]

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _check_model(model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return model


def named_effective_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every parameter, each shared tensor once.

    A weight pruned with ``torch.nn.utils.prune`` is stored as ``weight_orig`` (a parameter) and
    ``weight_mask`` (a buffer); it is yielded once, as ``weight``, with the mask applied, so that
    counting non-zeros sees the pruning.
    """
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            prefix = f"{module_name}." if module_name else ""
            if pname.endswith("_orig") and hasattr(module, pname[:-5] + "_mask"):
                base = pname[:-5]  # recompute: module.<base> is only refreshed by the next forward pass
                yield prefix + base, (p * getattr(module, base + "_mask")).detach()
            else:
                yield prefix + pname, p.detach()


def count_parameters(model: nn.Module, nonzero_only: bool = False) -> int:
    """Number of parameters of ``model``, each shared (tied) tensor counted once.

    With ``nonzero_only=True``: only the entries that are not 0 (what pruning leaves).
    """
    _check_model(model)
    if nonzero_only:
        return sum(int(torch.count_nonzero(w)) for _, w in named_effective_weights(model))
    return sum(w.numel() for _, w in named_effective_weights(model))


def _pair(name: str, value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return tuple(v.integer(name, n, minimum=1) for n in value)
    return (v.integer(name, value, minimum=1),) * 2


def saved_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what the model costs on disk, format overhead included."""
    import io
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def conv2d_flops(c_in: int, c_out: int, kernel_size: int | tuple[int, int], out_hw: int | tuple[int, int],
                 groups: int = 1) -> int:
    """FLOPs of one ``nn.Conv2d`` forward pass for a batch of 1.

    A multiply-add counts as 2 FLOPs and the bias is not counted (the convention of
    ``torch.utils.flop_counter.FlopCounterMode``): each of the ``c_out·H_out·W_out`` outputs is a dot
    product of length ``(c_in/groups)·kh·kw``, so ``2·c_out·(c_in/groups)·kh·kw·H_out·W_out``.
    ``kernel_size`` and ``out_hw`` (output height, width) accept an int or a pair.
    """
    c_in = v.integer("c_in", c_in, minimum=1)
    c_out = v.integer("c_out", c_out, minimum=1)
    groups = v.integer("groups", groups, minimum=1)
    kh, kw = _pair("kernel_size", kernel_size)
    h, w = _pair("out_hw", out_hw)
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups ({groups}) must divide c_in ({c_in}) and c_out ({c_out})")
    return 2 * c_out * (c_in // groups) * kh * kw * h * w


def model_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``model`` on ``example_input`` (the whole batch).

    Counts every call of an ``nn.Linear`` and ``nn.Conv1d/2d/3d`` through forward hooks, analytically:
    a multiply-add = 2 FLOPs, no bias, activations and pooling free. That is what
    ``FlopCounterMode`` reports for networks made of these layers; operations outside such layers
    (a ``torch.matmul`` in an attention block, say) are not counted here.
    The model runs in eval mode without gradient; its train/eval flags are restored afterwards.
    """
    _check_model(model)
    for i, x in enumerate(example_input if isinstance(example_input, tuple) else (example_input,)):
        v.tensor(f"example_input[{i}]" if isinstance(example_input, tuple) else "example_input", x)
    total = 0

    def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            # every output entry is a dot product of length in_features
            total += 2 * output.numel() * module.in_features
        else:
            # every output entry is a dot product over (c_in / groups) channels × the kernel window
            total += 2 * output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, *_CONV_TYPES))]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(example_input, tuple):
                model(*example_input)
            else:
                model(example_input)
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes.items():
            m.training = training
    return total


def csr_bytes(weight: torch.Tensor, value_bytes: int = 4, index_bytes: int = 4) -> int:
    """Bytes to store a 2-D ``weight [rows, cols]`` in CSR (compressed sparse row) format.

    CSR keeps the ``nnz`` non-zero values, their ``nnz`` column indices and ``rows + 1`` row
    pointers: ``nnz·(value_bytes + index_bytes) + (rows + 1)·index_bytes``. With 4-byte values and
    indices it is smaller than dense (``rows·cols·4``) only below about 50 % density.
    """
    v.tensor("weight", weight, ndim=2)
    value_bytes = v.integer("value_bytes", value_bytes, minimum=1)
    index_bytes = v.integer("index_bytes", index_bytes, minimum=1)
    nnz = int(torch.count_nonzero(weight))
    return nnz * (value_bytes + index_bytes) + (weight.shape[0] + 1) * index_bytes


def model_size_bytes(model: nn.Module, bits: int = 32, sparse: bool = False) -> int:
    """Storage of the model's parameters in bytes (buffers such as BatchNorm statistics excluded).

    Dense: ``numel·bits/8`` over all parameters (each shared tensor once), rounded up to whole bytes.
    ``sparse=True``: weights with ≥ 2 dims are stored in CSR (conv weights ``[out, in, *k]`` viewed
    as ``[out, in·prod(k)]``) with ``bits``-bit values and 32-bit indices; 1-D tensors (biases) stay
    dense. Weights pruned with ``torch.nn.utils.prune`` count with their mask applied.
    """
    _check_model(model)
    bits = v.integer("bits", bits, minimum=1, maximum=64)
    if not isinstance(sparse, bool):
        raise TypeError(f"sparse must be a bool, got {type(sparse).__name__}")
    total_bits = 0
    for _, w in named_effective_weights(model):
        if sparse and w.dim() >= 2:
            rows = w.shape[0]
            nnz = int(torch.count_nonzero(w))
            total_bits += nnz * (bits + 32) + (rows + 1) * 32
        else:
            total_bits += w.numel() * bits
    return math.ceil(total_bits / 8)


def measure_latency(model: nn.Module, example_input: torch.Tensor, *, repeats: int = 50, warmup: int = 5,
                    threads: int = 1) -> dict:
    """CPU wall-clock latency of ``model(example_input)``.

    Runs ``warmup`` untimed calls, then ``repeats`` timed ones, in eval mode under
    ``torch.inference_mode`` with ``torch.set_num_threads(threads)`` (the thread count, and the
    model's train/eval flags, are restored afterwards). Returns ``{"median_ms", "iqr_ms", "min_ms",
    "runs"}`` where ``runs`` is the list of the ``repeats`` timings in ms. Compare models by the
    median under the same ``threads``; the IQR (75th − 25th percentile) shows the noise.
    """
    _check_model(model)
    repeats = v.integer("repeats", repeats, minimum=1)
    warmup = v.integer("warmup", warmup, minimum=0)
    threads = v.integer("threads", threads, minimum=1)
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    for i, x in enumerate(inputs):
        v.tensor("example_input" if len(inputs) == 1 else f"example_input[{i}]", x)

    old_threads = torch.get_num_threads()
    modes = {m: m.training for m in model.modules()}
    runs = []
    try:
        torch.set_num_threads(threads)
        model.eval()
        with torch.inference_mode():
            for _ in range(warmup):
                model(*inputs)
            for _ in range(repeats):
                start = time.perf_counter()
                model(*inputs)
                runs.append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(old_threads)
        for m, training in modes.items():
            m.training = training
    q1, q3 = _quartiles(runs)
    return {"median_ms": statistics.median(runs), "iqr_ms": q3 - q1, "min_ms": min(runs), "runs": runs}


def _quartiles(values: list[float]) -> tuple[float, float]:
    """25th and 75th percentile (both the value itself for a single value)."""
    if len(values) == 1:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def compare_latency(models: dict[str, nn.Module], example_input: torch.Tensor, *, baseline: str,
                    rounds: int = 12, repeats: int = 20, warmup: int = 3, threads: int = 1) -> dict[str, dict]:
    """Speed-up of each model over ``models[baseline]``, robust to a machine whose speed drifts.

    The models are timed in turn with :func:`measure_latency`, ``repeats`` calls each, in ``rounds``
    interleaved rounds. Each round gives the ratio baseline median / model median, taken close together in
    time; a slow spell of a shared machine (seconds long) then cancels out of the ratio, where a ratio of
    overall medians would absorb it. Returns, per name, ``{"speedup", "speedup_iqr": (q1, q3), "median_ms",
    "iqr_ms", "runs"}``: the median and quartiles of the per-round ratios (> 1: faster than the baseline)
    and the pooled timings in ms.
    """
    if not isinstance(models, dict) or not models:
        raise TypeError("models must be a non-empty dict of name -> nn.Module")
    for model in models.values():
        _check_model(model)
    if baseline not in models:
        raise ValueError(f"baseline must be one of the model names {sorted(models)}, got {baseline!r}")
    rounds = v.integer("rounds", rounds, minimum=1)
    runs: dict[str, list[float]] = {name: [] for name in models}
    ratios: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        medians = {}
        for name, model in models.items():
            result = measure_latency(model, example_input, repeats=repeats, warmup=warmup, threads=threads)
            runs[name] += result["runs"]
            medians[name] = result["median_ms"]
        for name in models:
            ratios[name].append(medians[baseline] / medians[name])
    out = {}
    for name in models:
        pooled, per_round = runs[name], ratios[name]
        q1, q3 = _quartiles(pooled)
        out[name] = {"speedup": statistics.median(per_round), "speedup_iqr": _quartiles(per_round),
                     "median_ms": statistics.median(pooled), "iqr_ms": q3 - q1, "runs": pooled}
    return out
