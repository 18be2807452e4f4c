"""Speculative sampling: a cheap draft model proposes, the target model verifies, the output is the target's.

Leviathan, Kalman & Matias (2023, ICML, "Fast Inference from Transformers via Speculative Decoding") and
Chen et al. (2023, arXiv:2302.01318, "Accelerating Large Language Model Decoding with Speculative Sampling")
found the same rule.  Notation here is Leviathan's: **p = target**, **q = draft** (Chen et al. use the
letters the other way round, a common source of the inverted ratio).

One round, for a committed prefix:

1. the draft samples γ tokens ``x_1..x_γ`` autoregressively, ``x_i ~ q_i = q(· | prefix, x_<i)``;
2. the target scores prefix + all γ tokens in **one** forward pass, giving ``p_1..p_{γ+1}``;
3. :func:`speculative_accept`: accept ``x_i`` with probability ``min(1, p_i(x_i) / q_i(x_i))``, in order;
   at the first rejection sample a replacement from ``norm(max(0, p_i − q_i))`` and stop; if all γ are
   accepted, sample one bonus token from ``p_{γ+1}``.

Every emitted token is then distributed exactly as the target's next-token distribution: for the first one,
P(y) = min(p, q)(y) [accepted] + (1 − Σ min(p, q)) · (p − q)₊(y) / Σ (p − q)₊ [resampled] = p(y), because
Σ (p − q)₊ = 1 − Σ min(p, q).  Each round emits between 1 and γ + 1 tokens per target call; the expected
acceptance of one draft token is ``Σ_v min(p, q)`` = 1 − total variation distance between p and q.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdcore import _validate as v
from kdcore.distill import _probabilities

__all__ = ["speculative_accept", "speculative_generate", "acceptance_probability", "expected_tokens_per_call",
           "expected_speedup", "SpeculativeStats", "compare_decoding", "per_call_ms", "output_distribution"]


def _generator(generator: object) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), "
                        f"got {type(generator).__name__}")
    return generator


def _accept_inputs(draft_probs: object, target_probs: object, draft_tokens: object,
                   generator: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator]:
    """Checked inputs of :func:`speculative_accept`: ``(q [γ, V], p [γ + 1, V], int64 tokens [γ], generator)``."""
    v.tensor("draft_probs", draft_probs, ndim=2)
    v.tensor("target_probs", target_probs, ndim=2)
    if draft_probs.shape[0] == 0:
        raise ValueError("draft_probs must have at least one row (γ >= 1 draft tokens), got shape "
                         f"{tuple(draft_probs.shape)}")
    q = _probabilities("draft_probs", draft_probs)
    p = _probabilities("target_probs", target_probs)
    g = _generator(generator)
    if q.shape[1] != p.shape[1]:
        raise ValueError(f"draft_probs and target_probs must have the same vocabulary size V (last dim), "
                         f"got V = {q.shape[1]} and V = {p.shape[1]}")
    gamma, V = q.shape
    if p.shape[0] != gamma + 1:
        raise ValueError(f"target_probs must have γ + 1 = {gamma + 1} rows (one per draft token plus one for the "
                         f"bonus token), got {p.shape[0]}")
    x = v.tensor("draft_tokens", draft_tokens, ndim=1)
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"draft_tokens must be an integer tensor of token ids, got dtype {x.dtype}")
    if x.shape[0] != gamma:
        raise ValueError(f"draft_tokens must hold γ = {gamma} tokens (one per row of draft_probs), "
                         f"got {x.shape[0]}")
    x = x.long()
    if int(x.min()) < 0 or int(x.max()) >= V:
        raise ValueError(f"draft_tokens must be token ids in [0, {V - 1}], got values in "
                         f"[{int(x.min())}, {int(x.max())}]")
    q_x = q[torch.arange(gamma), x]                                # [γ], q_i(x_i)
    if bool((q_x <= 0).any()):
        i = int((q_x <= 0).nonzero()[0])
        raise ValueError(f"draft_tokens[{i}] = {int(x[i])} has probability 0 under draft_probs[{i}]: "
                         "each draft token must have been sampled from its draft distribution")
    return q, p, x, g


def speculative_accept(draft_probs: torch.Tensor, target_probs: torch.Tensor, draft_tokens: torch.Tensor,
                       generator: torch.Generator) -> torch.Tensor:
    """The acceptance rule of speculative sampling; returns the emitted tokens, a 1-D int64 tensor.

    draft_probs: [γ, V], row i = the draft's distribution q_i that ``draft_tokens[i]`` was sampled from;
    target_probs: [γ + 1, V], row i = the target's distribution p_i at the same position (the last row is
    the target's distribution after all γ draft tokens, used only for the bonus token);
    draft_tokens: [γ] integer token ids, each with q_i(x_i) > 0; generator: the source of randomness.
    Rows must be probability distributions (>= 0, summing to 1 within 1e-3).

    Returns ``[x_1, ..., x_n, y]``: the n accepted draft tokens (0 <= n <= γ, always a prefix of
    ``draft_tokens``) followed by one extra token y: sampled from ``norm(max(0, p_{n+1} − q_{n+1}))`` if
    draft token n + 1 was rejected, else (n = γ) the bonus token sampled from ``p_{γ+1}``.  The length is
    n + 1, between 1 and γ + 1.  The uniforms come from ``torch.rand(γ, generator=generator)``, the extra
    token from ``torch.multinomial(..., generator=generator)``.
    """
    q, p, x, g = _accept_inputs(draft_probs, target_probs, draft_tokens, generator)
    n, extra = _accept(q, p, x.tolist(), g)
    return torch.tensor(x.tolist()[:n] + [extra], dtype=torch.long)


def _accept(q: torch.Tensor, p: torch.Tensor, x: list[int], g: torch.Generator) -> tuple[int, int]:
    """Core of :func:`speculative_accept` without the argument checks (the decoding loop calls it once per
    round, where a check costs as much as the rule): returns (n accepted, extra token).

    q [γ, V], p [γ + 1, V], x the γ draft tokens as ints.  Scalars go through Python floats: for γ of a few
    tokens that is several times faster than tensor indexing on CPU."""
    gamma = len(x)
    r = torch.rand(gamma, generator=g, dtype=torch.float64).tolist()
    q_x = q[torch.arange(gamma), x].tolist()                      # q_i(x_i) > 0
    p_x = p[torch.arange(gamma), x].tolist()                      # p_i(x_i)
    for i in range(gamma):
        # accept x_i with probability min(1, p_i(x_i) / q_i(x_i)):  r < p/q, written without the division
        if not r[i] * q_x[i] < p_x[i]:
            residual = (p[i] - q[i]).clamp(min=0)                   # (p − q)₊, mass 1 − Σ min(p, q) > 0
            if float(residual.sum()) <= 0:                          # p == q up to rounding: the rejection had
                residual = p[i]                                     # probability ~0; p is then the residual
            return i, int(torch.multinomial(residual, 1, generator=g))
    return gamma, int(torch.multinomial(p[gamma], 1, generator=g))  # all accepted: the bonus token


def output_distribution(draft_probs: torch.Tensor, target_probs: torch.Tensor) -> dict[tuple[int, ...], float]:
    """The exact distribution of what :func:`speculative_accept` returns when each draft token x_i is sampled
    from its row q_i: ``{(x_1, ..., x_n, y): probability}``, by enumerating all V^γ draft sequences and every
    accept / reject branch (brute force: small V and γ only, V^γ <= 10^6).

    The first emitted token's marginal is exactly ``target_probs[0]``: summing the outcomes by their first
    token is the proof by enumeration that speculative sampling preserves the target's distribution."""
    q = _probabilities("draft_probs", draft_probs).double()
    p = _probabilities("target_probs", target_probs).double()
    if q.dim() != 2 or p.dim() != 2 or p.shape != (q.shape[0] + 1, q.shape[1]):
        raise ValueError(f"draft_probs must be [γ, V] and target_probs [γ + 1, V], got {tuple(q.shape)} and "
                         f"{tuple(p.shape)}")
    gamma, V = q.shape
    if V ** gamma > 10 ** 6:
        raise ValueError(f"V^γ = {V}^{gamma} draft sequences is too many to enumerate (at most 10^6)")
    import itertools
    import math

    ql, pl = q.tolist(), p.tolist()
    out: dict[tuple[int, ...], float] = {}
    for xs in itertools.product(range(V), repeat=gamma):
        reach = math.prod(ql[i][x] for i, x in enumerate(xs))     # P(the draft proposes xs)
        if reach == 0:
            continue
        for i, x in enumerate(xs):
            accept = min(1.0, pl[i][x] / ql[i][x])
            residual = [max(0.0, a - b) for a, b in zip(pl[i], ql[i])]
            total = sum(residual)
            if reach > 0 and accept < 1 and total > 0:              # rejected here: one token from (p − q)₊
                for y in range(V):
                    if residual[y] > 0:
                        key = (*xs[:i], y)
                        out[key] = out.get(key, 0.0) + reach * (1 - accept) * residual[y] / total
            reach *= accept
        for y in range(V):                                          # all accepted: the bonus token from p_{γ+1}
            if reach > 0 and pl[gamma][y] > 0:
                out[(*xs, y)] = out.get((*xs, y), 0.0) + reach * pl[gamma][y]
    return out


# ---------------------------------------------------------------------------------------------------
# what to expect: acceptance rate and speed-up (Leviathan et al. 2023, section 3)
# ---------------------------------------------------------------------------------------------------
def acceptance_probability(draft_probs: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Probability that a draft token sampled from q is accepted by p: ``Σ_v min(p, q)`` per row [...].

    Equal to 1 − TV(p, q).  Leviathan et al. call its expectation over positions α."""
    q = _probabilities("draft_probs", draft_probs)
    p = _probabilities("target_probs", target_probs)
    v.same_shape("draft_probs", q, "target_probs", p)
    return torch.minimum(p, q).sum(dim=-1)


def expected_tokens_per_call(alpha: float, gamma: int) -> float:
    """Expected tokens emitted per target call, ``(1 − α^(γ+1)) / (1 − α)`` (γ + 1 at α = 1), assuming
    independent acceptances with rate α (Leviathan et al. 2023, eq. 1)."""
    alpha = v.in_unit_interval("alpha", alpha)
    gamma = v.integer("gamma", gamma, minimum=0)
    if alpha == 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def expected_speedup(alpha: float, gamma: int, c: float) -> float:
    """Expected wall-clock speed-up over plain target decoding, ``(1 − α^(γ+1)) / ((1 − α)(γc + 1))``,
    with c = cost of a draft call / cost of a target call (Leviathan et al. 2023, theorem 3.8).

    Below 1 means slower: with c near 1 (a draft as slow as the target per call, as on a CPU at batch 1
    where per-call overhead dominates) no acceptance rate can pay for the γ extra draft calls."""
    c = v.real("c", c)
    if c < 0:
        raise ValueError(f"c must be >= 0 (a cost ratio), got {c!r}")
    return expected_tokens_per_call(alpha, gamma) / (gamma * c + 1.0)


@dataclass
class SpeculativeStats:
    """Counts of one speculative generation."""
    new_tokens: int = 0          # tokens emitted (excluding the prompt)
    target_calls: int = 0        # forward passes of the target (the prefill of the prompt excluded)
    draft_calls: int = 0         # forward passes of the draft (the prefill of the prompt excluded)
    proposed: int = 0            # draft tokens proposed
    accepted: int = 0            # draft tokens accepted
    rejected: int = 0            # draft tokens rejected (at most one per round; the rest of the round is discarded)

    @property
    def acceptance_rate(self) -> float:
        """Share of the proposed draft tokens that were accepted, E[n]/γ. The tokens after a rejection count as
        proposed but are never judged, so this is below Leviathan et al.'s α: use :attr:`alpha` in formulas."""
        return self.accepted / self.proposed if self.proposed else float("nan")

    @property
    def alpha(self) -> float:
        """Per-token acceptance probability, estimated as accepted / (accepted + rejected): of the draft tokens
        the target judged, the share accepted. This is the α of Leviathan et al.'s formulas
        (:func:`expected_tokens_per_call`, :func:`expected_speedup`), E[Σ min(p, q)] over the positions reached."""
        judged = self.accepted + self.rejected
        return self.accepted / judged if judged else float("nan")

    @property
    def tokens_per_target_call(self) -> float:
        return self.new_tokens / self.target_calls if self.target_calls else float("nan")


# ---------------------------------------------------------------------------------------------------
# the decoding loop: a draft and a target GPT, batch 1, each with its KV cache
# ---------------------------------------------------------------------------------------------------
def _next_token_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """[..., V] logits → distributions: softmax(logits / temperature), or one-hot argmax at temperature 0
    (greedy decoding is speculative sampling with one-hot distributions: accepted iff the argmaxes agree)."""
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    return F.softmax(logits / temperature, dim=-1)


@torch.no_grad()
def speculative_generate(target: nn.Module, draft: nn.Module, idx: torch.Tensor, max_new_tokens: int,
                         gamma: int = 4, temperature: float = 1.0,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, SpeculativeStats]:
    """Generate ``max_new_tokens`` tokens after ``idx [1, T0]`` from ``target``, with ``draft`` proposing
    ``gamma`` tokens per round; returns ``(tokens [1, T0 + max_new_tokens], stats)``.

    target, draft: :class:`kdcore.llm.gpt.GPT` models (same vocabulary) called as ``model(idx, cache=...)``;
    both keep a :class:`~kdcore.llm.gpt.KVCache` of the committed text, cropped after each round to drop
    the rejected draft tokens.  ``temperature`` 0 is greedy (the output then equals
    ``target.generate(idx, max_new_tokens, temperature=0)`` up to floating-point ties), otherwise sampling
    from ``softmax(logits / temperature)``: the text is distributed as the target's own samples.
    Batch 1 only; ``T0 + max_new_tokens + gamma`` must fit in both models' ``block_size`` (no sliding window).
    Both models are put in eval mode for the call and restored after.
    """
    from kdcore.llm.gpt import KVCache      # the foundation module; imported here to keep this import light

    for name, model in (("target", target), ("draft", draft)):
        if not isinstance(model, nn.Module) or not hasattr(model, "config"):
            raise TypeError(f"{name} must be a kdcore.llm.gpt.GPT, got {type(model).__name__}")
    if target.config.vocab_size != draft.config.vocab_size:
        raise ValueError(f"target and draft must share the vocabulary, got vocab_size "
                         f"{target.config.vocab_size} and {draft.config.vocab_size}")
    x = v.tensor("idx", idx, ndim=2)
    if x.shape[0] != 1 or x.shape[1] == 0:
        raise ValueError(f"idx must be one prompt of at least one token, shape [1, T0], got {tuple(x.shape)}")
    max_new_tokens = v.integer("max_new_tokens", max_new_tokens, minimum=1)
    gamma = v.integer("gamma", gamma, minimum=1)
    temperature = v.real("temperature", temperature)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    room = min(target.config.block_size, draft.config.block_size)
    if x.shape[1] + max_new_tokens + gamma > room:
        raise ValueError(f"prompt length {x.shape[1]} + max_new_tokens {max_new_tokens} + gamma {gamma} must "
                         f"be <= block_size {room} (no sliding window here)")
    g = generator if generator is not None else torch.Generator().manual_seed(torch.seed() % 2**63)
    _generator(g)

    modes = target.training, draft.training
    target.eval(), draft.eval()
    try:
        seq = x[0].tolist()
        t_cache, d_cache = KVCache(target.config.n_layer), KVCache(draft.config.n_layer)
        if len(seq) > 1:                                       # prefill: every prompt token but the last
            prefix = torch.tensor([seq[:-1]])
            target(prefix, cache=t_cache)
            draft(prefix, cache=d_cache)
        stats = SpeculativeStats()
        goal = len(seq) + max_new_tokens
        while len(seq) < goal:
            # 1. the draft proposes γ tokens, one call each (its cache may lag: feed what it has not seen)
            drafted, q_rows = [], []
            for _ in range(gamma):
                pending = torch.tensor([(seq + drafted)[d_cache.length:]])
                q = _next_token_probs(draft(pending, cache=d_cache)[0, -1], temperature)   # [V]
                drafted.append(int(q.argmax()) if temperature == 0 else
                               int(torch.multinomial(q, 1, generator=g)))
                q_rows.append(q)
            # 2. the target scores the last committed token and the γ proposals in one call: γ + 1 rows
            pending = torch.tensor([(seq + drafted)[t_cache.length:]])
            p = _next_token_probs(target(pending, cache=t_cache)[0, -(gamma + 1):], temperature)  # [γ+1, V]
            # 3. accept a prefix, add one token; roll both caches back to the committed text
            n, extra = _accept(torch.stack(q_rows), p, drafted, g)
            committed = len(seq)
            seq += drafted[:n] + [extra]
            t_cache.crop(committed + n)                        # keep everything but the newest token
            d_cache.crop(min(d_cache.length, committed + n))
            stats.target_calls += 1
            stats.draft_calls += gamma
            stats.proposed += gamma
            stats.accepted += n
            stats.rejected += n < gamma
        seq = seq[:goal]
        stats.new_tokens = max_new_tokens
        return torch.tensor([seq], dtype=torch.long), stats
    finally:
        target.train(modes[0])
        draft.train(modes[1])


# ---------------------------------------------------------------------------------------------------
# measuring: plain target decoding vs speculative decoding, interleaved rounds
# ---------------------------------------------------------------------------------------------------
def _quartiles(xs: list[float]) -> tuple[float, float]:
    import statistics
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4)
    return q[0], q[2]


@torch.no_grad()
def compare_decoding(target: nn.Module, drafts: dict[str, nn.Module], prompts: list[torch.Tensor],
                     max_new_tokens: int, gamma: int = 4, temperature: float = 1.0, seed: int = 0) -> dict:
    """Wall-clock of plain decoding with ``target`` (``target.generate``, KV cache) against
    :func:`speculative_generate` with each draft, in interleaved rounds: per prompt (one round), plain decoding
    and then every draft decode ``max_new_tokens`` tokens with the generator seeded ``seed + round``.

    The speed-up of a draft is the median over rounds of (plain seconds / speculative seconds) within the round,
    so that a slow spell of a shared machine cancels out. Returns ``{"plain_ms_per_token": ..., name: {"speedup",
    "speedup_iqr", "acceptance", "alpha", "tokens_per_call", "same_as_plain", "rounds"}}`` ("acceptance" is the
    share of proposed draft tokens accepted, "alpha" the per-token rate of :attr:`SpeculativeStats.alpha`); ``same_as_plain`` counts the
    rounds whose text equals plain decoding's (every round at temperature 0; at temperature > 0 the two consume
    the generator differently, so equality is not expected, only the same distribution).
    """
    import statistics
    import time

    if not prompts:
        raise ValueError("prompts must hold at least one prompt [1, T0]")
    plain_seconds: list[float] = []
    ratios: dict[str, list[float]] = {name: [] for name in drafts}
    stats: dict[str, list[SpeculativeStats]] = {name: [] for name in drafts}
    same = dict.fromkeys(drafts, 0)
    for r, prompt in enumerate(prompts):
        start = time.perf_counter()
        plain = target.generate(prompt, max_new_tokens, temperature=temperature,
                                generator=torch.Generator().manual_seed(seed + r))
        t_plain = time.perf_counter() - start
        plain_seconds.append(t_plain)
        for name, draft in drafts.items():
            start = time.perf_counter()
            out, st = speculative_generate(target, draft, prompt, max_new_tokens, gamma=gamma,
                                           temperature=temperature, generator=torch.Generator().manual_seed(seed + r))
            ratios[name].append(t_plain / (time.perf_counter() - start))
            stats[name].append(st)
            same[name] += bool(torch.equal(out, plain))
    result: dict = {"plain_ms_per_token": 1e3 * statistics.median(plain_seconds) / max_new_tokens}
    for name in drafts:
        total = SpeculativeStats(**{f.name: sum(getattr(s, f.name) for s in stats[name])   # all rounds pooled
                                    for f in dataclasses.fields(SpeculativeStats)})
        result[name] = {
            "speedup": statistics.median(ratios[name]), "speedup_iqr": _quartiles(ratios[name]),
            "acceptance": total.acceptance_rate, "alpha": total.alpha,
            "tokens_per_call": total.tokens_per_target_call, "same_as_plain": same[name], "rounds": len(prompts)}
    return result


@torch.no_grad()
def per_call_ms(model: nn.Module, prompt: torch.Tensor, repeats: int = 100) -> float:
    """Median milliseconds of one decoding call of ``model`` (one new position after ``prompt [1, T0]`` held
    in a KV cache): the per-token cost of plain decoding, and c's numerator / denominator."""
    import statistics
    import time

    from kdcore.llm.gpt import KVCache

    was_training = model.training
    model.eval()
    try:
        times = []
        for _ in range(repeats):
            cache = KVCache(model.config.n_layer)
            model(prompt[:, :-1], cache=cache)
            start = time.perf_counter()
            model(prompt[:, -1:], cache=cache)
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)
    finally:
        model.train(was_training)
