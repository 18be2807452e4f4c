"""Pruning: magnitude masks (per tensor and global), structured neuron / channel pruning, masked
fine-tuning, the Zhu & Gupta sparsity schedule, SNIP scores and a sparsity report.

Taught in notebooks 05 (types of pruning), 06 (when to prune) and 08 (pruning with distillation).
Which code to study: the *contract* of ``magnitude_mask`` / ``global_magnitude_masks`` is "prune the
``round(sparsity·n)`` smallest ``|w|``", written readably as the correct alternatives in
``kdcore/exercises/magnitude_mask.py`` (``torch.topk`` / ``kthvalue``). The functions here find the same mask
by a radix select over the tensors (no sort, no concatenation), which is what makes global pruning of 11.7 M
weights 19× faster than ``torch.nn.utils.prune`` (benchmarks/bench_global_pruning.py); study them second.

Mask convention everywhere: a bool tensor of the weight's shape, ``True`` = keep, ``False`` = pruned.
Masks for a model are keyed by parameter name as in ``model.named_parameters()`` (``"layers.0.weight"``).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate as v
from .measure import named_effective_weights

__all__ = [
    "magnitude_mask", "global_magnitude_masks", "prune_neurons", "prune_conv_channels", "apply_masks",
    "masked_sgd_step", "sparsity_schedule", "snip_scores", "sparsity_report",
]

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _fraction(name: str, value: object) -> float:
    """A sparsity: a fraction in [0, 1], never a count.

    ``torch.nn.utils.prune`` reads an ``int`` ``amount`` as a *number* of weights (``amount=1`` prunes one
    weight) and a ``float`` as a fraction; kdcore always reads a fraction. So that a learner coming from
    torch is not silently surprised (``sparsity=1`` would prune everything here), an integer other than 0
    is refused; 0 means "nothing" under both readings and is accepted.
    """
    is_int_tensor = isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point()
    if (isinstance(value, int) and not isinstance(value, bool) and value != 0) or (is_int_tensor and value.item() != 0):
        raise TypeError(
            f"{name} must be a fraction in [0, 1] given as a float, got the int {value!r}: kdcore reads sparsity as a "
            f"fraction of the weights, while torch.nn.utils.prune reads an int amount as a count of weights. "
            f"Pass 1.0 to prune everything, or count / numel to prune `count` weights.")
    return v.in_unit_interval(name, value)


# --------------------------------------------------------------------------------------------------
# Unstructured magnitude pruning
# --------------------------------------------------------------------------------------------------

def _sort_keys(weight: torch.Tensor, float_dtype: torch.dtype) -> torch.Tensor:
    """``|weight|`` as integers that sort like the values (flat, on weight's device).

    For a non-negative IEEE-754 float the sign bit is 0, so reading its bits as a signed integer of
    the same width gives a number that is ordered exactly like the float (+inf and NaN come last,
    as in ``torch.topk``). Integers let us select the k-th smallest value by counting digits.
    """
    int_dtype = torch.int32 if float_dtype == torch.float32 else torch.int64
    return weight.detach().abs().to(float_dtype).reshape(-1).view(int_dtype)


def _kth_smallest_key(weights: list[torch.Tensor], k: int,
                      float_dtype: torch.dtype) -> tuple[int, int, int]:
    """Radix select over several tensors without concatenating them.

    Finds the key of the k-th smallest ``|w|`` (1-based) over all tensors together, 16 bits at a
    time from the most significant: one histogram pass per 16 bits (2 passes for float32), each pass
    only counting the entries whose higher bits match the prefix found so far. Peak extra memory is
    a few temporaries the size of the largest tensor, instead of a copy of every weight.

    Returns ``(key, rank, n_equal)``: the k-th smallest key, how many entries equal to it are among
    the k smallest, and how many entries equal it in total.
    """
    width = 32 if float_dtype == torch.float32 else 64
    prefix, rank = 0, k
    for shift in range(width - 16, -1, -16):
        hist = torch.zeros(1 << 16, dtype=torch.int64, device=weights[0].device)
        for w in weights:
            keys = _sort_keys(w, float_dtype)
            if shift + 16 < width:  # later passes: only entries in the bucket chosen so far
                keys = keys[(keys >> (shift + 16)) == prefix]
            # histogram of this 16-bit digit (index_add_ of a broadcast 1: faster than torch.bincount,
            # whose multi-threaded version is slow for 65,536 bins)
            hist.index_add_(0, ((keys >> shift) & 0xFFFF).to(hist.device), hist.new_ones(1).expand(keys.numel()))
        cumulative = hist.cumsum(0)
        digit = int(torch.searchsorted(cumulative, rank))  # first bucket whose running count reaches rank
        rank -= int(cumulative[digit - 1]) if digit > 0 else 0
        prefix = (prefix << 16) | digit
    return prefix, rank, int(hist[digit])


def _prune_smallest(weights: list[torch.Tensor], n_prune: int) -> list[torch.Tensor]:
    """Bool keep-masks pruning exactly ``n_prune`` entries of smallest ``|w|`` over all ``weights``.

    Ties at the threshold: the entries with the lower flat index (in list order, then row-major) are
    pruned first, so the count is exact and the result deterministic.
    """
    total = sum(w.numel() for w in weights)
    if n_prune == 0:
        return [torch.ones_like(w, dtype=torch.bool) for w in weights]
    if n_prune == total:
        return [torch.zeros_like(w, dtype=torch.bool) for w in weights]
    # float16/bfloat16 widen exactly to float32; a float64 tensor forces float64 for all (also exact)
    float_dtype = torch.float64 if any(w.dtype == torch.float64 for w in weights) else torch.float32
    threshold, ties_to_prune, n_ties = _kth_smallest_key(weights, n_prune, float_dtype)

    masks = []
    for w in weights:
        keys = _sort_keys(w, float_dtype)
        keep = keys > threshold  # prunes every entry <= threshold, i.e. all ties too
        if ties_to_prune < n_ties:  # only part of the ties may go: keep those with the higher index
            ties = (keys == threshold).nonzero().flatten()
            pruned_here = min(ties_to_prune, ties.numel())
            keep[ties[pruned_here:]] = True
            ties_to_prune -= pruned_here
            n_ties -= ties.numel()
        masks.append(keep.view(w.shape))
    return masks


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Unstructured magnitude pruning of one tensor.

    Args:
        weight: any shape, floating point; not modified.
        sparsity: fraction in [0, 1] to prune, as a float. Unlike ``torch.nn.utils.prune``'s ``amount``, an int is
            never a count: ints other than 0 raise ``TypeError`` (``sparsity=1`` would otherwise prune everything).

    Returns:
        bool mask of ``weight.shape`` (True = keep) with exactly ``round(sparsity * numel)`` entries
        False (Python ``round``, as ``torch.nn.utils.prune``): those with the smallest ``|w|``;
        among equal ``|w|`` the lower flat index is pruned first.
    """
    v.tensor("weight", weight, floating=True)
    sparsity = _fraction("sparsity", sparsity)
    return _prune_smallest([weight], round(sparsity * weight.numel()))[0]


def global_magnitude_masks(weights: Mapping[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Global magnitude pruning: one threshold over all tensors together.

    Args:
        weights: ``{name: tensor}`` (e.g. the weights of every Linear/Conv layer); not modified.
        sparsity: fraction in [0, 1] of all entries (summed over the tensors) to prune, as a float (ints other
            than 0 raise ``TypeError``, as in :func:`magnitude_mask`).

    Returns:
        ``{name: bool mask}`` of the same shapes (True = keep); exactly ``round(sparsity * total)``
        entries pruned in total. Equals ``torch.nn.utils.prune.global_unstructured`` with
        ``L1Unstructured`` (tie-free inputs; on ties the lower index in dict order is pruned first).
        Small layers can end up almost fully pruned: that is the known weakness of one global threshold.
    """
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights must be a dict of name -> tensor, got {type(weights).__name__}")
    if len(weights) == 0:
        raise ValueError("weights must contain at least one tensor, got an empty dict")
    for name, w in weights.items():
        v.tensor(f"weights[{name!r}]", w, floating=True)
    sparsity = _fraction("sparsity", sparsity)
    total = sum(w.numel() for w in weights.values())
    masks = _prune_smallest(list(weights.values()), round(sparsity * total))
    return dict(zip(weights.keys(), masks))
# --------------------------------------------------------------------------------------------------
# Structured pruning: physically smaller layers
# --------------------------------------------------------------------------------------------------

def _top_l1(weight: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices (ascending) of the ``keep`` output units (dim 0) with the largest L1 norm; ties → lower index."""
    norms = weight.detach().abs().reshape(weight.shape[0], -1).sum(dim=1)
    order = torch.sort(norms, descending=True, stable=True).indices  # stable: equal norms keep index order
    return order[:keep].sort().values


def _new_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    # skip_init: no random initialisation (it would be overwritten, and would consume the global RNG)
    layer = nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias=bias is not None,
                               device=weight.device, dtype=weight.dtype)
    return _filled(layer, weight, bias)


def _filled(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """``layer`` with its (uninitialised) parameters overwritten by ``weight`` and ``bias``."""
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _new_conv(conv: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A conv of the same type and hyper-parameters as ``conv`` holding ``weight [out, in, *k]``."""
    layer = nn.utils.skip_init(type(conv), weight.shape[1], weight.shape[0], conv.kernel_size,
                               stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                               groups=1, bias=bias is not None, padding_mode=conv.padding_mode,
                               device=weight.device, dtype=weight.dtype)
    return _filled(layer, weight, bias)


def prune_neurons(fc1: nn.Linear, fc2: nn.Linear, keep: int) -> tuple[nn.Linear, nn.Linear]:
    """Structured pruning of the hidden layer between two Linear layers.

    Keeps the ``keep`` hidden neurons whose fc1 weight rows (``[out, in]``) have the largest L1 norm
    (ties → lower index), in their original order. Returns two new, physically smaller layers:
    fc1 ``[keep, in]`` (rows and bias entries kept) and fc2 ``[out2, keep]`` (columns kept; bias as is).
    ``fc2(relu(fc1(x)))`` of the result equals the original with the other neurons' activations
    zeroed. The inputs are not modified.
    """
    if not isinstance(fc1, nn.Linear) or not isinstance(fc2, nn.Linear):
        raise TypeError(f"fc1 and fc2 must be nn.Linear, got {type(fc1).__name__} and {type(fc2).__name__}")
    if fc2.in_features != fc1.out_features:
        raise ValueError(f"fc2.in_features ({fc2.in_features}) must equal fc1.out_features ({fc1.out_features})")
    keep = v.integer("keep", keep, minimum=1, maximum=fc1.out_features)
    idx = _top_l1(fc1.weight, keep)
    new_fc1 = _new_linear(fc1.weight.detach()[idx], None if fc1.bias is None else fc1.bias.detach()[idx])
    new_fc2 = _new_linear(fc2.weight.detach()[:, idx], None if fc2.bias is None else fc2.bias.detach())
    return new_fc1, new_fc2


def prune_conv_channels(conv: nn.Module, next_conv: nn.Module, keep: int, bn: nn.Module | None = None,
                        spatial: int = 1) -> tuple[nn.Module, nn.Module, nn.Module | None]:
    """Structured pruning of a conv layer's output channels (filters), Li et al. (2017) style.

    Keeps the ``keep`` output channels of ``conv`` whose filters ``weight[c]`` have the largest L1
    norm (ties → lower index), in original order, and slices what consumes them:

    - ``next_conv`` a Conv (groups=1): its input channels ``weight[:, idx]``;
    - ``next_conv`` an ``nn.Linear`` fed by ``flatten`` of the conv output (after any pooling), each
      channel owning a block of ``spatial`` consecutive columns (``spatial = H·W`` of the flattened
      map; 16 for DigitsCNN's conv2 → maxpool → fc);
    - ``bn`` (optional) a BatchNorm between them: weight, bias and running statistics.

    Returns new, physically smaller modules ``(new_conv, new_next, new_bn)`` (``new_bn`` is None when
    ``bn`` is None); the inputs are not modified. The result equals the original network with the
    dropped channels' activations (after BN and ReLU) zeroed.
    """
    if not isinstance(conv, _CONV_TYPES):
        raise TypeError(f"conv must be an nn.Conv1d/2d/3d, got {type(conv).__name__}")
    if conv.groups != 1:
        raise ValueError(f"conv.groups must be 1 (grouped/depthwise convs are not supported), got {conv.groups}")
    keep = v.integer("keep", keep, minimum=1, maximum=conv.out_channels)
    spatial = v.integer("spatial", spatial, minimum=1)
    c = conv.out_channels
    idx = _top_l1(conv.weight, keep)

    new_conv = _new_conv(conv, conv.weight.detach()[idx], None if conv.bias is None else conv.bias.detach()[idx])
    next_bias = None if next_conv.bias is None else next_conv.bias.detach()
    if isinstance(next_conv, _CONV_TYPES):
        if next_conv.groups != 1:
            raise ValueError(f"next_conv.groups must be 1, got {next_conv.groups}")
        if next_conv.in_channels != c:
            raise ValueError(f"next_conv.in_channels ({next_conv.in_channels}) must equal conv.out_channels ({c})")
        new_next = _new_conv(next_conv, next_conv.weight.detach()[:, idx], next_bias)
    elif isinstance(next_conv, nn.Linear):
        if next_conv.in_features != c * spatial:
            raise ValueError(f"next_conv.in_features ({next_conv.in_features}) must equal "
                             f"conv.out_channels * spatial ({c} * {spatial})")
        # flatten of [C, H, W] is channel-major: channel i owns columns i*spatial ... (i+1)*spatial - 1
        cols = (idx[:, None] * spatial + torch.arange(spatial, device=idx.device)).flatten()
        new_next = _new_linear(next_conv.weight.detach()[:, cols], next_bias)
    else:
        raise TypeError(f"next_conv must be a Conv or nn.Linear, got {type(next_conv).__name__}")

    new_bn = None
    if bn is not None:
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            raise TypeError(f"bn must be a BatchNorm module or None, got {type(bn).__name__}")
        if bn.num_features != c:
            raise ValueError(f"bn.num_features ({bn.num_features}) must equal conv.out_channels ({c})")
        new_bn = copy.deepcopy(bn)  # same type, eps, momentum, flags; tensors replaced below
        new_bn.num_features = keep
        if bn.affine:
            new_bn.weight = nn.Parameter(bn.weight.detach()[idx].clone())
            new_bn.bias = nn.Parameter(bn.bias.detach()[idx].clone())
        if bn.track_running_stats:
            new_bn.running_mean = bn.running_mean[idx].clone()
            new_bn.running_var = bn.running_var[idx].clone()
    return new_conv, new_next, new_bn


# --------------------------------------------------------------------------------------------------
# Masks on a model, masked fine-tuning, schedules
# --------------------------------------------------------------------------------------------------

def _check_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, nn.Parameter]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(masks, Mapping):
        raise TypeError(f"masks must be a dict of parameter name -> bool mask, got {type(masks).__name__}")
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise ValueError(f"masks has key {name!r}, which is not a parameter of the model; "
                             f"expected names from model.named_parameters(), e.g. {next(iter(params), None)!r}")
        v.tensor(f"masks[{name!r}]", mask)
        v.same_shape(f"masks[{name!r}]", mask, f"parameter {name!r}", params[name])
    return params


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero, in place, every model parameter entry whose mask is False.

    ``masks`` maps names from ``model.named_parameters()`` to masks of the parameter's shape
    (bool, True = keep; other dtypes are read as ``mask != 0``). Parameters without a mask are left alone.
    """
    params = _check_masks(model, masks)
    for name, mask in masks.items():
        params[name].masked_fill_(~mask.to(device=params[name].device, dtype=torch.bool), 0)


def masked_sgd_step(model: nn.Module, masks: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                    optimizer: torch.optim.Optimizer) -> float:
    """One fine-tuning step on cross-entropy with fixed masks; returns the loss before the step.

    The masks are applied before the forward pass (so the loss is the pruned network's), the pruned
    weights' gradients are zeroed (so momentum / Adam moments do not build up for them) and the masks
    are applied again after ``optimizer.step()``: with momentum, weight decay or Adam a weight can
    move even with a zero gradient, so re-zeroing is what keeps every pruned weight exactly 0.
    The model's train/eval mode is used as it is.
    """
    params = _check_masks(model, masks)
    v.tensor("x", x)
    v.tensor("y", y)
    apply_masks(model, masks)
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    with torch.no_grad():
        for name, mask in masks.items():
            grad = params[name].grad
            if grad is not None:
                grad.masked_fill_(~mask.to(device=grad.device, dtype=torch.bool), 0)
    optimizer.step()
    apply_masks(model, masks)
    return float(loss.detach())


def sparsity_schedule(step: float, s_initial: float, s_final: float, t0: int, n: int, dt: int) -> float:
    """Gradual pruning schedule of Zhu & Gupta (2017), "To prune, or not to prune".

    ``s_t = s_final + (s_initial − s_final)·(1 − (t − t0)/(n·dt))³`` with ``t = step`` clamped to
    ``[t0, t0 + n·dt]``: sparsity rises fast at first and flattens out as fewer weights remain.
    ``n`` pruning events ``dt`` steps apart start at step ``t0``.
    """
    step = v.real("step", step)
    s_initial = _fraction("s_initial", s_initial)
    s_final = _fraction("s_final", s_final)
    t0 = v.integer("t0", t0, minimum=0)
    n = v.integer("n", n, minimum=1)
    dt = v.integer("dt", dt, minimum=1)
    t = min(max(step, t0), t0 + n * dt)
    return s_final + (s_initial - s_final) * (1.0 - (t - t0) / (n * dt)) ** 3


def snip_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """SNIP connection sensitivity (Lee et al., ICLR 2019): ``|∂L/∂w ⊙ w|`` on one batch.

    ``L`` is the cross-entropy of ``model(x)`` against ``y``. Returns ``{name: score}`` for the weight
    of every Linear / Conv layer (names as in ``model.named_parameters()``), each of the weight's shape.
    The gradient is taken on a deep copy, so the model's weights, ``.grad``, buffers (BatchNorm running
    statistics) and train/eval mode are left exactly as they were.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    v.tensor("x", x)
    v.tensor("y", y)
    clone = copy.deepcopy(model)
    named = {f"{name}.weight" if name else "weight": m.weight for name, m in clone.named_modules()
             if isinstance(m, (nn.Linear, *_CONV_TYPES))}
    if not named:
        raise ValueError("model has no nn.Linear or Conv layer to score")
    for w in named.values():
        w.requires_grad_(True)
    loss = F.cross_entropy(clone(x), y)
    grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
    return {name: (torch.zeros_like(w) if g is None else (g * w).abs()).detach()
            for (name, w), g in zip(named.items(), grads)}


def sparsity_report(model: nn.Module) -> list[dict]:
    """Per weight tensor (every parameter with ≥ 2 dims: Linear / Conv weights) of ``model``:
    ``{"name", "shape", "numel", "zeros", "sparsity"}``, then a row named ``"total"`` over them
    (its shape is None). Weights pruned with ``torch.nn.utils.prune`` are reported as masked.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    rows = []
    for name, w in named_effective_weights(model):
        if w.dim() < 2:
            continue
        zeros = int((w == 0).sum())
        rows.append({"name": name, "shape": tuple(w.shape), "numel": w.numel(), "zeros": zeros,
                     "sparsity": zeros / w.numel() if w.numel() else 0.0})
    numel = sum(r["numel"] for r in rows)
    zeros = sum(r["zeros"] for r in rows)
    rows.append({"name": "total", "shape": None, "numel": numel, "zeros": zeros,
                 "sparsity": zeros / numel if numel else 0.0})
    return rows


def prunable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights pruning acts on: every ``nn.Linear`` and ``nn.Conv*d`` weight, by parameter name, detached.

    Biases, norm layers and embeddings are left out (they are few, and pruning them costs accuracy for
    nothing). Notebooks 06–08 pass this dict to :func:`global_magnitude_masks` / :func:`magnitude_mask`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return {f"{name}.weight" if name else "weight": module.weight.detach()
            for name, module in model.named_modules() if isinstance(module, kinds)}


def gradual_prune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s_final: float, *, epochs: int, seed: int = 0,
                  batch_size: int = 128, lr: float = 2e-3, events: int = 10, prune_fraction: float = 0.6) -> int:
    """Zhu & Gupta (2017) gradual magnitude pruning of a trained model, in place (taught in notebook 06).

    Training runs ``epochs`` epochs of Adam on cross-entropy with :func:`masked_sgd_step`; during the first
    ``prune_fraction`` of the steps, ``events`` pruning events raise the global sparsity along
    :func:`sparsity_schedule` (cubic) from 0 to ``s_final``; each event recomputes global magnitude masks from
    the current weights. Returns how many weights grew back between events: a pruned weight is held at exactly
    0, so it is among the smallest at the next (higher-sparsity) event and the count is 0 barring ties at 0;
    notebook 06 prints it to show that gradual magnitude pruning is not "dynamic" pruning.
    """
    _fraction("s_final", s_final)
    v.integer("epochs", epochs, minimum=1)
    v.integer("batch_size", batch_size, minimum=1)
    v.integer("events", events, minimum=1)
    if not 0 < prune_fraction <= 1:
        raise ValueError(f"prune_fraction must be in (0, 1], got {prune_fraction!r}")
    n_batches = -(-len(x) // batch_size)
    dt = max(1, int(prune_fraction * epochs * n_batches) // events)   # steps between pruning events
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    masks: dict[str, torch.Tensor] | None = None
    regrown, step = 0, 0
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            if step % dt == 0 and step <= events * dt:          # a pruning event
                s = sparsity_schedule(step, 0.0, s_final, t0=0, n=events, dt=dt)
                new = global_magnitude_masks(prunable_weights(model), s)
                if masks is not None:
                    regrown += sum(int((new[n] & ~masks[n]).sum()) for n in new)
                masks = new
            idx = perm[i:i + batch_size]
            masked_sgd_step(model, masks, x[idx], y[idx], opt)
            step += 1
    model.eval()
    return regrown
