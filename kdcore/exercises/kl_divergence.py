"""kl_divergence — KL(teacher ‖ student) from probabilities. Taught in notebook 01; reference
``kdcore.distill.kl_divergence``.

Contract (docs/EXERCISES.md, notebook 01): batch-mean KL(p_teacher ‖ p_student) in nats from probability rows
(sum over the classes, mean over the rows); 0 when equal; a 1-D tensor ``[C]`` is one row; a class where the
teacher's probability is exactly 0 contributes 0 (0·log 0 = 0).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdcore.checking.cases import call_case, cases, probs
from kdcore.checking.catalogue import correct, wrong


# ----------------------------------------------------------------------------------------------------------
# cases (soft_cross_entropy uses the same inputs: it imports probability_rows and SEED_001)
# ----------------------------------------------------------------------------------------------------------
def probability_rows(seed: int, *, shape: tuple[int, ...], scale: float = 2.0, teacher_scale: float | None = None,
                     same: bool = False, zeros: int = 0):
    """``(p_teacher, p_student)``: softmax rows of Gaussian logits × scale (the teacher's × ``teacher_scale``).

    ``same``: the student equals the teacher. ``zeros``: in every row, the ``zeros`` classes the teacher finds
    least likely get probability exactly 0 in both distributions (as when a softmax underflows), the rest is
    renormalised.
    """
    p_teacher = probs(*shape, seed=seed, scale=scale if teacher_scale is None else teacher_scale)
    p_student = p_teacher.clone() if same else probs(*shape, seed=seed + 1, scale=scale)
    if zeros:
        ruled_out = p_teacher.topk(zeros, dim=-1, largest=False).indices
        p_teacher, p_student = (p.scatter(-1, ruled_out, 0.0) for p in (p_teacher, p_student))
        p_teacher, p_student = (p / p.sum(dim=-1, keepdim=True) for p in (p_teacher, p_student))
    return (p_teacher, p_student), {}


# seed 001's worked example (001-C1): KL = 0.1203 nats, CE = 0.7593 nats
SEED_001 = (torch.tensor([[0.8, 0.1, 0.1]]), torch.tensor([[0.6, 0.3, 0.1]]))

CASES = [
    call_case("seed 001's example: p_teacher [0.8, 0.1, 0.1], p_student [0.6, 0.3, 0.1]",
              lambda: ((SEED_001[0].clone(), SEED_001[1].clone()), {})),
    *cases(probability_rows, [
        dict(shape=(4, 6), same=True, note="equal distributions give 0"),
        dict(shape=(8, 10)),
        dict(shape=(3, 4), teacher_scale=6.0, note="peaked teacher"),
        dict(shape=(1, 5), note="single row"),
        dict(shape=(32, 100), scale=3.0),
        dict(shape=(5,), note="a 1-D tensor is one row"),
        dict(shape=(4, 6), zeros=2, note="classes where both are 0 contribute 0 (0·log 0 = 0)"),
    ]),
]


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake. The first two are
# honest solutions that miss one clause of the contract; most variants below are one-line edits of them.
# ----------------------------------------------------------------------------------------------------------
@wrong("0·log 0 where the teacher is 0",
       hint="where p_teacher is 0, p_t·log p_t is 0·(−inf) = NaN in floating point: the convention is "
            "0·log 0 = 0, so use torch.xlogy(p_t, p_t) or keep only the classes with p_teacher > 0")
def textbook(p_teacher, p_student):
    return (p_teacher * (p_teacher.log() - p_student.log())).sum(-1).mean()


@wrong("F.kl_div batchmean on one [C] row",
       hint="F.kl_div's reduction='batchmean' divides by input.size(0), which is C for a 1-D row: view the input as "
            "[rows, C] (reshape(-1, C)) or sum over the last dim and average over the rest")
def with_kl_div(p_teacher, p_student):
    return F.kl_div(p_student.log(), p_teacher, reduction="batchmean")


wrong("reversed direction", hint="KL is not symmetric: the contract is KL(p_teacher ‖ p_student) = "
                                 "Σ p_t·(log p_t − log p_s); you computed KL(p_student ‖ p_teacher)"
      ).edit(textbook, "(p_teacher * (p_teacher.log() - p_student.log()))",
             "(p_student * (p_student.log() - p_teacher.log()))")

wrong("summed over the batch", hint="you summed over the whole batch: divide by the number of rows "
                                    "(reduction='batchmean')"
      ).edit(with_kl_div, 'reduction="batchmean"', 'reduction="sum"')

wrong("mean over all elements", hint="reduction='mean' divides by rows × classes: use reduction='batchmean' "
                                     "(sum over classes, mean over rows)"
      ).edit(with_kl_div, 'reduction="batchmean"', 'reduction="mean"')

wrong("log base 2", hint="use the natural log (nats), not log2 (bits)"
      ).edit(textbook, ".log()", ".log2()", count=2)

wrong("probabilities passed as F.kl_div's input", hint="F.kl_div(input, target) expects input = log-probabilities "
                                                       "of the student: pass p_student.log()"
      ).edit(with_kl_div, "F.kl_div(p_student.log(),", "F.kl_div(p_student,")

wrong("one value per row", hint="average over the rows: return a scalar, not one KL per row"
      ).edit(textbook, ".sum(-1).mean()", ".sum(-1)")

wrong("cross-entropy instead of KL", hint="you computed the soft cross-entropy −Σ p_t·log p_s; KL also adds "
                                          "Σ p_t·log p_t (KL = CE − H(p_teacher)), which is why KL is 0 for equal "
                                          "distributions"
      ).edit(textbook, "(p_teacher * (p_teacher.log() - p_student.log()))", "-(p_teacher * p_student.log())")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("F.kl_div batchmean")
def ok_kl_div(p_teacher, p_student):
    n_classes = p_teacher.shape[-1]   # as [rows, C], so that batchmean divides by the rows, also for one [C] row
    tiny = torch.finfo(p_student.dtype).tiny   # log(0) = -inf would give 0·inf = NaN where both are 0
    log_p_s = p_student.clamp_min(tiny).log()
    return F.kl_div(log_p_s.reshape(-1, n_classes), p_teacher.reshape(-1, n_classes), reduction="batchmean")


@correct("nn.KLDivLoss log_target")
def ok_module(p_teacher, p_student):
    n_classes = p_teacher.shape[-1]
    tiny = torch.finfo(p_teacher.dtype).tiny   # exp(log(tiny)) · (finite) ≈ 0 where the teacher is 0
    log_p_t, log_p_s = (p.clamp_min(tiny).log().reshape(-1, n_classes) for p in (p_teacher, p_student))
    return nn.KLDivLoss(reduction="batchmean", log_target=True)(log_p_s, log_p_t)


@correct("hand-written sum")
def ok_manual(p_teacher, p_student):
    terms = torch.where(p_teacher > 0, p_teacher * (p_teacher.log() - p_student.log()), 0.0)
    return terms.sum(dim=-1).mean()


@correct("xlogy")
def ok_xlogy(p_teacher, p_student):
    n_rows = p_teacher.numel() // p_teacher.shape[-1]
    return (torch.xlogy(p_teacher, p_teacher) - torch.xlogy(p_teacher, p_student)).sum(-1).sum() / n_rows
