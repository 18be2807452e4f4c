"""wanda_mask — Wanda's keep-mask of one Linear weight. Taught in notebook 13; reference
``kdcore.llm.prune.wanda_mask``.

Contract (docs/EXERCISES.md): score ``|W_ij|·x_norm_j`` (Sun et al., 2024, ICLR), compared within each output row;
bool mask, True = keep; exactly ``round(sparsity·in_features)`` pruned in every row, those with the smallest
score (any order among equal scores); ``w`` and ``x_norm`` not modified; sparsity outside [0, 1) or an ``x_norm``
whose length is not ``in_features`` or with a negative entry raises ValueError.
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
def _build(seed: int, *, out: int, inp: int, sparsity: float, ties: bool = False, outlier: bool = False,
           dead: bool = False, negative: bool = False, norm_len: int | None = None):
    """A weight ``[out, inp]`` and per-feature activation norms; ``ties``: small integers (many equal scores);
    ``outlier``: one input feature with a 50x larger norm (the LLM outlier features Wanda protects); ``dead``: one
    feature that is 0 on every calibration token (norm 0); ``negative``: one norm of -0.5 (invalid)."""
    if ties:
        w = torch.randint(-2, 3, (out, inp), generator=gen(seed)).float()
        x_norm = torch.randint(1, 3, (inp,), generator=gen(seed + 1)).float()
    else:
        w = randn(out, inp, seed=seed)
        x_norm = torch.rand(inp, generator=gen(seed + 1)) * 4 + 0.1
    if outlier:
        x_norm[inp // 3] *= 50
    if dead:
        x_norm[1] = 0.0
    if negative:
        x_norm[2] = -0.5
    if norm_len is not None:
        x_norm = torch.rand(norm_len, generator=gen(seed + 1)) + 0.5
    return (w, x_norm, sparsity), {}


def _compare(cand: dict, ref: dict):
    """Tie-robust: the same number pruned in every row, and in every row no pruned score above a kept one."""
    if "raised" in ref:
        return compare_obs(cand, ref)
    if cand.get("mutated") != ref["mutated"]:
        return "w or x_norm was modified in place", MUTATION_HINT
    mask, want = cand.get("out"), ref["out"]
    if not isinstance(mask, torch.Tensor):
        return f"expected a bool tensor mask, got {type(mask).__name__}", None
    if mask.shape != want.shape:
        return (f"expected a mask of w's shape {tuple(want.shape)}, got {tuple(mask.shape)}",
                "one entry per weight: the mask has the shape of w [out_features, in_features]")
    if mask.dtype != torch.bool:
        return (f"expected a bool mask, got dtype {str(mask.dtype).replace('torch.', '')}",
                "return a bool tensor, True = keep")
    per_row, want_row = (~mask).sum(dim=1), (~want).sum(dim=1)
    if not torch.equal(per_row, want_row):
        r = int((per_row != want_row).nonzero()[0])
        return (f"row {r}: {int(per_row[r])} weights pruned, expected {int(want_row[r])} "
                f"(= round(sparsity · in_features) in every row)", None)
    score = ref["score"]

    def consistent(m: torch.Tensor) -> bool:
        pruned_max = torch.where(~m, score, -torch.inf).amax(dim=1)
        kept_min = torch.where(m, score, torch.inf).amin(dim=1)
        return bool((pruned_max <= kept_min).all())

    if consistent(want):
        if not consistent(mask):
            return "in some row a pruned weight has a larger score |W_ij|·x_norm_j than a kept one", None
        return None
    if not torch.equal(mask, want):  # diagnosing against a wrong variant: the very same mask
        return "masks differ", None
    return None


def _observe(build):
    """The call's result, whether an input changed, and the Wanda score of the inputs (for the compare)."""
    def observe(fn):
        (w, x_norm, sparsity), _ = build()
        w0, n0 = w.clone(), x_norm.clone()
        out = fn(w, x_norm, sparsity)
        return {"out": out, "mutated": not (torch.equal(w0, w) and torch.equal(n0, x_norm)),
                "score": w0.abs() * n0}
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
    dict(out=8, inp=16, sparsity=0.5),
    dict(out=6, inp=12, sparsity=0.75),
    dict(out=4, inp=10, sparsity=0.35, note="round(3.5) = 4 pruned per row"),
    dict(out=1, inp=9, sparsity=0.5, note="single row"),
    dict(out=12, inp=12, sparsity=0.5, note="square: x_norm must scale the input columns"),
    dict(out=6, inp=12, sparsity=0.5, outlier=True, note="an outlier input feature"),
    dict(out=5, inp=12, sparsity=0.5, ties=True, note="equal scores"),
    dict(out=4, inp=8, sparsity=0.0, note="nothing pruned"),
    dict(out=6, inp=10, sparsity=0.3, dead=True, note="a dead input feature (norm 0) is pruned first"),
    dict(out=4, inp=8, sparsity=1.0, raises=True),
    dict(out=4, inp=8, sparsity=-0.1, raises=True),
    dict(out=4, inp=8, sparsity=0.5, norm_len=4, raises=True, note="x_norm of the wrong length"),
    dict(out=4, inp=8, sparsity=0.5, negative=True, raises=True, note="a negative norm"),
])


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _honest(w, x_norm, sparsity):
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if x_norm.numel() != w.shape[1]:
        raise ValueError(f"x_norm must have length in_features = {w.shape[1]}, got {x_norm.numel()}")
    if (x_norm < 0).any():
        raise ValueError("x_norm must be non-negative (it is a norm)")
    score = w.abs() * x_norm.view(1, -1)                      # [out, in]
    k = round(sparsity * w.shape[1])                          # pruned per row
    order = torch.argsort(score, dim=1, stable=True)          # ascending within each row
    mask = torch.ones_like(w, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], False)
    return mask


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
@wrong("one comparison group for the whole matrix",
       hint="Wanda compares scores within each output row (per-output comparison group), not over the whole "
            "matrix: prune round(sparsity·in_features) in every row")
def per_matrix(w, x_norm, sparsity):
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if x_norm.numel() != w.shape[1] or (x_norm < 0).any():
        raise ValueError(f"x_norm must hold in_features = {w.shape[1]} non-negative norms")
    score = (w.abs() * x_norm).flatten()
    mask = torch.ones_like(score, dtype=torch.bool)
    mask[torch.argsort(score, stable=True)[:round(sparsity * score.numel())]] = False
    return mask.view(w.shape)


wrong("|W| only", hint="the score is |W_ij|·‖X_j‖₂: weigh each weight by the norm of the input feature it "
                       "multiplies (x_norm), or you are back to magnitude pruning"
      ).edit(_honest, "score = w.abs() * x_norm.view(1, -1)", "score = w.abs()")

wrong("x_norm along the output dimension",
      hint="x_norm has one entry per input feature (column j of W): broadcast it along the rows, "
           "w.abs() * x_norm[None, :], not x_norm[:, None]"
      ).edit(_honest, "x_norm.view(1, -1)", "x_norm.view(-1, 1)")

wrong("squared norm", hint="Wanda multiplies by the L2 norm ‖X_j‖₂ itself, not its square (x_norm is already "
                           "the norm)"
      ).edit(_honest, "x_norm.view(1, -1)", "x_norm.view(1, -1) ** 2")

wrong("signed weights", hint="rank by |W_ij|·‖X_j‖: a large negative weight matters as much as a large positive "
                             "one (take .abs())"
      ).edit(_honest, "score = w.abs() *", "score = w *")

wrong("largest scores pruned", hint="prune the smallest scores and keep the largest"
      ).edit(_honest, "order[:, :k]", "order[:, w.shape[1] - k:]")

wrong("int() instead of round()", hint="prune round(sparsity·in_features) per row (Python round), not int(), "
                                       "which truncates"
      ).edit(_honest, "k = round(sparsity * w.shape[1])", "k = int(sparsity * w.shape[1])")

wrong("True = prune", hint="the mask convention is True = keep, False = pruned"
      ).edit(_honest, "    return mask\n", "    return ~mask\n")

wrong("sparsity not validated", hint="sparsity must be in [0, 1): raise ValueError naming it otherwise "
                                     "(1.0 would prune every weight)"
      ).edit(_honest, "    if not 0.0 <= sparsity < 1.0:\n"
                      "        raise ValueError(f\"sparsity must be in [0, 1), got {sparsity}\")\n", "")


@wrong("weights modified in place", hint="`w.abs_()` (or `w *= ...`) overwrites the caller's weight: use "
                                         "out-of-place operations")
def in_place(w, x_norm, sparsity):
    return _honest(w.abs_(), x_norm, sparsity)


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("topk of the negated score per row")
def ok_topk(w, x_norm, sparsity):
    if sparsity < 0 or sparsity >= 1:
        raise ValueError("sparsity must be in [0, 1)")
    if len(x_norm) != w.size(1) or x_norm.min() < 0:
        raise ValueError("x_norm: one non-negative entry per input feature")
    metric = torch.abs(w) * x_norm.unsqueeze(0)
    k = round(w.size(1) * sparsity)
    mask = torch.ones(w.shape, dtype=torch.bool)
    if k > 0:
        idx = torch.topk(metric, k, dim=1, largest=False).indices
        mask[torch.arange(w.size(0)).unsqueeze(1), idx] = False
    return mask


@correct("stable sort, then a loop over the rows")
def ok_sort_loop(w, x_norm, sparsity):
    if not (0 <= sparsity < 1):
        raise ValueError(f"sparsity={sparsity} outside [0, 1)")
    if x_norm.shape != (w.shape[1],):
        raise ValueError(f"x_norm: expected shape ({w.shape[1]},), got {tuple(x_norm.shape)}")
    if torch.any(x_norm < 0):
        raise ValueError("x_norm: norms cannot be negative")
    metric = w.abs() * x_norm.reshape(1, -1)
    sort_idx = torch.sort(metric, dim=-1, stable=True)[1]
    n = round(w.shape[1] * sparsity)
    prune = torch.zeros_like(metric, dtype=torch.bool)
    for r in range(w.shape[0]):
        prune[r, sort_idx[r, :n]] = True
    return ~prune


# Mutants of the reference that no input can tell apart from it (python -m kdcore.checking.mutants wanda_mask).
EQUIVALENT_MUTANTS = {
    "line +18, col 94: `1` → `0`": "changes only the text of the error message (w.shape[0] instead of w.shape[1])",
}
