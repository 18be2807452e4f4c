"""kdcore.choose: unambiguous scenarios with their expected technique, plus properties of the rule table."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdcore.choose import KEYS, RULES, TECHNIQUES, Scenario, choose_technique, rank_techniques

# (scenario, expected technique, why it is unambiguous)
SCENARIOS = [
    (dict(retraining_budget="none", goal="latency"), "post_training_quantization",
     "no training at all: only PTQ (calibration) is possible"),
    (dict(retraining_budget="none", hardware="mcu", accuracy_tolerance=0.1), "post_training_quantization",
     "a tight tolerance would call for QAT, but QAT needs training"),
    ({}, "post_training_quantization",
     "defaults: int8 CPU, 4x needed, 1 point allowed: PTQ gives it with no training"),
    (dict(hardware="mcu", goal="latency", accuracy_tolerance=0.3, reduction_needed=4), "quantization_aware_training",
     "int8 is enough but the tolerance is below PTQ's typical drop; labels and budget allow QAT"),
    (dict(hardware="mcu", goal="energy", accuracy_tolerance=2.0), "post_training_quantization",
     "int8 on an MCU with a loose tolerance: PTQ"),
    (dict(hardware="cpu", goal="latency", reduction_needed=8), "structured_pruning",
     "dense CPU kernels, 8x beyond int8's 4x, no architecture change: structured pruning, never unstructured"),
    (dict(hardware="cpu", int8_support=False, goal="latency", reduction_needed=2), "structured_pruning",
     "no int8 kernels so quantization gives no speed-up; smaller dense layers do"),
    (dict(goal="size", reduction_needed=10), "unstructured_pruning",
     "only storage matters and 10x is beyond int8: magnitude pruning + sparse storage"),
    (dict(goal="size", reduction_needed=40, retraining_budget="high"), "combine",
     "40x with a full budget: Deep Compression style pruning + quantization"),
    (dict(hardware="gpu", goal="latency", architecture_change_ok=True, retraining_budget="high",
          reduction_needed=10), "distillation",
     "a smaller architecture may be deployed, a teacher exists, full budget"),
    (dict(labelled_data=False, goal="latency", reduction_needed=8), "distillation",
     "no labels for fine-tuning, but a teacher can label unlabelled inputs"),
    (dict(hardware="gpu", sparse_support=True, goal="latency", reduction_needed=10), "unstructured_pruning",
     "sparse kernels turn unstructured zeros into skipped work"),
    (dict(hardware="mobile_npu", goal="latency", reduction_needed=10), "combine",
     "the NPU needs int8 anyway and 10x is more than int8's 4x"),
    (dict(goal="size", int8_support=False, reduction_needed=3), "post_training_quantization",
     "storing int8 weights needs no int8 kernels (dequantize at load)"),
    (dict(architecture_change_ok=True, retraining_budget="high", reduction_needed=2), "post_training_quantization",
     "distillation would be possible, but int8 alone gives the 2x at no training cost"),
    (dict(labelled_data=False, teacher_available=False, goal="latency", reduction_needed=8),
     "post_training_quantization", "no labels and no teacher: nothing to fine-tune with; calibrate only"),
]


@pytest.mark.parametrize("scenario, expected, why", SCENARIOS, ids=[s[2][:40] for s in SCENARIOS])
def test_unambiguous_scenarios(scenario, expected, why):
    assert choose_technique(scenario) == expected, why
    ranked = rank_techniques(scenario)
    assert ranked[0][0] == expected and ranked[0][1]


# ----------------------------------------------------------------------------------------- properties
scenarios = st.fixed_dictionaries({}, optional={
    "hardware": st.sampled_from(["cpu", "gpu", "mcu", "mobile_npu"]),
    "sparse_support": st.booleans(),
    "int8_support": st.booleans(),
    "goal": st.sampled_from(["size", "latency", "energy"]),
    "retraining_budget": st.sampled_from(["none", "low", "high"]),
    "labelled_data": st.booleans(),
    "teacher_available": st.booleans(),
    "accuracy_tolerance": st.floats(0, 10),
    "architecture_change_ok": st.booleans(),
    "reduction_needed": st.one_of(st.floats(1, 100), st.integers(1, 100)),
})


@settings(max_examples=50, deadline=None)
@given(scenario=scenarios)
def test_rankings_are_well_formed(scenario):
    ranked = rank_techniques(scenario)
    names = [t for t, _ in ranked]
    assert ranked and set(names) <= set(TECHNIQUES)
    assert len(names) == len(set(names))
    assert choose_technique(scenario) == names[0]
    assert all(reason and "[" in reason for _, reason in ranked)  # every reason carries its source


@settings(max_examples=50, deadline=None)
@given(scenario=scenarios)
def test_rankings_respect_the_hard_constraints(scenario):
    s = Scenario(**scenario)
    names = [t for t, _ in rank_techniques(scenario)]
    if s.retraining_budget == "none":  # everything else needs training
        assert names == ["post_training_quantization"]
    if s.goal != "size" and not s.sparse_support:  # dense kernels: unstructured zeros give no speed-up
        assert "unstructured_pruning" not in names
    if not s.teacher_available and not s.labelled_data:
        assert "distillation" not in names and "quantization_aware_training" not in names
    if "distillation" in names:
        assert s.teacher_available


def test_rule_table_is_small_and_documented():
    assert 10 <= len(RULES) <= 15
    assert len({r.name for r in RULES}) == len(RULES)
    assert all(r.technique in TECHNIQUES and r.reason and r.source for r in RULES)
    assert RULES[-1].condition(Scenario()) and RULES[-1].technique == "post_training_quantization"
    assert set(KEYS) == {"hardware", "sparse_support", "int8_support", "goal", "retraining_budget",
                         "labelled_data", "teacher_available", "accuracy_tolerance", "architecture_change_ok",
                         "reduction_needed"}


@pytest.mark.parametrize("scenario, match", [
    ({"hardwre": "cpu"}, r"unknown key 'hardwre'; allowed keys: hardware, "),
    ({"hardware": "tpu"}, r"scenario\['hardware'\] must be one of 'cpu', 'gpu', 'mcu', 'mobile_npu', got 'tpu'"),
    ({"goal": "accuracy"}, r"scenario\['goal'\] must be one of 'size', 'latency', 'energy'"),
    ({"retraining_budget": 0}, r"scenario\['retraining_budget'\] must be one of 'none', 'low', 'high'"),
    ({"sparse_support": "yes"}, r"scenario\['sparse_support'\] must be a bool"),
    ({"int8_support": 1}, r"scenario\['int8_support'\] must be a bool"),
    ({"accuracy_tolerance": -1}, r"scenario\['accuracy_tolerance'\] must be a number >= 0"),
    ({"reduction_needed": 0.5}, r"scenario\['reduction_needed'\] must be a number >= 1"),
    ({"reduction_needed": float("nan")}, r"scenario\['reduction_needed'\] must be a number >= 1"),
    ({"reduction_needed": True}, r"scenario\['reduction_needed'\] must be a number >= 1"),
])
def test_invalid_scenarios_name_the_key_and_allowed_values(scenario, match):
    with pytest.raises(ValueError, match=match):
        choose_technique(scenario)
    with pytest.raises(ValueError, match=match):
        rank_techniques(scenario)


def test_scenario_must_be_a_dict():
    with pytest.raises(TypeError, match="scenario must be a dict"):
        choose_technique([("goal", "size")])
