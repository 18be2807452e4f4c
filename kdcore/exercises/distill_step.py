"""distill_step — one training step of a student on the KD loss. Taught in notebook 03; reference
``kdcore.distill.distill_step``.

Contract (docs/EXERCISES.md): one optimisation step of the student on ``kd_loss``; the teacher runs without
gradient and is left unchanged (weights, ``.grad``, train/eval mode); returns the loss before the step as a
Python float; the student's weights after the step equal the reference's from the same start.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdcore.checking.cases import case_name, derived_seed
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import (TEACHER_GRAD_HINT, Case, Failure, Observation, changed, compare_values, grads,
                                  module_state, tensor_snapshot)


# ----------------------------------------------------------------------------------------------------------
# cases: a small student and a batch-norm teacher in eval mode, one batch, a fresh SGD optimizer
# ----------------------------------------------------------------------------------------------------------
def _setup(seed: int, *, momentum: float = 0.0, stale: bool = False):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 4))
        teacher = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
        with torch.no_grad():  # non-trivial running statistics, so that train mode would change the output
            teacher(torch.randn(64, 6) * 2 + 1)
        teacher.eval()
        x = torch.randn(8, 6)       # [N=8, features=6]
        y = torch.randint(0, 4, (8,))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.5, momentum=momentum)
    if stale:  # leftover gradients from an earlier backward
        student(x).pow(2).sum().backward()
    return student, teacher, x, y, optimizer


def _compare(cand: Observation, ref: Observation) -> Failure | None:
    """Teacher untouched, a float returned, then the loss and the student's weights: each with its own hint."""
    if cand.get("mutated") != ref["mutated"]:
        return "x or y was modified in place", None
    if cand.get("teacher_grad") != ref["teacher_grad"]:
        return "the teacher's parameters received gradients", TEACHER_GRAD_HINT
    if cand.get("teacher_training") != ref["teacher_training"]:
        return ("the teacher's train/eval mode changed",
                "leave the teacher's mode alone (it is in eval mode: batch-norm running statistics and no dropout)")
    if cand.get("teacher_changed") != ref["teacher_changed"]:
        return ("the teacher's weights or buffers changed",
                "the teacher must stay unchanged: run it in eval mode under torch.no_grad() and step only the "
                "student's optimizer")
    if cand.get("out_type") != ref["out_type"]:
        return (f"returned a {cand.get('out_type')}, expected a Python float",
                "return the loss as a Python float: `return loss.item()`")
    failure = compare_values(cand.get("out"), ref["out"], what="returned loss", rtol=1e-4, atol=1e-6)
    if failure:
        return failure[0], "return the kd_loss of this batch, computed before optimizer.step()"
    failure = compare_values(cand.get("student"), ref["student"], what="student weights after the step",
                             rtol=1e-4, atol=1e-6)
    if failure:
        return failure[0], ("the student's update differs: zero the gradients, backward the kd_loss (with T and "
                            "alpha), then optimizer.step()")
    return None


def _case(*, T: float | None = None, alpha: float | None = None, note: str | None = None, **setup) -> Case:
    """One call of ``fn(student, teacher, x, y, optimizer[, T, alpha])``; named from its arguments."""
    params = {k: v for k, v in {"T": T, "alpha": alpha, **setup}.items() if v is not None}
    name = case_name(params, note=note)
    seed = derived_seed(name)

    def observe(fn):
        student, teacher, x, y, optimizer = _setup(seed, **setup)
        teacher_before = module_state(teacher)
        before = tensor_snapshot(x, y)
        kwargs = {k: v for k, v in (("T", T), ("alpha", alpha)) if v is not None}
        out = fn(student, teacher, x, y, optimizer, **kwargs)
        return {
            "mutated": changed(before, x, y),
            "teacher_grad": any(g is not None and bool(g.abs().sum() > 0) for g in grads(teacher).values()),
            "teacher_changed": any(not torch.equal(teacher_before[k], v) for k, v in module_state(teacher).items()),
            "teacher_training": teacher.training,
            "out_type": "float" if isinstance(out, float) else type(out).__name__,
            "out": out,
            "student": module_state(student),
        }
    return Case(name, observe, _compare)


CASES = [
    _case(note="one SGD step, T and alpha not passed (T=4, alpha=0.9)"),
    _case(T=2.0, alpha=0.5),
    _case(T=4.0, alpha=0.9, stale=True, note="stale gradients already in the student's .grad"),
    _case(T=3.0, alpha=0.7, momentum=0.9, note="SGD with momentum"),
]


# ----------------------------------------------------------------------------------------------------------
# an honest solution (it is also correct): the wrong variants below are one-line edits of it
# ----------------------------------------------------------------------------------------------------------
def _kd_loss(student_logits, teacher_logits, labels, T=4.0, alpha=0.9):
    """Hinton's loss written out (exercise kd_loss); it does not detach the teacher's logits itself."""
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=-1), F.softmax(teacher_logits / T, dim=-1),
                    reduction="batchmean")
    return alpha * T * T * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


@correct("no_grad teacher")
def honest(student, teacher, x, y, optimizer, T=4.0, alpha=0.9):
    with torch.no_grad():
        teacher_logits = teacher(x)
    optimizer.zero_grad()
    loss = _kd_loss(student(x), teacher_logits, y, T=T, alpha=alpha)
    loss.backward()
    optimizer.step()
    return loss.item()


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake
# ----------------------------------------------------------------------------------------------------------
wrong("no zero_grad", hint="gradients accumulate across calls: call optimizer.zero_grad() before loss.backward()"
      ).edit(honest, "    optimizer.zero_grad()\n", "")

wrong("returns the loss tensor", hint="return the loss as a Python float (`loss.item()`): a tensor keeps the whole "
                                      "graph alive"
      ).edit(honest, "return loss.item()", "return loss")

wrong("loss after the step", hint="return the loss computed before optimizer.step() (the one you back-propagated)"
      ).edit(honest, "    return loss.item()",
             "    with torch.no_grad():\n"
             "        return _kd_loss(student(x), teacher_logits, y, T=T, alpha=alpha).item()")

wrong("teacher run with gradient", hint="the teacher ran with gradient tracking, so backward filled the teacher's "
                                        ".grad: wrap the teacher's forward in torch.no_grad() (or detach its logits)"
      ).edit(honest, "    with torch.no_grad():\n        teacher_logits", "    teacher_logits")

wrong("teacher switched to train mode",
      hint="do not call teacher.train(): in train mode batch-norm uses batch statistics and updates its running "
           "statistics (the teacher changes) and dropout is on; leave the teacher in eval mode"
      ).edit(honest, "    with torch.no_grad():", "    student.train()\n    teacher.train()\n    with torch.no_grad():")

wrong("no optimizer.step()", hint="call optimizer.step() after loss.backward()"
      ).edit(honest, "    optimizer.step()\n", "")

wrong("T and alpha not passed on", hint="pass T and alpha on to the loss: kd_loss(student_logits, teacher_logits, y, "
                                        "T=T, alpha=alpha)"
      ).edit(honest, "y, T=T, alpha=alpha)", "y)")

wrong("cross-entropy only", hint="the loss must be kd_loss (teacher's soft targets + labels), not the plain "
                                 "cross-entropy"
      ).edit(honest, "_kd_loss(student(x), teacher_logits, y, T=T, alpha=alpha)", "F.cross_entropy(student(x), y)")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("detached teacher, inline loss")
def ok_detach(student, teacher, x, y, optimizer, T=4.0, alpha=0.9):
    t = teacher(x).detach()
    s = student(x)
    loss = alpha * T * T * F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") \
        + (1 - alpha) * F.cross_entropy(s, y)
    optimizer.zero_grad(set_to_none=False)
    loss.backward()
    optimizer.step()
    return loss.item()
