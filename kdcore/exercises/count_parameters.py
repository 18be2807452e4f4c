"""count_parameters — how many parameters a model has. Taught in notebook 07; reference
``kdcore.measure.count_parameters``.

Contract (docs/EXERCISES.md): the number of parameters, each shared (tied) tensor once; frozen parameters count;
buffers (BatchNorm statistics) do not; with ``nonzero_only=True`` only the entries that are not 0.
"""
from __future__ import annotations

import torch
from torch import nn

from kdcore.checking.core import Case, compare_obs, module_state
from kdcore.checking.catalogue import correct, wrong


# ----------------------------------------------------------------------------------------------------------
# cases: small models that each isolate one way of miscounting
# ----------------------------------------------------------------------------------------------------------
class _Tied(nn.Module):
    """Embedding and output layer share one weight (weight tying, as in language models)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.hidden = nn.Linear(4, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.emb.weight


class _Reused(nn.Module):
    """One Linear registered under two names (applied twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Linear(5, 5)
        self.again = self.block
        self.head = nn.Linear(5, 2)


def _frozen() -> nn.Module:
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))
    model[0].requires_grad_(False)
    return model


def _pruned() -> nn.Module:
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight[torch.rand(8, 10) < 0.6] = 0.0
        model[2].bias[1] = 0.0
    return model


MODELS = {
    "MLP 64-32-10 (2,410 parameters)": lambda: nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
    "conv + BatchNorm: running statistics are buffers, not parameters":
        lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3)),
    "tied embedding / output weight": _Tied,
    "one Linear registered under two names": _Reused,
    "frozen layer (requires_grad=False)": _frozen,
    "pruned model (60 % zeros in the first layer, one zero bias)": _pruned,
}


def _case(model_name: str, nonzero_only: bool | None = None) -> Case:
    """Call ``fn(model)`` (or with ``nonzero_only=``) on a freshly seeded model; record the count and mutation."""
    def observe(fn):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(161)
            model = MODELS[model_name]()
        before = module_state(model)
        out = fn(model) if nonzero_only is None else fn(model, nonzero_only=nonzero_only)
        after = module_state(model)
        return {"mutated": any(not torch.equal(before[k], after[k]) for k in before), "out": out}

    name = model_name if nonzero_only is None else f"{model_name}, nonzero_only={nonzero_only}"
    return Case(name, observe, lambda c, r: compare_obs(c, r, rtol=0.0, atol=0.0))


CASES = [
    _case("MLP 64-32-10 (2,410 parameters)"),
    _case("conv + BatchNorm: running statistics are buffers, not parameters"),
    _case("tied embedding / output weight"),
    _case("one Linear registered under two names"),
    _case("frozen layer (requires_grad=False)"),
    _case("pruned model (60 % zeros in the first layer, one zero bias)", True),
    _case("pruned model (60 % zeros in the first layer, one zero bias)", False),
    _case("tied embedding / output weight", True),
]

EQUIVALENT_MUTANTS = {
    "line +7, col 19: `int(torch.count_nonzero(w))` → `torch.count_nonzero(w)`":
        "the sum is then a 0-dim integer tensor of the same value; the grader compares values, and a 0-dim "
        "tensor and a number are interchangeable in the contract",
}


# ----------------------------------------------------------------------------------------------------------
# the misconceptions
# ----------------------------------------------------------------------------------------------------------
@wrong("state_dict counted", hint="state_dict() also holds buffers (BatchNorm running statistics) and lists tied "
                                  "weights under each name: count model.parameters()")
def state_dict_counted(model, nonzero_only=False):
    values = model.state_dict().values()
    return sum(int(torch.count_nonzero(v)) if nonzero_only else v.numel() for v in values)


@wrong("shared tensors counted twice", hint="a shared (tied) parameter counts once: model.parameters() already "
                                            "skips duplicates")
def shared_counted_twice(model, nonzero_only=False):
    params = [p for _, p in model.named_parameters(remove_duplicate=False)]
    return sum(int(torch.count_nonzero(p)) if nonzero_only else p.numel() for p in params)


@wrong("per-module sum", hint="summing each module's own parameters counts a tied weight in every module that "
                              "holds it; use model.parameters(), which yields each tensor once")
def per_module_sum(model, nonzero_only=False):
    total = 0
    for m in model.modules():
        for p in m.parameters(recurse=False):
            total += int(torch.count_nonzero(p)) if nonzero_only else p.numel()
    return total


@wrong("trainable only", hint="count every parameter, frozen ones (requires_grad=False) included")
def trainable_only(model, nonzero_only=False):
    params = [p for p in model.parameters() if p.requires_grad]
    return sum(int(torch.count_nonzero(p)) if nonzero_only else p.numel() for p in params)


@wrong("nonzero_only ignored", hint="with nonzero_only=True count only the entries that are not 0 "
                                    "(torch.count_nonzero)")
def nonzero_only_ignored(model, nonzero_only=False):
    return sum(p.numel() for p in model.parameters())


@wrong("zeros counted", hint="nonzero_only counts the entries != 0, not the zeros")
def zeros_counted(model, nonzero_only=False):
    if nonzero_only:
        return sum(int((p == 0).sum()) for p in model.parameters())
    return sum(p.numel() for p in model.parameters())


@wrong("weights only", hint="biases are parameters too")
def weights_only(model, nonzero_only=False):
    params = [p for n, p in model.named_parameters() if n.endswith("weight")]
    return sum(int(torch.count_nonzero(p)) if nonzero_only else p.numel() for p in params)


@wrong("number of tensors", hint="count scalar parameters (sum of p.numel()), not parameter tensors")
def number_of_tensors(model, nonzero_only=False):
    return len(list(model.parameters()))


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently
# ----------------------------------------------------------------------------------------------------------
@correct("parameters()")
def ok_parameters(model, nonzero_only=False):
    if nonzero_only:
        return sum(int((p != 0).sum()) for p in model.parameters())
    return sum(p.numel() for p in model.parameters())


@correct("dedup by data_ptr")
def ok_data_ptr(model, nonzero_only=False):
    seen, total = set(), 0
    for _, p in model.named_parameters(remove_duplicate=False):
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        total += torch.count_nonzero(p).item() if nonzero_only else p.numel()
    return total
