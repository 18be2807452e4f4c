"""Speculative decoding on CPU: the shipped teacher as target, a scratch and a distilled student as drafts.

Baseline: plain decoding with the target, ``teacher.generate`` (KV cache, batch 1). Candidates:
``kdcore.llm.speculative.speculative_generate`` with draft = the ``ce`` student (trained on text only, no
teacher: "scratch") and with draft = a distilled student (``fkl`` by default), same γ, same prompts.
Per round, every method decodes ``--tokens`` new characters after the same validation prompt, one after the
other (interleaved); the speed-up is the median over rounds of (plain seconds / speculative seconds) within
the round, with the quartiles of the per-round ratios. Also printed: acceptance rate, tokens per target
call, per-call latency of target and drafts (one position with a warm cache) and Leviathan et al.'s
predicted speed-up ``(1 − α^(γ+1)) / ((1 − α)(γc + 1))`` from the measured α and c, and whether greedy
speculative decoding reproduced the target's greedy text exactly. About 1–2 minutes.

    .venv/bin/python benchmarks/bench_speculative.py [--gamma 4] [--rounds 12] [--tokens 64] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from kdcore.llm.corpus import load_corpus
from kdcore.llm.eval import val_windows
from kdcore.llm.gpt import KVCache
from kdcore.llm.speculative import expected_speedup, speculative_generate
from kdcore.llm.students import load_students
from kdcore.llm.train import load_teacher


def quartiles(xs: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(xs, n=4)
    return q[0], q[2]


@torch.no_grad()
def per_call_ms(model, prompt: torch.Tensor, repeats: int = 200) -> float:
    """Median latency of one decoding call (one new position, cache already holding the prompt)."""
    times = []
    for _ in range(repeats):
        cache = KVCache(model.config.n_layer)
        model(prompt[:, :-1], cache=cache)
        start = time.perf_counter()
        model(prompt[:, -1:], cache=cache)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gamma", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="student seed (file) and sampling seed")
    parser.add_argument("--distilled", default="fkl", help="variant used as the distilled draft")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    target = load_teacher()
    students, _ = load_students(args.seed, ["ce", args.distilled])
    drafts = {"scratch (ce)": students["ce"], f"distilled ({args.distilled})": students[args.distilled]}
    windows = val_windows(load_corpus())
    prompts = [windows[i * (len(windows) // args.rounds), :args.prompt][None] for i in range(args.rounds)]
    n_t, n_s = target.num_parameters(), students["ce"].num_parameters()
    print(f"target {n_t:,} parameters, drafts {n_s:,} ({n_t / n_s:.1f}x smaller); gamma {args.gamma}, "
          f"{args.tokens} new tokens per run, {args.rounds} interleaved rounds, {torch.get_num_threads()} thread(s)")

    ms_target = per_call_ms(target, prompts[0])
    ms_draft = {name: per_call_ms(d, prompts[0]) for name, d in drafts.items()}

    for mode, temperature in (("sampled (T = 1)", 1.0), ("greedy", 0.0)):
        ratios = {name: [] for name in drafts}
        seconds = {name: [] for name in ["plain", *drafts]}
        stats = {name: [] for name in drafts}
        identical = {name: 0 for name in drafts}
        for r, prompt in enumerate(prompts):
            start = time.perf_counter()
            plain = target.generate(prompt, args.tokens, temperature=temperature,
                                    generator=torch.Generator().manual_seed(r))
            t_plain = time.perf_counter() - start
            seconds["plain"].append(t_plain)
            for name, draft in drafts.items():
                start = time.perf_counter()
                out, st = speculative_generate(target, draft, prompt, args.tokens, gamma=args.gamma,
                                               temperature=temperature, generator=torch.Generator().manual_seed(r))
                t = time.perf_counter() - start
                seconds[name].append(t)
                ratios[name].append(t_plain / t)
                stats[name].append(st)
                identical[name] += bool(torch.equal(out, plain))
        print(f"\n{mode}: plain target decoding {1e3 * statistics.median(seconds['plain']) / args.tokens:.2f} ms/token "
              f"(target call {ms_target:.2f} ms)")
        print("| draft | draft call ms | c = draft/target | acceptance α | tokens / target call | "
              "speed-up vs plain (IQR of rounds) | predicted (1−α^(γ+1))/((1−α)(γc+1)) |"
              + (" greedy text identical |" if temperature == 0 else ""))
        print("|---|---|---|---|---|---|---|" + ("---|" if temperature == 0 else ""))
        for name in drafts:
            acc = sum(s.accepted for s in stats[name]) / sum(s.proposed for s in stats[name])
            tpc = sum(s.new_tokens for s in stats[name]) / sum(s.target_calls for s in stats[name])
            c = ms_draft[name] / ms_target
            q1, q3 = quartiles(ratios[name])
            row = (f"| {name} | {ms_draft[name]:.2f} | {c:.2f} | {acc:.3f} | {tpc:.2f} | "
                   f"{statistics.median(ratios[name]):.2f}x ({q1:.2f}-{q3:.2f}) | "
                   f"{expected_speedup(min(acc, 1 - 1e-9), args.gamma, c):.2f}x |")
            if temperature == 0:
                row += f" {identical[name]}/{len(prompts)} |"
            print(row)


if __name__ == "__main__":
    main()
