"""kmeans_share — weight sharing by 1-D k-means (Deep Compression). Taught in notebook 09; reference
``kdcore.quantize.kmeans_share``.

Contract (docs/EXERCISES.md): ``(codebook [k] float32, indices of weight's shape)``, integer indices into the
codebook, codebook initialised linearly between min and max; ``codebook[indices]`` reconstructs the weight with a mean
squared error no worse than the reference's by more than 5 % (a better clustering passes too); ``weight`` is not
modified; ``k < 1`` or ``iters < 0`` raise ValueError.
"""
from __future__ import annotations

from typing import Callable

import torch

from kdcore.checking.cases import cases, gen, randn
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import MUTATION_HINT, Observation, changed, compare_values, tensor_snapshot, type_name

LLOYD_HINT = ("run Lloyd iterations: assign each weight to the nearest centroid, move each centroid to the mean of "
              "its weights")


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _two_clusters(n: int, seed: int) -> torch.Tensor:
    """Values near −1 and near +1: with k=8 some linearly initialised centroids get no weights."""
    g = gen(seed)
    signs = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    return signs * (1.0 + 0.1 * torch.randn(n, generator=g))


def _build(seed: int, *, weight: tuple[int, ...], k: int, iters: int | None = None, scale: float = 1.0,
           two_clusters: bool = False):
    """A Gaussian weight of shape ``weight`` (× scale), or two clusters; iters omitted from the call when None."""
    w = _two_clusters(weight[0], seed) if two_clusters else randn(*weight, seed=seed, scale=scale)
    return (w, k), ({} if iters is None else {"iters": iters})


def _observe(fn: Callable, args: tuple, kwargs: dict) -> Observation:
    """The result's structure, and the reconstruction error of ``codebook[indices]`` when it can be computed."""
    weight, k = args
    before = tensor_snapshot(weight)
    out = fn(*args, **kwargs)
    obs: Observation = {"mutated": changed(before, weight), "kind": type_name(out)}
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        return obs
    codebook, indices = out
    obs["kind"] = "pair"
    obs["codebook_shape"] = list(codebook.shape)
    obs["codebook_dtype"] = str(codebook.dtype).replace("torch.", "")
    obs["indices_shape"] = list(indices.shape)
    obs["indices_integer"] = not indices.is_floating_point() and indices.dtype != torch.bool
    obs["codebook_finite"] = bool(torch.isfinite(codebook).all())
    if obs["indices_integer"] and obs["codebook_shape"] == [k] and indices.shape == weight.shape:
        idx = indices.long()
        obs["indices_in_range"] = bool(((idx >= 0) & (idx < k)).all())
        if obs["indices_in_range"]:
            obs["mse"] = ((codebook.double()[idx] - before[0].double()) ** 2).mean().item()
    return obs


# the structure of the result, in the order it is checked, with the hint for a mismatch (None: the message says it)
_STRUCTURE_HINTS = {
    "kind": None,
    "codebook_shape": None,
    "codebook_dtype": "return the codebook as float32 (`.float()`), like the weights it replaces",
    "indices_shape": "indices have the weight's shape (reshape the flat assignment)",
    "indices_integer": "indices are integers (torch.int64) into the codebook",
    "codebook_finite": "a centroid with no weights gives 0/0 = NaN: keep its previous value",
    "indices_in_range": None,
}


def _compare(cand: Observation, expected: Observation):
    """Same structure; reconstruction error no worse than the expected one's by more than 5 %.

    One-sided on purpose: a better clustering than the reference's passes. Against a wrong variant (when looking
    for the misconception) it reads "at least as good as that variant", which is how a candidate that stopped the
    Lloyd iterations early is recognised as the no-iterations mistake.
    """
    if cand.get("mutated") != expected["mutated"]:
        return "the weight was modified", MUTATION_HINT
    for key, hint in _STRUCTURE_HINTS.items():
        if key in expected:
            failure = compare_values(cand.get(key), expected[key], what=key)
            if failure:
                return failure[0], hint or failure[1]
    c, e = cand.get("mse"), expected.get("mse")
    if c is None or e is None:
        return None if c is None and e is None else ("reconstruction error not computable", None)
    if c > 1.05 * e + 1e-12:
        return f"reconstruction error {c:.4g} is more than 5% above the reference's {e:.4g}", LLOYD_HINT
    return None


CASES = cases(_build, [
    dict(weight=(16, 16), k=4),
    dict(weight=(50,), k=2),
    dict(weight=(32, 8), k=16, scale=0.1),
    dict(weight=(64,), k=8, two_clusters=True, note="some centroids get no weights"),
    dict(weight=(5, 5), k=1, note="one shared value"),
    dict(weight=(10, 10), k=4, iters=1),
    dict(weight=(4, 3, 3, 3), k=8, note="conv weight, default iters"),
    dict(weight=(13,), k=5, note="few weights per centroid: empty and one-weight clusters"),
    dict(weight=(6, 6), k=4, iters=0, note="no iteration: the linear initial codebook"),
], observe=_observe, compare=_compare) + cases(_build, [
    dict(weight=(4, 4), k=0, raises=True),
    dict(weight=(4, 4), k=4, iters=-1, raises=True),
])

EQUIVALENT_MUTANTS = {
    "line +15, col 30: `values.min().item()` → `values.min()`":
        "torch.linspace takes a 0-dim tensor as well as a number: the same float64 start",
    "line +15, col 51: `values.max().item()` → `values.max()`":
        "torch.linspace takes a 0-dim tensor as well as a number: the same float64 end",
    "line +18, col 62: `0` → `-1`": "index_add_ on a 1-D tensor: dim -1 is dim 0",
    "line +20, col 49: `counts.clamp(min=1)` → `counts`":
        "only empty clusters divide by 0, and torch.where keeps their previous centroid instead of that 0/0",
    "line +20, col 66: `1` → `0`":
        "clamp(min=0) leaves the counts as they are; only empty clusters divide by 0, and torch.where discards that",
    "line +25, col 23: `w.flatten().float()` → `w.flatten()`":
        "the cases' weights are float32 already; for float16 the subtraction promotes to float32 anyway, and for "
        "float64 only a weight within float32 rounding of the midpoint of two centroids could change cluster, "
        "far below the 5 % tolerance on the reconstruction error",
}


# ----------------------------------------------------------------------------------------------------------
# an honest solution (also a correct answer); the wrong variants below that differ from it by one line are
# edits of it
# ----------------------------------------------------------------------------------------------------------
@correct("loop over clusters")
def _honest(weight, k, iters=20):
    if k < 1 or iters < 0:
        raise ValueError(f"need k >= 1 and iters >= 0, got k={k}, iters={iters}")
    values = weight.detach().flatten().double()
    codebook = torch.linspace(values.min().item(), values.max().item(), k, dtype=torch.float64)
    for _ in range(iters):
        assign = (values[:, None] - codebook[None, :]).abs().argmin(1)      # nearest centroid of each weight
        new = []
        for j in range(k):
            members = values[assign == j]
            new.append(codebook[j] if members.numel() == 0 else members.mean())   # an empty cluster stays put
        codebook = torch.stack(new)
    codebook = codebook.float()
    indices = (weight.detach().flatten()[:, None] - codebook[None, :]).abs().argmin(1)
    return codebook, indices.view(weight.shape)


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("no k-means iterations", hint="the linear initial codebook is only the start: run the Lloyd iterations "
                                    "(assign, then move each centroid to the mean of its weights)"
      ).edit(_honest, "for _ in range(iters):", "for _ in range(0):")

wrong("empty cluster gives NaN", hint="a centroid with no weights gives mean([]) = NaN: keep its previous value"
      ).edit(_honest, "codebook[j] if members.numel() == 0 else members.mean()", "members.mean()")

wrong("flat indices", hint="indices have the weight's shape: .view(weight.shape)"
      ).edit(_honest, "return codebook, indices.view(weight.shape)", "return codebook, indices")

wrong("reconstruction returned",
      hint="return the indices (integers into the codebook), not the reconstructed weights codebook[indices]"
      ).edit(_honest, "return codebook, indices.view(weight.shape)",
             "return codebook, codebook[indices].view(weight.shape)")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("vectorised (cdist, index_add)")
def ok_vectorised(weight, k, iters=20):
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    w = weight.detach().reshape(-1)
    centroids = torch.linspace(w.min(), w.max(), k)
    for _ in range(iters):
        idx = torch.cdist(w[:, None], centroids[:, None]).argmin(1)
        sums = torch.zeros(k).index_add(0, idx, w)
        counts = torch.bincount(idx, minlength=k).float()
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    idx = torch.cdist(w[:, None], centroids[:, None]).argmin(1)
    return centroids, idx.reshape(weight.shape)
