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
    print("error ratio = ||(W' - W) X|| / same for magnitude pruning of the same pattern (< 1: better)")
    header = f"{'layer':24} {'[out, in]':>10} " + " ".join(f"{m:>14}" for m in METHODS)
    rows_time, rows_cal, rows_held = [], [], []
    for name, w, x_cal, x_held in layers:
        times: dict[str, list[float]] = {m: [] for m in METHODS}
        pruned = {}
        for _ in range(args.rounds):
            for method, fn in METHODS.items():
                start = time.perf_counter()
                pruned[method] = fn(w, x_cal)
                times[method].append(time.perf_counter() - start)
        err_cal = {m: ((p - w) @ x_cal.T).norm().item() for m, p in pruned.items()}
        err_held = {m: ((p - w) @ x_held.T).norm().item() for m, p in pruned.items()}
        shape = f"{w.shape[0]}x{w.shape[1]}"
        rows_time.append((name, shape, {m: statistics.median(t) * 1e3 for m, t in times.items()}))
        rows_cal.append((name, shape, {m: err_cal[m] / err_cal[BASELINE[m.split()[-1]]] for m in METHODS}))
        rows_held.append((name, shape, {m: err_held[m] / err_held[BASELINE[m.split()[-1]]] for m in METHODS}))
    for title, rows, fmt in [("time per layer, ms (median over rounds)", rows_time, "{:14.2f}"),
                             ("output-error ratio vs magnitude, calibration tokens", rows_cal, "{:14.3f}"),
                             ("output-error ratio vs magnitude, held-out tokens", rows_held, "{:14.3f}")]:
        print(f"\n{title}\n{header}")
        for name, shape, values in rows:
            print(f"{name:24} {shape:>10} " + " ".join(fmt.format(values[m]) for m in METHODS))
        if rows is not rows_time:
            print(f"{'geometric mean':24} {'':>10} " + " ".join(
                fmt.format(statistics.geometric_mean(r[2][m] for r in rows)) for m in METHODS))
        else:
            print(f"{'total':24} {'':>10} " + " ".join(fmt.format(sum(r[2][m] for r in rows)) for m in METHODS))


if __name__ == "__main__":
    main()
