"""snip_scores — SNIP connection sensitivity, pruning before training. Taught in notebook 06; reference
``kdcore.prune.snip_scores``.

Contract (docs/EXERCISES.md): for the weight of every Linear/Conv layer, ``|∂L/∂w ⊙ w|`` with ``L`` the (mean)
cross-entropy of ``model(x)`` against ``y``; returns ``{name: score}`` keyed as in ``model.named_parameters()``; the
model's weights, ``.grad`` and train/eval mode are left as they were; the scores are detached (no autograd graph).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kdcore.checking.cases import cases
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import Observation, changed, compare_values, grads, module_state, tensor_snapshot


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, model: str, stale_grad: bool = False, eval_mode: bool = False):
    """``model="CNN"``: conv, Linear, LayerNorm, Linear on a batch of 6 [1, 4, 4] images (4 classes);
    ``"MLP"``: three Linear layers on a batch of 10 (3 classes). ``stale_grad``: .grad already filled by an
    unrelated backward pass; ``eval_mode``: the model is in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model == "CNN":
            net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 8),
                                nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 4))
            x = torch.randn(6, 1, 4, 4)
        else:
            net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3))
            x = torch.randn(10, 5)
        y = torch.randint(0, 4 if model == "CNN" else 3, (x.shape[0],))
    if stale_grad:
        net(x).pow(2).mean().backward()
    if eval_mode:
        net.eval()
    return (net, x, y), {}


def _observe(fn: Callable, args: tuple, kwargs: dict) -> Observation:
    """The scores, and whether the call changed the model's weights, its .grad or its train/eval mode."""
    model, x, y = args
    state, grads_before, training = module_state(model), grads(model), model.training
    before = tensor_snapshot(x, y)
    out = fn(*args, **kwargs)
    grads_after = grads(model)
    return {
        "mutated": changed(before, x, y),
        "weights_changed": any(not torch.equal(state[k], v) for k, v in module_state(model).items()),
        "grads_changed": any((grads_before[k] is None) != (g is None) or
                             (g is not None and not torch.equal(g, grads_before[k])) for k, g in grads_after.items()),
        "mode_changed": model.training != training,
        "attached": isinstance(out, dict) and any(isinstance(s, torch.Tensor) and s.requires_grad
                                                  for s in out.values()),
        "out": out,
    }


def _compare(cand: Observation, ref: Observation):
    if cand.get("weights_changed") != ref["weights_changed"]:
        return "the model's weights changed", "scores are computed without changing the model"
    if cand.get("grads_changed") != ref["grads_changed"]:
        return ("the model's .grad changed", "leave .grad as it was: use torch.autograd.grad(loss, weights), or work "
                "on a copy.deepcopy(model)")
    if cand.get("mode_changed") != ref["mode_changed"]:
        return "the model's train/eval mode changed", "do not call model.train() / model.eval() here"
    if cand.get("attached") != ref["attached"]:
        return ("a score still requires grad", "detach the scores (`.detach()`): an autograd graph attached to them "
                "keeps the model's activations alive")
    return compare_values(cand.get("out"), ref["out"], what="scores", rtol=1e-4, atol=1e-7)


CASES = cases(_build, [
    dict(model="CNN", note="conv, Linear and LayerNorm layers"),
    dict(model="MLP", note="three Linear layers"),
    dict(model="CNN", stale_grad=True, note=".grad must be left as it was"),
    dict(model="MLP", eval_mode=True, note="the model stays in eval mode"),
], observe=_observe, compare=_compare)

EQUIVALENT_MUTANTS = {
    "line +20, col 73: `True` → `False`":
        "allow_unused matters only for a Linear/Conv layer that takes no part in the loss, outside the exercise's "
        "domain (every layer of the models scored here is used in the forward pass)",
}


# ----------------------------------------------------------------------------------------------------------
# an honest solution (also a correct answer); the wrong variants below that differ from it by one line are
# edits of it
# ----------------------------------------------------------------------------------------------------------
@correct("autograd.grad")
def _honest(model, x, y):
    layers = (nn.Linear, nn.Conv2d)
    weights = {f"{name}.weight": m.weight for name, m in model.named_modules() if isinstance(m, layers)}
    loss = F.cross_entropy(model(x), y)
    gradients = torch.autograd.grad(loss, list(weights.values()))      # leaves the model's .grad untouched
    return {name: (g * w).abs().detach() for (name, w), g in zip(weights.items(), gradients)}


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("signed scores", hint="SNIP's saliency is the absolute value |g ⊙ w|"
      ).edit(_honest, "(g * w).abs().detach()", "(g * w).detach()")

wrong("gradient only", hint="multiply the gradient by the weight: |∂L/∂w ⊙ w|"
      ).edit(_honest, "(g * w).abs().detach()", "g.abs()")

wrong("biases scored too", hint="score only the weights of Linear/Conv layers, not biases"
      ).edit(_honest, '{f"{name}.weight": m.weight for name, m in model.named_modules() if isinstance(m, layers)}',
             "dict(model.named_parameters())")

wrong("every *weight* parameter", hint="only Linear/Conv weights are scored: LayerNorm/BatchNorm weights are not "
                                       "connections"
      ).edit(_honest, '{f"{name}.weight": m.weight for name, m in model.named_modules() if isinstance(m, layers)}',
             '{k: p for k, p in model.named_parameters() if k.endswith("weight")}')

wrong("normalised scores", hint="return the raw |g ⊙ w| (the paper normalises by the total only to pick a threshold)"
      ).edit(_honest, "    return {name: (g * w).abs().detach() for (name, w), g in zip(weights.items(), gradients)}",
             """    scores = {name: (g * w).abs().detach() for (name, w), g in zip(weights.items(), gradients)}
    total = sum(s.sum() for s in scores.values())
    return {name: s / total for name, s in scores.items()}""")


@wrong(".grad left filled", hint="backward() left gradients in the model's .grad: use torch.autograd.grad or a deep "
                                 "copy, or restore the previous .grad")
def grad_left_filled(model, x, y):
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return {f"{name}.weight": (m.weight.grad * m.weight).abs().detach()
            for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


@wrong("stale gradients accumulated", hint="backward() adds to existing .grad: start from zero gradients (or use "
                                           "torch.autograd.grad)")
def stale_gradients(model, x, y):
    saved = {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()}
    F.cross_entropy(model(x), y).backward()                      # no zero_grad: adds to what .grad held
    scores = {f"{name}.weight": (m.weight.grad * m.weight).abs().detach()
              for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    for k, p in model.named_parameters():
        p.grad = saved[k]
    return scores


wrong("summed cross-entropy", hint="use the mean cross-entropy over the batch (F.cross_entropy's default), not the sum"
      ).edit(_honest, "F.cross_entropy(model(x), y)", 'F.cross_entropy(model(x), y, reduction="sum")')

wrong("module names as keys", hint="key the scores by parameter name as in model.named_parameters() (e.g. '0.weight')"
      ).edit(_honest, 'f"{name}.weight": m.weight', "name: m.weight")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("backward and restore .grad")
def ok_restore(model, x, y):
    saved = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    loss = nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
    scores = {f"{n}.weight": (m.weight.grad * m.weight).abs().detach().clone()
              for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    for n, p in model.named_parameters():
        p.grad = saved[n]
    return scores


@correct("deepcopy")
def ok_copy(model, x, y):
    clone = copy.deepcopy(model)
    clone.zero_grad()
    F.cross_entropy(clone(x), y).backward()
    return {f"{n}.weight": (m.weight.grad * m.weight.detach()).abs()
            for n, m in clone.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
