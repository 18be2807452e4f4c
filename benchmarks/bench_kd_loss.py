"""Benchmark: kdcore.kd_loss vs the plain two-line F.kl_div + F.cross_entropy formulation.

Times forward + backward (w.r.t. the student logits) for two shapes and prints the median time of each and
the ratio kdcore / baseline (> 1 means kdcore is slower: its argument checks cost a fixed few microseconds,
which show at small batches; at large ones its fused log-target KL is the cheaper formulation).
One thread, so that the numbers do not depend on the machine's load balance.

    .venv/bin/python benchmarks/bench_kd_loss.py
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from kdcore.distill import kd_loss

T, ALPHA = 4.0, 0.9
# (batch, classes, timed repeats per round): fewer repeats for the large shape keep the script under ~15 s
CASES = [(256, 1000, 60), (64, 10, 300)]
ROUNDS = 15
WARMUP = 10


def baseline(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    soft = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean")
    return ALPHA * T * T * soft + (1 - ALPHA) * F.cross_entropy(s, y)


def kdcore_loss(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return kd_loss(s, t, y, T=T, alpha=ALPHA)


def median_seconds(fn, s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    times = []
    for i in range(WARMUP + repeats):
        s.grad = None
        start = time.perf_counter()
        fn(s, t, y).backward()
        elapsed = time.perf_counter() - start
        if i >= WARMUP:
            times.append(elapsed)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"kd_loss forward+backward, T={T}, alpha={ALPHA}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread, {ROUNDS} alternating rounds; ratio = median over rounds of the "
          f"within-round ratio of median timings")
    print(f"{'batch x classes':>16} {'baseline (us)':>14} {'kdcore (us)':>12} {'ratio kdcore/baseline':>22} "
          f"{'IQR of rounds':>14}")
    for n, c, repeats in CASES:
        s = (torch.randn(n, c) * 3).requires_grad_()
        t = torch.randn(n, c) * 3
        y = torch.randint(0, c, (n,))
        # same value and gradient, so the comparison is fair
        torch.testing.assert_close(kdcore_loss(s, t, y), baseline(s, t, y), rtol=1e-4, atol=1e-5)
        # alternate the two to spread any drift in machine load over both
        rounds = [(median_seconds(baseline, s, t, y, repeats), median_seconds(kdcore_loss, s, t, y, repeats))
                  for _ in range(ROUNDS)]
        base = statistics.median(r[0] for r in rounds)
        ours = statistics.median(r[1] for r in rounds)
        # ratio within each round (close in time), then the median and quartiles over rounds
        q1, ratio, q3 = statistics.quantiles([r[1] / r[0] for r in rounds], n=4)
        print(f"{f'{n} x {c}':>16} {base * 1e6:14.1f} {ours * 1e6:12.1f} {ratio:22.2f} {f'{q1:.2f}-{q3:.2f}':>14}")


if __name__ == "__main__":
    main()
