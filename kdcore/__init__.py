"""kdcore: the reference library of the model-compression interview course.

Every exercise of the course has its reference here under the same name (see ``EXERCISES.md``
in the course docs). Submodules, one concept each:

``distill``   soft labels, KD losses, feature/attention transfer, one distillation step
``prune``     magnitude / global / structured pruning, schedules, SNIP, masked fine-tuning
``measure``   parameters, FLOPs, sparse storage, model size, latency
``quantize``  affine quantization, weight sharing, separable-conv parameter counts
``select``    rule table for choosing a compression technique
``data``      offline data sets (scikit-learn digits, MNIST-1D generated locally)
``models``    small teacher and student networks
``train``     seeded training / evaluation / distillation loops
``grading``   ``check(exercise_id, fn)``: the grader used by the notebooks
``hints``     ``hint(exercise_id)``: graded hints, then the solution
``progress``  the home page's table of solved exercises

Names are resolved lazily, so ``import kdcore`` stays fast and a notebook only pays for what it uses.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # distill
    "softmax_t": "distill", "kl_divergence": "distill", "soft_cross_entropy": "distill",
    "kd_loss": "distill", "distill_step": "distill", "attention_map": "distill",
    "at_loss": "distill", "hint_loss": "distill", "sequence_kd_loss": "distill",
    # prune
    "magnitude_mask": "prune", "global_magnitude_masks": "prune", "prune_neurons": "prune",
    "prune_conv_channels": "prune", "apply_masks": "prune", "masked_sgd_step": "prune",
    "sparsity_schedule": "prune", "snip_scores": "prune", "sparsity_report": "prune",
    # measure
    "count_parameters": "measure", "conv2d_flops": "measure", "model_flops": "measure",
    "csr_bytes": "measure", "model_size_bytes": "measure", "measure_latency": "measure",
    "compare_latency": "measure",
    # quantize
    "quantize_affine": "quantize", "dequantize": "quantize", "quantize_per_channel": "quantize",
    "fake_quantize_model": "quantize", "kmeans_share": "quantize", "separable_params": "quantize",
    # select
    "choose_technique": "select", "rank_techniques": "select",
    # grading
    "check": "grading", "hint": "hints",
    # the course home page
    "progress_table": "progress",
}

_SUBMODULES = {"distill", "prune", "measure", "quantize", "select", "data", "models", "train", "grading", "text", "hints", "progress"}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'kdcore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
