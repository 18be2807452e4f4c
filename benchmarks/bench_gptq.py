"""GPTQ on real layers: kdcore's ``gptq_quantize`` vs round-to-nearest vs llm-compressor's GPTQ (when installed).

Layers: the 24 block Linears of the course's teacher GPT (``kdcore/llm/checkpoints/teacher.safetensors``), each with
its calibration inputs collected by forward hooks on 32 windows × 128 characters of the calibration split
(``X [4096, in]``, ``H = 2·XᵀX/n``), plus one synthetic 1024 × 1024 layer with correlated inputs (LLM-sized rows).

Methods, all at ``--bits`` with groups of ``--group-size`` input columns, damping 0.01:

* ``RTN``: ``kdcore.quantize_groupwise`` (llm-awq's grid), the baseline;
* ``kdcore GPTQ``: ``kdcore.gptq_quantize`` on the same grid;
* ``llm-compressor GPTQ``: ``llmcompressor.modifiers.gptq.gptq_quantize.quantize_weight`` (vLLM's maintained
  implementation, its CPU path), with per-group min-max qparams from ``compressed_tensors`` computed on the
  original weights (what its default observer does) and its own RTN (``compressed_tensors`` ``fake_quantize`` with
  those qparams) as its baseline. Its grid widens each group's range to contain 0, kdcore's (llm-awq's) does not,
  so each GPTQ is compared with the RTN *of its own grid*. Skipped, with the reason printed, when not importable.

Printed per method: median time per layer (interleaved rounds, one thread) and the layer-output error
``‖(W − Q)X‖²/n`` relative to RTN on the same grid (geometric mean over layers, and the worst layer).

    .venv/bin/python benchmarks/bench_gptq.py [--bits 4 3] [--group-size 128] [--rounds 3] [--threads 1]

llm-compressor needs transformers and friends; the course environment does not include them. To run it, install
it in a separate environment that reuses the course's torch (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch

import kdcore
from kdcore.llm import eval as llm_eval
from kdcore.llm.quantize import layer_output_error


def teacher_layers() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{name: (W [out, in], X [n, in])}`` for the teacher's block Linears, or {} without the checkpoint."""
    from kdcore.llm.corpus import load_corpus
    from kdcore.llm.gpt import block_linear_names
    from kdcore.llm.train import TEACHER_PATH, load_teacher
    if not TEACHER_PATH.is_file():
        print(f"(no teacher checkpoint at {TEACHER_PATH}: synthetic layer only)")
        return {}
    teacher = load_teacher()
    names = block_linear_names(teacher)
    xs = llm_eval.collect_inputs(teacher, names, llm_eval.calib_batches(load_corpus(), n=32, batch_size=32))
    return {n: (teacher.get_submodule(n).weight.detach().clone(), xs[n]) for n in names}


def synthetic_layer(size: int = 1024, n: int = 4096, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(size, size, generator=g) * 0.02
    mix = torch.randn(size, size, generator=g) / math.sqrt(size) + torch.eye(size)   # correlated inputs
    return w, torch.randn(n, size, generator=g) @ mix


def llmcompressor_methods(bits: int, group_size: int) -> tuple[dict[str, Callable], str]:
    """(methods, note): llm-compressor's GPTQ and its RTN, or ({}, why not)."""
    try:
        from compressed_tensors.quantization import QuantizationArgs
        from compressed_tensors.quantization.lifecycle.forward import fake_quantize
        from compressed_tensors.quantization.utils.helpers import calculate_qparams
        from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight
    except ImportError as err:
        return {}, f"llm-compressor not importable here ({err}); see benchmarks/README.md"
    import importlib.metadata as md
    args = QuantizationArgs(num_bits=bits, type="int", symmetric=False, strategy="group", group_size=group_size)

    def qparams(w: torch.Tensor):
        groups = w.reshape(w.shape[0], -1, group_size)                   # [out, in/g, g]
        return calculate_qparams(groups.amin(-1), groups.amax(-1), args)  # scale, zero point [out, in/g]

    def rtn(w: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        scale, zp = qparams(w)
        return fake_quantize(w, scale, zp, args)

    def gptq(w: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        scale, zp = qparams(w)
        q, _, fallback = quantize_weight(w[None].clone(), H[None].clone(), scale[None], zp[None], None, args,
                                         blocksize=128, percdamp=0.01)
        assert not fallback.any(), "llm-compressor fell back to RTN (H not positive definite)"
        return q[0]

    version = md.version("llmcompressor")
    return {"llm-compressor RTN": rtn, "llm-compressor GPTQ": gptq}, f"llm-compressor {version}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[4, 3])
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    layers = teacher_layers()
    layers["synthetic 1024x1024"] = synthetic_layer()
    hessians = {n: llm_eval.hessian(x) for n, (_, x) in layers.items()}
    print(f"torch {torch.__version__}, {args.threads} thread(s); {len(layers)} layers; group size {args.group_size}")

    for bits in args.bits:
        g = args.group_size
        methods: dict[str, Callable] = {
            "RTN": lambda w, H, b=bits: kdcore.quantize_groupwise(w, b, g),
            "kdcore GPTQ": lambda w, H, b=bits: kdcore.gptq_quantize(w, H, b, g, 0.01),
        }
        extra, note = llmcompressor_methods(bits, g)
        methods.update(extra)
        times: dict[tuple[str, str], list[float]] = {}
        errors: dict[tuple[str, str], float] = {}
        for _ in range(args.rounds):                     # interleaved: a slow spell hits every method alike
            for name, (w, x) in layers.items():
                for method, fn in methods.items():
                    start = time.perf_counter()
                    q = fn(w, hessians[name])
                    times.setdefault((method, name), []).append(time.perf_counter() - start)
                    errors[(method, name)] = layer_output_error(w, q, x)
        print(f"\nW{bits} g{g}  ({note})")
        print(f"{'method':22s} {'ms/layer (teacher, median)':>27s} {'ms (1024x1024)':>15s} "
              f"{'error / RTN (geo-mean)':>23s} {'worst layer':>12s}")
        for method in methods:
            baseline = "llm-compressor RTN" if method.startswith("llm-compressor") else "RTN"
            teacher_ms = [1e3 * statistics.median(times[(method, n)]) for n in layers if n.startswith("h.")]
            big_ms = 1e3 * statistics.median(times[(method, "synthetic 1024x1024")])
            ratios = [errors[(method, n)] / errors[(baseline, n)] for n in layers]
            geo = math.exp(statistics.fmean(math.log(r) for r in ratios))
            teacher_col = f"{statistics.median(teacher_ms):27.2f}" if teacher_ms else f"{'—':>27s}"
            print(f"{method:22s} {teacher_col} {big_ms:15.1f} {geo:23.3f} {max(ratios):12.3f}")


if __name__ == "__main__":
    main()
