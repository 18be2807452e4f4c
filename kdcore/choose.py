"""Which compression technique fits a deployment scenario? A small, explicit rule table (notebook 10).

``rank_techniques(scenario)`` returns ``[(technique, reason), ...]`` best first; ``choose_technique(scenario)``
returns the top technique.  Technique names: ``"distillation"``, ``"unstructured_pruning"``,
``"structured_pruning"``, ``"post_training_quantization"``, ``"quantization_aware_training"``, ``"combine"``.

Scenario keys (all optional; the default is used for a missing key):

======================  =======================================  =========  ====================================
key                     allowed values                           default    meaning
======================  =======================================  =========  ====================================
hardware                "cpu", "gpu", "mcu", "mobile_npu"        "cpu"      where the model runs
sparse_support          bool                                     False      sparse kernels available at run time
int8_support            bool                                     True       int8 kernels available at run time
goal                    "size", "latency", "energy"              "latency"  what must improve
retraining_budget       "none", "low", "high"                    "low"      none = no training at all; low = a
                                                                            short fine-tune; high = full training
labelled_data           bool                                     True       labelled training data available
teacher_available       bool                                     True       a trained (larger) model exists;
                                                                            the model being compressed usually is
accuracy_tolerance      float >= 0                               1.0        allowed top-1 drop, in points
architecture_change_ok  bool                                     False      a different (smaller / other-family)
                                                                            network may be deployed
reduction_needed        float >= 1                               4.0        compression factor needed (4 = what
                                                                            int8 gives over float32)
======================  =======================================  =========  ====================================

An unknown key or value raises ``ValueError`` naming the key and the allowed values.

How the table is used: the rules are tried in order; every rule whose condition holds adds its technique
(the first time it is seen) with the rule's reason, so the first matching rule gives the answer and the later
ones give the alternatives.  The last rule always matches (a safe default), so the list is never empty.
The facts behind the rules:

* post-training quantization needs no gradient steps, only a few calibration batches; int8 stores weights
  4× smaller than float32 and runs on int8 kernels (Jacob et al., CVPR 2018; Nagel et al., "A White Paper on
  Neural Network Quantization", 2021);
* quantization-aware training simulates the rounding during training and recovers accuracy that PTQ loses,
  at the price of retraining with labels (Jacob et al. 2018; Krishnamoorthi, arXiv:1806.08342, 2018);
* unstructured (magnitude) pruning removes 9-13× of the weights of AlexNet/VGG-16 with retraining (Han et al.,
  NeurIPS 2015), but the zeros are still multiplied by dense kernels: no speed-up without sparse kernels
  (benchmarks/bench_latency.py, benchmarks/README.md: 90 %-sparse DigitsCNN 1.01× at batch 1 and 1.02× at
  batch 256 on CPU);
* structured pruning removes whole channels/neurons, so the smaller dense layers are faster on any hardware
  (Li et al., ICLR 2017; benchmarks/README.md, bench_latency.py: 50 % of channels → 1.40× at batch 1 and
  3.55× at batch 256);
* distillation trains a different, smaller network from a teacher's soft targets, so any architecture and
  reduction factor is possible, and it needs no labels (Hinton et al., 2015);
* MCUs and mobile NPUs run integer models (many NPUs accept only quantized ones), so there quantization is
  part of every answer (Jacob et al. 2018; Lin et al., MCUNet, NeurIPS 2020);
* combining techniques reaches what none reaches alone: pruning + trained quantization + Huffman coding
  gave 35× (AlexNet) and 49× (VGG-16) without accuracy loss (Han et al., Deep Compression, ICLR 2016);
  distillation + quantization (Polino et al., ICLR 2018).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

__all__ = ["TECHNIQUES", "Scenario", "Rule", "RULES", "parse_scenario", "rank_techniques", "choose_technique"]

TECHNIQUES = ("distillation", "unstructured_pruning", "structured_pruning", "post_training_quantization",
              "quantization_aware_training", "combine")

_CHOICES: dict[str, tuple] = {
    "hardware": ("cpu", "gpu", "mcu", "mobile_npu"),
    "goal": ("size", "latency", "energy"),
    "retraining_budget": ("none", "low", "high"),
}
_BOOLS = ("sparse_support", "int8_support", "labelled_data", "teacher_available", "architecture_change_ok")
_MINIMUM = {"accuracy_tolerance": 0.0, "reduction_needed": 1.0}


@dataclass(frozen=True)
class Scenario:
    """A validated scenario with every key filled in (defaults as in the module docstring)."""
    hardware: str = "cpu"
    sparse_support: bool = False
    int8_support: bool = True
    goal: str = "latency"
    retraining_budget: str = "low"
    labelled_data: bool = True
    teacher_available: bool = True
    accuracy_tolerance: float = 1.0
    architecture_change_ok: bool = False
    reduction_needed: float = 4.0


KEYS = tuple(f.name for f in fields(Scenario))


def _describe(key: str) -> str:
    if key in _CHOICES:
        return "one of " + ", ".join(repr(c) for c in _CHOICES[key])
    if key in _BOOLS:
        return "a bool (True or False)"
    return f"a number >= {_MINIMUM[key]:g}"


def parse_scenario(scenario: dict) -> Scenario:
    """Check a scenario dict (see the module docstring) and fill in the defaults."""
    if isinstance(scenario, Scenario):
        return scenario
    if not isinstance(scenario, dict):
        raise TypeError(f"scenario must be a dict, got {type(scenario).__name__}")
    for key, value in scenario.items():
        if key not in KEYS:
            raise ValueError(f"scenario has unknown key {key!r}; allowed keys: {', '.join(KEYS)}")
        if key in _CHOICES:
            ok = isinstance(value, str) and value in _CHOICES[key]
        elif key in _BOOLS:
            ok = isinstance(value, bool)
        else:
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and value == value and value != float("inf") and value >= _MINIMUM[key])
        if not ok:
            raise ValueError(f"scenario[{key!r}] must be {_describe(key)}, got {value!r}")
    return Scenario(**scenario)


@dataclass(frozen=True)
class Rule:
    """If ``condition(scenario)`` holds, recommend ``technique`` because of ``reason`` (``source``)."""
    name: str
    condition: Callable[[Scenario], bool]
    technique: str
    reason: str
    source: str


def _trains(s: Scenario) -> bool:
    """Any gradient-based training at all (fine-tuning, QAT, distillation) is allowed."""
    return s.retraining_budget != "none"


# Ordered: earlier rules win.  Each condition is self-contained (it states every requirement of its
# technique), so a rule never recommends something the scenario rules out.
RULES: list[Rule] = [
    Rule("no_retraining",
         lambda s: s.retraining_budget == "none",
         "post_training_quantization",
         "no retraining budget: PTQ needs only a few calibration batches and no gradient steps "
         "(int8 weights are 4x smaller; with int8 kernels also faster)",
         "Jacob et al., CVPR 2018; Nagel et al., quantization white paper, 2021"),
    Rule("very_large_reduction",
         lambda s: s.reduction_needed >= 20 and s.retraining_budget == "high"
         and (s.labelled_data or s.teacher_available),
         "combine",
         "a reduction of 20x or more is beyond one technique (int8 gives 4x, pruning ~9-13x); stack them: "
         "prune + quantize (+ distil) with the full training budget",
         "Han et al., Deep Compression, ICLR 2016 (35-49x); Polino et al., ICLR 2018"),
    Rule("integer_accelerator_needs_more",
         lambda s: s.hardware in ("mcu", "mobile_npu") and s.int8_support and s.reduction_needed > 4
         and _trains(s) and (s.labelled_data or s.teacher_available),
         "combine",
         "MCUs and mobile NPUs run int8 models (many NPUs accept only quantized ones), so quantization is "
         "mandatory; the reduction beyond its 4x must come from pruning or distillation on top",
         "Jacob et al., CVPR 2018; Lin et al., MCUNet, NeurIPS 2020"),
    Rule("int8_is_enough",
         lambda s: s.reduction_needed <= 4 and s.accuracy_tolerance >= 1.0
         and (s.int8_support or s.goal == "size"),
         "post_training_quantization",
         "int8 already gives the 4x needed and a drop of about a point or less is acceptable: PTQ is the "
         "cheapest option (no training)",
         "Krishnamoorthi, arXiv:1806.08342, 2018; Nagel et al. 2021"),
    Rule("tight_accuracy_int8",
         lambda s: s.reduction_needed <= 4 and s.int8_support and s.labelled_data and _trains(s),
         "quantization_aware_training",
         "int8 gives the 4x needed but PTQ's drop may exceed the tolerance (compact nets lose most); "
         "QAT fine-tunes with simulated rounding and recovers most of it",
         "Jacob et al., CVPR 2018; Krishnamoorthi 2018"),
    Rule("new_smaller_architecture",
         lambda s: s.architecture_change_ok and s.teacher_available and s.retraining_budget == "high"
         and s.reduction_needed > 4,
         "distillation",
         "a different, smaller architecture may be deployed and there is a teacher and a full training "
         "budget: train the student on the teacher's soft targets (any reduction factor, any family)",
         "Hinton et al., Distilling the Knowledge in a Neural Network, 2015"),
    Rule("storage_only",
         lambda s: s.goal == "size" and s.reduction_needed > 4 and s.labelled_data and _trains(s),
         "unstructured_pruning",
         "only storage matters: magnitude pruning with fine-tuning removes most weights and a sparse "
         "format (CSR, relative indices) stores the rest; no sparse kernels are needed to save space",
         "Han et al., NeurIPS 2015 (9-13x)"),
    Rule("sparse_kernels_available",
         lambda s: s.goal != "size" and s.sparse_support and s.reduction_needed > 4 and s.labelled_data
         and _trains(s),
         "unstructured_pruning",
         "sparse kernels are available, so high unstructured sparsity turns into skipped work",
         "Han et al., NeurIPS 2015; Han et al., EIE, ISCA 2016"),
    Rule("dense_hardware_speed",
         lambda s: s.goal != "size" and s.labelled_data and _trains(s),
         "structured_pruning",
         "dense kernels: removing whole channels/neurons gives smaller dense layers that are really faster; "
         "unstructured zeros would still be multiplied (no speed-up)",
         "Li et al., Pruning Filters for Efficient ConvNets, ICLR 2017; benchmarks/bench_latency.py (3.55x vs 1.02x at batch 256)"),
    Rule("no_labels_teacher",
         lambda s: not s.labelled_data and s.teacher_available and _trains(s),
         "distillation",
         "no labels for fine-tuning: the teacher's soft targets on unlabelled inputs are the training signal",
         "Hinton et al. 2015 (transfer set)"),
    Rule("quantize_for_efficiency",
         lambda s: s.int8_support and s.labelled_data and s.goal != "size" and _trains(s),
         "quantization_aware_training",
         "int8 kernels cut memory traffic and energy per operation; QAT keeps the accuracy",
         "Jacob et al., CVPR 2018; Horowitz, ISSCC 2014 (8-bit add ~30x less energy than fp32)"),
    Rule("default",
         lambda s: True,
         "post_training_quantization",
         "default first step: PTQ costs no training; measure the accuracy drop, then revisit",
         "Nagel et al. 2021 (PTQ first, QAT if the drop is too large)"),
]


def rank_techniques(scenario: dict) -> list[tuple[str, str]]:
    """``[(technique, reason), ...]`` best first, no duplicates, never empty (see ``RULES``)."""
    s = parse_scenario(scenario)
    ranked: list[tuple[str, str]] = []
    for rule in RULES:
        if rule.condition(s) and all(technique != rule.technique for technique, _ in ranked):
            ranked.append((rule.technique, f"{rule.reason} [{rule.source}]"))
    return ranked


def choose_technique(scenario: dict) -> str:
    """The best technique for ``scenario`` (the first of :func:`rank_techniques`)."""
    return rank_techniques(scenario)[0][0]
