"""global_magnitude_masks — global magnitude pruning, one threshold over all tensors. Taught in notebook 05;
reference ``kdcore.prune.global_magnitude_masks``.

Contract (docs/EXERCISES.md): ``weights: dict[str, Tensor]`` → a dict of bool masks with the same keys and shapes
(True = keep); one threshold over all tensors together; exactly ``round(sparsity·total)`` pruned in total, the
smallest ``|w|`` (any order among ties); matches ``torch.nn.utils.prune.global_unstructured`` with
``L1Unstructured`` on untied inputs; the weights are not modified; sparsity outside [0, 1] raises ValueError.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.nn.utils import prune as torch_prune

from kdcore.checking.cases import cases, randn
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import MUTATION_HINT, Observation, changed, compare_values, tensor_snapshot, type_name
from kdcore.exercises.magnitude_mask import TIES, Holder, compare_masks, half_zeros, ok_topk


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
# the dicts of weights a case prunes, by the name it shows: {name: (shape, scale)}, or the fixed ties
_LAYERS = {
    "two layers of different scales": {"fc1.weight": ((8, 6), 0.1), "fc2.weight": ((4, 8), 1.0)},
    "conv + fc + out": {"conv.weight": ((4, 2, 3, 3), 0.5), "fc.weight": ((5, 7), 1.0),
                             "out.weight": ((3, 5), 2.0)},
    "[3, 5] and [10]": {"a": ((3, 5), 1.0), "b": ((10,), 1.0)},
    "[3] and [2, 5]": {"a": ((3,), 3.0), "b": ((2, 5), 1.0)},
    "one tensor [6, 5]": {"w": ((6, 5), 1.0)},
}


def _build(seed: int, *, weights: str, sparsity: float):
    """Gaussian tensors as listed in ``_LAYERS[weights]`` (each with its own seed); ``"ties"``: TIES split in two;
    ``"uneven ties"``: |w| = 1 twice in the first tensor, four times in the second; ``"half zeros"``: two tensors with
    every other entry exactly 0."""
    if weights == "ties":
        return ({"a": TIES[:2].clone(), "b": TIES[2:].clone() * -1}, sparsity), {}
    if weights == "uneven ties":
        return ({"a": torch.tensor([1.0, -1.0, 3.0]), "b": torch.tensor([1.0, 1.0, -1.0, 1.0, 2.0, 3.0])}, sparsity), {}
    if weights == "half zeros":
        return ({"fc1.weight": half_zeros((6, 4), seed), "fc2.weight": half_zeros((3, 6), seed + 1)}, sparsity), {}
    tensors = {name: randn(*shape, seed=seed + i, scale=scale)
               for i, (name, (shape, scale)) in enumerate(_LAYERS[weights].items())}
    return (tensors, sparsity), {}


def _observe(fn: Callable, args: tuple, kwargs: dict) -> Observation:
    weights, _ = args
    before = tensor_snapshot(*weights.values())
    out = fn(*args, **kwargs)
    return {"mutated": changed(before, *weights.values()), "out": out,
            "magnitudes": {name: b.abs() for name, b in zip(weights, before)}}


def _compare(cand: Observation, ref: Observation):
    out = cand.get("out")
    if cand.get("mutated") != ref["mutated"]:
        return "a weight was modified", MUTATION_HINT
    if not isinstance(ref["out"], dict):  # diagnosing against a variant that returned something else
        return compare_values(out, ref["out"], what="masks")
    if not isinstance(out, dict) or "__type__" in out:
        return f"expected a dict of masks, got {type_name(out)}", "return {name: mask} with the same keys as `weights`"
    if set(out) != set(ref["out"]):
        return (f"keys differ: expected {sorted(ref['out'])}, got {sorted(out)}",
                "return one mask per entry of `weights`, under the same name")
    return compare_masks(out, ref["out"], ref["magnitudes"], cand.get("mutated"), ref["mutated"])


CASES = [
    *cases(_build, [
        dict(weights="two layers of different scales", sparsity=0.5),
        dict(weights="conv + fc + out", sparsity=0.8),
        dict(weights="two layers of different scales", sparsity=0.0, note="nothing pruned"),
        dict(weights="two layers of different scales", sparsity=1.0, note="everything pruned"),
        dict(weights="[3, 5] and [10]", sparsity=0.5, note="round(12.5) = 12 pruned"),
        dict(weights="[3] and [2, 5]", sparsity=0.39, note="round(5.07) = 5, not rounded per layer"),
        dict(weights="one tensor [6, 5]", sparsity=0.3, note="same as magnitude_mask"),
        dict(weights="ties", sparsity=0.5, note="equal |w| across tensors"),
        dict(weights="uneven ties", sparsity=0.45,
             note="the 6 entries with |w| = 1 span both tensors; 4 of them are pruned"),
        dict(weights="half zeros", sparsity=0.0, note="exact zeros stay: nothing pruned"),
    ], observe=_observe, compare=_compare),
    *cases(_build, [dict(weights="two layers of different scales", sparsity=2.0)], raises=True),
]

EQUIVALENT_MUTANTS = {
    "line +16, col 23: `0` → `-1`":
        "differs only for an empty dict, outside the exercise's domain (the contract prunes at least one tensor; the "
        "library's ValueError is tested in tests/test_prune.py)",
    "line +19, col 51: `True` → `False`":
        "differs only for a weight that is not floating point, outside the exercise's domain (the contract prunes "
        "float weights; the library's TypeError is tested in tests/test_prune.py)",
}


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants below that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _honest(weights, sparsity):
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    scores = torch.cat([w.abs().flatten() for w in weights.values()])          # all |w| together: one threshold
    k = round(sparsity * scores.numel())
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    keep[torch.topk(scores, k, largest=False).indices] = False
    masks, start = {}, 0
    for name, w in weights.items():                                             # cut the flat mask back per tensor
        masks[name] = keep[start:start + w.numel()].view(w.shape)
        start += w.numel()
    return masks


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
@wrong("layer-wise instead of global", hint="global pruning uses one threshold over all tensors together "
                                            "(concatenate |w|), not the same sparsity in every layer")
def layer_wise(weights, sparsity):
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    return {name: ok_topk(w, sparsity) for name, w in weights.items()}


wrong("largest pruned", hint="prune the smallest |w|, not the largest").edit(_honest, "largest=False", "largest=True")

wrong("signed values", hint="rank by |w|, not by the signed value").edit(_honest, "w.abs().flatten()", "w.flatten()")

wrong("int() instead of round()", hint="prune round(sparsity * total) entries (Python round), not int(), which "
                                       "truncates"
      ).edit(_honest, "k = round(sparsity * scores.numel())", "k = int(sparsity * scores.numel())")

wrong("float masks", hint="return bool masks (True = keep), not float 0/1 tensors"
      ).edit(_honest, ".view(w.shape)", ".view(w.shape).float()")

wrong("weights modified in place", hint="`.abs_()` overwrites the caller's weights: use .abs()"
      ).edit(_honest, "w.abs().flatten()", "w.abs_().flatten()")

wrong("list instead of dict", hint="return a dict {name: mask} with the same keys as `weights`"
      ).edit(_honest, "return masks", "return list(masks.values())")

wrong("per-layer normalised magnitudes", hint="global magnitude pruning ranks the raw |w|; dividing by each layer's "
                                              "maximum is another method"
      ).edit(_honest, "w.abs().flatten()", "(w.abs() / w.abs().max()).flatten()")

wrong("flat masks", hint="reshape each mask to its tensor's shape (`.view_as(w)`)"
      ).edit(_honest, "keep[start:start + w.numel()].view(w.shape)", "keep[start:start + w.numel()]")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("cat + topk")
def ok_cat_topk(weights, sparsity):
    if not 0 <= sparsity <= 1:
        raise ValueError("sparsity must be in [0, 1]")
    flat = torch.cat([w.detach().abs().reshape(-1) for w in weights.values()])
    k = round(sparsity * flat.numel())
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k:
        keep[flat.topk(k, largest=False).indices] = False
    return {name: part.view_as(w) for (name, w), part in
            zip(weights.items(), keep.split([w.numel() for w in weights.values()]))}


@correct("torch.nn.utils.prune.global_unstructured")
def ok_torch_prune(weights, sparsity):
    if not 0 <= sparsity <= 1:
        raise ValueError("sparsity must be in [0, 1]")
    holders = {name: Holder(w) for name, w in weights.items()}
    torch_prune.global_unstructured([(h, "weight") for h in holders.values()],
                                    pruning_method=torch_prune.L1Unstructured, amount=float(sparsity))
    return {name: h.weight_mask.bool() for name, h in holders.items()}
