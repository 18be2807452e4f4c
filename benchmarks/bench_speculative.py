"""Speculative decoding on CPU: the shipped teacher as target, a scratch and a distilled student as drafts.

Baseline: plain decoding with the target, ``teacher.generate`` (KV cache, batch 1). Candidates:
``kdcore.llm.speculative.speculative_generate`` with draft = the ``ce`` student (trained on text only, never
saw the teacher: "scratch") and with draft = a distilled student (``fkl`` by default), same γ, same prompts.
``kdcore.llm.speculative.compare_decoding`` runs them in interleaved rounds: per round, every method decodes
``--tokens`` new characters after the same validation prompt, one after the other; the speed-up is the median
over rounds of (plain seconds / speculative seconds) within the round, with the quartiles of the per-round
ratios. Also printed: acceptance rate, tokens per target call, per-call latency of target and drafts (one
position, warm cache), Leviathan et al.'s predicted speed-up ``(1 − α^(γ+1)) / ((1 − α)(γc + 1))`` from the
measured α and c, and (greedy) whether speculative decoding reproduced the target's own text. About 1–2 min.

    .venv/bin/python benchmarks/bench_speculative.py [--gamma 4] [--rounds 12] [--tokens 64] [--threads 1]
"""
from __future__ import annotations

import argparse

import torch

from kdcore.llm.corpus import load_corpus
from kdcore.llm.eval import val_windows
from kdcore.llm.speculative import compare_decoding, expected_speedup, per_call_ms
from kdcore.llm.students import load_students
from kdcore.llm.train import load_teacher


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
    step = len(windows) // args.rounds
    prompts = [windows[i * step, :args.prompt][None] for i in range(args.rounds)]
    n_t, n_s = target.num_parameters(), students["ce"].num_parameters()
    print(f"target {n_t:,} parameters, drafts {n_s:,} ({n_t / n_s:.1f}x smaller); gamma {args.gamma}, "
          f"{args.tokens} new tokens per run, {args.rounds} interleaved rounds, {torch.get_num_threads()} thread(s)")
    ms_target = per_call_ms(target, prompts[0])
    ms_draft = {name: per_call_ms(d, prompts[0]) for name, d in drafts.items()}

    for mode, temperature in (("sampled (T = 1)", 1.0), ("greedy", 0.0)):
        res = compare_decoding(target, drafts, prompts, args.tokens, gamma=args.gamma, temperature=temperature,
                               seed=args.seed)
        print(f"\n{mode}: plain target decoding {res['plain_ms_per_token']:.2f} ms/token "
              f"(one target call {ms_target:.2f} ms)")
        greedy = temperature == 0
        print("| draft | draft call ms | c = draft/target | accepted / proposed | α (accepted / judged) | tokens / target call | "
              "speed-up vs plain (IQR of rounds) | predicted |" + (" text = target's greedy text |" if greedy else ""))
        print("|---|---|---|---|---|---|---|---|" + ("---|" if greedy else ""))
        for name in drafts:
            r = res[name]
            c = ms_draft[name] / ms_target
            predicted = expected_speedup(min(r["alpha"], 1 - 1e-9), args.gamma, c)
            row = (f"| {name} | {ms_draft[name]:.2f} | {c:.2f} | {r['acceptance']:.3f} | {r['alpha']:.3f} | {r['tokens_per_call']:.2f} | "
                   f"{r['speedup']:.2f}x ({r['speedup_iqr'][0]:.2f}-{r['speedup_iqr'][1]:.2f}) | {predicted:.2f}x |")
            print(row + (f" {r['same_as_plain']}/{r['rounds']} |" if greedy else ""))


if __name__ == "__main__":
    main()
