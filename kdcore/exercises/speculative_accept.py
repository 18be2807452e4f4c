"""speculative_accept — the acceptance rule of speculative sampling. Taught in notebook 14; reference
``kdcore.llm.speculative.speculative_accept``.

Contract (docs/EXERCISES.md): ``draft_probs [γ, V]`` (q, the draft), ``target_probs [γ + 1, V]`` (p, the target),
``draft_tokens [γ]``, a ``torch.Generator``; accept ``x_i`` with probability ``min(1, p_i(x_i) / q_i(x_i))`` in
order; at the first rejection sample from ``norm(max(0, p_i − q_i))`` and stop; if all γ are accepted sample a bonus
token from ``p_{γ+1}``; return the accepted tokens and the extra one as a 1-D integer tensor (Leviathan et al. 2023;
Chen et al. 2023). Rows that are not distributions, different vocabulary sizes or a wrong number of target rows
raise ValueError.

How it is graded. The rule is random, so the learner's function and the reference cannot be compared draw by draw
(each may consume the generator differently). Two kinds of cases:

* deterministic situations where the rule leaves no choice (draft equal to the target, a draft token the target
  never produces with a one-hot residual, greedy one-hot rows): the output must be exactly the reference's, on
  several generators;
* Monte-Carlo: ``N_DRAWS`` rounds with draft tokens sampled from q by the grader; the histogram of the outputs
  (every distinct returned sequence) must match the reference's histogram (two-sample test: every outcome within
  ``Z_MAX`` standard errors, ``|c_a − c_b| / sqrt(c_a + c_b)``) and the **exact** distribution of the rule,
  computed here by enumerating every draft sequence and every accept / reject branch (``|c − N·P| /
  sqrt(N·P·(1 − P)) <= Z_MAX``; an outcome of probability 0 must never occur). For a correct sampler the chance
  of failing a case is below 1e-5 (Z_MAX = 5 over at most 30 outcomes); the classic mistakes move some outcome by
  15 or more standard errors.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from kdcore.checking.cases import call_case, gen, probs
from kdcore.checking.core import Case, Observation, expect_raises
from kdcore.checking.catalogue import correct, wrong
from kdcore.llm.speculative import output_distribution

TIMEOUT = 30.0      # seconds per case: a Monte-Carlo case calls the function N_DRAWS times
N_DRAWS = 1000
Z_MAX = 5.0


def exact_outcomes(q: torch.Tensor, p: torch.Tensor) -> dict[str, float]:
    """``{"x1,...,y": probability}``: the exact output distribution of the published rule, by enumerating every
    draft sequence and branch (:func:`kdcore.llm.speculative.output_distribution`; tests/test_llm_speculative.py
    checks that enumeration against an independent one)."""
    return {",".join(map(str, key)): prob for key, prob in output_distribution(q, p).items()}


def _key(out: object) -> str:
    """The returned tokens as a string key ("2,0,1"); anything that is not a sequence of ints is described."""
    try:
        flat = torch.as_tensor(out).reshape(-1)
        if flat.is_floating_point() or flat.dtype == torch.bool:
            return f"<{flat.dtype} tensor, expected integer token ids>"
        return ",".join(str(int(t)) for t in flat.tolist())
    except Exception:  # noqa: BLE001 - the learner may return anything
        return f"<{type(out).__name__}>"


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def _sample_drafts(q: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``[n, γ]`` draft tokens, row i sampled from q_i (the grader plays the draft model)."""
    g = gen(seed)
    return torch.stack([torch.multinomial(q, 1, generator=g).squeeze(1) for _ in range(n)])


def monte_carlo_case(name: str, q: torch.Tensor, p: torch.Tensor, seed: int, n: int = N_DRAWS) -> Case:
    drafts = _sample_drafts(q, n, seed)

    def observe(fn: Callable) -> Observation:
        g = gen(seed + 1)
        counts: dict[str, int] = {}
        for x in drafts:
            key = _key(fn(q.clone(), p.clone(), x.clone(), g))
            counts[key] = counts.get(key, 0) + 1
        return {"counts": counts, "n": n, "exact": exact_outcomes(q, p)}

    def compare(cand: Observation, other: Observation) -> "tuple[str, str | None] | None":
        """Two-sample test between the candidate's histogram and another's (the reference or a variant)."""
        a, b = _pool(cand.get("counts", {}), other["counts"])
        worst, where = 0.0, ""
        for key in a:
            ca, cb = a[key], b[key]
            z = abs(ca - cb) / math.sqrt(ca + cb) if ca + cb else 0.0
            if z > worst:
                worst, where = z, f"output [{key}] occurred {ca} times in {n} rounds, expected about {cb}"
        if worst > Z_MAX:
            return f"the output distribution differs ({worst:.1f} standard errors): {where}", None
        return None

    def versus_exact(cand: Observation, ref: Observation) -> "tuple[str, str | None] | None":
        counts, exact = cand.get("counts", {}), ref["exact"]
        for key, c in counts.items():
            if exact.get(key, 0.0) < 1e-12:
                return f"output [{key}] occurred {c} times but the rule can never return it", None
        expected = {key: n * P for key, P in exact.items()}
        got, want = _pool(counts, expected)
        for key in got:
            c, e = got[key], want[key]
            z = abs(c - e) / math.sqrt(e * (1 - e / n)) if 0 < e < n else 0.0
            if z > Z_MAX:
                return (f"output [{key}] occurred {c} times in {n} rounds; the exact rule gives {e:.1f} on average "
                        f"({z:.1f} standard errors away)"), None
        return None

    return Case(name, observe, compare, versus_exact)


def _pool(a: dict[str, float], b: dict[str, float], minimum: float = 10.0) -> tuple[dict, dict]:
    """The two histograms over the union of outcomes, outcomes with fewer than ``minimum`` counts in the two
    together merged into one "rare outcomes" bin (the normal approximation of a test needs a few counts)."""
    keys = set(a) | set(b)
    rare = {k for k in keys if a.get(k, 0) + b.get(k, 0) < minimum}
    pa = {k: a.get(k, 0) for k in keys - rare}
    pb = {k: b.get(k, 0) for k in keys - rare}
    if rare:
        pa["rare outcomes"] = sum(a.get(k, 0) for k in rare)
        pb["rare outcomes"] = sum(b.get(k, 0) for k in rare)
    return pa, pb


def repeated_case(name: str, q: torch.Tensor, p: torch.Tensor, x: torch.Tensor, seed: int, repeats: int = 20) -> Case:
    """A situation where the rule leaves no choice: the same output on every generator."""
    def observe(fn: Callable) -> Observation:
        return {"out": [_key(fn(q.clone(), p.clone(), x.clone(), gen(seed + r))) for r in range(repeats)]}

    def compare(cand: Observation, other: Observation) -> "tuple[str, str | None] | None":
        got, want = cand.get("out", []), other["out"]
        for r, (c, w) in enumerate(zip(got, want)):
            if c != w:
                return (f"call {r + 1} of {repeats}: returned [{c}], expected [{w}] (the rule leaves no choice "
                        "here)"), None
        return None

    return Case(name, observe, compare)


def raises_case(name: str, build: Callable[[], tuple]) -> Case:
    def observe(fn: Callable) -> Observation:
        args = build()
        return expect_raises(lambda: fn(*args))

    def compare(cand: Observation, ref: Observation) -> "tuple[str, str | None] | None":
        if cand.get("raised") != ref["raised"]:
            return (f"expected {ref['raised']}, got {cand.get('raised') or 'no exception'}",
                    "validate the inputs and raise ValueError naming the argument (rows that do not sum to 1, "
                    "vocabularies of different sizes, target_probs without its γ + 1 rows)")
        return None

    return Case(name, observe, compare)


def _one_hot(*tokens: int, V: int) -> torch.Tensor:
    return torch.eye(V)[list(tokens)]


# draft equal to the target at every position, bonus row one-hot: all accepted, output fixed
_Q_EQ = probs(3, 5, seed=11)
_P_EQ = torch.cat([_Q_EQ, _one_hot(4, V=5)])
# the first draft token has target probability 0 (always rejected); the residual (p − q)₊ is one-hot at 2
_Q_REJ = torch.tensor([[0.7, 0.3, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
_P_REJ = torch.tensor([[0.0, 0.2, 0.8, 0.0], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
# Monte-Carlo: the draft puts mass where the target has little (every classic mistake shows)
_Q1 = torch.tensor([[0.60, 0.30, 0.10, 0.00]])
_P1 = torch.tensor([[0.10, 0.30, 0.20, 0.40], [0.70, 0.10, 0.10, 0.10]])
_Q2 = torch.tensor([[0.60, 0.30, 0.10, 0.00], [0.10, 0.20, 0.30, 0.40]])
_P2 = torch.tensor([[0.10, 0.30, 0.20, 0.40], [0.25, 0.25, 0.25, 0.25], [0.70, 0.10, 0.10, 0.10]])
_Q_HALF = torch.tensor([[1.0, 0.0], [1.0, 0.0]])              # both draft tokens are 0 ...
_P_HALF = torch.full((3, 2), 0.5)                                # ... each accepted with probability 1/2
_Q3 = probs(3, 3, seed=21, scale=1.5)
_P3 = probs(4, 3, seed=22, scale=1.5)

CASES = [
    repeated_case("draft equal to the target: all 3 accepted, plus the bonus token (one-hot target row)",
                  _Q_EQ, _P_EQ, torch.tensor([1, 0, 3]), seed=1),
    repeated_case("draft token impossible for the target: rejected, replacement from (p − q)₊ (one-hot here)",
                  _Q_REJ, _P_REJ, torch.tensor([0, 2]), seed=2),
    repeated_case("greedy (one-hot rows): keep the draft while it agrees with the target's argmax",
                  _one_hot(2, 5, 1, 3, V=6), _one_hot(2, 5, 4, 3, 0, V=6), torch.tensor([2, 5, 1, 3]), seed=3),
    repeated_case("greedy (one-hot rows), all agree: the bonus token is the target's next argmax",
                  _one_hot(2, 5, V=6), _one_hot(2, 5, 0, V=6), torch.tensor([2, 5]), seed=4),
    monte_carlo_case(f"γ = 1, V = 4: output distribution over {N_DRAWS} rounds (draft tokens sampled from q)",
                     _Q1, _P1, seed=5),
    monte_carlo_case(f"γ = 2, V = 4: output distribution over {N_DRAWS} rounds", _Q2, _P2, seed=6),
    monte_carlo_case(f"γ = 3, V = 3, random rows: output distribution over {N_DRAWS} rounds", _Q3, _P3, seed=7),
    monte_carlo_case(f"γ = 2, each draft token accepted with probability 1/2: independent draws ({N_DRAWS} rounds)",
                     _Q_HALF, _P_HALF, seed=12),
    raises_case("raises: draft_probs rows do not sum to 1", lambda: (_Q2 * 2, _P2, torch.tensor([0, 1]), gen(8))),
    raises_case("raises: draft and target vocabularies differ",
                lambda: (_Q2, torch.full((3, 5), 0.2), torch.tensor([0, 1]), gen(9))),
    raises_case("raises: target_probs has γ rows instead of γ + 1",
                lambda: (_Q2, _P2[:2], torch.tensor([0, 1]), gen(10))),
]


# ----------------------------------------------------------------------------------------------------------
# an honest solution (a loop, as most candidates write it)
# ----------------------------------------------------------------------------------------------------------
def _check(q, p, x):
    if not torch.allclose(q.sum(-1), torch.ones(q.shape[0]), atol=1e-3) or \
            not torch.allclose(p.sum(-1), torch.ones(p.shape[0]), atol=1e-3):
        raise ValueError("draft_probs and target_probs rows must sum to 1")
    if q.shape[1] != p.shape[1] or p.shape[0] != q.shape[0] + 1 or len(x) != q.shape[0]:
        raise ValueError("need draft_probs [γ, V], target_probs [γ + 1, V], draft_tokens [γ]")


def _honest(draft_probs, target_probs, draft_tokens, generator):
    _check(draft_probs, target_probs, draft_tokens)
    out = []
    for i, x in enumerate(draft_tokens.tolist()):
        p_x, q_x = target_probs[i, x], draft_probs[i, x]
        r = torch.rand((), generator=generator)
        if r < torch.clamp(p_x / q_x, max=1.0):                     # accept with probability min(1, p/q)
            out.append(x)
            continue
        residual = torch.clamp(target_probs[i] - draft_probs[i], min=0.0)
        y = torch.multinomial(residual / residual.sum(), 1, generator=generator)
        return torch.tensor(out + [int(y)])
    bonus = torch.multinomial(target_probs[len(out)], 1, generator=generator)
    return torch.tensor(out + [int(bonus)])


# ----------------------------------------------------------------------------------------------------------
# the misconceptions
# ----------------------------------------------------------------------------------------------------------
wrong("ratio inverted", hint="accept with probability min(1, p(x)/q(x)), target over draft (Leviathan et al.'s "
                             "p = target, q = draft; Chen et al. name them the other way round)"
      ).edit(_honest, "torch.clamp(p_x / q_x, max=1.0)", "torch.clamp(q_x / p_x, max=1.0)")

wrong("resampling from p instead of the residual",
      hint="after a rejection sample from norm(max(0, p − q)), not from p: the accepted part already supplied "
           "min(p, q), so only the remainder p − q (where the target wants more than the draft gave) is missing"
      ).edit(_honest, "torch.clamp(target_probs[i] - draft_probs[i], min=0.0)", "target_probs[i]")

wrong("residual max(0, q − p)", hint="the residual is max(0, p − q), target minus draft: the tokens the draft "
                                     "under-proposes"
      ).edit(_honest, "torch.clamp(target_probs[i] - draft_probs[i], min=0.0)",
             "torch.clamp(draft_probs[i] - target_probs[i], min=0.0)")

wrong("bonus token forgotten", hint="when all γ draft tokens are accepted, sample one more token from the last "
                                    "target row p_{γ+1}: it is free (the target computed it in the same call)"
      ).edit(_honest, """    bonus = torch.multinomial(target_probs[len(out)], 1, generator=generator)
    return torch.tensor(out + [int(bonus)])""", "    return torch.tensor(out)")

wrong("bonus from the wrong row", hint="the bonus token comes from the target's row after the last draft token, "
                                       "target_probs[γ], not target_probs[γ − 1]"
      ).edit(_honest, "target_probs[len(out)], 1,", "target_probs[len(out) - 1], 1,")

wrong("acceptance with p > q instead of a random draw",
      hint="the test is random: accept with probability min(1, p/q) (draw r ~ U(0, 1), accept if r < p/q); "
           "accepting exactly when p(x) > q(x) is deterministic and changes the distribution"
      ).edit(_honest, "if r < torch.clamp(p_x / q_x, max=1.0):", "if p_x > q_x:")

wrong("no stop after a rejection",
      hint="stop at the first rejection: the later draft tokens were conditioned on the rejected one, so they "
           "must be discarded"
      ).edit(_honest, "        return torch.tensor(out + [int(y)])", "        out.append(int(y))")

wrong("one uniform for all positions", hint="draw a fresh uniform r_i for each draft token: one shared r "
                                            "couples the acceptances (all tokens up to the first with p/q < r "
                                            "pass together)"
      ).edit(_honest, """    out = []
    for i, x in enumerate(draft_tokens.tolist()):
        p_x, q_x = target_probs[i, x], draft_probs[i, x]
        r = torch.rand((), generator=generator)""", """    out = []
    r = torch.rand((), generator=generator)
    for i, x in enumerate(draft_tokens.tolist()):
        p_x, q_x = target_probs[i, x], draft_probs[i, x]""")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently (they consume the generator differently from the reference)
# ----------------------------------------------------------------------------------------------------------
@correct("vectorised uniforms, r·q < p, first rejection by argmax")
def ok_vectorised(draft_probs, target_probs, draft_tokens, generator):
    _check(draft_probs, target_probs, draft_tokens)
    gamma = len(draft_tokens)
    idx = torch.arange(gamma)
    r = torch.rand(gamma, generator=generator)
    accepted = r * draft_probs[idx, draft_tokens] < target_probs[idx, draft_tokens]
    if bool(accepted.all()):
        extra = torch.multinomial(target_probs[gamma], 1, generator=generator)
        return torch.cat([draft_tokens.long(), extra])
    n = int((~accepted).int().argmax())
    residual = (target_probs[n] - draft_probs[n]).relu()
    return torch.cat([draft_tokens[:n].long(), torch.multinomial(residual, 1, generator=generator)])


@correct("inverse-CDF sampling with torch.searchsorted, acceptance as 1 - r > q/p complement")
def ok_inverse_cdf(draft_probs, target_probs, draft_tokens, generator):
    _check(draft_probs, target_probs, draft_tokens)

    def sample(weights):
        cdf = torch.cumsum(weights / weights.sum(), 0)
        u = torch.rand((), generator=generator) * cdf[-1]
        return min(int(torch.searchsorted(cdf, u, right=True)), len(weights) - 1)

    tokens = []
    for i, x in enumerate(draft_tokens.tolist()):
        ratio = (target_probs[i, x] / draft_probs[i, x]).item()
        if torch.rand((), generator=generator).item() >= min(1.0, ratio):          # rejected
            tokens.append(sample(torch.where(target_probs[i] > draft_probs[i],
                                             target_probs[i] - draft_probs[i], torch.zeros(()))))
            return torch.tensor(tokens)
        tokens.append(x)
    tokens.append(sample(target_probs[-1]))
    return torch.tensor(tokens)
