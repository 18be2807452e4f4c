"""nm_mask — N:M semi-structured sparsity (2:4 on NVIDIA Sparse Tensor Cores). Taught in notebook 13; reference
``kdcore.llm.prune.nm_mask``.

Contract (docs/EXERCISES.md): bool mask of ``w``'s shape, True = keep; in every group of ``m`` consecutive weights
along the input dimension (``w[r, g·m:(g+1)·m]``) the ``n`` largest ``|w|`` are kept (any order among equal
``|w|``); ``w`` not modified; ``in_features % m != 0`` or ``n`` outside [1, m] raises ValueError.
"""
from __future__ import annotations

import functools

import torch

from kdcore.checking.cases import case_name, derived_seed, gen, raises_case, randn
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import MUTATION_HINT, Case, compare_obs


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, out: int, inp: int, n: int | None = None, m: int | None = None, ties: bool = False):
    """A weight ``[out, inp]`` (``ties``: small integers, many equal |w|); n and m omitted when None."""
    w = (torch.randint(-2, 3, (out, inp), generator=gen(seed)).float() if ties else randn(out, inp, seed=seed))
    kwargs = {k: v for k, v in {"n": n, "m": m}.items() if v is not None}
    return (w,), kwargs


def _groups(t: torch.Tensor, m: int) -> torch.Tensor:
    return t.reshape(t.shape[0], -1, m)  # [out, in/m, m]


def _compare(cand: dict, ref: dict):
    """Tie-robust: per group the same number kept, and no pruned |w| above a kept one in the same group."""
    if "raised" in ref:
        return compare_obs(cand, ref)
    if cand.get("mutated") != ref["mutated"]:
        return "w was modified in place", MUTATION_HINT
    mask, want, m = cand.get("out"), ref["out"], ref["m"]
    if not isinstance(mask, torch.Tensor):
        return f"expected a bool tensor mask, got {type(mask).__name__}", None
    if mask.shape != want.shape:
        return (f"expected a mask of w's shape {tuple(want.shape)}, got {tuple(mask.shape)}",
                "the mask has the shape of w [out_features, in_features]")
    if mask.dtype != torch.bool:
        return (f"expected a bool mask, got dtype {str(mask.dtype).replace('torch.', '')}",
                "return a bool tensor, True = keep")
    kept, want_kept = _groups(mask, m).sum(-1), _groups(want, m).sum(-1)
    if not torch.equal(kept, want_kept):
        r, g = (kept != want_kept).nonzero()[0].tolist()
        return (f"row {r}, group {g} (columns {g * m}..{g * m + m - 1}): {int(kept[r, g])} weights kept, expected "
                f"{int(want_kept[r, g])}", None)
    absw = _groups(ref["absw"], m)

    def consistent(keep: torch.Tensor) -> bool:
        keep = _groups(keep, m)
        pruned_max = torch.where(~keep, absw, -torch.inf).amax(-1)
        kept_min = torch.where(keep, absw, torch.inf).amin(-1)
        return bool((pruned_max <= kept_min).all())

    if consistent(want):
        if not consistent(mask):
            return "in some group a pruned weight has a larger |w| than a kept one", None
        return None
    if not torch.equal(mask, want):  # diagnosing against a wrong variant: the very same mask
        return "masks differ", None
    return None


def _observe(build):
    def observe(fn):
        (w,), kwargs = build()
        w0 = w.clone()
        out = fn(w, **kwargs)
        return {"out": out, "mutated": not torch.equal(w0, w), "absw": w0.abs(), "m": kwargs.get("m", 4)}
    return observe


def _cases(rows: list[dict]) -> list[Case]:
    built = []
    for row in rows:
        row = dict(row)
        note, raises = row.pop("note", None), row.pop("raises", False)
        name = case_name(row, note=note, raises=raises)
        make = functools.partial(_build, derived_seed(name), **row)
        built.append(raises_case(name, make) if raises else Case(name, _observe(make), _compare))
    return built


CASES = _cases([
    dict(out=8, inp=16, n=2, m=4),
    dict(out=6, inp=12, note="defaults n=2, m=4"),
    dict(out=4, inp=16, n=4, m=8),
    dict(out=5, inp=12, n=1, m=4, note="1:4 keeps one of four"),
    dict(out=6, inp=12, n=2, m=3),
    dict(out=3, inp=8, n=4, m=4, note="n = m keeps everything"),
    dict(out=1, inp=8, n=2, m=4, note="single row"),
    dict(out=8, inp=8, n=2, m=4, note="square: groups along the input dimension, not the output"),
    dict(out=6, inp=16, n=2, m=4, ties=True, note="equal |w|"),
    dict(out=4, inp=6, n=2, m=4, raises=True, note="in_features not a multiple of m"),
    dict(out=2, inp=6, n=2, m=4, raises=True, note="6 weights per row; 12 in all is a multiple of 4"),
    dict(out=4, inp=8, n=5, m=4, raises=True, note="n > m"),
    dict(out=4, inp=8, n=0, m=4, raises=True, note="n = 0"),
])


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _honest(w, n=2, m=4):
    if not 1 <= n <= m:
        raise ValueError(f"n must be in [1, m] = [1, {m}], got {n}")
    if w.shape[1] % m != 0:
        raise ValueError(f"in_features = {w.shape[1]} is not a multiple of m = {m}")
    groups = w.abs().reshape(w.shape[0], w.shape[1] // m, m)           # [out, in/m, m]
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(2, torch.topk(groups, n, dim=2).indices, True)        # the n largest of each group
    return keep.reshape(w.shape)


# ----------------------------------------------------------------------------------------------------------
# the misconceptions
# ----------------------------------------------------------------------------------------------------------
@wrong("groups along the output dimension",
       hint="N:M groups are m consecutive weights along the input dimension (within one row of W [out, in]), "
            "the dimension the matrix multiply reduces over; you grouped down the columns")
def along_output(w, n=2, m=4):
    if not 1 <= n <= m:
        raise ValueError(f"n must be in [1, {m}], got {n}")
    if w.shape[0] % m != 0 or w.shape[1] % m != 0:
        raise ValueError("shape not a multiple of m")
    return _honest(w.t(), n, m).t()


wrong("strided groups", hint="a group is m *consecutive* weights w[r, g·m:(g+1)·m]: reshape to [out, in/m, m], "
                             "not [out, m, in/m] (which groups every (in/m)-th weight)"
      ).edit(_honest, """groups = w.abs().reshape(w.shape[0], w.shape[1] // m, m)           # [out, in/m, m]
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(2, torch.topk(groups, n, dim=2).indices, True)        # the n largest of each group
    return keep.reshape(w.shape)""", """groups = w.abs().reshape(w.shape[0], m, w.shape[1] // m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, torch.topk(groups, n, dim=1).indices, True)
    return keep.reshape(w.shape)""")

wrong("n pruned instead of n kept", hint="N:M keeps n of every m (2:4 keeps 2, 1:4 keeps 1): you pruned n and "
                                         "kept m − n"
      ).edit(_honest, "torch.topk(groups, n, dim=2)", "torch.topk(groups, m - n, dim=2)")

wrong("smallest kept", hint="keep the n largest |w| of each group, prune the smallest"
      ).edit(_honest, "torch.topk(groups, n, dim=2)", "torch.topk(groups, n, dim=2, largest=False)")

wrong("signed values", hint="rank by |w|: a large negative weight is as important as a large positive one"
      ).edit(_honest, "groups = w.abs().reshape", "groups = w.reshape")

wrong("groups across rows", hint="check in_features % m: a group must not run from the end of one row into the "
                                 "next (reshape(-1, m) on the flat weight does that silently)"
      ).edit(_honest, """    if w.shape[1] % m != 0:
        raise ValueError(f"in_features = {w.shape[1]} is not a multiple of m = {m}")
    groups = w.abs().reshape(w.shape[0], w.shape[1] // m, m)""", """    groups = w.abs().reshape(1, -1, m)""")

wrong("n not validated", hint="n must be in [1, m]: raise ValueError naming it otherwise"
      ).edit(_honest, "if not 1 <= n <= m:", "if False:")


@wrong("weights modified in place", hint="`w.abs_()` overwrites the caller's weight: use w.abs()")
def in_place(w, n=2, m=4):
    return _honest(w.abs_(), n, m)


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("argsort each group, prune the m - n smallest")
def ok_sort(w, n=2, m=4):
    if n > m or n < 1:
        raise ValueError("n must satisfy 1 <= n <= m")
    rows, cols = w.shape
    if cols % m:
        raise ValueError("m must divide in_features")
    g = w.abs().view(rows, cols // m, m)
    prune = torch.zeros(g.shape, dtype=torch.bool)
    prune.scatter_(-1, g.argsort(dim=-1)[..., : m - n], True)
    return (~prune).view(rows, cols)


@correct("loop over groups with a threshold at the n-th largest")
def ok_loop(w, n=2, m=4):
    if not (0 < n <= m) or w.shape[1] % m:
        raise ValueError(f"invalid n={n}, m={m} for in_features={w.shape[1]}")
    mask = torch.zeros(w.shape, dtype=torch.bool)
    for start in range(0, w.shape[1], m):
        block = w[:, start:start + m].abs()
        order = torch.argsort(block, dim=1, descending=True, stable=True)[:, :n]
        mask[:, start:start + m].scatter_(1, order, True)
    return mask
