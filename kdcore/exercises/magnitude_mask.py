"""magnitude_mask — unstructured magnitude pruning of one tensor. Taught in notebook 05; reference
``kdcore.prune.magnitude_mask``.

Contract (docs/EXERCISES.md): a bool mask of ``weight``'s shape, True = keep; exactly ``round(sparsity·numel)``
entries False (Python ``round``, as ``torch.nn.utils.prune``); the pruned entries are the smallest ``|w|`` (any
order among equal ``|w|``); ``weight`` is not modified; sparsity outside [0, 1] raises ValueError.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from kdcore.checking.cases import cases, randn
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import MUTATION_HINT, Observation, changed, tensor_snapshot, type_name

# ties: many entries share |w| ∈ {1, 2, 3}
TIES = torch.tensor([[-1.0, 1.0, 2.0, -2.0, 3.0, 1.0], [2.0, -1.0, -3.0, 1.0, -2.0, 2.0],
                     [1.0, 3.0, -1.0, 2.0, -1.0, -3.0], [-2.0, 2.0, 1.0, -1.0, 3.0, 1.0]])


# ----------------------------------------------------------------------------------------------------------
# comparing masks whatever the order among tied |w| (shared with global_magnitude_masks)
# ----------------------------------------------------------------------------------------------------------
def _n_pruned(mask: torch.Tensor) -> int:
    return int((mask == 0).sum())


def _pruned_smallest(keep: torch.Tensor, magnitudes: torch.Tensor) -> bool:
    """Every pruned |w| <= every kept |w| (whatever the order among ties)."""
    if keep.all() or (~keep).all():
        return True
    return bool(magnitudes[~keep].max() <= magnitudes[keep].min())


def compare_masks(cand_masks: dict, ref_masks: dict, magnitudes: dict, cand_mutated, ref_mutated):
    """Masks (``{name: mask}``) of the right shape and dtype, the right count pruned, and the smallest |w| pruned.

    Against a wrong variant whose masks do not prune the smallest |w| the masks must be equal.
    """
    if cand_mutated != ref_mutated:
        return "the weight was modified", MUTATION_HINT
    for name, ref in ref_masks.items():
        what, cand = f"mask {name!r}" if name else "mask", cand_masks.get(name)
        if not isinstance(cand, torch.Tensor):
            return f"{what}: expected a tensor mask, got {type_name(cand)}", None
        if cand.shape != ref.shape:
            return (f"{what}: expected shape {tuple(ref.shape)}, got {tuple(cand.shape)}",
                    "the mask has the weight's shape (reshape a flat mask back with .view(weight.shape))")
        if (cand.dtype == torch.bool) != (ref.dtype == torch.bool):
            return (f"{what}: expected a bool mask, got dtype {str(cand.dtype).replace('torch.', '')}",
                    "return a bool tensor, True = keep (e.g. `weight.abs() > threshold` or `mask.bool()`)")
    n_cand = sum(_n_pruned(m) for m in cand_masks.values())
    n_ref = sum(_n_pruned(m) for m in ref_masks.values())
    if n_cand != n_ref:
        return (f"{n_cand} entries pruned (False), expected exactly {n_ref} = round(sparsity · numel)",
                "prune exactly round(sparsity * numel) entries (Python round), True = keep")
    flat_cand = torch.cat([cand_masks[k].flatten() != 0 for k in ref_masks])
    flat_ref = torch.cat([ref_masks[k].flatten() != 0 for k in ref_masks])
    flat_magnitudes = torch.cat([magnitudes[k].flatten() for k in ref_masks])
    if _pruned_smallest(flat_ref, flat_magnitudes):
        if not _pruned_smallest(flat_cand, flat_magnitudes):
            return ("a pruned entry has a larger |w| than a kept one",
                    "prune the entries with the smallest absolute value |w|")
        return None
    if not torch.equal(flat_cand, flat_ref):  # diagnosing against a wrong variant: require the same mask
        return "masks differ", None
    return None


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def half_zeros(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A Gaussian weight with every other entry exactly 0, as after an earlier pruning (also used by
    global_magnitude_masks)."""
    w = randn(*shape, seed=seed)
    w.view(-1)[::2] = 0.0
    return w


def _float64_pairs(n: int, seed: int) -> torch.Tensor:
    """float64 [2n]: n Gaussian values, then the same values 1e-9 smaller in |w| — equal once rounded to float32."""
    base = randn(n, seed=seed).double()
    return torch.cat([base, base - 1e-9 * base.sign()])


def _build(seed: int, *, shape: tuple[int, ...] = (4, 6), sparsity: float, weight: str = "gaussian"):
    """A weight of ``shape``: Gaussian, shifted down by 1 ("mostly negative"), half zeros, float64 pairs
    (``shape`` = (n,) gives 2n entries), or the fixed ``TIES`` [4, 6]."""
    w = {"gaussian": lambda: randn(*shape, seed=seed), "mostly negative": lambda: randn(*shape, seed=seed) - 1.0,
         "half zeros": lambda: half_zeros(shape, seed), "float64 pairs": lambda: _float64_pairs(shape[0], seed),
         "ties": lambda: TIES.clone()}[weight]()
    return (w, sparsity), {}


def _observe(fn: Callable, args: tuple, kwargs: dict) -> Observation:
    weight, _ = args
    before = tensor_snapshot(weight)
    out = fn(*args, **kwargs)
    return {"mutated": changed(before, weight), "out": out, "magnitudes": before[0].abs()}


def _compare(cand: Observation, ref: Observation):
    out = cand.get("out")
    if isinstance(out, torch.Tensor):
        return compare_masks({"": out}, {"": ref["out"]}, {"": ref["magnitudes"]}, cand.get("mutated"), ref["mutated"])
    if cand.get("mutated") != ref["mutated"]:
        return "the weight was modified", MUTATION_HINT
    return f"expected a bool mask tensor, got {type_name(out)}", None


CASES = [
    *cases(_build, [
        dict(shape=(8, 16), sparsity=0.5),
        dict(shape=(4, 3, 3, 3), sparsity=0.3, note="conv weight"),
        dict(shape=(10,), sparsity=0.25, note="round(2.5) = 2 (Python round, as torch.nn.utils.prune)"),
        dict(shape=(10,), sparsity=0.37, note="round(3.7) = 4 pruned, not int(3.7) = 3"),
        dict(shape=(5, 4), sparsity=0.0, note="nothing pruned"),
        dict(shape=(5, 4), sparsity=1.0, note="everything pruned"),
        dict(sparsity=0.5, weight="ties", note="many equal |w|"),
        dict(shape=(6, 6), sparsity=0.6, weight="mostly negative"),
        dict(shape=(1, 9), sparsity=0.6, note="single row"),
        dict(shape=(10,), sparsity=0.1, note="a single entry pruned"),
        dict(shape=(4, 5), sparsity=0.0, weight="half zeros", note="exact zeros stay: nothing pruned"),
        dict(shape=(4, 5), sparsity=0.7, weight="half zeros", note="the zeros first"),
        dict(shape=(6,), sparsity=0.42, weight="float64 pairs",
             note="|w| that differ below float32 precision: rank in float64"),
    ], observe=_observe, compare=_compare),
    *cases(_build, [dict(shape=(4, 4), sparsity=1.5), dict(shape=(4, 4), sparsity=-0.1)], raises=True),
]

EQUIVALENT_MUTANTS = {
    "line +13, col 40: `True` → `False`":
        "differs only for a weight that is not floating point, outside the exercise's domain (the contract prunes "
        "float weights; the library's TypeError is tested in tests/test_prune.py)",
    "line +15, col 71: `0` → `-1`": "the list holds one mask, so [-1] is [0]",
}


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants below that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _honest(weight, sparsity):
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    k = round(sparsity * weight.numel())
    pruned = torch.topk(weight.abs().flatten(), k, largest=False).indices      # the k smallest |w|
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    mask[pruned] = False
    return mask.view(weight.shape)


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("largest pruned", hint="you pruned the largest weights: magnitude pruning removes the smallest |w| "
                             "(topk(..., largest=False))"
      ).edit(_honest, "largest=False", "largest=True")

wrong("signed values", hint="rank by absolute value |w|: ranking signed values prunes the most negative (important) "
                            "weights"
      ).edit(_honest, "weight.abs().flatten()", "weight.flatten()")

wrong("int() instead of round()", hint="the number pruned is round(sparsity * numel) (Python round, as "
                                       "torch.nn.utils.prune), not int(), which truncates"
      ).edit(_honest, "k = round(sparsity * weight.numel())", "k = int(sparsity * weight.numel())")

wrong("round half up", hint="use Python round (half to even, as torch.nn.utils.prune): round(2.5) = 2, not "
                            "int(x + 0.5) = 3"
      ).edit(_honest, "k = round(sparsity * weight.numel())", "k = int(sparsity * weight.numel() + 0.5)")


@wrong("threshold comparison over-prunes ties",
       hint="`|w| > kth value` prunes every entry tied with the threshold, so the count is too high with ties: select "
            "exactly k indices (topk / argsort) instead")
def threshold_ties(weight, sparsity):
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    k = round(sparsity * weight.numel())
    if k == 0:
        return torch.ones_like(weight, dtype=torch.bool)
    threshold = weight.abs().flatten().kthvalue(k).values
    return weight.abs() > threshold


@wrong("kthvalue with k = 0",
       hint="sparsity 0 means k = 0 and kthvalue(0) fails: return an all-True mask when nothing is pruned")
def kthvalue_zero(weight, sparsity):
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    k = round(sparsity * weight.numel())
    threshold = weight.abs().flatten().kthvalue(k).values
    mask = weight.abs() > threshold
    if int((~mask).sum()) > k:  # ties: keep the extra ones again
        extra = (weight.abs() == threshold).flatten().nonzero().flatten()[: int((~mask).sum()) - k]
        mask.view(-1)[extra] = True
    return mask


wrong("float mask", hint="return a bool mask (True = keep), not a float 0/1 tensor: `.bool()`"
      ).edit(_honest, "return mask.view(weight.shape)", "return mask.view(weight.shape).float()")

wrong("inverted mask", hint="True means keep: the pruned (smallest) entries must be False"
      ).edit(_honest, "return mask.view(weight.shape)", "return ~mask.view(weight.shape)")

wrong("weight modified in place", hint="`weight.abs_()` overwrites the caller's weights: use weight.abs() (out of "
                                       "place)"
      ).edit(_honest, "weight.abs().flatten()", "weight.abs_().flatten()")

wrong("sparsity not validated", hint="raise ValueError when sparsity is outside [0, 1] (do not clamp it silently)"
      ).edit(_honest, '''    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    k = round(sparsity * weight.numel())''', "    k = min(max(round(sparsity * weight.numel()), 0), weight.numel())")


@wrong("row-wise pruning", hint="prune over the whole tensor (one threshold for all entries), not row by row")
def row_wise(weight, sparsity):
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    rows = weight.reshape(weight.shape[0], -1) if weight.dim() > 1 else weight.reshape(1, -1)
    k = round(sparsity * rows.shape[1])
    idx = torch.topk(rows.abs(), k, dim=1, largest=False).indices
    mask = torch.ones_like(rows, dtype=torch.bool).scatter(1, idx, False)
    return mask.view(weight.shape)


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("topk")
def ok_topk(weight, sparsity):
    if not 0 <= sparsity <= 1:
        raise ValueError("sparsity must be in [0, 1]")
    k = round(sparsity * weight.numel())
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    if k > 0:
        mask[torch.topk(weight.abs().flatten(), k, largest=False).indices] = False
    return mask.reshape(weight.shape)


@correct("stable argsort")
def ok_sort(weight, sparsity):
    if not 0 <= sparsity <= 1:
        raise ValueError("sparsity must be in [0, 1]")
    k = round(sparsity * weight.numel())
    order = torch.argsort(weight.abs().flatten(), stable=True)
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    mask[order[:k]] = False
    return mask.view_as(weight)


class Holder(nn.Module):
    """A module holding one weight, for torch.nn.utils.prune (shared with global_magnitude_masks)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())


@correct("torch.nn.utils.prune.l1_unstructured")
def ok_torch_prune(weight, sparsity):
    if not 0 <= sparsity <= 1:
        raise ValueError("sparsity must be in [0, 1]")
    holder = Holder(weight)
    torch_prune.l1_unstructured(holder, "weight", amount=float(sparsity))
    return holder.weight_mask.bool()
