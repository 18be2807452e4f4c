"""soft_cross_entropy — cross-entropy against soft labels. Taught in notebook 01; reference
``kdcore.distill.soft_cross_entropy``.

Contract (docs/EXERCISES.md, notebook 01): batch-mean −Σ p_teacher·log p_student in nats from probability rows
(sum over the classes, mean over the rows); equals KL + the teacher's entropy; a 1-D tensor ``[C]`` is one row;
a class where the teacher's probability is exactly 0 contributes 0 (0·log 0 = 0).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdcore.checking.cases import call_case, cases
from kdcore.checking.catalogue import correct, wrong
# the same inputs as kl_divergence (seed 001's example first: CE = 0.7593 nats there)
from kdcore.exercises.kl_divergence import SEED_001, probability_rows

# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
CASES = [
    call_case("seed 001's example: p_teacher [0.8, 0.1, 0.1], p_student [0.6, 0.3, 0.1]",
              lambda: ((SEED_001[0].clone(), SEED_001[1].clone()), {})),
    *cases(probability_rows, [
        dict(shape=(4, 6), same=True, note="equal distributions give the entropy"),
        dict(shape=(8, 10)),
        dict(shape=(3, 4), teacher_scale=6.0, note="peaked teacher"),
        dict(shape=(1, 5), note="single row"),
        dict(shape=(32, 100), scale=3.0),
        dict(shape=(5,), note="a 1-D tensor is one row"),
        dict(shape=(4, 6), zeros=2, note="classes where both are 0 contribute 0 (0·log 0 = 0)"),
    ]),
]


# ----------------------------------------------------------------------------------------------------------
# the misconceptions: each hint stands directly above the code that makes the mistake. The first is the
# textbook formula, right but for 0·log 0; most variants below are one-line edits of it.
# ----------------------------------------------------------------------------------------------------------
@wrong("0·log 0 where both are 0",
       hint="where p_teacher and p_student are both 0, p_t·log p_s is 0·(−inf) = NaN in floating point: the "
            "convention is 0·log 0 = 0, so use torch.xlogy(p_t, p_s) or keep only the classes with p_teacher > 0")
def textbook(p_teacher, p_student):
    return -(p_teacher * p_student.log()).sum(-1).mean()


@wrong("KL instead of cross-entropy",
       hint="you computed KL(p_t ‖ p_s); the soft cross-entropy is −Σ p_t·log p_s = KL + H(p_teacher)")
def kl_instead(p_teacher, p_student):
    return F.kl_div(p_student.log(), p_teacher, reduction="batchmean")


wrong("reversed roles", hint="the teacher's probabilities weight the student's log-probabilities: −Σ p_t·log p_s"
      ).edit(textbook, "(p_teacher * p_student.log())", "(p_student * p_teacher.log())")

wrong("summed over the batch", hint="divide by the number of rows: batch-mean, not the batch sum"
      ).edit(textbook, ".sum(-1).mean()", ".sum()")

wrong("mean over all elements", hint="sum over the classes, then average over the rows (.mean() alone also "
                                     "divides by the classes)"
      ).edit(textbook, ".sum(-1).mean()", ".mean()")

wrong("log base 2", hint="use the natural log (nats), not log2").edit(textbook, ".log()", ".log2()")


@wrong("F.cross_entropy on probabilities",
       hint="F.cross_entropy expects logits (it applies log_softmax to its input): pass p_student.log(), or write "
            "−(p_t * p_s.log()).sum(-1).mean()")
def cross_entropy_on_probabilities(p_teacher, p_student):
    return F.cross_entropy(p_student, p_teacher)


wrong("one value per row", hint="average over the rows: return a scalar, not one value per row"
      ).edit(textbook, ".sum(-1).mean()", ".sum(-1)")

wrong("missing minus sign", hint="cross-entropy is −Σ p·log q (it is >= 0): you lost the minus"
      ).edit(textbook, "return -(", "return (")


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently: they must pass
# ----------------------------------------------------------------------------------------------------------
@correct("hand-written")
def ok_manual(p_teacher, p_student):
    return -torch.where(p_teacher > 0, p_teacher * torch.log(p_student), 0.0).sum(dim=-1).mean()


@correct("F.cross_entropy on log-probs")
def ok_cross_entropy(p_teacher, p_student):
    tiny = torch.finfo(p_student.dtype).tiny   # log(0) = -inf would give 0·inf = NaN where both are 0
    return F.cross_entropy(p_student.clamp_min(tiny).log(), p_teacher)


@correct("KL + entropy")
def ok_kl_plus_entropy(p_teacher, p_student):
    entropy = -torch.xlogy(p_teacher, p_teacher).sum(-1).mean()
    kl = (torch.xlogy(p_teacher, p_teacher) - torch.xlogy(p_teacher, p_student)).sum(-1).mean()
    return kl + entropy
