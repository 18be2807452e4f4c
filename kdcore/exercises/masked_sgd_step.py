"""masked_sgd_step — one fine-tuning step of a pruned model with its masks held fixed. Taught in notebook 06;
reference ``kdcore.prune.masked_sgd_step``.

Contract (docs/EXERCISES.md): one optimizer step on the cross-entropy of ``model(x)`` against ``y``; afterwards every
pruned weight (mask False) is exactly 0 and the kept weights equal the reference's, whatever the optimizer's state
(momentum, weight decay, Adam moments) and whatever ``.grad`` held before; returns the loss of the forward pass
(a number); x, y and the masks are not modified.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kdcore.checking.cases import cases
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import MUTATION_HINT, Observation, changed, compare_values, module_state, tensor_snapshot


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, optimizer: str, earlier_step: bool = False, stale_grad: bool = False):
    """A pruned MLP 6 → 10 → 4 (about half of each weight masked), a batch of 12 and an optimizer:
    ``"SGD"`` (lr 0.3), ``"SGD with momentum and weight decay"`` or ``"Adam"`` (lr 0.05).
    ``earlier_step``: the optimizer holds state (momentum, Adam moments) from an earlier, unmasked step;
    ``stale_grad``: .grad already filled by an unrelated backward pass."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 4))
        x = torch.randn(12, 6)
        y = torch.randint(0, 4, (12,))
        masks = {"0.weight": torch.rand(10, 6) > 0.5, "2.weight": torch.rand(4, 10) > 0.4}
    opt = {"SGD": lambda: torch.optim.SGD(model.parameters(), lr=0.3),
           "SGD with momentum and weight decay":
               lambda: torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, weight_decay=0.01),
           "Adam": lambda: torch.optim.Adam(model.parameters(), lr=0.05)}[optimizer]()
    if earlier_step:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():  # the model is already pruned when fine-tuning starts
        for name, p in model.named_parameters():
            if name in masks:
                p.mul_(masks[name])
    if stale_grad:
        opt.zero_grad()
        model(x).pow(2).sum().backward()
    return (model, masks, x, y, opt), {}


def _observe(fn: Callable, args: tuple, kwargs: dict) -> Observation:
    """The model's weights after the step, and how many pruned weights are not 0."""
    model, masks, x, y, _ = args
    before = tensor_snapshot(x, y, *masks.values())
    loss = fn(*args, **kwargs)
    params = dict(model.named_parameters())
    return {
        "mutated": changed(before, x, y, *masks.values()),
        "loss": loss,
        "pruned_nonzero": sum(int((params[k].detach()[~m] != 0).sum()) for k, m in masks.items()),
        "state": module_state(model),
    }


def _compare(cand: Observation, ref: Observation):
    if cand.get("mutated") != ref["mutated"]:
        return "x, y or a mask was modified", MUTATION_HINT
    if cand.get("pruned_nonzero") != ref["pruned_nonzero"]:
        return (f"{cand.get('pruned_nonzero')} pruned weights are not 0 after the step",
                "re-apply the masks to the weights after optimizer.step() (under torch.no_grad())")
    failure = compare_values(cand.get("state"), ref["state"], what="weights after the step", rtol=1e-4, atol=1e-6)
    if failure:
        return failure[0], "the kept weights' update differs from one step on the cross-entropy with zeroed gradients"
    return compare_values(cand.get("loss"), ref["loss"], what="returned loss", rtol=1e-5, atol=1e-6)


CASES = cases(_build, [
    dict(optimizer="SGD", note="about half the weights pruned"),
    dict(optimizer="SGD with momentum and weight decay", earlier_step=True),
    dict(optimizer="Adam", earlier_step=True),
    dict(optimizer="SGD", stale_grad=True),
], observe=_observe, compare=_compare)

_ELEMENTWISE = ("what the pruned weights' gradients hold before the step reaches only their own optimizer state "
                "(SGD, momentum, weight decay and Adam act entry by entry), and the weights are masked again after the "
                "step, so no kept weight and no pruned weight differs")
_NUMBER = ("the loss is then a 0-dim tensor of the same value; the grader compares values, and a 0-dim tensor and a "
           "number are interchangeable in the contract")
EQUIVALENT_MUTANTS = {
    "line +20, col 15: `is not` → `is` in `grad is not None`": _ELEMENTWISE,
    "line +21, col 82: `0` → `1`": _ELEMENTWISE,
    "line +21, col 82: `0` → `-1`": _ELEMENTWISE,
    "line +24, col 11: `float(loss.detach())` → `loss.detach()`": _NUMBER,
    "line +24, col 17: `loss.detach()` → `loss`": _NUMBER,
}


# ----------------------------------------------------------------------------------------------------------
# an honest solution (also a correct answer); the wrong variants below that differ from it by one line are
# edits of it
# ----------------------------------------------------------------------------------------------------------
@correct("re-mask after step")
def _honest(model, masks, x, y, optimizer):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    # momentum, weight decay and Adam move a weight even with a zero gradient: zero the pruned weights again
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in masks:
                p.mul_(masks[name])
    return loss.item()


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
@wrong("gradient masked only", hint="masking the gradient is not enough: momentum, weight decay and Adam move a "
                                    "weight even with a zero gradient; re-apply the mask to the weights after "
                                    "optimizer.step()")
def gradient_masked_only(model, masks, x, y, optimizer):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    for name, p in model.named_parameters():
        if name in masks:
            p.grad.mul_(masks[name])
    optimizer.step()
    return loss.item()


wrong("masks not applied", hint="the masks are ignored: after optimizer.step() set the pruned weights back to 0"
      ).edit(_honest, """    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in masks:
                p.mul_(masks[name])
""", "")


@wrong("masks applied before the step only", hint="apply the masks *after* optimizer.step(): the step itself moves "
                                                  "pruned weights away from 0")
def masked_before_step(model, masks, x, y, optimizer):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in masks:
                p.mul_(masks[name])
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


wrong("inverted masks", hint="True = keep: zero the weights where the mask is False"
      ).edit(_honest, "p.mul_(masks[name])", "p.mul_(~masks[name])")

wrong("no zero_grad", hint="call optimizer.zero_grad() before backward (stale gradients)"
      ).edit(_honest, "    optimizer.zero_grad()\n", "")

wrong("no optimizer.step()", hint="call optimizer.step() after loss.backward()"
      ).edit(_honest, "    optimizer.step()\n", "")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("mask gradients and weights")
def ok_both(model, masks, x, y, optimizer):
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
