"""CPU latency of DigitsCNN: dense vs 50 % channel-pruned vs 90 % unstructured (masked), batch 1 and 256.

Baseline: the dense ``kdcore.models.DigitsCNN()`` (channels 32, 64). Variants:

- channel-pruned: half the channels of conv1 and of conv2 removed by ``kdcore.prune_conv_channels``
  (L1 norm of the filters), i.e. physically smaller layers (16, 32 channels);
- 90 % unstructured: ``global_magnitude_masks`` at sparsity 0.9 applied with ``apply_masks``; the
  tensors keep their shape and run through the same dense kernels.

Latency does not depend on the weights' values here (no training needed; masked zeros are exact
zeros, not denormals). Each model is timed with ``kdcore.measure_latency`` (fixed thread count,
eval mode, inference_mode) by ``kdcore.compare_latency``, in many short interleaved rounds. The speed-up
is the median over rounds of median(dense) / median(variant) within the round: on a shared virtual
machine slow spells last seconds, so ratios taken close together in time are far steadier than ratios of
overall medians. The range printed beside it is the 25th-75th percentile of the per-round ratios. The
batch-1 and batch-256 measurements run one after the other. About 20 s.

    .venv/bin/python benchmarks/bench_latency.py [--threads 1] [--seed 0]
"""
from __future__ import annotations

import argparse
import copy

import torch

import kdcore
from kdcore.models import DigitsCNN


def channel_pruned(dense: DigitsCNN, fraction_kept: float = 0.5) -> DigitsCNN:
    """A copy of ``dense`` with the lower-L1 half of conv1's and conv2's channels removed."""
    model = copy.deepcopy(dense)
    keep1 = round(dense.conv1.out_channels * fraction_kept)
    keep2 = round(dense.conv2.out_channels * fraction_kept)
    model.conv1, conv2, _ = kdcore.prune_conv_channels(dense.conv1, dense.conv2, keep1)
    # conv2 → ReLU → maxpool2 → flatten → fc: each conv2 channel feeds 4·4 = 16 fc columns
    model.conv2, model.fc, _ = kdcore.prune_conv_channels(conv2, dense.fc, keep2, spatial=16)
    return model


def unstructured_masked(dense: DigitsCNN, sparsity: float = 0.9) -> DigitsCNN:
    model = copy.deepcopy(dense)
    weights = {name: p for name, p in model.named_parameters() if p.dim() > 1}
    kdcore.apply_masks(model, kdcore.global_magnitude_masks(weights, sparsity))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    dense = DigitsCNN()
    models = {"dense": dense, "50% channels pruned": channel_pruned(dense),
              "90% unstructured (masked)": unstructured_masked(dense)}
    repeats = {1: 400, 256: 100}  # per model and batch size, split over interleaved rounds
    rounds = 20
    print(f"DigitsCNN latency, torch {torch.__version__}, {args.threads} thread(s); {repeats[1]} runs at batch 1 "
          f"and {repeats[256]} at batch 256 per model, in {rounds} interleaved rounds; baseline = dense")
    inputs = {batch: torch.randn(batch, 1, 8, 8) for batch in repeats}
    # per batch size: kdcore.compare_latency interleaves the models in short rounds (see its docstring)
    results = {batch: kdcore.compare_latency(models, inputs[batch], baseline="dense", rounds=rounds,
                                             repeats=n // rounds, warmup=3, threads=args.threads)
               for batch, n in repeats.items()}

    header = f"{'model':<27} {'params≠0':>9} {'FLOPs/img':>10}"
    for batch in repeats:
        header += f" {f'b={batch} ms':>10} {'IQR':>6} {'speed-up':>8} {'(IQR of rounds)':>16}"
    print(header)
    for name, model in models.items():
        line = (f"{name:<27} {kdcore.count_parameters(model, nonzero_only=True):>9,} "
                f"{kdcore.model_flops(model, torch.zeros(1, 1, 8, 8)):>10,}")
        for batch in repeats:
            r = results[batch][name]
            r1, r3 = r["speedup_iqr"]
            line += f" {r['median_ms']:>10.3f} {r['iqr_ms']:>6.3f} {r['speedup']:>7.2f}x {f'{r1:.2f}-{r3:.2f}':>16}"
        print(line)
    print("FLOPs count the dense kernels' work (FlopCounterMode convention); the masked model still "
          "does all of it.")


if __name__ == "__main__":
    main()
