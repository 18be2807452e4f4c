"""kdcore: the reference library of the model-compression interview course.

Every exercise of the course has its reference here under the same name (see ``EXERCISES.md``
in the course docs). Submodules, one concept each:

``distill``   soft labels, KD losses, feature/attention transfer, one distillation step
``prune``     magnitude / global / structured pruning, schedules, SNIP, masked fine-tuning
``measure``   parameters, FLOPs, sparse storage, model size, latency
``quantize``  affine quantization, weight sharing, separable-conv parameter counts
``choose``    rule table for choosing a compression technique
``data``      offline data sets (scikit-learn digits, MNIST-1D generated locally)
``models``    small teacher and student networks
``train``     seeded training / evaluation / distillation loops
``checking``  ``check(exercise_id, fn)``: the grader used by the notebooks
``hints``     ``hint(exercise_id)``: graded hints, then the solution
``progress``  the home page's table of solved exercises

Names are resolved lazily, so ``import kdcore`` stays fast and a notebook only pays for what it uses.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names that are not exercises -> the submodule that defines them. The exercises (kdcore.kd_loss, ...)
# are added from the manifest, kdcore/exercises/manifest.toml, so that list is written once.
_LIBRARY_EXPORTS: dict[str, str] = {
    "hint_loss": "distill", "prune_conv_channels": "prune", "apply_masks": "prune", "sparsity_report": "prune",
    "prunable_weights": "prune", "gradual_prune": "prune", "model_flops": "measure", "model_size_bytes": "measure",
    "measure_latency": "measure", "compare_latency": "measure", "saved_bytes": "measure",
    "quantize_per_channel": "quantize", "fake_quantize_model": "quantize", "rank_techniques": "choose",
    "check": "checking", "hint": "hints", "progress_table": "progress",
}


def _exercise_exports() -> dict[str, str]:
    """id -> module of its reference, read from the manifest (stdlib only: ``import kdcore`` stays fast)."""
    import tomllib
    from pathlib import Path

    manifest = Path(__file__).with_name("exercises") / "manifest.toml"
    records = tomllib.loads(manifest.read_text(encoding="utf-8"))["exercise"]
    return {r["id"]: r["reference"].rpartition(".")[0].removeprefix("kdcore.") for r in records}


_EXPORTS: dict[str, str] = {**_exercise_exports(), **_LIBRARY_EXPORTS}

_SUBMODULES = {"distill", "prune", "measure", "quantize", "choose", "data", "models", "train", "checking", "text", "hints", "progress"}

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
