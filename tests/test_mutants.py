"""Mutation testing of the grader's cases (kdcore.checking.mutants): for every exercise, ``check`` rejects every
mutant of the reference except those its module lists as equivalent, with the reason."""
from __future__ import annotations

import ast
import textwrap

import pytest
import torch

from kdcore.checking import EXERCISES
from kdcore.checking.mutants import mutants, rejected, run


def test_mutant_operators_on_a_small_function():
    def f(x, y):
        z = torch.clamp(x + y, min=0)
        if z.sum() > 2 and True:
            return z.mean(dim=-1, keepdim=True)
        return -z

    found = {m.id.split(": ", 1)[1] for m in mutants(f)}
    assert "`+` → `-` in `x + y`" in found
    assert any(d.startswith("`>` → `>=`") for d in found)
    assert any(d.startswith("`and` → `or`") for d in found)
    assert "`2` → `3`" in found and "`True` → `False`" in found
    assert any(d.startswith("`torch.clamp(x + y, min=0)` → `x + y`") for d in found)
    assert "`keepdim=True` → `keepdim=False`" in found
    assert any("`dim=-1` → `dim=0`" in d for d in found)
    assert "`-z` → `z`" in found
    # every mutant is a different program, and none replaces the original function
    codes = [ast.unparse(ast.parse(textwrap.dedent(__import__("inspect").getsource(f))))]
    assert len(found) == len(mutants(f))
    assert f(torch.ones(2), torch.ones(2)).shape == (1,) and codes


def test_rejected_tells_a_wrong_function_from_the_reference():
    from kdcore.checking import REFERENCES, VARIANTS
    assert not rejected("kd_loss", REFERENCES["kd_loss"])
    assert rejected("kd_loss", VARIANTS["kd_loss"][1].fn)


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_every_non_equivalent_mutant_of_the_reference_is_rejected(exercise_id):
    report = run(exercise_id)
    assert report.total >= 1, "no mutant was generated: is the reference a plain function?"
    assert not report.survived, (f"{exercise_id}: {len(report.survived)} mutant(s) of the reference pass check; "
                                 "add a case for each, or list it in EQUIVALENT_MUTANTS with the reason:\n  "
                                 + "\n  ".join(report.survived))
    assert not report.stale_equivalents, f"EQUIVALENT_MUTANTS lists mutants no longer generated: {report.stale_equivalents}"
    for mutant_id, reason in EXERCISES[exercise_id].equivalent_mutants.items():
        assert len(reason) > 10, f"{mutant_id}: say why it is equivalent"
