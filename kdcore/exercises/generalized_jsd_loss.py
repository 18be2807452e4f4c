"""generalized_jsd_loss — GKD's generalized Jensen-Shannon divergence, token level. Taught in notebook 14;
reference ``kdcore.llm.distill.generalized_jsd_loss``.

Contract (docs/EXERCISES.md): with p = softmax(t/T) the teacher and q = softmax(s/T) the student,
``T²·[β·KL(p ‖ m) + (1−β)·KL(q ‖ m)]``, ``m = β·p + (1−β)·q`` (Agarwal et al. 2024, eq. 1), summed over the
vocabulary and averaged over the real tokens; ``beta = 0`` is the forward KL(p ‖ q) and ``beta = 1`` the reverse
KL(q ‖ p) (the limits of JSD(β)/β and JSD(β)/(1−β)); beta outside [0, 1], an all-zero mask or different
vocabulary sizes raise ValueError.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kdcore.checking.cases import cases, gen, randn
from kdcore.checking.catalogue import correct, wrong
from kdcore.checking.core import TEACHER_GRAD_HINT


def _build(seed: int, *, b: int, l: int, v: int, beta: float | None = None, T: float | None = None,
           mask: str = "float", scale: float = 2.0, pad_logits: float | None = None, v_teacher: int | None = None):
    """Student / teacher logits ``[b, l, v]``, a mask with rows of random lengths; beta / T omitted when None."""
    student = randn(b, l, v, seed=seed, scale=scale)
    teacher = randn(b, l, v if v_teacher is None else v_teacher, seed=seed + 1, scale=scale * 1.5)
    lengths = torch.randint(1, l + 1, (b,), generator=gen(seed + 2))
    lengths[0] = max(1, l - 2)
    m = torch.arange(l)[None, :] < lengths[:, None]
    if mask == "ones":
        m = torch.ones(b, l, dtype=torch.bool)
    elif mask == "zeros":
        m = torch.zeros(b, l, dtype=torch.bool)
    if pad_logits is not None:
        student[~m], teacher[~m] = pad_logits, -pad_logits
    m = m if mask == "bool" else m.float()
    kwargs = {k: x for k, x in {"beta": beta, "T": T}.items() if x is not None}
    return (student, teacher, m), kwargs


CASES = cases(_build, [
    dict(b=2, l=5, v=7, note="defaults beta=0.5, T=1: the symmetric JSD"),
    dict(b=2, l=4, v=6, beta=0.1, T=1.0, note="mixture close to the student"),
    dict(b=2, l=4, v=6, beta=0.9, T=2.0, mask="bool", note="mixture close to the teacher"),
    dict(b=3, l=3, v=5, beta=0.3, T=1.5, mask="ones"),
    dict(b=2, l=6, v=4, beta=0.7, pad_logits=50.0, note="padded positions hold huge logits: they must not count"),
    dict(b=2, l=4, v=6, beta=0.0, T=2.0, note="beta = 0: the forward KL(teacher ‖ student)"),
    dict(b=2, l=4, v=6, beta=1.0, T=2.0, note="beta = 1: the reverse KL(student ‖ teacher)"),
    dict(b=2, l=4, v=9, beta=0.5, T=2.0, scale=1e3, atol=1e-3, rtol=1e-3, note="logits of magnitude 1e3"),
    dict(b=2, l=4, v=6, beta=0.2, T=3.0, grad=(0, 1), note="gradient w.r.t. the student only"),
    dict(b=1, l=5, v=5, beta=1.0, grad=(0, 1), note="gradient of the reverse-KL end"),
    dict(b=2, l=3, v=5, beta=1.5, raises=True, note="beta above 1"),
    dict(b=2, l=3, v=5, beta=-0.1, raises=True, note="beta below 0"),
    dict(b=2, l=3, v=5, mask="zeros", raises=True, note="all-zero mask"),
    dict(b=2, l=3, v=5, v_teacher=4, raises=True, note="vocabulary sizes differ"),
])


# ----------------------------------------------------------------------------------------------------------
# an honest solution
# ----------------------------------------------------------------------------------------------------------
def _kl(log_a, log_b):
    return (log_a.exp() * (log_a - log_b)).sum(dim=-1)                 # KL(a ‖ b) per position


def _honest(student_logits, teacher_logits, mask, beta=0.5, T=1.0):
    if not 0.0 <= beta <= 1.0:
        raise ValueError("beta must be in [0, 1]")
    if student_logits.shape[-1] != teacher_logits.shape[-1]:
        raise ValueError("student_logits and teacher_logits must have the same vocabulary size")
    m = mask.bool()
    if not m.any():
        raise ValueError("mask must mark at least one real token")
    log_p = F.log_softmax(teacher_logits.detach() / T, dim=-1)        # teacher
    log_q = F.log_softmax(student_logits / T, dim=-1)                 # student
    if beta == 0.0:
        d = _kl(log_p, log_q)                                         # forward KL
    elif beta == 1.0:
        d = _kl(log_q, log_p)                                         # reverse KL
    else:
        log_mix = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), dim=0)
        d = beta * _kl(log_p, log_mix) + (1 - beta) * _kl(log_q, log_mix)
    return T * T * d[m].mean()


# ----------------------------------------------------------------------------------------------------------
# the misconceptions
# ----------------------------------------------------------------------------------------------------------
wrong("beta weights the student in the mixture",
      hint="in GKD the mixture is m = β·teacher + (1−β)·student (the same β that weights KL(teacher ‖ m)); you "
           "attached β to the student, which moves β = 0.1 towards the reverse KL instead of the forward KL"
      ).edit(_honest, "torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)])",
             "torch.stack([log_p + math.log(1 - beta), log_q + math.log(beta)])")

wrong("weights of the two KL terms swapped",
      hint="JSD(β) = β·KL(teacher ‖ m) + (1−β)·KL(student ‖ m): β multiplies the teacher's term"
      ).edit(_honest, "d = beta * _kl(log_p, log_mix) + (1 - beta) * _kl(log_q, log_mix)",
             "d = (1 - beta) * _kl(log_p, log_mix) + beta * _kl(log_q, log_mix)")

wrong("log-probabilities mixed",
      hint="mix the probabilities, m = β·p + (1−β)·q, then take the log (logsumexp of log β + log p and "
           "log(1−β) + log q); β·log p + (1−β)·log q is a different distribution (TRL issue #2202)"
      ).edit(_honest, "log_mix = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)])"
                      ", dim=0)", "log_mix = beta * log_p + (1 - beta) * log_q")

wrong("endpoints not special-cased",
      hint="JSD(β) itself tends to 0 at β = 0 and β = 1; the contract (GKD's limits, TRL's convention) returns the "
           "forward KL(teacher ‖ student) at β = 0 and the reverse KL(student ‖ teacher) at β = 1"
      ).edit(_honest, """    if beta == 0.0:
        d = _kl(log_p, log_q)                                         # forward KL
    elif beta == 1.0:
        d = _kl(log_q, log_p)                                         # reverse KL
    else:
        log_mix""", """    if True:
        log_mix""")

wrong("endpoints swapped",
      hint="β → 0 is the forward KL(teacher ‖ student) and β → 1 the reverse KL(student ‖ teacher), not the other "
           "way round (Agarwal et al. 2024: JSD(β)/β → KL(p ‖ q) as β → 0)"
      ).edit(_honest, "d = _kl(log_p, log_q)                                         # forward KL",
             "d = _kl(log_q, log_p)")

wrong("beta ignored (always the symmetric JSD)", hint="use the beta passed in, not 0.5"
      ).edit(_honest, "    log_p = F.log_softmax(", "    beta = 0.5\n    log_p = F.log_softmax(")

wrong("mask ignored", hint="padded positions were averaged in: select the real tokens before the mean"
      ).edit(_honest, "return T * T * d[m].mean()", "return T * T * d.mean()")

wrong("mean over padded positions", hint="divide by the number of real tokens (mask.sum()), not by B·L"
      ).edit(_honest, "return T * T * d[m].mean()", "return T * T * (d * m).mean()")

wrong("T² omitted", hint="off by a factor of T²: multiply by T**2 (as in kd_loss and sequence_kd_loss)"
      ).edit(_honest, "return T * T * d[m].mean()", "return d[m].mean()")

wrong("T² applied twice", hint="the loss is scaled by T**2 once, not T**4"
      ).edit(_honest, "return T * T * d[m].mean()", "return T ** 4 * d[m].mean()")

wrong("teacher not detached", hint=TEACHER_GRAD_HINT).edit(_honest, "teacher_logits.detach()", "teacher_logits")

@wrong("beta not validated", hint="raise ValueError when beta is outside [0, 1] (a negative weight is not a "
                                  "divergence)")
def beta_not_validated(student_logits, teacher_logits, mask, beta=0.5, T=1.0):
    if student_logits.shape[-1] != teacher_logits.shape[-1] or not mask.bool().any():
        raise ValueError("vocabulary sizes differ or the mask is all zeros")
    log_p = F.log_softmax(teacher_logits.detach() / T, dim=-1)
    log_q = F.log_softmax(student_logits / T, dim=-1)
    w = torch.tensor(beta)
    log_mix = torch.logaddexp(log_p + torch.log(w), log_q + torch.log(1 - w))    # NaN for beta outside [0, 1]
    d = beta * _kl(log_p, log_mix) + (1 - beta) * _kl(log_q, log_mix)
    if beta in (0.0, 1.0):
        d = _kl(log_p, log_q) if beta == 0.0 else _kl(log_q, log_p)
    return T * T * d[mask.bool()].mean()


# ----------------------------------------------------------------------------------------------------------
# correct answers written differently
# ----------------------------------------------------------------------------------------------------------
@correct("torch.logaddexp mixture, weighted mean over the mask")
def ok_logaddexp(student_logits, teacher_logits, mask, beta=0.5, T=1.0):
    if beta < 0 or beta > 1 or student_logits.size(-1) != teacher_logits.size(-1) or mask.sum() == 0:
        raise ValueError("bad beta, vocabulary or mask")
    log_p = torch.log_softmax(teacher_logits.detach() / T, -1)
    log_q = torch.log_softmax(student_logits / T, -1)
    p, q = log_p.exp(), log_q.exp()
    if beta == 0:
        d = (p * (log_p - log_q)).sum(-1)
    elif beta == 1:
        d = (q * (log_q - log_p)).sum(-1)
    else:
        log_m = torch.logaddexp(math.log(beta) + log_p, math.log1p(-beta) + log_q)
        d = (beta * p * (log_p - log_m) + (1 - beta) * q * (log_q - log_m)).sum(-1)
    w = mask.float()
    return T ** 2 * (d * w).sum() / w.sum()


@correct("F.kl_div against the log-mixture (TRL-style)")
def ok_kl_div(student_logits, teacher_logits, mask, beta=0.5, T=1.0):
    if not (0 <= beta <= 1) or student_logits.shape[-1] != teacher_logits.shape[-1] or not mask.bool().any():
        raise ValueError("bad beta, vocabulary or mask")
    s = F.log_softmax(student_logits / T, dim=-1)
    with torch.no_grad():
        t = F.log_softmax(teacher_logits / T, dim=-1)
    if beta == 0:
        d = F.kl_div(s, t, reduction="none", log_target=True)
    elif beta == 1:
        d = F.kl_div(t, s, reduction="none", log_target=True)
    else:
        log_m = torch.logsumexp(torch.stack([s + math.log(1 - beta), t + math.log(beta)]), dim=0)
        d = beta * F.kl_div(log_m, t, reduction="none", log_target=True) \
            + (1 - beta) * F.kl_div(log_m, s, reduction="none", log_target=True)
    return T * T * d.sum(-1)[mask.bool()].mean()
