"""Cases and misconception catalogue of choose_technique (notebook 10).

Each case is a fully specified, unambiguous scenario (every key of ``kdcore.choose`` given, so no case relies
on a default); its name states the reason for the expected answer. The expected answer itself comes from the
reference ``kdcore.choose.choose_technique`` at judging time.
"""
from __future__ import annotations

import copy

from .core import Case, Exercise, Variant, compare_obs, register

BASE = {
    "hardware": "cpu", "sparse_support": False, "int8_support": True, "goal": "latency",
    "retraining_budget": "low", "labelled_data": True, "teacher_available": True, "accuracy_tolerance": 1.0,
    "architecture_change_ok": False, "reduction_needed": 4.0,
}

# (reason = case name, changes to BASE)
SCENARIOS: list[tuple[str, dict]] = [
    ("no training possible at all, 10x wanted → post-training quantization is the only option "
     "(calibration only, no gradient steps)",
     {"retraining_budget": "none", "reduction_needed": 10.0, "accuracy_tolerance": 3.0}),
    ("4x needed, a 1-point drop is fine, int8 kernels → post-training quantization (int8 gives 4x, cheapest)",
     {}),
    ("4x needed but only 0.2 points may be lost, int8 kernels and labels → quantization-aware training",
     {"accuracy_tolerance": 0.2}),
    ("energy on a mobile NPU with int8, 4x, 0.5-point tolerance, labels → quantization-aware training",
     {"hardware": "mobile_npu", "goal": "energy", "accuracy_tolerance": 0.5}),
    ("a smaller architecture may be deployed, teacher and full training budget, 10x → distillation",
     {"architecture_change_ok": True, "retraining_budget": "high", "reduction_needed": 10.0}),
    ("only storage matters, 10x, labels for fine-tuning → unstructured (magnitude) pruning + sparse storage",
     {"goal": "size", "reduction_needed": 10.0}),
    ("latency on a GPU with sparse kernels, 10x → unstructured pruning (sparsity becomes skipped work)",
     {"hardware": "gpu", "sparse_support": True, "reduction_needed": 10.0}),
    ("latency on a CPU without sparse kernels, 8x → structured pruning (smaller dense layers are really faster)",
     {"reduction_needed": 8.0}),
    ("latency on a CPU without int8 kernels, 4x, 2-point tolerance → structured pruning (int8 would not speed up)",
     {"int8_support": False, "accuracy_tolerance": 2.0}),
    ("30x needed with a full training budget → combine (prune + quantize + distil; no single technique gives it)",
     {"reduction_needed": 30.0, "retraining_budget": "high", "goal": "size"}),
    ("no labels but a teacher, 8x, same architecture → distillation (soft targets on unlabelled inputs)",
     {"labelled_data": False, "reduction_needed": 8.0}),
    ("size on a microcontroller without int8 kernels, 4x, 2-point tolerance → post-training quantization "
     "(int8 storage is 4x smaller even without int8 kernels)",
     {"hardware": "mcu", "int8_support": False, "goal": "size", "accuracy_tolerance": 2.0}),
]


def _case(name: str, changes: dict) -> Case:
    scenario = {**BASE, **changes}

    def observe(fn):
        given = copy.deepcopy(scenario)
        out = fn(given)
        return {"mutated": given != scenario, "out": out}
    return Case(name, observe, lambda c, r: compare_obs(c, r))


def _s(scenario: dict) -> dict:
    return {**BASE, **scenario}


def _answer(s: dict, *, skip: str = "") -> str:
    """An independent decision list (what a strong candidate writes); ``skip`` drops one consideration."""
    if s["retraining_budget"] == "none" and skip != "budget":
        return "post_training_quantization"
    if (s["reduction_needed"] >= 20 and s["retraining_budget"] == "high" and skip != "combine"
            and (s["labelled_data"] or s["teacher_available"])):
        return "combine"
    if s["reduction_needed"] <= 4:
        if s["accuracy_tolerance"] >= 1.0 and (s["int8_support"] or s["goal"] == "size"):
            return "post_training_quantization"
        if skip == "tolerance":
            return "post_training_quantization"
        if s["int8_support"] and s["labelled_data"]:
            return "quantization_aware_training"
    if (s["architecture_change_ok"] and s["teacher_available"] and s["retraining_budget"] == "high"
            and s["reduction_needed"] > 4):
        return "distillation"
    if not s["labelled_data"] and s["teacher_available"] and skip != "labels":
        return "distillation"
    if s["goal"] == "size" and s["reduction_needed"] > 4:
        return "unstructured_pruning"
    if s["sparse_support"] or skip == "sparse":
        return "unstructured_pruning"
    return "structured_pruning"


def _ct_ok(scenario):
    return _answer(_s(scenario))


def _ct_always_ptq(scenario):
    return "post_training_quantization"


def _ct_always_distill(scenario):
    return "distillation"


def _ct_no_sparse_check(scenario):
    return _answer(_s(scenario), skip="sparse")


def _ct_ignores_tolerance(scenario):
    return _answer(_s(scenario), skip="tolerance")


def _ct_ignores_budget(scenario):
    return _answer(_s(scenario), skip="budget")


def _ct_no_combine(scenario):
    return _answer(_s(scenario), skip="combine")


def _ct_ignores_labels(scenario):
    return _answer(_s(scenario), skip="labels")


def _ct_display_names(scenario):
    return _answer(_s(scenario)).replace("_", " ").title()


register(
    Exercise("choose_technique", "10", "choose_technique(scenario)", [_case(n, c) for n, c in SCENARIOS],
             "kdcore.choose.choose_technique", "one technique name per unambiguous scenario"),
    wrong=[
        Variant("always post-training quantization", _ct_always_ptq,
                "PTQ is the cheapest first step, but not when more than 4x is needed, the tolerance is tight, or "
                "int8 brings nothing: read the whole scenario"),
        Variant("always distillation", _ct_always_distill,
                "distillation needs a teacher and a training budget and changes the architecture: it is not "
                "always the answer"),
        Variant("unstructured pruning without sparse kernels", _ct_no_sparse_check,
                "unstructured zeros are still multiplied by dense kernels: without sparse support it gives no "
                "speed-up; prune whole channels (structured) for latency"),
        Variant("accuracy tolerance ignored", _ct_ignores_tolerance,
                "with a tight accuracy tolerance PTQ's drop may be too large: quantization-aware training "
                "recovers it"),
        Variant("retraining budget ignored", _ct_ignores_budget,
                "with no retraining budget only post-training quantization is possible (pruning and distillation "
                "need training)"),
        Variant("never combines", _ct_no_combine,
                "20x and more needs several techniques together (Deep Compression: prune + quantize, 35-49x)"),
        Variant("labels assumed", _ct_ignores_labels,
                "without labels, pruning/QAT cannot fine-tune: a teacher's soft targets on unlabelled inputs "
                "(distillation) are the training signal"),
        Variant("display names", _ct_display_names,
                "return one of the exact names: 'distillation', 'unstructured_pruning', 'structured_pruning', "
                "'post_training_quantization', 'quantization_aware_training', 'combine'"),
    ],
    correct=[Variant("decision list", _ct_ok, "")],
)
