"""head_importance — how much each attention head matters, as a gate gradient. Taught in notebook 13; reference
``kdcore.llm.prune.head_importance``.

Contract (docs/EXERCISES.md): Michel, Levy & Neubig (2019, NeurIPS): ``|∂L/∂ξ_h|`` at ``ξ = 1`` for every head,
``[n_layer, n_head]``, where ``ξ`` is the GPT's ``head_mask`` (a gate multiplying each head's output) and ``L`` the
mean next-token cross-entropy of the batch (inputs ``batch[:, :-1]``, targets ``batch[:, 1:]``); computed in eval
mode (no dropout); the model's weights, their ``.grad`` and its train/eval mode are left as they were.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from kdcore.checking.cases import case_name, derived_seed, gen, raises_case
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import MUTATION_HINT, Case, compare_obs, compare_values

TIMEOUT = 20.0


# ----------------------------------------------------------------------------------------------------------
# cases: tiny GPTs with uneven ("trained-looking") weights
# ----------------------------------------------------------------------------------------------------------
def _build(seed: int, *, n_layer: int, n_head: int, n_embd: int, B: int, T: int, dropout: float = 0.0,
           train: bool = False, vocab: int = 11):
    from kdcore.llm.gpt import GPT, GPTConfig
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(GPTConfig(vocab_size=vocab, block_size=16, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                              dropout=dropout))
    with torch.no_grad():
        g = gen(seed + 1)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    model.train(train)
    batch = torch.randint(0, vocab, (B, T + 1), generator=gen(seed + 2))
    return (model, batch), {}


def _observe(build):
    def observe(fn):
        (model, batch), _ = build()
        state = {k: t.clone() for k, t in model.state_dict().items()}
        training, batch0 = model.training, batch.clone()
        with torch.random.fork_rng(devices=[]):  # dropout, if left on, draws the same masks on every run
            torch.manual_seed(0)
            out = fn(model, batch)
        mutated = (not all(torch.equal(t, state[k]) for k, t in model.state_dict().items())
                   or not torch.equal(batch, batch0))
        return {"out": out, "mutated": mutated, "grads_left": any(p.grad is not None for p in model.parameters()),
                "mode_kept": model.training == training}
    return observe


GRAD_HINT = ("your function left gradients in the model's parameters (.grad): take the gate's gradient with "
             "torch.autograd.grad(loss, gate), or clear them (model.zero_grad(set_to_none=True)); left there they "
             "would be added to the next training step's")
MODE_HINT = "restore the model's train/eval mode after switching to eval (was_training = model.training ...)"


def _compare(cand: dict, ref: dict):
    if "raised" in ref:
        return compare_obs(cand, ref)
    if cand.get("mutated") != ref["mutated"]:
        return "the model's weights or the batch were modified", MUTATION_HINT
    if cand.get("grads_left") != ref["grads_left"]:
        return "gradients were left in the model's parameters", GRAD_HINT
    if cand.get("mode_kept") != ref["mode_kept"]:
        return "the model's train/eval mode was changed", MODE_HINT
    return compare_values(cand.get("out"), ref["out"], what="importance", rtol=1e-4, atol=1e-7)


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
    dict(n_layer=2, n_head=3, n_embd=12, B=3, T=10),
    dict(n_layer=1, n_head=4, n_embd=8, B=2, T=12),
    dict(n_layer=3, n_head=2, n_embd=8, B=1, T=8, note="one sequence"),
    dict(n_layer=2, n_head=2, n_embd=8, B=4, T=1, note="one position per sequence"),
    dict(n_layer=2, n_head=3, n_embd=12, B=3, T=10, dropout=0.3, train=True,
         note="a model in training mode with dropout: measure without dropout, then restore the mode"),
    dict(n_layer=1, n_head=2, n_embd=8, B=2, T=0, raises=True, note="no target to predict"),
])


# ----------------------------------------------------------------------------------------------------------
# an honest solution: the wrong variants that differ from it by one line are edits of it
# ----------------------------------------------------------------------------------------------------------
def _honest(model, batch):
    if batch.shape[1] < 2:
        raise ValueError("batch must hold at least one input and one target per row")
    was_training = model.training
    model.eval()
    gate = torch.ones(model.config.n_layer, model.config.n_head, requires_grad=True)
    logits = model(batch[:, :-1], head_mask=gate)                                   # [B, T, V]
    loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
    (grad,) = torch.autograd.grad(loss, gate)
    model.train(was_training)
    return grad.abs()


# ----------------------------------------------------------------------------------------------------------
# the misconceptions
# ----------------------------------------------------------------------------------------------------------
wrong("signed gradient", hint="importance is the absolute value |∂L/∂ξ_h|: a head whose removal would lower the "
                              "loss (negative gradient) matters as much as one that would raise it"
      ).edit(_honest, "    return grad.abs()\n", "    return grad\n")

wrong("loss summed over positions", hint="L is the mean cross-entropy over the B·T positions "
                                         "(F.cross_entropy's default reduction), not the sum"
      ).edit(_honest, "batch[:, 1:].flatten())", "batch[:, 1:].flatten(), reduction=\"sum\")")

wrong("targets not shifted", hint="a language model predicts the next token: inputs batch[:, :-1], targets "
                                  "batch[:, 1:]"
      ).edit(_honest, "batch[:, 1:].flatten())", "batch[:, :-1].flatten())")

wrong("gates at 0", hint="the gradient is taken with every gate at 1 (all heads present), ξ = torch.ones(...)"
      ).edit(_honest, "gate = torch.ones(", "gate = torch.zeros(")

wrong("dropout left on", hint="call model.eval() first: with dropout active the gradient is noisy and not the "
                              "model's (then restore the mode)"
      ).edit(_honest, "    model.eval()\n", "")

wrong("mode not restored", hint=MODE_HINT).edit(_honest, "    model.train(was_training)\n", "")


@wrong("parameters' .grad filled by backward()", hint=GRAD_HINT)
def backward_left(model, batch):
    if batch.shape[1] < 2:
        raise ValueError("batch must hold at least one input and one target per row")
    was_training = model.training
    model.eval()
    gate = torch.ones(model.config.n_layer, model.config.n_head, requires_grad=True)
    loss = F.cross_entropy(model(batch[:, :-1], head_mask=gate).flatten(0, 1), batch[:, 1:].flatten())
    loss.backward()
    model.train(was_training)
    return gate.grad.abs()


@wrong("measured ablation instead of the gradient",
       hint="the score is the first-order estimate |∂L/∂ξ_h| (one backward pass), not the measured loss change "
            "when head h is switched off (one forward pass per head; Michel et al. use it as the ground truth)")
def ablation(model, batch):
    if batch.shape[1] < 2:
        raise ValueError("batch must hold at least one input and one target per row")
    was_training = model.training
    model.eval()

    def loss(gate):
        with torch.no_grad():
            return F.cross_entropy(model(batch[:, :-1], head_mask=gate).flatten(0, 1), batch[:, 1:].flatten())

    ones = torch.ones(model.config.n_layer, model.config.n_head)
    base = loss(ones)
    out = torch.zeros_like(ones)
    for layer in range(ones.shape[0]):
        for head in range(ones.shape[1]):
            off = ones.clone()
            off[layer, head] = 0.0
            out[layer, head] = (loss(off) - base).abs()
    model.train(was_training)
    return out


@wrong("mean of per-sequence |gradients|",
       hint="the contract takes one gradient, of the batch's mean loss, then its absolute value; averaging "
            "|gradient| sequence by sequence is the paper's expectation over examples (sum this function over "
            "batches to approximate it)")
def per_sequence(model, batch):
    if batch.shape[1] < 2:
        raise ValueError("batch must hold at least one input and one target per row")
    was_training = model.training
    model.eval()
    total = 0
    for row in batch:
        gate = torch.ones(model.config.n_layer, model.config.n_head, requires_grad=True)
        logits = model(row[None, :-1], head_mask=gate)
        (g,) = torch.autograd.grad(F.cross_entropy(logits.flatten(0, 1), row[1:]), gate)
        total = total + g.abs()
    model.train(was_training)
    return total / batch.shape[0]


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("backward on a leaf gate with the weights frozen, state restored")
def ok_frozen(model, batch):
    if batch.size(1) <= 1:
        raise ValueError("batch: need windows of at least 2 tokens")
    mode = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        head_mask = torch.ones(len(model.h), model.h[0].attn.n_head).requires_grad_()
        logits = model(batch[:, :-1], head_mask=head_mask)
        F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1)).backward()
        return head_mask.grad.abs()
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(mode)


@correct("log_softmax + gather, torch.autograd.grad")
def ok_gather(model, batch):
    if batch.shape[-1] < 2:
        raise ValueError("batch must have T + 1 >= 2 columns")
    training = model.training
    model.train(False)
    xi = torch.ones(model.config.n_layer, model.config.n_head).requires_grad_(True)
    logp = torch.log_softmax(model(batch[:, :-1], head_mask=xi), dim=-1)          # [B, T, V]
    nll = -logp.gather(-1, batch[:, 1:].unsqueeze(-1)).squeeze(-1)                # [B, T]
    grad = torch.autograd.grad(nll.mean(), xi)[0]
    model.train(training)
    return torch.abs(grad)
