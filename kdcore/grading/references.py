"""The reference functions the judge compares against, captured once, when kdcore.grading is imported.

``REFERENCES[exercise_id]`` is the function object found at import time (``None`` if its module could not
be imported; judging that exercise then raises a clear RuntimeError). Because the judge reads this dict and
never ``getattr(kdcore.distill, ...)`` again, learner code that later re-binds a module attribute such as
``kdcore.distill.kd_loss = my_loss`` does not change the reference in this process. (It cannot protect
against code that patches torch itself or the internals a reference calls: for untrusted submissions the
batch grader judges in a separate process that never runs learner code.)
"""
from __future__ import annotations

import importlib
from typing import Callable

SOURCES: dict[str, str] = {
    "softmax_t": "kdcore.distill", "kl_divergence": "kdcore.distill", "soft_cross_entropy": "kdcore.distill",
    "kd_loss": "kdcore.distill", "distill_step": "kdcore.distill", "attention_map": "kdcore.distill",
    "at_loss": "kdcore.distill", "sequence_kd_loss": "kdcore.distill",
    "magnitude_mask": "kdcore.prune", "global_magnitude_masks": "kdcore.prune", "prune_neurons": "kdcore.prune",
    "sparsity_schedule": "kdcore.prune", "snip_scores": "kdcore.prune", "masked_sgd_step": "kdcore.prune",
    "count_parameters": "kdcore.measure", "conv2d_flops": "kdcore.measure", "csr_bytes": "kdcore.measure",
    "quantize_affine": "kdcore.quantize", "dequantize": "kdcore.quantize", "kmeans_share": "kdcore.quantize",
    "separable_params": "kdcore.quantize",
    "choose_technique": "kdcore.select",
}


def _capture() -> dict[str, "Callable | None"]:
    found: dict[str, "Callable | None"] = {}
    for exercise_id, module_name in SOURCES.items():
        try:
            found[exercise_id] = getattr(importlib.import_module(module_name), exercise_id)
        except (ImportError, AttributeError):
            found[exercise_id] = None
    return found


REFERENCES: dict[str, "Callable | None"] = _capture()
