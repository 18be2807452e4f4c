"""choose_technique — pick a compression technique for a deployment scenario. Taught in notebook 10; reference
``kdcore.choose.choose_technique``.

Contract (docs/EXERCISES.md): ``scenario: dict`` with the keys of ``kdcore.choose`` → one of ``"distillation"``,
``"unstructured_pruning"``, ``"structured_pruning"``, ``"post_training_quantization"``,
``"quantization_aware_training"``, ``"combine"``; the scenario is not modified.

Each case is a fully specified, unambiguous scenario (every key given, so no case relies on a default); its name
states the reason for the expected answer, which comes from the reference at judging time. Notebook 10 prints
this table (``BASE`` and ``SCENARIOS``) with the reference's answers.
"""
from __future__ import annotations

import copy

from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import Case, comparer

# ----------------------------------------------------------------------------------------------------------
# cases: BASE changed by each scenario's few keys
# ----------------------------------------------------------------------------------------------------------
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
    """``fn(scenario)`` on a copy of BASE + changes; records the answer and whether the scenario was modified."""
    scenario = {**BASE, **changes}

    def observe(fn):
        given = copy.deepcopy(scenario)
        out = fn(given)
        return {"mutated": given != scenario, "out": out}
    return Case(name, observe, comparer())


CASES = [_case(name, changes) for name, changes in SCENARIOS]


# ----------------------------------------------------------------------------------------------------------
# an honest solution (it is also correct): a decision list written independently of kdcore.choose's rule
# table; the wrong variants below each drop or change one of its considerations
# ----------------------------------------------------------------------------------------------------------
@correct("decision list")
def decision_list(scenario):
    s = scenario
    if s["retraining_budget"] == "none":
        return "post_training_quantization"
    if (s["reduction_needed"] >= 20 and s["retraining_budget"] == "high"
            and (s["labelled_data"] or s["teacher_available"])):
        return "combine"
    if s["reduction_needed"] <= 4:
        if s["accuracy_tolerance"] >= 1.0 and (s["int8_support"] or s["goal"] == "size"):
            return "post_training_quantization"
        if s["int8_support"] and s["labelled_data"]:
            return "quantization_aware_training"
    if (s["architecture_change_ok"] and s["teacher_available"] and s["retraining_budget"] == "high"
            and s["reduction_needed"] > 4):
        return "distillation"
    if not s["labelled_data"] and s["teacher_available"]:
        return "distillation"
    if s["goal"] == "size" and s["reduction_needed"] > 4:
        return "unstructured_pruning"
    if s["sparse_support"]:
        return "unstructured_pruning"
    return "structured_pruning"


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
@wrong("always post-training quantization",
       hint="PTQ is the cheapest first step, but not when more than 4x is needed, the tolerance is tight, or int8 "
            "brings nothing: read the whole scenario")
def always_ptq(scenario):
    return "post_training_quantization"


@wrong("always distillation",
       hint="distillation needs a teacher and a training budget and changes the architecture: it is not always the "
            "answer")
def always_distillation(scenario):
    return "distillation"


wrong("unstructured pruning without sparse kernels",
      hint="unstructured zeros are still multiplied by dense kernels: without sparse support it gives no speed-up; "
           "prune whole channels (structured) for latency"
      ).edit(decision_list, '    if s["sparse_support"]:\n        return "unstructured_pruning"\n'
                            '    return "structured_pruning"\n', '    return "unstructured_pruning"\n')

wrong("accuracy tolerance ignored",
      hint="with a tight accuracy tolerance PTQ's drop may be too large: quantization-aware training recovers it"
      ).edit(decision_list, 'if s["accuracy_tolerance"] >= 1.0 and (s["int8_support"] or s["goal"] == "size"):',
             'if s["int8_support"] or s["goal"] == "size":')

wrong("retraining budget ignored",
      hint="with no retraining budget only post-training quantization is possible (pruning and distillation need "
           "training)"
      ).edit(decision_list, '    if s["retraining_budget"] == "none":\n        return "post_training_quantization"\n',
             "")

wrong("never combines",
      hint="20x and more needs several techniques together (Deep Compression: prune + quantize, 35-49x)"
      ).edit(decision_list, '''    if (s["reduction_needed"] >= 20 and s["retraining_budget"] == "high"
            and (s["labelled_data"] or s["teacher_available"])):
        return "combine"
''', "")

wrong("labels assumed",
      hint="without labels, pruning/QAT cannot fine-tune: a teacher's soft targets on unlabelled inputs "
           "(distillation) are the training signal"
      ).edit(decision_list, '    if not s["labelled_data"] and s["teacher_available"]:\n'
                            '        return "distillation"\n', "")


@wrong("display names",
       hint="return one of the exact names: 'distillation', 'unstructured_pruning', 'structured_pruning', "
            "'post_training_quantization', 'quantization_aware_training', 'combine'")
def display_names(scenario):
    return decision_list(scenario).replace("_", " ").title()
