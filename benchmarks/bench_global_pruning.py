"""Global magnitude pruning on ResNet-18-sized weights: kdcore vs torch.nn.utils.prune.

Baseline: ``torch.nn.utils.prune.global_unstructured(..., pruning_method=L1Unstructured)``, the call
a PyTorch user would make. It concatenates every weight into one vector and runs ``torch.topk`` on it;
as part of its API it also stores float masks and masked copies of the weights.
``kdcore.global_magnitude_masks`` finds the same threshold by a radix select over the tensors one at
a time and returns bool masks.

Each method runs in its own fresh subprocess (same thread count): the peak RSS growth during its
calls (``tracemalloc`` does not see torch's allocations) and the median time of a few calls. Prints
the ratios and checks that the masks are identical. About 30 s on 2 CPU cores.

    .venv/bin/python benchmarks/bench_global_pruning.py [--sparsity 0.9] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

import kdcore


def resnet18_weight_shapes() -> dict[str, tuple[int, ...]]:
    """Shapes of torchvision's resnet18 conv and fc weights (ImageNet, 1,000 classes), written out by hand."""
    shapes = {"conv1.weight": (64, 3, 7, 7)}
    c_in = 64
    for stage, c_out in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            stride2 = stage > 1 and block == 0
            shapes[f"{prefix}.conv1.weight"] = (c_out, c_in, 3, 3)
            shapes[f"{prefix}.conv2.weight"] = (c_out, c_out, 3, 3)
            if stride2:  # 1x1 projection shortcut where the resolution halves and channels double
                shapes[f"{prefix}.downsample.0.weight"] = (c_out, c_in, 1, 1)
            c_in = c_out
    shapes["fc.weight"] = (1000, 512)
    return shapes


def make_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=gen) for name, shape in resnet18_weight_shapes().items()}


def torch_global(weights: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """The baseline: torch's global_unstructured on fresh modules holding the weights (shared storage)."""
    holders = []
    for w in weights.values():
        holder = nn.Module()
        holder.weight = nn.Parameter(w, requires_grad=False)
        holders.append(holder)
    torch_prune.global_unstructured([(h, "weight") for h in holders], pruning_method=torch_prune.L1Unstructured,
                                    amount=sparsity)
    return {name: h.weight_mask for name, h in zip(weights, holders)}


def ours(weights: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    return kdcore.global_magnitude_masks(weights, sparsity)


METHODS = {"kdcore": ours, "torch": torch_global}


def peak_rss_kib() -> int:
    """Peak resident set size of this process so far, KiB.

    Linux: VmHWM from /proc (per address space). ``ru_maxrss`` is the fallback elsewhere; on Linux it
    is inherited across fork + exec, so a child of a large parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(method: str, sparsity: float, repeats: int) -> None:
    """One method in this fresh interpreter: peak RSS growth over its calls and the time of each.

    The torch child also checks the masks against kdcore's (computed after the measurements).
    """
    weights = make_weights()
    before = peak_rss_kib()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        masks = METHODS[method](weights, sparsity)
        times.append(time.perf_counter() - start)
    growth_mb = (peak_rss_kib() - before) / 1024
    result = {"peak_growth_mb": growth_mb, "times": times,
              "n_pruned": sum(int((m == 0).sum()) for m in masks.values())}
    if method == "torch":
        reference = ours(weights, sparsity)
        result["identical"] = all(torch.equal(reference[k], masks[k].bool()) for k in weights)
    print(json.dumps(result))


def run_child(method: str, args: argparse.Namespace) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, "--sparsity", str(args.sparsity),
                          "--repeats", str(args.repeats), "--threads", str(args.threads)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=sorted(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.sparsity, args.repeats)
        return

    total = sum(math.prod(shape) for shape in resnet18_weight_shapes().values())
    print(f"ResNet-18 conv+fc weights: {len(resnet18_weight_shapes())} tensors, {total:,} weights (normal); "
          f"sparsity {args.sparsity}; torch {torch.__version__}, {args.threads} thread(s), "
          f"{args.repeats} runs each in a fresh process")
    res = {name: run_child(name, args) for name in METHODS}
    med = {name: statistics.median(r["times"]) for name, r in res.items()}
    print(f"{'method':<8} {'median s':>9}  {'runs (s)':<24} {'peak RSS growth MB':>19}")
    for name, r in res.items():
        runs = ", ".join(f"{t:.2f}" for t in r["times"])
        print(f"{name:<8} {med[name]:>9.3f}  {runs:<24} {r['peak_growth_mb']:>19.1f}")
    expected = round(args.sparsity * total)
    print(f"masks identical: {res['torch']['identical']}; pruned {res['kdcore']['n_pruned']:,} "
          f"(round(sparsity * total) = {expected:,})")
    print(f"speed-up vs torch.nn.utils.prune.global_unstructured: {med['torch'] / med['kdcore']:.1f}x; "
          f"peak memory growth kdcore / torch: {res['kdcore']['peak_growth_mb'] / res['torch']['peak_growth_mb']:.2f}")
    if not res["torch"]["identical"] or res["kdcore"]["n_pruned"] != expected:
        sys.exit("FAIL: masks differ from torch's or the pruned count is not exact")


if __name__ == "__main__":
    main()
