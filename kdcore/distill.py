"""Knowledge-distillation losses and one distillation step.

Conventions (see ``docs/EXERCISES.md``):

* logits are ``[..., C]`` float tensors, the class dimension is the last one;
* "batch-mean" = sum over the classes, mean over the rows (every leading index is a row);
* ``T`` is the temperature (> 0), ``alpha`` the weight of the soft (teacher) term, in [0, 1];
* natural logarithm everywhere, so KL and cross-entropy are in nats;
* the teacher is a constant: every teacher tensor is detached, no gradient ever reaches it.

Taught in notebooks 01 (softmax_t, kl_divergence, soft_cross_entropy), 02 (kd_loss), 03 (distill_step),
04 (attention_map, at_loss) and 11 (sequence_kd_loss). Each exercise's record is in
``kdcore/exercises/manifest.toml`` and its grading module, with the wrong answers candidates write, in
``kdcore/exercises/<id>.py``. The functions here are the references: read them after your own attempt.

Everything goes through ``log_softmax`` (never ``log(softmax(x))``), so the losses stay finite for logits
of magnitude 1e3 and more.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdcore import _validate as v

__all__ = ["softmax_t", "kl_divergence", "soft_cross_entropy", "kd_loss", "distill_step",
           "attention_map", "at_loss", "hint_loss", "sequence_kd_loss"]

# Rows of a probability tensor must sum to 1 within this absolute tolerance (float32 softmax over
# 10^4 classes is off by ~1e-6; hand-typed rows such as [0.8, 0.1, 0.1] are exact to ~1e-7).
PROB_ATOL = 1e-3


# ---------------------------------------------------------------------------------------------------
# argument checks used below
# ---------------------------------------------------------------------------------------------------
def _logits(name: str, value: object, *, ndim: int | tuple[int, ...] | None = None) -> torch.Tensor:
    """A floating tensor with at least one dimension and no NaN / inf."""
    x = v.tensor(name, value, ndim=ndim, floating=True)
    if x.dim() == 0:
        raise ValueError(f"{name} must have at least 1 dimension (the classes), got a 0-D tensor")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one class, got shape {tuple(x.shape)}")
    return v.finite(name, x)


def _probabilities(name: str, value: object) -> torch.Tensor:
    """Rows (last dim) that are probability distributions: entries >= 0, sum 1 within PROB_ATOL."""
    p = _logits(name, value)
    if bool((p < 0).any()):
        raise ValueError(f"{name} must contain probabilities >= 0, got a minimum of {p.min().item():.4g}")
    sums = p.sum(dim=-1)
    worst = (sums - 1).abs().max().item()
    if worst > PROB_ATOL:
        raise ValueError(f"{name} rows must sum to 1 (within {PROB_ATOL}); a row sums to "
                         f"{sums.flatten()[(sums - 1).abs().flatten().argmax()].item():.6g}. "
                         "Pass probabilities (e.g. softmax_t(logits, T)), not logits")
    return p


def _labels(labels: object, n_rows: int, n_classes: int) -> torch.Tensor:
    y = v.tensor("labels", labels, ndim=1)
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"labels must be an integer tensor of class indices, got dtype {y.dtype}")
    if y.shape[0] != n_rows:
        raise ValueError(f"labels must have one entry per row ({n_rows}), got shape {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must be in [0, {n_classes - 1}], got values in "
                         f"[{int(y.min())}, {int(y.max())}]")
    return y.long()


def _row_kl_from_log(log_p_teacher: torch.Tensor, log_p_student: torch.Tensor) -> torch.Tensor:
    """Per-row KL(p_t || p_s) = sum_c p_t (log p_t - log p_s) from log-probabilities; shape [...].

    ``p_t = exp(log p_t)`` underflows to exactly 0 for very negative log-probabilities, and
    0 * (finite) = 0, so no special case is needed (log_softmax never returns -inf for finite logits).
    """
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1)


# ---------------------------------------------------------------------------------------------------
# soft labels
# ---------------------------------------------------------------------------------------------------
def softmax_t(logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Temperature softmax over the last dimension: ``softmax(logits / T)``.

    logits: [..., C] float.  Returns [..., C], every row sums to 1.
    T > 1 flattens the distribution (shows the "dark knowledge" in the small probabilities), T < 1 sharpens
    it; T -> 0 approaches one-hot argmax, T -> inf the uniform distribution.
    ``torch.softmax`` subtracts the row maximum first, so logits of magnitude 1e4 stay finite.
    """
    logits = _logits("logits", logits)
    T = v.positive("T", T)
    return torch.softmax(logits / T, dim=-1)


def kl_divergence(p_teacher: torch.Tensor, p_student: torch.Tensor) -> torch.Tensor:
    """Batch-mean KL(p_teacher || p_student) in nats, from probabilities (not logits).

    p_teacher, p_student: [..., C] (a 1-D tensor is one row); rows must be distributions
    (entries >= 0, sum 1 within ``PROB_ATOL``).  Returns a scalar: sum over C, mean over the rows.

    Zeros follow the usual conventions: a class with ``p_teacher == 0`` contributes 0 (0·log 0 = 0),
    whatever ``p_student`` is there; a class with ``p_teacher > 0`` but ``p_student == 0`` makes the
    divergence ``+inf`` (the student calls impossible what the teacher considers possible).
    The result is differentiable w.r.t. ``p_student`` (NaN-free gradients even with zeros).
    Equals ``F.kl_div(p_student.log(), p_teacher, reduction="batchmean")`` for 2-D inputs.
    """
    p_t = _probabilities("p_teacher", p_teacher)
    p_s = _probabilities("p_student", p_student)
    v.same_shape("p_teacher", p_t, "p_student", p_s)
    support = p_t > 0
    # log of 1 where the teacher is 0: those terms are masked out anyway, and no 0·(-inf) = NaN appears
    # in the forward pass or in the gradient.
    log_t = torch.where(support, p_t, torch.ones_like(p_t)).log()
    log_s = torch.where(support, p_s, torch.ones_like(p_s)).log()
    terms = torch.where(support, p_t * (log_t - log_s), torch.zeros_like(p_t))
    return terms.sum(dim=-1).mean()


def soft_cross_entropy(p_teacher: torch.Tensor, p_student: torch.Tensor) -> torch.Tensor:
    """Batch-mean cross-entropy ``-sum_c p_teacher · log p_student`` in nats, from probabilities.

    Shapes and zero conventions as in :func:`kl_divergence`.  Identity:
    ``soft_cross_entropy(p, q) = kl_divergence(p, q) + H(p)`` with ``H(p) = -sum p log p``, so the two
    losses have the same gradient w.r.t. the student; only KL is 0 when the student matches the teacher.
    """
    p_t = _probabilities("p_teacher", p_teacher)
    p_s = _probabilities("p_student", p_student)
    v.same_shape("p_teacher", p_t, "p_student", p_s)
    support = p_t > 0
    log_s = torch.where(support, p_s, torch.ones_like(p_s)).log()
    terms = torch.where(support, -p_t * log_s, torch.zeros_like(p_t))
    return terms.sum(dim=-1).mean()


# ---------------------------------------------------------------------------------------------------
# Hinton et al. (2015) distillation loss and one training step
# ---------------------------------------------------------------------------------------------------
def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            T: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton et al. (2015) distillation loss; a scalar.

    ``alpha · T² · KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) · CE(s, labels)``

    student_logits, teacher_logits: [N, C]; labels: [N] integer class indices in [0, C).
    KL is batch-mean; the hard cross-entropy uses T = 1.  The T² factor keeps the soft term's gradient
    magnitude independent of T (its gradient scales as 1/T²).  ``teacher_logits`` is detached: the teacher
    is a constant target and receives no gradient.
    """
    s = _logits("student_logits", student_logits, ndim=2)
    t = _logits("teacher_logits", teacher_logits, ndim=2)
    v.same_shape("student_logits", s, "teacher_logits", t)
    if s.shape[0] == 0:
        raise ValueError("student_logits must have at least one row, got shape (0, C)")
    y = _labels(labels, s.shape[0], s.shape[1])
    T = v.positive("T", T)
    alpha = v.in_unit_interval("alpha", alpha)

    log_p_s = F.log_softmax(s / T, dim=-1)
    log_p_t = F.log_softmax(t.detach() / T, dim=-1)
    # fused kernels: KL from two log-probabilities (no exp/log round trip), CE from logits
    soft = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    hard = F.cross_entropy(s, y)
    return alpha * T * T * soft + (1.0 - alpha) * hard


def distill_step(student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 optimizer: torch.optim.Optimizer, T: float = 4.0, alpha: float = 0.9) -> float:
    """One optimisation step of ``student`` on :func:`kd_loss`; returns the loss before the step.

    x: a batch the models accept (e.g. [N, ...]); y: [N] class indices.
    The teacher runs under ``torch.no_grad()``; its parameters, their ``.grad`` and its train/eval mode are
    left as they were.  Neither model's mode is changed: call ``teacher.eval()`` (so that batch-norm uses
    and keeps its running statistics and dropout is off) and ``student.train()`` before the loop.
    ``optimizer`` must hold the student's parameters only.
    """
    if not isinstance(student, nn.Module):
        raise TypeError(f"student must be an nn.Module, got {type(student).__name__}")
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be an nn.Module, got {type(teacher).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    v.tensor("x", x)
    v.tensor("y", y)
    teacher_ids = {id(p) for p in teacher.parameters()}
    if any(id(p) in teacher_ids for group in optimizer.param_groups for p in group["params"]):
        raise ValueError("optimizer must hold only the student's parameters, but it holds teacher parameters")

    with torch.no_grad():
        teacher_logits = teacher(x)
    optimizer.zero_grad()
    loss = kd_loss(student(x), teacher_logits, y, T=T, alpha=alpha)
    loss.backward()
    optimizer.step()
    return loss.item()


# ---------------------------------------------------------------------------------------------------
# feature-based distillation
# ---------------------------------------------------------------------------------------------------
def attention_map(features: torch.Tensor, p: float = 2) -> torch.Tensor:
    """Spatial attention map (Zagoruyko & Komodakis, ICLR 2017).

    features: [B, C, H, W] → [B, H·W]: mean over channels of ``|A|^p``, flattened, then L2-normalised per
    sample (an all-zero map stays zero).  Averaging over channels makes maps of networks with different
    widths comparable; the normalisation makes them independent of the activation scale.
    """
    a = _logits("features", features, ndim=4)
    p = v.positive("p", p)
    amap = a.abs().pow(p).mean(dim=1).flatten(1)
    return F.normalize(amap, p=2, dim=1)


def at_loss(student_features: torch.Tensor, teacher_features: torch.Tensor, p: float = 2) -> torch.Tensor:
    """Attention-transfer loss: ``(attention_map(s) - attention_map(t)).pow(2).mean()``; a scalar.

    student_features [B, C_s, H, W], teacher_features [B, C_t, H, W]: the channel counts may differ,
    batch and spatial sizes must match (interpolate or pick matching layers otherwise).
    The teacher features are detached.
    """
    s = _logits("student_features", student_features, ndim=4)
    t = _logits("teacher_features", teacher_features, ndim=4)
    if s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[2:]:
        raise ValueError("student_features and teacher_features must have the same batch and spatial sizes "
                         f"[B, *, H, W], got {tuple(s.shape)} and {tuple(t.shape)}")
    return (attention_map(s, p) - attention_map(t.detach(), p)).pow(2).mean()


def hint_loss(student_features: torch.Tensor, teacher_features: torch.Tensor,
              regressor: nn.Module) -> torch.Tensor:
    """FitNets hint loss (Romero et al., ICLR 2015): ``MSE(regressor(student_features), teacher_features)``.

    ``regressor`` (e.g. ``nn.Conv2d(C_s, C_t, 1)`` or ``nn.Linear(D_s, D_t)``) maps the student's hidden
    features to the teacher's shape and is trained together with the student (put its parameters in the
    optimizer).  Its output must have exactly the teacher features' shape, else ValueError.
    The teacher features are detached.  Returns a scalar (mean over all elements).
    """
    if not isinstance(regressor, nn.Module):
        raise TypeError(f"regressor must be an nn.Module (e.g. nn.Conv2d(C_s, C_t, 1)), "
                        f"got {type(regressor).__name__}")
    s = _logits("student_features", student_features)
    t = _logits("teacher_features", teacher_features)
    mapped = regressor(s)
    if mapped.shape != t.shape:
        raise ValueError(f"regressor(student_features) must have the shape of teacher_features "
                         f"{tuple(t.shape)}, got {tuple(mapped.shape)}")
    return F.mse_loss(mapped, t.detach())


# ---------------------------------------------------------------------------------------------------
# token-level distillation for language models
# ---------------------------------------------------------------------------------------------------
def sequence_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                     T: float = 1.0) -> torch.Tensor:
    """Token-level KD: ``T² · KL(softmax(t/T) || softmax(s/T))`` summed over the vocabulary and averaged
    over the real tokens only; a scalar.

    student_logits, teacher_logits: [B, L, V]; mask: [B, L], bool or 0/1 numbers (1 = real token,
    0 = padding).  Padded positions do not contribute at all (their logits may be anything finite).
    An all-zero mask raises ValueError (the mean over no tokens is undefined).  Teacher logits are detached.
    """
    s = _logits("student_logits", student_logits, ndim=3)
    t = _logits("teacher_logits", teacher_logits, ndim=3)
    v.same_shape("student_logits", s, "teacher_logits", t)
    m = v.tensor("mask", mask, ndim=2)
    if m.shape != s.shape[:2]:
        raise ValueError(f"mask must have shape [B, L] = {tuple(s.shape[:2])}, got {tuple(m.shape)}")
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("mask must contain only 0 and 1 (or be a bool tensor)")
        m = m == 1
    if not bool(m.any()):
        raise ValueError("mask must mark at least one real token (it is all zeros)")
    T = v.positive("T", T)

    per_token = _row_kl_from_log(F.log_softmax(t.detach() / T, dim=-1), F.log_softmax(s / T, dim=-1))
    return T * T * per_token[m].mean()
