"""Benchmark: kdcore's SparseGPT vs magnitude pruning vs Wanda, one Linear at a time, side by side.

For every Linear of a layer set, each method prunes the weight from the same calibration inputs ``X``
``[tokens, in]`` and is scored by its layer-output error ``||(W' - W) X^T||`` as a ratio to magnitude pruning
(the baseline, ``kdcore.magnitude_mask`` of the whole matrix; 2:4 baseline ``kdcore.llm.nm_mask`` of |W|), on the
calibration tokens and on held-out tokens. Time per layer includes the method's own statistics from ``X``
(Wanda: the column norms; SparseGPT: ``H = 2 X^T X / tokens``), not the forward passes that collect ``X``.
Methods are timed in interleaved rounds (every method once per round, median over rounds), 1 thread.

    .venv/bin/python benchmarks/bench_llm_prune.py [--layers teacher|random] [--rounds 5]

``teacher``: the 24 block Linears of the course's tiny GPT (``kdcore.llm``), inputs collected with forward hooks
on the dense teacher from the calibration split (no sequential re-collection: every layer sees dense inputs).
``random``: the same shapes with correlated random inputs (no model needed).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from kdcore.llm.prune import nm_mask, sparsegpt_prune, sparsegpt_prune_nm, wanda_mask
from kdcore.prune import magnitude_mask

SPARSITY = 0.5


def _hessian(x: torch.Tensor) -> torch.Tensor:
    return 2 * x.T @ x / x.shape[0]


METHODS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    # each returns the pruned weight from (w [out, in], x [tokens, in])
    "magnitude 50%": lambda w, x: w * magnitude_mask(w, SPARSITY),
    "Wanda 50%": lambda w, x: w * wanda_mask(w, x.norm(dim=0), SPARSITY),
    "SparseGPT 50%": lambda w, x: sparsegpt_prune(w, _hessian(x), SPARSITY),
    "magnitude 2:4": lambda w, x: w * nm_mask(w, 2, 4),
    "Wanda 2:4": lambda w, x: w * nm_mask(w.abs() * x.norm(dim=0), 2, 4),
    "SparseGPT 2:4": lambda w, x: sparsegpt_prune_nm(w, _hessian(x), 2, 4),
}
BASELINE = {"50%": "magnitude 50%", "2:4": "magnitude 2:4"}


def random_layers(seed: int = 0, tokens: int = 2048) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(name, w, x_calibration, x_heldout) for the teacher's Linear shapes, correlated random inputs."""
    g = torch.Generator().manual_seed(seed)
    d = 128
    shapes = {"attn.c_attn": (3 * d, d), "attn.c_proj": (d, d), "mlp.c_fc": (4 * d, d), "mlp.c_proj": (d, 4 * d)}
    layers = []
    for name, (out, inp) in shapes.items():
        mix = torch.randn(inp, inp, generator=g) / inp ** 0.5
        scale = torch.rand(inp, generator=g) * 2 + 0.2
        x = torch.randn(2 * tokens, inp, generator=g) @ mix * scale
        w = torch.randn(out, inp, generator=g) / inp ** 0.5
        layers.append((name, w, x[:tokens], x[tokens:]))
    return layers


def teacher_layers(n_calib: int = 128) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(name, w, x_calibration, x_heldout) for the 24 block Linears of the shipped teacher: inputs of the dense
    teacher on ``n_calib`` calibration windows of 128 characters, and on 64 validation windows (held out)."""
    from kdcore.llm.corpus import load_corpus
    from kdcore.llm.eval import calib_batches, collect_inputs, val_windows
    from kdcore.llm.gpt import block_linear_names
    from kdcore.llm.train import load_teacher

    model, corpus = load_teacher(), load_corpus()
    names = block_linear_names(model)
    x_cal = collect_inputs(model, names, calib_batches(corpus, n=n_calib))
    x_held = collect_inputs(model, names, list(val_windows(corpus, n=64)[:, :-1].split(64)))
    return [(name, model.get_submodule(name).weight.detach(), x_cal[name], x_held[name]) for name in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", choices=["teacher", "random"], default="teacher")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    layers = teacher_layers() if args.layers == "teacher" else random_layers()
    print(f"torch {torch.__version__}, 1 thread, {args.rounds} interleaved rounds, layers: {args.layers}, "
          f"{layers[0][2].shape[0]} calibration tokens, {layers[0][3].shape[0]} held-out tokens")
    # every round times every method on every layer, so each method's per-round total is taken close in time
    totals: dict[str, list[float]] = {m: [0.0] * args.rounds for m in METHODS}
    per_layer_ms: dict[str, dict[str, list[float]]] = {name: {m: [] for m in METHODS} for name, *_ in layers}
    pruned: dict[str, dict[str, torch.Tensor]] = {name: {} for name, *_ in layers}
    for r in range(args.rounds):
        for name, w, x_cal, _ in layers:
            for method, fn in METHODS.items():
                start = time.perf_counter()
                pruned[name][method] = fn(w, x_cal)
                elapsed = time.perf_counter() - start
                totals[method][r] += elapsed
                per_layer_ms[name][method].append(elapsed * 1e3)
    ratio = {name: {} for name, *_ in layers}
    for name, w, x_cal, x_held in layers:
        for split, x in (("calibration", x_cal), ("held out", x_held)):
            err = {m: ((p - w) @ x.T).norm().item() for m, p in pruned[name].items()}
            ratio[name][split] = {m: err[m] / err[BASELINE[m.split()[-1]]] for m in METHODS}

    print("\nsummary: time for all layers (median over rounds) and its per-round ratio to magnitude pruning of the "
          "same pattern; output-error ratio ||(W' - W) X|| / magnitude's (geometric mean over layers, < 1 = better)")
    print(f"{'method':15} {'ms, all layers':>15} {'time vs magnitude':>18} {'error, calibration':>19} "
          f"{'error, held out':>16}")
    for m in METHODS:
        base = BASELINE[m.split()[-1]]
        time_ratio = statistics.median(t / b for t, b in zip(totals[m], totals[base]))
        geo = {split: statistics.geometric_mean(ratio[n][split][m] for n, *_ in layers)
               for split in ("calibration", "held out")}
        print(f"{m:15} {statistics.median(totals[m]) * 1e3:15.1f} {time_ratio:17.1f}x {geo['calibration']:19.3f} "
              f"{geo['held out']:16.3f}")

    print("\nper layer: median ms / held-out error ratio vs magnitude")
    print(f"{'layer':20} {'[out, in]':>9} " + " ".join(f"{m:>18}" for m in METHODS))
    for name, w, *_ in layers:
        cells = " ".join(f"{statistics.median(per_layer_ms[name][m]):8.1f} / {ratio[name]['held out'][m]:5.3f}"
                         for m in METHODS)
        print(f"{name:20} {w.shape[0]:>4}x{w.shape[1]:<4} {cells}")


if __name__ == "__main__":
    main()
