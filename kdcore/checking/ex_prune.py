"""Cases and misconception catalogue of the pruning exercises (notebooks 05-06)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as tprune

from .cases import call_case, randn, raises_case
from .core import (Case, Exercise, Observation, Variant, changed, compare_values, grads, module_state,
                   register, tensor_snapshot, type_name, MUTATION_HINT)


# ===================================================================================================
# magnitude masks: tie-robust comparison
# ===================================================================================================
def _n_pruned(mask: torch.Tensor) -> int:
    return int((mask == 0).sum())


def _valid(mask: torch.Tensor, absw: torch.Tensor) -> bool:
    """Every pruned |w| <= every kept |w| (whatever the tie order)."""
    keep = mask != 0
    if keep.all() or (~keep).all():
        return True
    return bool(absw[~keep].max() <= absw[keep].min())


def _compare_one_mask(cand: object, ref: torch.Tensor, absw: torch.Tensor, what: str):
    if not isinstance(cand, torch.Tensor):
        return f"{what}: expected a tensor mask, got {type_name(cand)}", None
    if cand.shape != ref.shape:
        return (f"{what}: expected shape {tuple(ref.shape)}, got {tuple(cand.shape)}",
                "the mask has the weight's shape (reshape a flat mask back with .view(weight.shape))")
    if (cand.dtype == torch.bool) != (ref.dtype == torch.bool):
        return (f"{what}: expected a bool mask, got dtype {str(cand.dtype).replace('torch.', '')}",
                "return a bool tensor, True = keep (e.g. `weight.abs() > threshold` or `mask.bool()`)")
    return None


def _compare_masks(cand_masks: dict, ref_masks: dict, absw: dict, cand_mutated, ref_mutated):
    if cand_mutated != ref_mutated:
        return "the weight was modified", MUTATION_HINT
    for name, ref in ref_masks.items():
        failure = _compare_one_mask(cand_masks.get(name), ref, absw[name], f"mask {name!r}" if name else "mask")
        if failure:
            return failure
    n_c = sum(_n_pruned(m) for m in cand_masks.values())
    n_r = sum(_n_pruned(m) for m in ref_masks.values())
    if n_c != n_r:
        return (f"{n_c} entries pruned (False), expected exactly {n_r} = round(sparsity · numel)",
                "prune exactly round(sparsity * numel) entries (Python round), True = keep")
    flat_c = torch.cat([cand_masks[k].flatten() != 0 for k in ref_masks])
    flat_r = torch.cat([ref_masks[k].flatten() != 0 for k in ref_masks])
    flat_w = torch.cat([absw[k].flatten() for k in ref_masks])
    if _valid(flat_r, flat_w):
        if not _valid(flat_c, flat_w):
            return ("a pruned entry has a larger |w| than a kept one",
                    "prune the entries with the smallest absolute value |w|")
        return None
    if not torch.equal(flat_c, flat_r):  # diagnosing against a wrong variant: require the same mask
        return "masks differ", None
    return None


def _mask_case(name: str, build) -> Case:
    """build() -> (weight, sparsity)."""
    def observe(fn):
        weight, sparsity = build()
        before = tensor_snapshot(weight)
        out = fn(weight, sparsity)
        return {"mutated": changed(before, weight), "out": out, "absw": before[0].abs()}

    def compare(cand: Observation, ref: Observation):
        out = cand.get("out")
        if isinstance(out, torch.Tensor):
            return _compare_masks({"": out}, {"": ref["out"]}, {"": ref["absw"]}, cand.get("mutated"),
                                  ref["mutated"])
        if cand.get("mutated") != ref["mutated"]:
            return "the weight was modified", MUTATION_HINT
        return f"expected a bool mask tensor, got {type_name(out)}", None
    return Case(name, observe, compare)


_TIES = torch.tensor([[-1.0, 1.0, 2.0, -2.0, 3.0, 1.0], [2.0, -1.0, -3.0, 1.0, -2.0, 2.0],
                      [1.0, 3.0, -1.0, 2.0, -1.0, -3.0], [-2.0, 2.0, 1.0, -1.0, 3.0, 1.0]])


def _mm_cases() -> list[Case]:
    return [
        _mask_case("random [8, 16], sparsity 0.5", lambda: (randn(8, 16, seed=101), 0.5)),
        _mask_case("conv weight [4, 3, 3, 3], sparsity 0.3", lambda: (randn(4, 3, 3, 3, seed=102), 0.3)),
        _mask_case("10 entries, sparsity 0.25: round(2.5) = 2 (Python round, as torch.nn.utils.prune)",
                   lambda: (randn(10, seed=103), 0.25)),
        _mask_case("10 entries, sparsity 0.37: round(3.7) = 4 pruned, not int(3.7) = 3",
                   lambda: (randn(10, seed=104), 0.37)),
        _mask_case("sparsity 0: nothing pruned", lambda: (randn(5, 4, seed=105), 0.0)),
        _mask_case("sparsity 1: everything pruned", lambda: (randn(5, 4, seed=106), 1.0)),
        _mask_case("ties: many equal |w|, sparsity 0.5", lambda: (_TIES.clone(), 0.5)),
        _mask_case("mostly negative weights [6, 6], sparsity 0.6", lambda: (randn(6, 6, seed=107) - 1.0, 0.6)),
        _mask_case("single row [1, 9], sparsity 0.6", lambda: (randn(1, 9, seed=108), 0.6)),
        raises_case("sparsity 1.5 raises ValueError", lambda: ((randn(4, 4, seed=109), 1.5), {})),
        raises_case("sparsity -0.1 raises ValueError", lambda: ((randn(4, 4, seed=109), -0.1), {})),
    ]


def _check_s(sparsity):
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")


def _keep_from_idx(weight, idx):
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    mask[idx] = False
    return mask.view(weight.shape)


def _mm_smallest(weight, k):
    return torch.topk(weight.abs().flatten(), k, largest=False).indices


def _mm_largest(weight, sparsity):
    _check_s(sparsity)
    k = round(sparsity * weight.numel())
    return _keep_from_idx(weight, torch.topk(weight.abs().flatten(), k, largest=True).indices)


def _mm_signed(weight, sparsity):
    _check_s(sparsity)
    k = round(sparsity * weight.numel())
    return _keep_from_idx(weight, torch.topk(weight.flatten(), k, largest=False).indices)


def _mm_int(weight, sparsity):
    _check_s(sparsity)
    k = int(sparsity * weight.numel())
    return _keep_from_idx(weight, _mm_smallest(weight, k))


def _mm_half_up(weight, sparsity):
    _check_s(sparsity)
    k = int(sparsity * weight.numel() + 0.5)
    return _keep_from_idx(weight, _mm_smallest(weight, k))


def _mm_threshold_ties(weight, sparsity):
    _check_s(sparsity)
    k = round(sparsity * weight.numel())
    if k == 0:
        return torch.ones_like(weight, dtype=torch.bool)
    threshold = weight.abs().flatten().kthvalue(k).values
    return weight.abs() > threshold


def _mm_kthvalue_zero(weight, sparsity):
    _check_s(sparsity)
    k = round(sparsity * weight.numel())
    threshold = weight.abs().flatten().kthvalue(k).values
    mask = weight.abs() > threshold
    if int((~mask).sum()) > k:  # ties: keep the extra ones again
        extra = (weight.abs() == threshold).flatten().nonzero().flatten()[: int((~mask).sum()) - k]
        mask.view(-1)[extra] = True
    return mask


def _mm_float(weight, sparsity):
    _check_s(sparsity)
    k = round(sparsity * weight.numel())
    return _keep_from_idx(weight, _mm_smallest(weight, k)).float()


def _mm_inverted(weight, sparsity):
    _check_s(sparsity)
    k = round(sparsity * weight.numel())
    return ~_keep_from_idx(weight, _mm_smallest(weight, k))


def _mm_inplace(weight, sparsity):
    _check_s(sparsity)
    k = round(sparsity * weight.numel())
    w = weight.abs_()
    return _keep_from_idx(w, _mm_smallest(w, k))


def _mm_no_check(weight, sparsity):
    k = min(max(round(sparsity * weight.numel()), 0), weight.numel())
    return _keep_from_idx(weight, _mm_smallest(weight, k))


def _mm_rowwise(weight, sparsity):
    _check_s(sparsity)
    w2 = weight.reshape(weight.shape[0], -1) if weight.dim() > 1 else weight.reshape(1, -1)
    k = round(sparsity * w2.shape[1])
    idx = torch.topk(w2.abs(), k, dim=1, largest=False).indices
    mask = torch.ones_like(w2, dtype=torch.bool).scatter(1, idx, False)
    return mask.view(weight.shape)


def _mm_ok_topk(weight, sparsity):
    if not 0 <= sparsity <= 1:
        raise ValueError("sparsity must be in [0, 1]")
    k = round(sparsity * weight.numel())
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    if k > 0:
        mask[torch.topk(weight.abs().flatten(), k, largest=False).indices] = False
    return mask.reshape(weight.shape)


def _mm_ok_sort(weight, sparsity):
    _check_s(sparsity)
    k = round(sparsity * weight.numel())
    order = torch.argsort(weight.abs().flatten(), stable=True)
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    mask[order[:k]] = False
    return mask.view_as(weight)


class _Holder(nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())


def _mm_ok_torch_prune(weight, sparsity):
    _check_s(sparsity)
    holder = _Holder(weight)
    tprune.l1_unstructured(holder, "weight", amount=float(sparsity))
    return holder.weight_mask.bool()


register(
    Exercise("magnitude_mask", "05", "magnitude_mask(weight, sparsity)", _mm_cases(), "kdcore.prune.magnitude_mask",
             "bool keep-mask pruning exactly round(sparsity·numel) smallest |w|"),
    wrong=[
        Variant("largest pruned", _mm_largest,
                "you pruned the largest weights: magnitude pruning removes the smallest |w| (topk(..., largest=False))"),
        Variant("signed values", _mm_signed,
                "rank by absolute value |w|: ranking signed values prunes the most negative (important) weights"),
        Variant("int() instead of round()", _mm_int,
                "the number pruned is round(sparsity * numel) (Python round, as torch.nn.utils.prune), not int(), "
                "which truncates"),
        Variant("round half up", _mm_half_up,
                "use Python round (half to even, as torch.nn.utils.prune): round(2.5) = 2, not int(x + 0.5) = 3"),
        Variant("threshold comparison over-prunes ties", _mm_threshold_ties,
                "`|w| > kth value` prunes every entry tied with the threshold, so the count is too high with ties: "
                "select exactly k indices (topk / argsort) instead"),
        Variant("kthvalue with k = 0", _mm_kthvalue_zero,
                "sparsity 0 means k = 0 and kthvalue(0) fails: return an all-True mask when nothing is pruned"),
        Variant("float mask", _mm_float, "return a bool mask (True = keep), not a float 0/1 tensor: `.bool()`"),
        Variant("inverted mask", _mm_inverted, "True means keep: the pruned (smallest) entries must be False"),
        Variant("weight modified in place", _mm_inplace,
                "`weight.abs_()` overwrites the caller's weights: use weight.abs() (out of place)"),
        Variant("sparsity not validated", _mm_no_check,
                "raise ValueError when sparsity is outside [0, 1] (do not clamp it silently)"),
        Variant("row-wise pruning", _mm_rowwise,
                "prune over the whole tensor (one threshold for all entries), not row by row"),
    ],
    correct=[Variant("topk", _mm_ok_topk, ""), Variant("stable argsort", _mm_ok_sort, ""),
             Variant("torch.nn.utils.prune.l1_unstructured", _mm_ok_torch_prune, "")],
)


# ===================================================================================================
# global_magnitude_masks
# ===================================================================================================
def _global_case(name: str, build) -> Case:
    def observe(fn):
        weights, sparsity = build()
        before = tensor_snapshot(*weights.values())
        out = fn(weights, sparsity)
        return {"mutated": changed(before, *weights.values()), "out": out,
                "absw": {k: b.abs() for k, b in zip(weights, before)}}

    def compare(cand: Observation, ref: Observation):
        out = cand.get("out")
        if cand.get("mutated") != ref["mutated"]:
            return "a weight was modified", MUTATION_HINT
        if not isinstance(ref["out"], dict):  # diagnosing against a variant that returned something else
            return compare_values(out, ref["out"], what="masks")
        if not isinstance(out, dict) or "__type__" in out:
            return (f"expected a dict of masks, got {type_name(out)}",
                    "return {name: mask} with the same keys as `weights`")
        if set(out) != set(ref["out"]):
            return (f"keys differ: expected {sorted(ref['out'])}, got {sorted(out)}",
                    "return one mask per entry of `weights`, under the same name")
        return _compare_masks(out, ref["out"], ref["absw"], cand.get("mutated"), ref["mutated"])
    return Case(name, observe, compare)


def _two_layers(seed):
    return {"fc1.weight": randn(8, 6, seed=seed, scale=0.1), "fc2.weight": randn(4, 8, seed=seed + 1)}


def _gm_cases() -> list[Case]:
    return [
        _global_case("two layers of different scales, sparsity 0.5", lambda: (_two_layers(111), 0.5)),
        _global_case("linear + conv tensors, sparsity 0.8",
                     lambda: ({"conv.weight": randn(4, 2, 3, 3, seed=112, scale=0.5),
                               "fc.weight": randn(5, 7, seed=113), "out.weight": randn(3, 5, seed=114, scale=2)},
                              0.8)),
        _global_case("sparsity 0: nothing pruned", lambda: (_two_layers(115), 0.0)),
        _global_case("sparsity 1: everything pruned", lambda: (_two_layers(116), 1.0)),
        _global_case("25 weights, sparsity 0.5: round(12.5) = 12 pruned",
                     lambda: ({"a": randn(3, 5, seed=117), "b": randn(10, seed=118)}, 0.5)),
        _global_case("tensors of 3 and 10 entries, sparsity 0.39: round(5.07) = 5, not per-layer rounding",
                     lambda: ({"a": randn(3, seed=119, scale=3), "b": randn(2, 5, seed=120)}, 0.39)),
        _global_case("single tensor (same as magnitude_mask), sparsity 0.3",
                     lambda: ({"w": randn(6, 5, seed=121)}, 0.3)),
        _global_case("ties across tensors, sparsity 0.5",
                     lambda: ({"a": _TIES[:2].clone(), "b": _TIES[2:].clone() * -1}, 0.5)),
        raises_case("sparsity 2.0 raises ValueError", lambda: ((_two_layers(122), 2.0), {})),
    ]


def _gm_select(weights, k, score=lambda w: w.abs(), largest=False):
    flat = torch.cat([score(w).flatten() for w in weights.values()])
    idx = torch.topk(flat, k, largest=largest).indices
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[idx] = False
    out, start = {}, 0
    for name, w in weights.items():
        out[name] = keep[start:start + w.numel()].view(w.shape)
        start += w.numel()
    return out


def _gm_total(weights, sparsity, rounding=round):
    _check_s(sparsity)
    return rounding(sparsity * sum(w.numel() for w in weights.values()))


def _gm_layerwise(weights, sparsity):
    _check_s(sparsity)
    return {name: _mm_ok_topk(w, sparsity) for name, w in weights.items()}


def _gm_largest(weights, sparsity):
    return _gm_select(weights, _gm_total(weights, sparsity), largest=True)


def _gm_signed(weights, sparsity):
    return _gm_select(weights, _gm_total(weights, sparsity), score=lambda w: w)


def _gm_int(weights, sparsity):
    return _gm_select(weights, _gm_total(weights, sparsity, int))


def _gm_float(weights, sparsity):
    return {k: m.float() for k, m in _gm_select(weights, _gm_total(weights, sparsity)).items()}


def _gm_inplace(weights, sparsity):
    k = _gm_total(weights, sparsity)
    for w in weights.values():
        w.abs_()
    return _gm_select(weights, k)


def _gm_list(weights, sparsity):
    return list(_gm_select(weights, _gm_total(weights, sparsity)).values())


def _gm_normalised(weights, sparsity):
    return _gm_select(weights, _gm_total(weights, sparsity), score=lambda w: w.abs() / w.abs().max())


def _gm_flat(weights, sparsity):
    return {k: m.flatten() for k, m in _gm_select(weights, _gm_total(weights, sparsity)).items()}


def _gm_ok_topk(weights, sparsity):
    if not 0 <= sparsity <= 1:
        raise ValueError("sparsity must be in [0, 1]")
    flat = torch.cat([w.detach().abs().reshape(-1) for w in weights.values()])
    k = round(sparsity * flat.numel())
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k:
        keep[flat.topk(k, largest=False).indices] = False
    return {name: part.view_as(w) for (name, w), part in
            zip(weights.items(), keep.split([w.numel() for w in weights.values()]))}


def _gm_ok_torch_prune(weights, sparsity):
    _check_s(sparsity)
    holders = {name: _Holder(w) for name, w in weights.items()}
    tprune.global_unstructured([(h, "weight") for h in holders.values()], pruning_method=tprune.L1Unstructured,
                               amount=float(sparsity))
    return {name: h.weight_mask.bool() for name, h in holders.items()}


register(
    Exercise("global_magnitude_masks", "05", "global_magnitude_masks(weights, sparsity)", _gm_cases(),
             "kdcore.prune.global_magnitude_masks", "one threshold over all tensors; round(sparsity·total) pruned"),
    wrong=[
        Variant("layer-wise instead of global", _gm_layerwise,
                "global pruning uses one threshold over all tensors together (concatenate |w|), not the same "
                "sparsity in every layer"),
        Variant("largest pruned", _gm_largest, "prune the smallest |w|, not the largest"),
        Variant("signed values", _gm_signed, "rank by |w|, not by the signed value"),
        Variant("int() instead of round()", _gm_int,
                "prune round(sparsity * total) entries (Python round), not int(), which truncates"),
        Variant("float masks", _gm_float, "return bool masks (True = keep), not float 0/1 tensors"),
        Variant("weights modified in place", _gm_inplace, "`.abs_()` overwrites the caller's weights: use .abs()"),
        Variant("list instead of dict", _gm_list, "return a dict {name: mask} with the same keys as `weights`"),
        Variant("per-layer normalised magnitudes", _gm_normalised,
                "global magnitude pruning ranks the raw |w|; dividing by each layer's maximum is another method"),
        Variant("flat masks", _gm_flat, "reshape each mask to its tensor's shape (`.view_as(w)`)"),
    ],
    correct=[Variant("cat + topk", _gm_ok_topk, ""),
             Variant("torch.nn.utils.prune.global_unstructured", _gm_ok_torch_prune, "")],
)


# ===================================================================================================
# prune_neurons
# ===================================================================================================
def _pn_build(seed: int, n_in: int, hidden: int, n_out: int, ties: bool = False):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fc1, fc2 = nn.Linear(n_in, hidden), nn.Linear(hidden, n_out)
        x = torch.randn(5, n_in)
    if ties:  # rows 1, 3, 4 and 6 share one L1 norm (permuted / sign-flipped copies of row 1)
        with torch.no_grad():
            base = fc1.weight[1].clone()
            base[0] = base.abs().max() * 3
            fc1.weight[1] = base
            fc1.weight[3] = -base.flip(0)
            fc1.weight[4] = base.roll(1)
            fc1.weight[6] = -base
    return fc1, fc2, x


def _pn_case(name: str, seed: int, n_in: int, hidden: int, n_out: int, keep: int, ties: bool = False) -> Case:
    def observe(fn):
        fc1, fc2, x = _pn_build(seed, n_in, hidden, n_out, ties)
        before = [module_state(fc1), module_state(fc2)]
        out = fn(fc1, fc2, keep)
        obs: Observation = {
            "mutated": any(not torch.equal(before[i][k], v) for i, m in enumerate((fc1, fc2))
                           for k, v in module_state(m).items()) or fc1.out_features != hidden,
        }
        if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(m, nn.Linear) for m in out)):
            obs["types"] = type_name(out) if not isinstance(out, (tuple, list)) else \
                "(" + ", ".join(type(m).__name__ for m in out) + ")"
            return obs
        new1, new2 = out
        obs["types"] = "(Linear, Linear)"
        obs["new_objects"] = new1 is not fc1 and new2 is not fc2
        obs["fc1.weight"] = new1.weight
        obs["fc1.bias"] = new1.bias
        obs["fc2.weight"] = new2.weight
        obs["fc2.bias"] = new2.bias
        with torch.no_grad():
            obs["output"] = new2(F.relu(new1(x)))
        return obs

    def compare(cand: Observation, ref: Observation):
        if cand.get("mutated") != ref["mutated"]:
            return "fc1 or fc2 was modified", ("build new nn.Linear layers and copy the kept rows/columns "
                                               "into them; leave fc1 and fc2 unchanged")
        if cand.get("types") != ref["types"]:
            return f"expected a pair (new_fc1, new_fc2) of nn.Linear, got {cand.get('types')}", None
        if cand.get("new_objects") != ref["new_objects"]:
            return "returned the input layers themselves", "return new, physically smaller nn.Linear layers"
        for key in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "output"):
            failure = compare_values(cand.get(key), ref[key], what=key, rtol=1e-6, atol=1e-7, check_dtype="none")
            if failure:
                return failure[0], None
        return None
    return Case(name, observe, compare)


def _pn_cases() -> list[Case]:
    return [
        _pn_case("6 → 10 → 4, keep 5", 131, 6, 10, 4, 5),
        _pn_case("16 → 32 → 8, keep 12", 132, 16, 32, 8, 12),
        _pn_case("keep all 7 neurons (nothing removed)", 133, 5, 7, 3, 7),
        _pn_case("keep a single neuron", 134, 4, 6, 3, 1),
        _pn_case("ties in the L1 norms: lower index wins, keep 3", 135, 6, 8, 3, 3, ties=True),
    ]


def _pn_from_idx(fc1, fc2, idx, *, bias1=True, bias2=True):
    new1 = nn.Linear(fc1.in_features, len(idx), bias=bias1)
    new2 = nn.Linear(len(idx), fc2.out_features, bias=bias2)
    with torch.no_grad():
        new1.weight.copy_(fc1.weight[idx])
        if bias1:
            new1.bias.copy_(fc1.bias[idx])
        new2.weight.copy_(fc2.weight[:, idx])
        if bias2:
            new2.bias.copy_(fc2.bias)
    return new1, new2


def _pn_top(scores, keep):
    return torch.sort(scores, descending=True, stable=True).indices[:keep].sort().values


def _pn_l2(fc1, fc2, keep):
    return _pn_from_idx(fc1, fc2, _pn_top(fc1.weight.detach().norm(dim=1), keep))


def _pn_smallest(fc1, fc2, keep):
    return _pn_from_idx(fc1, fc2, torch.sort(fc1.weight.detach().abs().sum(1), stable=True).indices[:keep].sort().values)


def _pn_signed(fc1, fc2, keep):
    return _pn_from_idx(fc1, fc2, _pn_top(fc1.weight.detach().sum(1), keep))


def _pn_norm_order(fc1, fc2, keep):
    return _pn_from_idx(fc1, fc2, torch.sort(fc1.weight.detach().abs().sum(1), descending=True, stable=True).indices[:keep])


def _pn_no_bias1(fc1, fc2, keep):
    return _pn_from_idx(fc1, fc2, _pn_top(fc1.weight.detach().abs().sum(1), keep), bias1=False)


def _pn_no_bias2(fc1, fc2, keep):
    return _pn_from_idx(fc1, fc2, _pn_top(fc1.weight.detach().abs().sum(1), keep), bias2=False)


def _pn_fc2_rows(fc1, fc2, keep):
    idx = _pn_top(fc1.weight.detach().abs().sum(1), keep)
    new1, new2 = _pn_from_idx(fc1, fc2, idx)
    new2.weight = nn.Parameter(fc2.weight.detach()[idx])
    return new1, new2


def _pn_ties_high(fc1, fc2, keep):
    norms = fc1.weight.detach().abs().sum(1)
    return _pn_from_idx(fc1, fc2, torch.argsort(norms, stable=True)[-keep:].sort().values)


def _pn_inplace(fc1, fc2, keep):
    idx = _pn_top(fc1.weight.detach().abs().sum(1), keep)
    fc1.weight = nn.Parameter(fc1.weight.detach()[idx])
    fc1.bias = nn.Parameter(fc1.bias.detach()[idx])
    fc1.out_features = keep
    fc2.weight = nn.Parameter(fc2.weight.detach()[:, idx])
    fc2.in_features = keep
    return fc1, fc2


def _pn_ok_sorted(fc1, fc2, keep):
    norms = fc1.weight.abs().sum(dim=1).tolist()
    idx = sorted(sorted(range(len(norms)), key=lambda i: (-norms[i], i))[:keep])
    return _pn_from_idx(fc1, fc2, torch.tensor(idx))


def _pn_ok_data(fc1, fc2, keep):
    norms = fc1.weight.data.abs().sum(1)
    idx = torch.argsort(-norms, stable=True)[:keep].sort().values
    new1, new2 = nn.Linear(fc1.in_features, keep), nn.Linear(keep, fc2.out_features)
    new1.weight.data = fc1.weight.data[idx].clone()
    new1.bias.data = fc1.bias.data[idx].clone()
    new2.weight.data = fc2.weight.data[:, idx].clone()
    new2.bias.data = fc2.bias.data.clone()
    return new1, new2


register(
    Exercise("prune_neurons", "05", "prune_neurons(fc1, fc2, keep)", _pn_cases(), "kdcore.prune.prune_neurons",
             "keep the `keep` largest-L1 fc1 rows (ties → lower index), new smaller fc1/fc2 in original order"),
    wrong=[
        Variant("L2 norm", _pn_l2, "rank neurons by the L1 norm of their fc1 row (.abs().sum(1)), not the L2 norm"),
        Variant("smallest kept", _pn_smallest, "keep the neurons with the *largest* L1 norm"),
        Variant("signed sum", _pn_signed, "use the L1 norm: sum of |w| over the row, not the signed sum"),
        Variant("norm order instead of original order", _pn_norm_order,
                "keep the neurons in their original order (sort the kept indices)"),
        Variant("fc1 bias dropped", _pn_no_bias1, "keep fc1's bias entries of the kept neurons"),
        Variant("fc2 bias dropped", _pn_no_bias2, "fc2 keeps its whole bias (its outputs are not pruned)"),
        Variant("fc2 rows instead of columns", _pn_fc2_rows,
                "fc2's weight is [out, hidden]: slice its columns (fc2.weight[:, idx]), not its rows"),
        Variant("ties resolved to the higher index", _pn_ties_high,
                "on equal L1 norms keep the lower index (use a stable sort: torch.sort(..., stable=True))"),
        Variant("layers modified in place", _pn_inplace,
                "do not modify fc1/fc2: build and return new nn.Linear layers"),
    ],
    correct=[Variant("python sort", _pn_ok_sorted, ""), Variant(".data assignment", _pn_ok_data, "")],
)


# ===================================================================================================
# sparsity_schedule
# ===================================================================================================
def _sched_case(name: str, *args) -> Case:
    return call_case(name, lambda: (args, {}), rtol=1e-6, atol=1e-9)


def _sched_cases() -> list[Case]:
    return [
        _sched_case("step = t0: s_initial", 0, 0.0, 0.9, 0, 10, 100),
        _sched_case("first event: step 100 of 0..1000", 100, 0.0, 0.9, 0, 10, 100),
        _sched_case("half-way: step 500 of 0..1000", 500, 0.0, 0.9, 0, 10, 100),
        _sched_case("end: step = t0 + n·dt", 1000, 0.0, 0.9, 0, 10, 100),
        _sched_case("before t0 (clamped): step 50, t0 200", 50, 0.1, 0.9, 200, 10, 100),
        _sched_case("after the end (clamped): step 5000", 5000, 0.1, 0.9, 200, 10, 100),
        _sched_case("s_initial 0.2 → s_final 0.8, t0 100, n 5, dt 20, step 150", 150, 0.2, 0.8, 100, 5, 20),
        _sched_case("dt = 1, n = 8, step 3", 3, 0.0, 0.5, 0, 8, 1),
        _sched_case("between two events: step 250, dt 100", 250, 0.05, 0.95, 0, 10, 100),
    ]


def _frac(step, t0, n, dt):
    return (min(max(step, t0), t0 + n * dt) - t0) / (n * dt)


def _sc_square(step, s_initial, s_final, t0, n, dt):
    return s_final + (s_initial - s_final) * (1 - _frac(step, t0, n, dt)) ** 2


def _sc_linear(step, s_initial, s_final, t0, n, dt):
    return s_final + (s_initial - s_final) * (1 - _frac(step, t0, n, dt))


def _sc_no_clamp(step, s_initial, s_final, t0, n, dt):
    return s_final + (s_initial - s_final) * (1 - (step - t0) / (n * dt)) ** 3


def _sc_clamp_end_only(step, s_initial, s_final, t0, n, dt):
    step = min(step, t0 + n * dt)
    return s_final + (s_initial - s_final) * (1 - (step - t0) / (n * dt)) ** 3


def _sc_no_dt(step, s_initial, s_final, t0, n, dt):
    t = min(max(step, t0), t0 + n)
    return s_final + (s_initial - s_final) * (1 - (t - t0) / n) ** 3


def _sc_swapped(step, s_initial, s_final, t0, n, dt):
    return s_initial + (s_final - s_initial) * (1 - _frac(step, t0, n, dt)) ** 3


def _sc_no_t0(step, s_initial, s_final, t0, n, dt):
    t = min(max(step, 0), n * dt)
    return s_final + (s_initial - s_final) * (1 - t / (n * dt)) ** 3


def _sc_no_s_initial(step, s_initial, s_final, t0, n, dt):
    return s_final * (1 - (1 - _frac(step, t0, n, dt)) ** 3)


def _sc_ok(step, s_initial, s_final, t0, n, dt):
    t = max(t0, min(step, t0 + n * dt))
    return s_final + (s_initial - s_final) * (1.0 - (t - t0) / (n * dt)) ** 3


def _sc_ok_branches(step, s_initial, s_final, t0, n, dt):
    if step <= t0:
        return float(s_initial)
    if step >= t0 + n * dt:
        return float(s_final)
    return s_final + (s_initial - s_final) * (1 - (step - t0) / (n * dt)) ** 3


register(
    Exercise("sparsity_schedule", "06", "sparsity_schedule(step, s_initial, s_final, t0, n, dt)", _sched_cases(),
             "kdcore.prune.sparsity_schedule", "Zhu & Gupta cubic schedule, step clamped to [t0, t0 + n·dt]"),
    wrong=[
        Variant("exponent 2", _sc_square, "Zhu & Gupta's schedule is cubic: (1 − progress)**3, not **2"),
        Variant("linear", _sc_linear, "the schedule is cubic, (1 − progress)**3: it prunes fast early, slowly late"),
        Variant("no clamping", _sc_no_clamp,
                "clamp step to [t0, t0 + n·dt]: before t0 the sparsity is s_initial, after the end s_final"),
        Variant("clamped at the end only", _sc_clamp_end_only,
                "also clamp below: before t0 the sparsity stays s_initial"),
        Variant("dt ignored", _sc_no_dt, "progress is (step − t0) / (n·dt): n events dt steps apart"),
        Variant("s_initial and s_final swapped", _sc_swapped,
                "s_t = s_final + (s_initial − s_final)·(1 − progress)³: it starts at s_initial and ends at s_final"),
        Variant("t0 ignored", _sc_no_t0, "pruning starts at step t0: progress is (step − t0) / (n·dt)"),
        Variant("s_initial ignored", _sc_no_s_initial,
                "the schedule starts from s_initial: s_final + (s_initial − s_final)·(1 − progress)³"),
    ],
    correct=[Variant("min/max clamp", _sc_ok, ""), Variant("if/else branches", _sc_ok_branches, "")],
)


# ===================================================================================================
# snip_scores
# ===================================================================================================
def _snip_model(seed: int, conv: bool = True):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if conv:
            model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 8),
                                  nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 4))
            x = torch.randn(6, 1, 4, 4)
        else:
            model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3))
            x = torch.randn(10, 5)
        y = torch.randint(0, 4 if conv else 3, (x.shape[0],))
    return model, x, y


def _snip_case(name: str, seed: int, conv: bool = True, stale: bool = False, eval_mode: bool = False) -> Case:
    def observe(fn):
        model, x, y = _snip_model(seed, conv)
        if stale:
            model(x).pow(2).mean().backward()
        if eval_mode:
            model.eval()
        state, grads_before, training = module_state(model), grads(model), model.training
        before = tensor_snapshot(x, y)
        out = fn(model, x, y)
        grads_after = grads(model)
        grads_changed = any((grads_before[k] is None) != (g is None) or
                            (g is not None and not torch.equal(g, grads_before[k])) for k, g in grads_after.items())
        return {
            "mutated": changed(before, x, y),
            "weights_changed": any(not torch.equal(state[k], v) for k, v in module_state(model).items()),
            "grads_changed": grads_changed,
            "mode_changed": model.training != training,
            "out": out,
        }

    def compare(cand: Observation, ref: Observation):
        if cand.get("weights_changed") != ref["weights_changed"]:
            return "the model's weights changed", "scores are computed without changing the model"
        if cand.get("grads_changed") != ref["grads_changed"]:
            return ("the model's .grad changed", "leave .grad as it was: use torch.autograd.grad(loss, weights), "
                    "or work on a copy.deepcopy(model)")
        if cand.get("mode_changed") != ref["mode_changed"]:
            return "the model's train/eval mode changed", "do not call model.train() / model.eval() here"
        failure = compare_values(cand.get("out"), ref["out"], what="scores", rtol=1e-4, atol=1e-7)
        return None if failure is None else (failure[0], failure[1])
    return Case(name, observe, compare)


def _snip_cases() -> list[Case]:
    return [
        _snip_case("conv + linear + LayerNorm model, batch of 6", 141),
        _snip_case("MLP of three Linear layers, batch of 10", 142, conv=False),
        _snip_case("stale .grad on the model must be left as it was", 143, stale=True),
        _snip_case("model in eval mode stays in eval mode", 144, conv=False, eval_mode=True),
    ]


def _snip_weights(model):
    return {f"{n}.weight": m.weight for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


def _snip_grad(model, x, y, ws, reduction="mean"):
    loss = F.cross_entropy(model(x), y, reduction=reduction)
    return dict(zip(ws, torch.autograd.grad(loss, list(ws.values()))))


def _snip_signed(model, x, y):
    ws = _snip_weights(model)
    g = _snip_grad(model, x, y, ws)
    return {k: (g[k] * w).detach() for k, w in ws.items()}


def _snip_grad_only(model, x, y):
    ws = _snip_weights(model)
    g = _snip_grad(model, x, y, ws)
    return {k: g[k].abs() for k in ws}


def _snip_all_params(model, x, y):
    ws = dict(model.named_parameters())
    g = _snip_grad(model, x, y, ws)
    return {k: (g[k] * w).abs().detach() for k, w in ws.items()}


def _snip_all_weights(model, x, y):
    ws = {k: p for k, p in model.named_parameters() if k.endswith("weight")}
    g = _snip_grad(model, x, y, ws)
    return {k: (g[k] * w).abs().detach() for k, w in ws.items()}


def _snip_normalised(model, x, y):
    ws = _snip_weights(model)
    g = _snip_grad(model, x, y, ws)
    scores = {k: (g[k] * w).abs().detach() for k, w in ws.items()}
    total = sum(s.sum() for s in scores.values())
    return {k: s / total for k, s in scores.items()}


def _snip_leaves_grad(model, x, y):
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return {k: (w.grad * w).abs().detach() for k, w in _snip_weights(model).items()}


def _snip_no_zero_grad(model, x, y):
    saved = {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()}
    F.cross_entropy(model(x), y).backward()
    scores = {k: (w.grad * w).abs().detach() for k, w in _snip_weights(model).items()}
    for k, p in model.named_parameters():
        p.grad = saved[k]
    return scores


def _snip_sum(model, x, y):
    ws = _snip_weights(model)
    g = _snip_grad(model, x, y, ws, reduction="sum")
    return {k: (g[k] * w).abs().detach() for k, w in ws.items()}


def _snip_module_keys(model, x, y):
    ws = _snip_weights(model)
    g = _snip_grad(model, x, y, ws)
    return {k[: -len(".weight")]: (g[k] * w).abs().detach() for k, w in ws.items()}


def _snip_ok_autograd(model, x, y):
    ws = {name: p for name, p in model.named_parameters()
          if name.endswith("weight") and isinstance(model.get_submodule(name.rsplit(".", 1)[0]), (nn.Linear, nn.Conv2d))}
    loss = F.cross_entropy(model(x), y)
    gs = torch.autograd.grad(loss, list(ws.values()))
    return {name: (g * w).abs().detach() for (name, w), g in zip(ws.items(), gs)}


def _snip_ok_restore(model, x, y):
    saved = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    loss = nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
    scores = {f"{n}.weight": (m.weight.grad * m.weight).abs().detach().clone()
              for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    for n, p in model.named_parameters():
        p.grad = saved[n]
    return scores


def _snip_ok_copy(model, x, y):
    clone = copy.deepcopy(model)
    clone.zero_grad()
    F.cross_entropy(clone(x), y).backward()
    return {f"{n}.weight": (m.weight.grad * m.weight.detach()).abs()
            for n, m in clone.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


register(
    Exercise("snip_scores", "06", "snip_scores(model, x, y)", _snip_cases(), "kdcore.prune.snip_scores",
             "|∂L/∂w ⊙ w| for every Linear/Conv weight on one cross-entropy batch; model and .grad unchanged"),
    wrong=[
        Variant("signed scores", _snip_signed, "SNIP's saliency is the absolute value |g ⊙ w|"),
        Variant("gradient only", _snip_grad_only, "multiply the gradient by the weight: |∂L/∂w ⊙ w|"),
        Variant("biases scored too", _snip_all_params, "score only the weights of Linear/Conv layers, not biases"),
        Variant("every *weight* parameter", _snip_all_weights,
                "only Linear/Conv weights are scored: LayerNorm/BatchNorm weights are not connections"),
        Variant("normalised scores", _snip_normalised,
                "return the raw |g ⊙ w| (the paper normalises by the total only to pick a threshold)"),
        Variant(".grad left filled", _snip_leaves_grad,
                "backward() left gradients in the model's .grad: use torch.autograd.grad or a deep copy, or "
                "restore the previous .grad"),
        Variant("stale gradients accumulated", _snip_no_zero_grad,
                "backward() adds to existing .grad: start from zero gradients (or use torch.autograd.grad)"),
        Variant("summed cross-entropy", _snip_sum,
                "use the mean cross-entropy over the batch (F.cross_entropy's default), not the sum"),
        Variant("module names as keys", _snip_module_keys,
                "key the scores by parameter name as in model.named_parameters() (e.g. '0.weight')"),
    ],
    correct=[Variant("autograd.grad", _snip_ok_autograd, ""), Variant("backward and restore .grad", _snip_ok_restore, ""),
             Variant("deepcopy", _snip_ok_copy, "")],
)


# ===================================================================================================
# masked_sgd_step
# ===================================================================================================
def _msgd_setup(seed: int, opt: str, *, warm: bool = False, stale: bool = False):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 4))
        x = torch.randn(12, 6)
        y = torch.randint(0, 4, (12,))
        masks = {"0.weight": torch.rand(10, 6) > 0.5, "2.weight": torch.rand(4, 10) > 0.4}
    if opt == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    elif opt == "momentum":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, weight_decay=0.01)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    if warm:  # optimizer state (momentum / Adam moments) from an earlier, unmasked step
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    with torch.no_grad():  # the model is already pruned when fine-tuning starts
        for name, p in model.named_parameters():
            if name in masks:
                p.mul_(masks[name])
    if stale:
        optimizer.zero_grad()
        model(x).pow(2).sum().backward()
    return model, masks, x, y, optimizer


def _msgd_case(name: str, seed: int, opt: str = "sgd", **kw) -> Case:
    def observe(fn):
        model, masks, x, y, optimizer = _msgd_setup(seed, opt, **kw)
        before = tensor_snapshot(x, y, *masks.values())
        fn(model, masks, x, y, optimizer)
        params = dict(model.named_parameters())
        return {
            "mutated": changed(before, x, y, *masks.values()),
            "pruned_nonzero": sum(int((params[k].detach()[~m] != 0).sum()) for k, m in masks.items()),
            "state": module_state(model),
        }

    def compare(cand: Observation, ref: Observation):
        if cand.get("mutated") != ref["mutated"]:
            return "x, y or a mask was modified", MUTATION_HINT
        if cand.get("pruned_nonzero") != ref["pruned_nonzero"]:
            return (f"{cand.get('pruned_nonzero')} pruned weights are not 0 after the step",
                    "re-apply the masks to the weights after optimizer.step() (under torch.no_grad())")
        failure = compare_values(cand.get("state"), ref["state"], what="weights after the step", rtol=1e-4, atol=1e-6)
        return None if failure is None else (failure[0], "the kept weights' update differs from one step on the "
                                             "cross-entropy with zeroed gradients")
    return Case(name, observe, compare)


def _msgd_cases() -> list[Case]:
    return [
        _msgd_case("plain SGD, about half the weights pruned", 151, "sgd"),
        _msgd_case("SGD with momentum and weight decay, momentum from an earlier step", 152, "momentum", warm=True),
        _msgd_case("Adam with moments from an earlier step", 153, "adam", warm=True),
        _msgd_case("stale gradients already in .grad", 154, "sgd", stale=True),
    ]


def _msgd_apply(model, masks):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in masks:
                p.mul_(masks[name].to(p.dtype))


def _msgd_grad_only(model, masks, x, y, optimizer):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    for name, p in model.named_parameters():
        if name in masks:
            p.grad.mul_(masks[name])
    optimizer.step()
    return loss.item()


def _msgd_unmasked(model, masks, x, y, optimizer):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def _msgd_before_only(model, masks, x, y, optimizer):
    _msgd_apply(model, masks)
    return _msgd_unmasked(model, masks, x, y, optimizer)


def _msgd_inverted(model, masks, x, y, optimizer):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    _msgd_apply(model, {k: ~m for k, m in masks.items()})
    return loss.item()


def _msgd_no_zero_grad(model, masks, x, y, optimizer):
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    _msgd_apply(model, masks)
    return loss.item()


def _msgd_no_step(model, masks, x, y, optimizer):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    _msgd_apply(model, masks)
    return loss.item()


def _msgd_ok_after(model, masks, x, y, optimizer):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    _msgd_apply(model, masks)
    return loss.item()


def _msgd_ok_both(model, masks, x, y, optimizer):
    params = dict(model.named_parameters())
    optimizer.zero_grad(set_to_none=False)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    for name, mask in masks.items():
        params[name].grad[~mask] = 0
    optimizer.step()
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].data[~mask] = 0.0
    return float(loss.detach())


register(
    Exercise("masked_sgd_step", "06", "masked_sgd_step(model, masks, x, y, optimizer)", _msgd_cases(),
             "kdcore.prune.masked_sgd_step", "one cross-entropy step; pruned weights exactly 0 afterwards"),
    wrong=[
        Variant("gradient masked only", _msgd_grad_only,
                "masking the gradient is not enough: momentum, weight decay and Adam move a weight even with a zero "
                "gradient; re-apply the mask to the weights after optimizer.step()"),
        Variant("masks not applied", _msgd_unmasked,
                "the masks are ignored: after optimizer.step() set the pruned weights back to 0"),
        Variant("masks applied before the step only", _msgd_before_only,
                "apply the masks *after* optimizer.step(): the step itself moves pruned weights away from 0"),
        Variant("inverted masks", _msgd_inverted, "True = keep: zero the weights where the mask is False"),
        Variant("no zero_grad", _msgd_no_zero_grad, "call optimizer.zero_grad() before backward (stale gradients)"),
        Variant("no optimizer.step()", _msgd_no_step, "call optimizer.step() after loss.backward()"),
    ],
    correct=[Variant("re-mask after step", _msgd_ok_after, ""), Variant("mask gradients and weights", _msgd_ok_both, "")],
)

