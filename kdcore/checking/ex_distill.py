"""Cases and misconception catalogue of the distillation exercises (notebooks 01-04, 11).

Every wrong variant is code a candidate really writes; its hint is shown when a learner's outputs match it.
Correct alternatives (``CORRECT``) are different but valid solutions that must pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cases import call_case, labels, probs, randn, raises_case
from .core import (Case, Exercise, Observation, Variant, compare_values, grads, module_state, register,
                   tensor_snapshot, changed, TEACHER_GRAD_HINT)


def _check_T(T: float) -> None:
    if T <= 0:
        raise ValueError(f"T must be > 0, got {T}")


# ===================================================================================================
# softmax_t
# ===================================================================================================
def _sm_cases() -> list[Case]:
    fixed = torch.tensor([[1.0, 2.0, 3.0]])
    big = torch.tensor([[1e4, 0.0, -1e4], [1e4, 1e4 - 1.0, 5e3]])
    kw = dict(rtol=1e-5, atol=1e-6)
    return [
        call_case("fixed example [[1, 2, 3]], T=1", lambda: ((fixed.clone(),), {"T": 1.0}), **kw),
        call_case("fixed example [[1, 2, 3]], T=2 (flatter)", lambda: ((fixed.clone(),), {"T": 2.0}), **kw),
        call_case("random [4, 10], T=0.5 (sharper)", lambda: ((randn(4, 10, seed=1, scale=2),), {"T": 0.5}), **kw),
        call_case("random [3, 5, 7]: softmax over the last dim, T=3",
                  lambda: ((randn(3, 5, 7, seed=2, scale=3),), {"T": 3.0}), **kw),
        call_case("single row [1, 6], default T", lambda: ((randn(1, 6, seed=3),), {}), **kw),
        call_case("logits of magnitude 1e4, T=1", lambda: ((big.clone(),), {"T": 1.0}), **kw),
        call_case("logits of magnitude 1e4, T=4", lambda: ((big.clone(),), {"T": 4.0}), **kw),
        raises_case("T = 0 raises ValueError", lambda: ((randn(2, 3, seed=4),), {"T": 0.0})),
        raises_case("T = -1 raises ValueError", lambda: ((randn(2, 3, seed=4),), {"T": -1.0})),
    ]


def _sm_dim0(logits, T=1.0):
    _check_T(T)
    return torch.softmax(logits / T, dim=0)


def _sm_dim1(logits, T=1.0):
    _check_T(T)
    return torch.softmax(logits / T, dim=1)


def _sm_no_T(logits, T=1.0):
    _check_T(T)
    return torch.softmax(logits, dim=-1)


def _sm_times_T(logits, T=1.0):
    _check_T(T)
    return torch.softmax(logits * T, dim=-1)


def _sm_naive(logits, T=1.0):
    _check_T(T)
    e = torch.exp(logits / T)
    return e / e.sum(dim=-1, keepdim=True)


def _sm_no_check(logits, T=1.0):
    return torch.softmax(logits / T, dim=-1)


def _sm_inplace(logits, T=1.0):
    _check_T(T)
    logits /= T
    return torch.softmax(logits, dim=-1)


def _sm_log(logits, T=1.0):
    _check_T(T)
    return F.log_softmax(logits / T, dim=-1)


def _sm_ok_functional(logits, T=1.0):
    if not T > 0:
        raise ValueError("T must be positive")
    return F.softmax(logits / T, dim=-1)


def _sm_ok_manual(logits, T=1.0):
    _check_T(T)
    z = logits / T
    z = z - z.max(dim=-1, keepdim=True).values
    e = z.exp()
    return e / e.sum(dim=-1, keepdim=True)


def _sm_ok_exp_log(logits, T=1.0):
    _check_T(T)
    return torch.exp(torch.log_softmax(logits / T, dim=-1))


register(
    Exercise("softmax_t", "01", "softmax_t(logits, T=1.0)", _sm_cases(), "kdcore.distill.softmax_t",
             "softmax of logits / T over the last dim; T <= 0 raises ValueError"),
    wrong=[
        Variant("softmax over dim 0", _sm_dim0,
                "softmax over the wrong dimension: the classes are the last dim, use dim=-1 (dim=0 mixes rows)"),
        Variant("softmax over dim 1", _sm_dim1,
                "dim=1 is the class dim only for 2-D inputs: use dim=-1 so [..., C] inputs work too"),
        Variant("temperature ignored", _sm_no_T, "the temperature is ignored: divide the logits by T first"),
        Variant("multiplied by T", _sm_times_T, "divide the logits by T (softmax(logits / T)), do not multiply"),
        Variant("exp without max subtraction", _sm_naive,
                "exp(logits) overflows to inf for large logits (inf/inf = NaN): subtract the row maximum first, "
                "or use torch.softmax, which does"),
        Variant("no check of T", _sm_no_check,
                "T <= 0 is not a temperature: raise ValueError (logits / 0 silently gives NaN)"),
        Variant("in-place division", _sm_inplace,
                "`logits /= T` changes the caller's tensor: use `logits / T` (out of place)"),
        Variant("log-softmax returned", _sm_log, "you returned log-probabilities: return softmax, rows summing to 1"),
    ],
    correct=[Variant("F.softmax", _sm_ok_functional, ""), Variant("manual, max subtracted", _sm_ok_manual, ""),
             Variant("exp(log_softmax)", _sm_ok_exp_log, "")],
)


# ===================================================================================================
# kl_divergence / soft_cross_entropy
# ===================================================================================================
SEED_P = torch.tensor([[0.8, 0.1, 0.1]])
SEED_Q = torch.tensor([[0.6, 0.3, 0.1]])


def _prob_cases(equal_name: str) -> list[Case]:
    return [
        call_case("seed 001's example: p_teacher [0.8, 0.1, 0.1], p_student [0.6, 0.3, 0.1]",
                  lambda: ((SEED_P.clone(), SEED_Q.clone()), {})),
        call_case(equal_name, lambda: ((probs(4, 6, seed=20),) * 2, {})),
        call_case("random rows [8, 10]", lambda: ((probs(8, 10, seed=21), probs(8, 10, seed=22)), {})),
        call_case("peaked teacher, random rows [3, 4]",
                  lambda: ((probs(3, 4, seed=23, scale=6), probs(3, 4, seed=24)), {})),
        call_case("single row [1, 5]", lambda: ((probs(1, 5, seed=25), probs(1, 5, seed=26)), {})),
        call_case("batch of 32 rows, 100 classes",
                  lambda: ((probs(32, 100, seed=27, scale=3), probs(32, 100, seed=28, scale=3)), {})),
    ]


def _kl_reversed(p_teacher, p_student):
    return (p_student * (p_student.log() - p_teacher.log())).sum(-1).mean()


def _kl_sum(p_teacher, p_student):
    return F.kl_div(p_student.log(), p_teacher, reduction="sum")


def _kl_mean(p_teacher, p_student):
    return F.kl_div(p_student.log(), p_teacher, reduction="mean")


def _kl_log2(p_teacher, p_student):
    return (p_teacher * (p_teacher.log2() - p_student.log2())).sum(-1).mean()


def _kl_probs_input(p_teacher, p_student):
    return F.kl_div(p_student, p_teacher, reduction="batchmean")


def _kl_rows(p_teacher, p_student):
    return (p_teacher * (p_teacher.log() - p_student.log())).sum(-1)


def _kl_is_ce(p_teacher, p_student):
    return -(p_teacher * p_student.log()).sum(-1).mean()


def _kl_ok_fkl(p_teacher, p_student):
    return F.kl_div(p_student.log(), p_teacher, reduction="batchmean")


def _kl_ok_module(p_teacher, p_student):
    return nn.KLDivLoss(reduction="batchmean", log_target=True)(p_student.log(), p_teacher.log())


def _kl_ok_manual(p_teacher, p_student):
    return (p_teacher * (p_teacher.log() - p_student.log())).sum(dim=1).mean()


def _kl_ok_xlogy(p_teacher, p_student):
    return (torch.xlogy(p_teacher, p_teacher) - p_teacher * p_student.log()).sum(-1).sum() / p_teacher.shape[0]


register(
    Exercise("kl_divergence", "01", "kl_divergence(p_teacher, p_student)",
             _prob_cases("equal distributions give 0"), "kdcore.distill.kl_divergence",
             "batch-mean KL(p_teacher || p_student) in nats"),
    wrong=[
        Variant("reversed direction", _kl_reversed,
                "KL is not symmetric: the contract is KL(p_teacher ‖ p_student) = Σ p_t·(log p_t − log p_s); "
                "you computed KL(p_student ‖ p_teacher)"),
        Variant("summed over the batch", _kl_sum,
                "you summed over the whole batch: divide by the number of rows (reduction='batchmean')"),
        Variant("mean over all elements", _kl_mean,
                "reduction='mean' divides by rows × classes: use reduction='batchmean' (sum over classes, "
                "mean over rows)"),
        Variant("log base 2", _kl_log2, "use the natural log (nats), not log2 (bits)"),
        Variant("probabilities passed as F.kl_div's input", _kl_probs_input,
                "F.kl_div(input, target) expects input = log-probabilities of the student: pass p_student.log()"),
        Variant("one value per row", _kl_rows, "average over the rows: return a scalar, not one KL per row"),
        Variant("cross-entropy instead of KL", _kl_is_ce,
                "you computed the soft cross-entropy −Σ p_t·log p_s; KL also adds Σ p_t·log p_t "
                "(KL = CE − H(p_teacher)), which is why KL is 0 for equal distributions"),
    ],
    correct=[Variant("F.kl_div batchmean", _kl_ok_fkl, ""), Variant("nn.KLDivLoss log_target", _kl_ok_module, ""),
             Variant("hand-written sum", _kl_ok_manual, ""), Variant("xlogy", _kl_ok_xlogy, "")],
)


def _ce_is_kl(p_teacher, p_student):
    return F.kl_div(p_student.log(), p_teacher, reduction="batchmean")


def _ce_reversed(p_teacher, p_student):
    return -(p_student * p_teacher.log()).sum(-1).mean()


def _ce_sum(p_teacher, p_student):
    return -(p_teacher * p_student.log()).sum()


def _ce_mean_all(p_teacher, p_student):
    return -(p_teacher * p_student.log()).mean()


def _ce_log2(p_teacher, p_student):
    return -(p_teacher * p_student.log2()).sum(-1).mean()


def _ce_f_ce_on_probs(p_teacher, p_student):
    return F.cross_entropy(p_student, p_teacher)


def _ce_rows(p_teacher, p_student):
    return -(p_teacher * p_student.log()).sum(-1)


def _ce_no_minus(p_teacher, p_student):
    return (p_teacher * p_student.log()).sum(-1).mean()


def _ce_ok_manual(p_teacher, p_student):
    return -(p_teacher * torch.log(p_student)).sum(dim=-1).mean()


def _ce_ok_f_ce(p_teacher, p_student):
    return F.cross_entropy(p_student.log(), p_teacher)


def _ce_ok_kl_plus_h(p_teacher, p_student):
    entropy = -(torch.xlogy(p_teacher, p_teacher)).sum(-1).mean()
    return F.kl_div(p_student.log(), p_teacher, reduction="batchmean") + entropy


register(
    Exercise("soft_cross_entropy", "01", "soft_cross_entropy(p_teacher, p_student)",
             _prob_cases("equal distributions give the entropy"), "kdcore.distill.soft_cross_entropy",
             "batch-mean −Σ p_teacher·log p_student"),
    wrong=[
        Variant("KL instead of cross-entropy", _ce_is_kl,
                "you computed KL(p_t ‖ p_s); the soft cross-entropy is −Σ p_t·log p_s = KL + H(p_teacher)"),
        Variant("reversed roles", _ce_reversed,
                "the teacher's probabilities weight the student's log-probabilities: −Σ p_t·log p_s"),
        Variant("summed over the batch", _ce_sum, "divide by the number of rows: batch-mean, not the batch sum"),
        Variant("mean over all elements", _ce_mean_all,
                "sum over the classes, then average over the rows (.mean() alone also divides by the classes)"),
        Variant("log base 2", _ce_log2, "use the natural log (nats), not log2"),
        Variant("F.cross_entropy on probabilities", _ce_f_ce_on_probs,
                "F.cross_entropy expects logits (it applies log_softmax to its input): pass p_student.log(), "
                "or write −(p_t * p_s.log()).sum(-1).mean()"),
        Variant("one value per row", _ce_rows, "average over the rows: return a scalar, not one value per row"),
        Variant("missing minus sign", _ce_no_minus, "cross-entropy is −Σ p·log q (it is >= 0): you lost the minus"),
    ],
    correct=[Variant("hand-written", _ce_ok_manual, ""), Variant("F.cross_entropy on log-probs", _ce_ok_f_ce, ""),
             Variant("KL + entropy", _ce_ok_kl_plus_h, "")],
)


# ===================================================================================================
# distill_step
# ===================================================================================================
def _step_setup(seed: int, *, momentum: float = 0.0, stale: bool = False):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 4))
        teacher = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
        with torch.no_grad():  # non-trivial running statistics, so that train mode would change the output
            teacher(torch.randn(64, 6) * 2 + 1)
        teacher.eval()
        x = torch.randn(8, 6)
        y = torch.randint(0, 4, (8,))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.5, momentum=momentum)
    if stale:  # leftover gradients from an earlier backward
        student(x).pow(2).sum().backward()
    return student, teacher, x, y, optimizer


def _step_case(name: str, seed: int, T=None, alpha=None, **setup) -> Case:
    def observe(fn):
        student, teacher, x, y, optimizer = _step_setup(seed, **setup)
        teacher_before = module_state(teacher)
        before = tensor_snapshot(x, y)
        kwargs = {k: v for k, v in (("T", T), ("alpha", alpha)) if v is not None}
        out = fn(student, teacher, x, y, optimizer, **kwargs)
        teacher_grads = grads(teacher)
        return {
            "mutated": changed(before, x, y),
            "teacher_grad": any(g is not None and bool(g.abs().sum() > 0) for g in teacher_grads.values()),
            "teacher_changed": any(not torch.equal(teacher_before[k], v) for k, v in module_state(teacher).items()),
            "teacher_training": teacher.training,
            "out_type": "float" if isinstance(out, float) else type(out).__name__,
            "out": out,
            "student": module_state(student),
        }
    return Case(name, observe, _compare_step)


def _compare_step(cand: Observation, ref: Observation):
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


def _step_cases() -> list[Case]:
    return [
        _step_case("one SGD step with the defaults (T=4, alpha=0.9)", 51),
        _step_case("one SGD step, T=2, alpha=0.5", 52, 2.0, 0.5),
        _step_case("stale gradients already in the student's .grad", 53, 4.0, 0.9, stale=True),
        _step_case("SGD with momentum, T=3, alpha=0.7", 54, 3.0, 0.7, momentum=0.9),
    ]


def _kd(s, t, y, T=4.0, alpha=0.9):
    from kdcore.exercises.kd_loss import ok_functional
    return ok_functional(s, t, y, T, alpha)


def _step_ok(student, teacher, x, y, optimizer, T=4.0, alpha=0.9):
    with torch.no_grad():
        t = teacher(x)
    optimizer.zero_grad()
    loss = _kd(student(x), t, y, T, alpha)
    loss.backward()
    optimizer.step()
    return loss.item()


def _step_ok_detach(student, teacher, x, y, optimizer, T=4.0, alpha=0.9):
    t = teacher(x).detach()
    s = student(x)
    loss = alpha * T * T * F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") \
        + (1 - alpha) * F.cross_entropy(s, y)
    optimizer.zero_grad(set_to_none=False)
    loss.backward()
    optimizer.step()
    return loss.item()


def _step_no_zero_grad(student, teacher, x, y, optimizer, T=4.0, alpha=0.9):
    with torch.no_grad():
        t = teacher(x)
    loss = _kd(student(x), t, y, T, alpha)
    loss.backward()
    optimizer.step()
    return loss.item()


def _step_returns_tensor(student, teacher, x, y, optimizer, T=4.0, alpha=0.9):
    with torch.no_grad():
        t = teacher(x)
    optimizer.zero_grad()
    loss = _kd(student(x), t, y, T, alpha)
    loss.backward()
    optimizer.step()
    return loss


def _step_loss_after(student, teacher, x, y, optimizer, T=4.0, alpha=0.9):
    with torch.no_grad():
        t = teacher(x)
    optimizer.zero_grad()
    _kd(student(x), t, y, T, alpha).backward()
    optimizer.step()
    with torch.no_grad():
        return _kd(student(x), t, y, T, alpha).item()


def _step_teacher_grad(student, teacher, x, y, optimizer, T=4.0, alpha=0.9):
    t = teacher(x)
    s = student(x)
    loss = alpha * T * T * F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") \
        + (1 - alpha) * F.cross_entropy(s, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def _step_train_mode(student, teacher, x, y, optimizer, T=4.0, alpha=0.9):
    student.train()
    teacher.train()
    with torch.no_grad():
        t = teacher(x)
    optimizer.zero_grad()
    loss = _kd(student(x), t, y, T, alpha)
    loss.backward()
    optimizer.step()
    return loss.item()


def _step_no_step(student, teacher, x, y, optimizer, T=4.0, alpha=0.9):
    with torch.no_grad():
        t = teacher(x)
    optimizer.zero_grad()
    loss = _kd(student(x), t, y, T, alpha)
    loss.backward()
    return loss.item()


def _step_defaults(student, teacher, x, y, optimizer, T=4.0, alpha=0.9):
    with torch.no_grad():
        t = teacher(x)
    optimizer.zero_grad()
    loss = _kd(student(x), t, y)
    loss.backward()
    optimizer.step()
    return loss.item()


def _step_ce_only(student, teacher, x, y, optimizer, T=4.0, alpha=0.9):
    optimizer.zero_grad()
    loss = F.cross_entropy(student(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


register(
    Exercise("distill_step", "03", "distill_step(student, teacher, x, y, optimizer, T=4.0, alpha=0.9)",
             _step_cases(), "kdcore.distill.distill_step",
             "one optimizer step of the student on kd_loss; teacher unchanged; returns the loss before the step"),
    wrong=[
        Variant("no zero_grad", _step_no_zero_grad,
                "gradients accumulate across calls: call optimizer.zero_grad() before loss.backward()"),
        Variant("returns the loss tensor", _step_returns_tensor,
                "return the loss as a Python float (`loss.item()`): a tensor keeps the whole graph alive"),
        Variant("loss after the step", _step_loss_after,
                "return the loss computed before optimizer.step() (the one you back-propagated)"),
        Variant("teacher run with gradient", _step_teacher_grad,
                "the teacher ran with gradient tracking, so backward filled the teacher's .grad: wrap the "
                "teacher's forward in torch.no_grad() (or detach its logits)"),
        Variant("teacher switched to train mode", _step_train_mode,
                "do not call teacher.train(): in train mode batch-norm uses batch statistics and updates its "
                "running statistics (the teacher changes) and dropout is on; leave the teacher in eval mode"),
        Variant("no optimizer.step()", _step_no_step, "call optimizer.step() after loss.backward()"),
        Variant("T and alpha not passed on", _step_defaults,
                "pass T and alpha on to the loss: kd_loss(student_logits, teacher_logits, y, T=T, alpha=alpha)"),
        Variant("cross-entropy only", _step_ce_only,
                "the loss must be kd_loss (teacher's soft targets + labels), not the plain cross-entropy"),
    ],
    correct=[Variant("no_grad teacher", _step_ok, ""), Variant("detached teacher, inline loss", _step_ok_detach, "")],
)


# ===================================================================================================
# attention_map / at_loss
# ===================================================================================================
def _am_cases() -> list[Case]:
    kw = dict(rtol=1e-4, atol=1e-6)
    return [
        call_case("random [2, 3, 4, 4], p=2", lambda: ((randn(2, 3, 4, 4, seed=61),), {"p": 2}), **kw),
        call_case("non-square [1, 8, 5, 3], p=1 (signed features)", lambda: ((randn(1, 8, 5, 3, seed=62),), {"p": 1}), **kw),
        call_case("odd p=3 on signed features [3, 2, 6, 6]", lambda: ((randn(3, 2, 6, 6, seed=63),), {"p": 3}), **kw),
        call_case("default p, [2, 4, 3, 3]", lambda: ((randn(2, 4, 3, 3, seed=64),), {}), **kw),
        call_case("ReLU features [4, 16, 8, 8], p=2", lambda: ((randn(4, 16, 8, 8, seed=65).relu(),), {"p": 2}), **kw),
        call_case("single channel [2, 1, 4, 4], p=4", lambda: ((randn(2, 1, 4, 4, seed=66),), {"p": 4}), **kw),
        call_case("samples of very different scales [2, 3, 4, 4], p=2",
                  lambda: ((randn(2, 3, 4, 4, seed=67) * torch.tensor([1.0, 100.0]).view(2, 1, 1, 1),), {"p": 2}),
                  **kw),
    ]


def _am_no_abs(features, p=2):
    return F.normalize(features.pow(p).mean(dim=1).flatten(1), dim=1)


def _am_no_norm(features, p=2):
    return features.abs().pow(p).mean(dim=1).flatten(1)


def _am_batch_norm(features, p=2):
    a = features.abs().pow(p).mean(dim=1).flatten(1)
    return a / a.norm()


def _am_l1(features, p=2):
    return F.normalize(features.abs().pow(p).mean(dim=1).flatten(1), p=1, dim=1)


def _am_not_flat(features, p=2):
    a = features.abs().pow(p).mean(dim=1)
    return a / a.flatten(1).norm(dim=1).view(-1, 1, 1)


def _am_spatial_mean(features, p=2):
    return F.normalize(features.abs().pow(p).mean(dim=(2, 3)), dim=1)


def _am_p_fixed(features, p=2):
    return F.normalize(features.pow(2).mean(dim=1).flatten(1), dim=1)


def _am_max(features, p=2):
    return F.normalize(features.abs().pow(p).amax(dim=1).flatten(1), dim=1)


def _am_inplace(features, p=2):
    a = features.abs_().pow_(p)
    return F.normalize(a.mean(dim=1).flatten(1), dim=1)


def _am_ok_sum(features, p=2):
    a = features.abs().pow(p).sum(dim=1).view(features.shape[0], -1)
    return a / a.norm(dim=1, keepdim=True)


def _am_ok_norm(features, p=2):
    a = features.abs().pow(p).mean(1).reshape(features.size(0), -1)
    return a / torch.linalg.vector_norm(a, dim=1, keepdim=True).clamp_min(1e-12)


register(
    Exercise("attention_map", "04", "attention_map(features, p=2)", _am_cases(), "kdcore.distill.attention_map",
             "[B, C, H, W] → [B, H·W]: channel mean of |A|^p, flattened, L2-normalised per sample"),
    wrong=[
        Variant("no absolute value", _am_no_abs,
                "take |A| before the power: A**p is negative for odd p on signed features (use .abs().pow(p))"),
        Variant("not normalised", _am_no_norm,
                "L2-normalise each sample's map (F.normalize(am, dim=1)), so maps of different scales compare"),
        Variant("normalised over the whole batch", _am_batch_norm,
                "normalise per sample (dim=1), not by one norm over the whole batch"),
        Variant("L1-normalised", _am_l1, "normalise with the L2 norm (p=2 in F.normalize), not the L1 norm"),
        Variant("not flattened", _am_not_flat, "flatten the spatial dims: the map is [B, H·W]"),
        Variant("mean over space instead of channels", _am_spatial_mean,
                "average over the channels (dim=1), keep the spatial positions: [B, C, H, W] → [B, H·W]"),
        Variant("p ignored", _am_p_fixed, "use the p passed in: |A|**p (you always squared)"),
        Variant("max over channels", _am_max, "the map is the *mean* over channels of |A|^p, not the max"),
        Variant("features modified in place", _am_inplace,
                "`.abs_()` / `.pow_()` modify the caller's features: use .abs() / .pow()"),
    ],
    correct=[Variant("sum over channels (same after normalising)", _am_ok_sum, ""),
             Variant("manual L2 norm", _am_ok_norm, "")],
)


def _at_cases() -> list[Case]:
    return [
        call_case("same channels [2, 4, 5, 5], p=2",
                  lambda: ((randn(2, 4, 5, 5, seed=71), randn(2, 4, 5, 5, seed=72)), {"p": 2})),
        call_case("different channels: student 3, teacher 8, [2, *, 6, 6]",
                  lambda: ((randn(2, 3, 6, 6, seed=73), randn(2, 8, 6, 6, seed=74)), {"p": 2})),
        call_case("single sample, p=1: [1, 2, 4, 4] vs [1, 5, 4, 4]",
                  lambda: ((randn(1, 2, 4, 4, seed=75), randn(1, 5, 4, 4, seed=76)), {"p": 1})),
        call_case("default p, [3, 4, 3, 3] vs [3, 6, 3, 3]",
                  lambda: ((randn(3, 4, 3, 3, seed=77), randn(3, 6, 3, 3, seed=78)), {})),
        raises_case("spatial sizes differ (4x4 vs 5x5): ValueError",
                    lambda: ((randn(2, 3, 4, 4, seed=79), randn(2, 3, 5, 5, seed=80)), {})),
        call_case("gradient reaches the student features, [2, 3, 4, 4] vs [2, 6, 4, 4]",
                  lambda: ((randn(2, 3, 4, 4, seed=81), randn(2, 6, 4, 4, seed=82)), {"p": 2}),
                  grad=(0, None)),
    ]


def _amap(f, p=2):
    return F.normalize(f.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def _check_spatial(s, t):
    if s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[2:]:
        raise ValueError("student and teacher features must have the same batch and spatial sizes")


def _at_sum(student_features, teacher_features, p=2):
    _check_spatial(student_features, teacher_features)
    return (_amap(student_features, p) - _amap(teacher_features, p)).pow(2).sum()


def _at_sample_sum(student_features, teacher_features, p=2):
    _check_spatial(student_features, teacher_features)
    return (_amap(student_features, p) - _amap(teacher_features, p)).pow(2).sum(dim=1).mean()


def _at_norm(student_features, teacher_features, p=2):
    _check_spatial(student_features, teacher_features)
    return (_amap(student_features, p) - _amap(teacher_features, p)).norm(dim=1).mean()


def _at_no_normalise(student_features, teacher_features, p=2):
    _check_spatial(student_features, teacher_features)
    a_s = student_features.abs().pow(p).mean(1).flatten(1)
    a_t = teacher_features.abs().pow(p).mean(1).flatten(1)
    return (a_s - a_t).pow(2).mean()


def _at_interpolate(student_features, teacher_features, p=2):
    t = teacher_features
    if t.shape[2:] != student_features.shape[2:]:
        t = F.interpolate(t, size=student_features.shape[2:], mode="bilinear", align_corners=False)
    return (_amap(student_features, p) - _amap(t, p)).pow(2).mean()


def _at_raw(student_features, teacher_features, p=2):
    return F.mse_loss(student_features, teacher_features)


def _at_p_fixed(student_features, teacher_features, p=2):
    _check_spatial(student_features, teacher_features)
    return (_amap(student_features, 2) - _amap(teacher_features, 2)).pow(2).mean()


def _at_no_check(student_features, teacher_features, p=2):
    return (_amap(student_features, p) - _amap(teacher_features, p)).pow(2).mean()


def _at_ok(student_features, teacher_features, p=2):
    if student_features.shape[-2:] != teacher_features.shape[-2:]:
        raise ValueError("spatial sizes differ")
    return F.mse_loss(_amap(student_features, p), _amap(teacher_features.detach(), p))


def _at_ok_manual(student_features, teacher_features, p=2):
    if student_features.shape[2:] != teacher_features.shape[2:]:
        raise ValueError("spatial sizes differ")

    def amap(f):
        a = f.abs().pow(p).sum(1).flatten(1)
        return a / a.norm(dim=1, keepdim=True)
    return ((amap(student_features) - amap(teacher_features)) ** 2).mean()


register(
    Exercise("at_loss", "04", "at_loss(student_features, teacher_features, p=2)", _at_cases(),
             "kdcore.distill.at_loss", "(attention_map(s) − attention_map(t)).pow(2).mean()"),
    wrong=[
        Variant("sum instead of mean", _at_sum, "average the squared differences (.mean()), do not sum them"),
        Variant("per-sample sum, batch mean", _at_sample_sum,
                "the contract is the mean over all entries (samples × positions): .pow(2).mean()"),
        Variant("norm of the difference", _at_norm,
                "square the differences and average (.pow(2).mean()); the paper's ‖·‖ per sample is not the contract"),
        Variant("maps not normalised", _at_no_normalise,
                "compare L2-normalised attention maps (attention_map), otherwise the loss depends on feature scale"),
        Variant("teacher map interpolated", _at_interpolate,
                "different spatial sizes are an error here: raise ValueError (pick layers with matching sizes)"),
        Variant("raw features compared", _at_raw,
                "compare attention maps (channel mean of |A|^p, normalised), not the raw features: the channel "
                "counts may differ"),
        Variant("p ignored", _at_p_fixed, "pass p on to the attention maps"),
        Variant("no size check", _at_no_check,
                "check the spatial sizes first and raise ValueError with a clear message (not a RuntimeError "
                "from broadcasting)"),
    ],
    correct=[Variant("F.mse_loss of maps", _at_ok, ""), Variant("sum-based maps", _at_ok_manual, "")],
)


# ===================================================================================================
# sequence_kd_loss
# ===================================================================================================
def _seq_inputs(b: int, length: int, v: int, seed: int, lengths: list[int], scale: float = 2.0):
    s = randn(b, length, v, seed=seed, scale=scale)
    t = randn(b, length, v, seed=seed + 1, scale=scale)
    mask = torch.zeros(b, length)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return s, t, mask


def _seq_case(name, b, length, v, seed, lengths, T=None, *, mask_dtype=torch.float32, scale=2.0, pad_logits=None,
              **kw) -> Case:
    def build():
        s, t, mask = _seq_inputs(b, length, v, seed, lengths, scale)
        if pad_logits is not None:
            pad = mask == 0
            s[pad] = pad_logits
            t[pad] = -pad_logits
        kwargs = {} if T is None else {"T": T}
        return (s, t, mask.to(mask_dtype)), kwargs
    return call_case(name, build, **kw)


def _seq_cases() -> list[Case]:
    return [
        _seq_case("padding at the end (float mask), [2, 5, 7], T=1", 2, 5, 7, 91, [5, 2], 1.0),
        _seq_case("bool mask, different lengths, [3, 4, 6], T=2", 3, 4, 6, 92, [1, 4, 3], 2.0, mask_dtype=torch.bool),
        _seq_case("no padding (all ones), [2, 3, 5], T=1.5", 2, 3, 5, 93, [3, 3], 1.5),
        _seq_case("padded positions hold huge logits (int mask): they must not count", 2, 6, 5, 94, [6, 3], 2.0,
                  mask_dtype=torch.int64, pad_logits=torch.linspace(-1e4, 1e4, 5)),
        _seq_case("single sequence [1, 6, 4], default T", 1, 6, 4, 95, [4]),
        _seq_case("logits of magnitude 1e3, T=2", 2, 4, 8, 96, [4, 2], 2.0, scale=1e3, atol=1e-3),
        _seq_case("gradient w.r.t. the student logits, T=3", 2, 5, 6, 97, [5, 2], 3.0, grad=(0, None)),
    ]


def _token_kl(s, t, T):
    log_p_s = F.log_softmax(s / T, dim=-1)
    log_p_t = F.log_softmax(t.detach() / T, dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)


def _seq_no_mask(student_logits, teacher_logits, mask, T=1.0):
    return T * T * _token_kl(student_logits, teacher_logits, T).mean()


def _seq_all_positions(student_logits, teacher_logits, mask, T=1.0):
    kl = _token_kl(student_logits, teacher_logits, T) * mask.float()
    return T * T * kl.sum() / mask.numel()


def _seq_batchmean(student_logits, teacher_logits, mask, T=1.0):
    kl = F.kl_div(F.log_softmax(student_logits / T, -1), F.softmax(teacher_logits.detach() / T, -1),
                  reduction="none").sum(-1)
    return T * T * (kl * mask.float()).sum() / student_logits.shape[0]


def _seq_per_sequence(student_logits, teacher_logits, mask, T=1.0):
    m = mask.float()
    kl = _token_kl(student_logits, teacher_logits, T) * m
    return T * T * (kl.sum(1) / m.sum(1)).mean()


def _seq_no_T2(student_logits, teacher_logits, mask, T=1.0):
    m = mask.float()
    return (_token_kl(student_logits, teacher_logits, T) * m).sum() / m.sum()


def _seq_reversed(student_logits, teacher_logits, mask, T=1.0):
    m = mask.float()
    kl = _token_kl(teacher_logits.detach(), student_logits, T)
    return T * T * (kl * m).sum() / m.sum()


def _seq_T_student_only(student_logits, teacher_logits, mask, T=1.0):
    m = mask.float()
    log_p_s = F.log_softmax(student_logits / T, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach(), dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    return T * T * (kl * m).sum() / m.sum()


def _seq_vocab_mean(student_logits, teacher_logits, mask, T=1.0):
    m = mask.float()
    log_p_s = F.log_softmax(student_logits / T, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach() / T, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).mean(-1)
    return T * T * (kl * m).sum() / m.sum()


def _seq_log_softmax_naive(student_logits, teacher_logits, mask, T=1.0):
    m = mask.float()
    p_t = torch.softmax(teacher_logits.detach() / T, -1)
    kl = (p_t * (torch.log(p_t) - torch.log(torch.softmax(student_logits / T, -1)))).sum(-1)
    return T * T * (kl * m).sum() / m.sum()


def _seq_ok_index(student_logits, teacher_logits, mask, T=1.0):
    keep = mask.bool()
    s, t = student_logits[keep], teacher_logits[keep].detach()
    return T ** 2 * F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean")


def _seq_ok_weighted(student_logits, teacher_logits, mask, T=1.0):
    m = mask.to(student_logits.dtype)
    kl = F.kl_div(F.log_softmax(student_logits / T, -1), F.log_softmax(teacher_logits / T, -1).detach(),
                  reduction="none", log_target=True).sum(-1)
    return (kl * m).sum() / m.sum() * T * T


register(
    Exercise("sequence_kd_loss", "11", "sequence_kd_loss(student_logits, teacher_logits, mask, T=1.0)",
             _seq_cases(), "kdcore.distill.sequence_kd_loss",
             "T²·KL per token, summed over the vocabulary, averaged over the real (mask = 1) tokens"),
    wrong=[
        Variant("padding mask ignored", _seq_no_mask,
                "the padding mask is ignored: padded positions must not count (average over mask = 1 tokens only)"),
        Variant("divided by all positions", _seq_all_positions,
                "divide by the number of real tokens (mask.sum()), not by B·L: padding must not dilute the loss"),
        Variant("batchmean divides by B", _seq_batchmean,
                "F.kl_div's 'batchmean' divides by the batch size B, not by the number of tokens: sum the "
                "masked per-token KL and divide by mask.sum()"),
        Variant("mean of per-sequence means", _seq_per_sequence,
                "average over all real tokens of the batch at once; a mean of per-sequence means over-weights "
                "short sequences"),
        Variant("missing T²", _seq_no_T2, "off by a factor of T²: multiply the KL by T**2"),
        Variant("reversed KL", _seq_reversed,
                "KL direction reversed: the teacher's distribution is the target, KL(p_teacher ‖ p_student)"),
        Variant("T on the student only", _seq_T_student_only, "soften both distributions with T, teacher too"),
        Variant("mean over the vocabulary", _seq_vocab_mean,
                "sum the KL over the vocabulary (a distribution's KL is a sum over its classes), do not average"),
        Variant("log(softmax(x))", _seq_log_softmax_naive,
                "log(softmax(x)) gives log(0) = −inf for large logits: use F.log_softmax"),
    ],
    correct=[Variant("boolean indexing + batchmean", _seq_ok_index, ""),
             Variant("weighted sum, log_target", _seq_ok_weighted, "")],
)

