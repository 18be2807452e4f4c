"""prune_neurons — structured pruning of the hidden layer between two Linear layers. Taught in notebook 05;
reference ``kdcore.prune.prune_neurons``.

Contract (docs/EXERCISES.md): keep the ``keep`` neurons whose fc1 weight rows have the largest L1 norm (ties → lower
index); return two new, physically smaller ``nn.Linear`` (fc1's rows and bias entries, fc2's columns, fc2's whole
bias) with the neurons in their original order; ``fc2(relu(fc1(x)))`` of the result equals the original with the
other neurons' activations zeroed; fc1 and fc2 are not modified; ``keep`` outside ``[1, hidden]`` raises ValueError.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kdcore.checking.cases import cases, randn
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import Observation, compare_values, module_state, type_name


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, n_in: int, hidden: int, n_out: int, keep: int, ties: bool = False):
    """fc1 = Linear(n_in, hidden), fc2 = Linear(hidden, n_out), initialised from ``seed``.

    ``ties``: rows 1, 3, 4 and 6 of fc1 share one L1 norm (permuted / sign-flipped copies of row 1).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fc1, fc2 = nn.Linear(n_in, hidden), nn.Linear(hidden, n_out)
    if ties:
        with torch.no_grad():
            base = fc1.weight[1].clone()
            base[0] = base.abs().max() * 3
            fc1.weight[1] = base
            fc1.weight[3] = -base.flip(0)
            fc1.weight[4] = base.roll(1)
            fc1.weight[6] = -base
    return (fc1, fc2, keep), {}


def _observe(fn: Callable, args: tuple, kwargs: dict) -> Observation:
    """Whether fc1/fc2 changed, the new layers' parameters, and their output on a fixed batch."""
    fc1, fc2, _ = args
    hidden = fc1.out_features
    before = [module_state(fc1), module_state(fc2)]
    out = fn(*args, **kwargs)
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
    obs["fc1.weight"], obs["fc1.bias"] = new1.weight, new1.bias
    obs["fc2.weight"], obs["fc2.bias"] = new2.weight, new2.bias
    with torch.no_grad():
        obs["output"] = new2(F.relu(new1(randn(5, fc1.in_features, seed=0))))
    return obs


def _compare(cand: Observation, ref: Observation):
    if cand.get("mutated") != ref["mutated"]:
        return "fc1 or fc2 was modified", ("build new nn.Linear layers and copy the kept rows/columns into them; "
                                           "leave fc1 and fc2 unchanged")
    if cand.get("types") != ref["types"]:
        return f"expected a pair (new_fc1, new_fc2) of nn.Linear, got {cand.get('types')}", None
    if cand.get("new_objects") != ref["new_objects"]:
        return "returned the input layers themselves", "return new, physically smaller nn.Linear layers"
    for key in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "output"):
        failure = compare_values(cand.get(key), ref[key], what=key, rtol=1e-6, atol=1e-7, check_dtype="none")
        if failure:
            return failure[0], None
    return None


CASES = cases(_build, [
    dict(n_in=6, hidden=10, n_out=4, keep=5),
    dict(n_in=16, hidden=32, n_out=8, keep=12),
    dict(n_in=5, hidden=7, n_out=3, keep=7, note="nothing removed"),
    dict(n_in=4, hidden=6, n_out=3, keep=1, note="a single neuron"),
    dict(n_in=6, hidden=8, n_out=3, keep=3, ties=True, note="equal L1 norms: the lower index wins"),
], observe=_observe, compare=_compare) + cases(_build, [
    dict(n_in=4, hidden=6, n_out=3, keep=0, raises=True),
    dict(n_in=4, hidden=6, n_out=3, keep=7, raises=True),
])

_COPIED = ("_new_linear copies the values under torch.no_grad into fresh parameters, so whether the source tensor was "
           "detached changes nothing")
EQUIVALENT_MUTANTS = {
    "line +9, col 7: `or` → `and` in `not isinstance(fc1, nn.Linear) or not isinstanc...`":
        "differs only when fc1 or fc2 is not an nn.Linear, outside the exercise's domain (the library's TypeError is "
        "tested in tests/test_prune.py)",
    "line +15, col 26: `fc1.weight.detach()` → `fc1.weight`": _COPIED,
    "line +15, col 82: `fc1.bias.detach()` → `fc1.bias`": _COPIED,
    "line +16, col 26: `fc2.weight.detach()` → `fc2.weight`": _COPIED,
    "line +16, col 85: `fc2.bias.detach()` → `fc2.bias`": _COPIED,
}


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants below that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _honest(fc1, fc2, keep):
    if not 1 <= keep <= fc1.out_features:
        raise ValueError(f"keep must be in [1, {fc1.out_features}], got {keep}")
    norms = fc1.weight.detach().abs().sum(dim=1)                # [hidden]: L1 norm of each neuron's fc1 row
    idx = torch.sort(norms, descending=True, stable=True).indices[:keep].sort().values
    new_fc1, new_fc2 = nn.Linear(fc1.in_features, keep), nn.Linear(keep, fc2.out_features)
    new_fc1.weight = nn.Parameter(fc1.weight.detach()[idx].clone())
    new_fc1.bias = nn.Parameter(fc1.bias.detach()[idx].clone())
    new_fc2.weight = nn.Parameter(fc2.weight.detach()[:, idx].clone())     # fc2 is [out, hidden]: its columns
    new_fc2.bias = nn.Parameter(fc2.bias.detach().clone())
    return new_fc1, new_fc2


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("L2 norm", hint="rank neurons by the L1 norm of their fc1 row (.abs().sum(1)), not the L2 norm"
      ).edit(_honest, "fc1.weight.detach().abs().sum(dim=1)", "fc1.weight.detach().norm(dim=1)")

wrong("smallest kept", hint="keep the neurons with the *largest* L1 norm"
      ).edit(_honest, "descending=True", "descending=False")

wrong("signed sum", hint="use the L1 norm: sum of |w| over the row, not the signed sum"
      ).edit(_honest, "fc1.weight.detach().abs().sum(dim=1)", "fc1.weight.detach().sum(dim=1)")

wrong("norm order instead of original order", hint="keep the neurons in their original order (sort the kept indices)"
      ).edit(_honest, ".indices[:keep].sort().values", ".indices[:keep]")

wrong("fc1 bias dropped", hint="keep fc1's bias entries of the kept neurons"
      ).edit(_honest, "new_fc1.bias = nn.Parameter(fc1.bias.detach()[idx].clone())", "new_fc1.bias = None")

wrong("fc2 bias dropped", hint="fc2 keeps its whole bias (its outputs are not pruned)"
      ).edit(_honest, "new_fc2.bias = nn.Parameter(fc2.bias.detach().clone())", "new_fc2.bias = None")

wrong("fc2 rows instead of columns", hint="fc2's weight is [out, hidden]: slice its columns (fc2.weight[:, idx]), "
                                          "not its rows"
      ).edit(_honest, "fc2.weight.detach()[:, idx]", "fc2.weight.detach()[idx]")

wrong("ties resolved to the higher index", hint="on equal L1 norms keep the lower index (use a stable sort: "
                                                "torch.sort(..., stable=True))"
      ).edit(_honest, "torch.sort(norms, descending=True, stable=True).indices[:keep]",
             "torch.argsort(norms, stable=True)[-keep:]")


@wrong("layers modified in place", hint="do not modify fc1/fc2: build and return new nn.Linear layers")
def in_place(fc1, fc2, keep):
    norms = fc1.weight.detach().abs().sum(dim=1)
    idx = torch.sort(norms, descending=True, stable=True).indices[:keep].sort().values
    fc1.weight = nn.Parameter(fc1.weight.detach()[idx])
    fc1.bias = nn.Parameter(fc1.bias.detach()[idx])
    fc1.out_features = keep
    fc2.weight = nn.Parameter(fc2.weight.detach()[:, idx])
    fc2.in_features = keep
    return fc1, fc2


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
def _from_indices(fc1, fc2, idx):
    new1, new2 = nn.Linear(fc1.in_features, len(idx)), nn.Linear(len(idx), fc2.out_features)
    with torch.no_grad():
        new1.weight.copy_(fc1.weight[idx])
        new1.bias.copy_(fc1.bias[idx])
        new2.weight.copy_(fc2.weight[:, idx])
        new2.bias.copy_(fc2.bias)
    return new1, new2


@correct("python sort")
def ok_sorted(fc1, fc2, keep):
    if keep < 1 or keep > fc1.out_features:
        raise ValueError("keep must be between 1 and the number of hidden neurons")
    norms = fc1.weight.abs().sum(dim=1).tolist()
    idx = sorted(sorted(range(len(norms)), key=lambda i: (-norms[i], i))[:keep])
    return _from_indices(fc1, fc2, torch.tensor(idx))


@correct(".data assignment")
def ok_data(fc1, fc2, keep):
    if not 0 < keep <= fc1.weight.shape[0]:
        raise ValueError(f"keep must be in [1, {fc1.weight.shape[0]}]")
    norms = fc1.weight.data.abs().sum(1)
    idx = torch.argsort(-norms, stable=True)[:keep].sort().values
    new1, new2 = nn.Linear(fc1.in_features, keep), nn.Linear(keep, fc2.out_features)
    new1.weight.data = fc1.weight.data[idx].clone()
    new1.bias.data = fc1.bias.data[idx].clone()
    new2.weight.data = fc2.weight.data[:, idx].clone()
    new2.bias.data = fc2.bias.data.clone()
    return new1, new2
