"""kdcore.distill against independent references (F.kl_div, F.cross_entropy, closed forms)."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kdcore.distill import (at_loss, attention_map, distill_step, hint_loss, kd_loss, kl_divergence,
                            sequence_kd_loss, soft_cross_entropy, softmax_t)

FAST = settings(max_examples=30, deadline=None)


def randn(seed, *shape, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def labels_for(seed, n, c):
    return torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed + 1))


def reference_kd(s, t, y, T, alpha):
    """The plain two-line formulation from the PyTorch docs."""
    soft = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean")
    return alpha * T * T * soft + (1 - alpha) * F.cross_entropy(s, y)


shapes = st.tuples(st.integers(1, 6), st.integers(2, 12))


# ------------------------------------------------------------------------------------------ softmax_t
@FAST
@given(seed=st.integers(0, 10_000), shape=shapes, T=st.floats(0.05, 20), scale=st.sampled_from([1.0, 10.0, 1e4]))
def test_softmax_t_rows_sum_to_one_and_scale_with_T(seed, shape, T, scale):
    x = randn(seed, *shape, scale=scale)
    p = softmax_t(x, T)
    assert torch.isfinite(p).all() and (p >= 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(shape[0]))
    # T-scaling: dividing the logits by T is the same as using temperature T
    torch.testing.assert_close(p, softmax_t(x / T, 1.0))
    # float64 reference on the same float32 logits / T: dividing in float64 instead would differ by the
    # rounding of x / T itself (0.001 at |x / T| = 1e4, i.e. a relative 1e-3 in the probabilities)
    torch.testing.assert_close(p, torch.softmax((x / T).double(), -1).float())


def test_softmax_t_extremes_and_limits():
    x = torch.tensor([[1e4, -1e4, 0.0], [3.0, 1.0, 0.2]])
    p = softmax_t(x, 0.5)
    assert torch.isfinite(p).all()
    torch.testing.assert_close(p[0], torch.tensor([1.0, 0.0, 0.0]))
    # high T flattens towards uniform, low T sharpens towards one-hot
    assert softmax_t(x[1:], 1000.0).max() < 0.34
    assert softmax_t(x[1:], 0.01)[0, 0] > 0.999


@pytest.mark.parametrize("T", [0, -1.0, float("nan")])
def test_softmax_t_rejects_bad_T(T):
    with pytest.raises(ValueError, match="T must"):
        softmax_t(torch.randn(2, 3), T)


def test_softmax_t_rejects_nan_logits_and_non_tensors():
    with pytest.raises(ValueError, match="logits"):
        softmax_t(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(TypeError, match="logits"):
        softmax_t([[1.0, 2.0]])


# ------------------------------------------------------------------------------- KL and cross-entropy
def test_seed_001_example_in_nats():
    p, q = torch.tensor([0.8, 0.1, 0.1]), torch.tensor([0.6, 0.3, 0.1])
    ce = -(0.8 * math.log(0.6) + 0.1 * math.log(0.3) + 0.1 * math.log(0.1))
    kl = 0.8 * math.log(0.8 / 0.6) + 0.1 * math.log(0.1 / 0.3) + 0.1 * math.log(0.1 / 0.1)
    assert round(ce, 4) == 0.7593 and round(kl, 4) == 0.1203
    for a, b in ((p, q), (p[None], q[None])):  # a single row, 1-D or [1, 3]
        assert soft_cross_entropy(a, b).item() == pytest.approx(ce, abs=1e-6)
        assert kl_divergence(a, b).item() == pytest.approx(kl, abs=1e-6)


@FAST
@given(seed=st.integers(0, 10_000), shape=shapes, scale=st.floats(0.1, 10))
def test_kl_matches_f_kl_div_and_ce_is_kl_plus_entropy(seed, shape, scale):
    p = torch.softmax(randn(seed, *shape, scale=scale), -1)
    q = torch.softmax(randn(seed + 7, *shape, scale=scale), -1)
    kl = kl_divergence(p, q)
    torch.testing.assert_close(kl, F.kl_div(q.log(), p, reduction="batchmean"), rtol=1e-4, atol=1e-6)
    assert kl.item() >= -1e-6
    assert kl_divergence(p, p).item() == pytest.approx(0.0, abs=1e-6)
    entropy = -(p * p.log()).sum(-1).mean()
    torch.testing.assert_close(soft_cross_entropy(p, q), kl + entropy, rtol=1e-5, atol=1e-6)


def test_zero_probabilities_follow_conventions():
    p = torch.tensor([[0.5, 0.5, 0.0]])
    q = torch.tensor([[0.25, 0.75, 0.0]])
    # 0·log 0 = 0: the third class contributes nothing, whatever the student puts there
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_divergence(p, q).item() == pytest.approx(expected, abs=1e-6)
    # the student gives 0 where the teacher does not: infinite divergence and cross-entropy
    assert kl_divergence(q, torch.tensor([[0.0, 1.0, 0.0]])).item() == math.inf
    assert soft_cross_entropy(q, torch.tensor([[0.0, 1.0, 0.0]])).item() == math.inf
    # gradients stay NaN-free with zeros in both
    q = q.clone().requires_grad_()
    kl_divergence(p, q).backward()
    assert torch.isfinite(q.grad).all()


@pytest.mark.parametrize("fn", [kl_divergence, soft_cross_entropy])
def test_probability_inputs_are_validated(fn):
    good = torch.tensor([[0.2, 0.8]])
    with pytest.raises(ValueError, match="p_teacher rows must sum to 1"):
        fn(torch.tensor([[2.0, 1.0]]), good)          # logits, not probabilities
    with pytest.raises(ValueError, match="p_student must contain probabilities >= 0"):
        fn(good, torch.tensor([[1.5, -0.5]]))
    with pytest.raises(ValueError, match="p_teacher and p_student must have the same shape"):
        fn(good, torch.tensor([[0.2, 0.3, 0.5]]))
    with pytest.raises(ValueError, match="p_student contains NaN"):
        fn(good, torch.tensor([[float("nan"), 1.0]]))


# ------------------------------------------------------------------------------------------ kd_loss
@FAST
@given(seed=st.integers(0, 10_000), shape=shapes, T=st.floats(0.5, 10), alpha=st.floats(0, 1),
       scale=st.floats(0.1, 20))
def test_kd_loss_matches_plain_formulation(seed, shape, T, alpha, scale):
    s, t = randn(seed, *shape, scale=scale), randn(seed + 3, *shape, scale=scale)
    y = labels_for(seed, *shape)
    loss = kd_loss(s, t, y, T=T, alpha=alpha)
    assert loss.dim() == 0
    torch.testing.assert_close(loss, reference_kd(s, t, y, T, alpha), rtol=1e-4, atol=1e-5)


def test_kd_loss_limits_of_alpha():
    s, t, y = randn(0, 4, 5), randn(1, 4, 5), labels_for(0, 4, 5)
    torch.testing.assert_close(kd_loss(s, t, y, alpha=0.0), F.cross_entropy(s, y))
    torch.testing.assert_close(kd_loss(s, s, y, T=3.0, alpha=1.0), torch.tensor(0.0), atol=1e-6, rtol=0)


def test_kd_loss_finite_for_huge_logits_and_matches_float64():
    s, t = randn(0, 8, 10, scale=1e3), randn(1, 8, 10, scale=1e3)
    y = labels_for(0, 8, 10)
    s.requires_grad_()
    loss = kd_loss(s, t, y, T=4.0, alpha=0.9)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    ref = reference_kd(s.detach().double(), t.double(), y, 4.0, 0.9)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-4)


def test_kd_loss_gradient_reaches_student_only_and_inputs_unchanged():
    s, t, y = randn(0, 6, 4).requires_grad_(), randn(1, 6, 4).requires_grad_(), labels_for(0, 6, 4)
    before = (s.detach().clone(), t.detach().clone(), y.clone())
    kd_loss(s, t, y).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None  # the teacher is a constant target
    for a, b in zip((s, t, y), before):
        assert torch.equal(a.detach(), b)
    # the student's gradient equals the plain formulation's with a detached teacher
    s2 = s.detach().clone().requires_grad_()
    reference_kd(s2, t.detach(), y, 4.0, 0.9).backward()
    torch.testing.assert_close(s.grad, s2.grad)


def test_kd_loss_errors_name_the_argument():
    s, t, y = randn(0, 3, 4), randn(1, 3, 4), labels_for(0, 3, 4)
    with pytest.raises(ValueError, match="T must be > 0"):
        kd_loss(s, t, y, T=0)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        kd_loss(s, t, y, alpha=1.5)
    with pytest.raises(ValueError, match="student_logits contains NaN"):
        kd_loss(torch.full((3, 4), float("nan")), t, y)
    with pytest.raises(ValueError, match="student_logits and teacher_logits must have the same shape"):
        kd_loss(s, randn(1, 3, 5), y)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\]"):
        kd_loss(s, t, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="labels must have one entry per row"):
        kd_loss(s, t, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        kd_loss(s, t, y.float())


# ------------------------------------------------------------------------------------- distill_step
def make_models(teacher_mode):
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    student = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    teacher.train(teacher_mode == "train")
    for p in teacher.parameters():  # a stale .grad the step must not touch
        p.grad = torch.full_like(p, 0.5)
    return student, teacher


def test_distill_step_matches_manual_step_and_leaves_teacher_alone():
    student, teacher = make_models("eval")
    x, y = randn(3, 8, 5), labels_for(3, 8, 3)
    ref_student = copy.deepcopy(student)
    teacher_state = copy.deepcopy(teacher.state_dict())
    teacher_grads = [p.grad.clone() for p in teacher.parameters()]
    x_before = x.clone()

    opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    loss = distill_step(student, teacher, x, y, opt, T=2.0, alpha=0.7)

    ref_opt = torch.optim.SGD(ref_student.parameters(), lr=0.1, momentum=0.9)
    with torch.no_grad():
        t_logits = teacher(x)
    ref_loss = reference_kd(ref_student(x), t_logits, y, 2.0, 0.7)
    ref_loss.backward()
    ref_opt.step()

    assert isinstance(loss, float) and loss == pytest.approx(ref_loss.item(), rel=1e-6)
    for a, b in zip(student.parameters(), ref_student.parameters()):
        torch.testing.assert_close(a, b)
    assert not teacher.training
    for key, value in teacher.state_dict().items():  # weights and BN buffers
        assert torch.equal(value, teacher_state[key]), key
    for p, g in zip(teacher.parameters(), teacher_grads):
        assert torch.equal(p.grad, g)
    assert torch.equal(x, x_before)


def test_distill_step_keeps_train_mode_and_reduces_loss():
    student, teacher = make_models("train")
    teacher[1] = nn.Identity()  # no BN, so train mode changes nothing but the flag
    x, y = randn(4, 32, 5), labels_for(4, 32, 3)
    opt = torch.optim.Adam(student.parameters(), lr=0.05)
    losses = [distill_step(student, teacher, x, y, opt) for _ in range(10)]
    assert teacher.training
    assert losses[-1] < losses[0]


def test_distill_step_rejects_teacher_parameters_in_optimizer():
    student, teacher = make_models("eval")
    opt = torch.optim.SGD(list(student.parameters()) + list(teacher.parameters()), lr=0.1)
    with pytest.raises(ValueError, match="optimizer must hold only the student"):
        distill_step(student, teacher, randn(0, 4, 5), labels_for(0, 4, 3), opt)
    with pytest.raises(TypeError, match="teacher must be an nn.Module"):
        distill_step(student, lambda x: x, randn(0, 4, 5), labels_for(0, 4, 3), opt)


# -------------------------------------------------------------------------------- attention transfer
def test_attention_map_hand_computation():
    # B=1, C=2, H=1, W=2: channel 0 = [1, 2], channel 1 = [3, -4]
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, -4.0]]]])
    # p=2: mean of squares per position = [(1+9)/2, (4+16)/2] = [5, 10]; L2 norm = sqrt(125)
    torch.testing.assert_close(attention_map(f), torch.tensor([[5.0, 10.0]]) / math.sqrt(125))
    # p=1: mean of |A| = [2, 3]; L2 norm = sqrt(13)
    torch.testing.assert_close(attention_map(f, p=1), torch.tensor([[2.0, 3.0]]) / math.sqrt(13))
    assert attention_map(torch.zeros(2, 3, 4, 4)).abs().sum() == 0  # no NaN for an all-zero map


@FAST
@given(seed=st.integers(0, 10_000), cs=st.integers(1, 6), ct=st.integers(1, 6), hw=st.integers(1, 5))
def test_at_loss_with_different_channel_counts(seed, cs, ct, hw):
    s, t = randn(seed, 2, cs, hw, hw), randn(seed + 1, 2, ct, hw, hw)
    expected = (attention_map(s) - attention_map(t)).pow(2).mean()
    torch.testing.assert_close(at_loss(s, t), expected)
    # maps ignore the channel count and the activation scale: duplicated, scaled channels → loss 0
    assert at_loss(s, 3.0 * torch.cat([s, s], dim=1)).item() == pytest.approx(0.0, abs=1e-7)


def test_at_loss_gradients_and_errors():
    s, t = randn(0, 2, 3, 4, 4).requires_grad_(), randn(1, 2, 8, 4, 4).requires_grad_()
    at_loss(s, t).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None
    with pytest.raises(ValueError, match="spatial sizes"):
        at_loss(randn(0, 2, 3, 4, 4), randn(1, 2, 3, 2, 2))
    with pytest.raises(ValueError, match="features must be 4-D"):
        attention_map(randn(0, 2, 3, 4))


def test_hint_loss_matches_mse_and_trains_the_regressor():
    torch.manual_seed(0)
    regressor = nn.Conv2d(3, 8, kernel_size=1)
    s, t = randn(0, 2, 3, 4, 4).requires_grad_(), randn(1, 2, 8, 4, 4).requires_grad_()
    loss = hint_loss(s, t, regressor)
    torch.testing.assert_close(loss, F.mse_loss(regressor(s), t))
    loss.backward()
    assert s.grad.abs().sum() > 0 and regressor.weight.grad.abs().sum() > 0 and t.grad is None
    assert hint_loss(randn(0, 5, 6), randn(1, 5, 10), nn.Linear(6, 10)).dim() == 0
    with pytest.raises(ValueError, match="must have the shape of teacher_features"):
        hint_loss(s, t, nn.Conv2d(3, 4, kernel_size=1))
    with pytest.raises(TypeError, match="regressor must be an nn.Module"):
        hint_loss(s, t, None)


# -------------------------------------------------------------------------------- sequence distillation
@FAST
@given(seed=st.integers(0, 10_000), b=st.integers(1, 3), length=st.integers(1, 6), vocab=st.integers(2, 9),
       T=st.floats(0.5, 4))
def test_sequence_kd_all_ones_mask_is_the_token_mean(seed, b, length, vocab, T):
    s, t = randn(seed, b, length, vocab, scale=3), randn(seed + 1, b, length, vocab, scale=3)
    per_token = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True,
                         reduction="none").sum(-1)
    loss = sequence_kd_loss(s, t, torch.ones(b, length), T=T)
    torch.testing.assert_close(loss, T * T * per_token.mean(), rtol=1e-4, atol=1e-6)
    # the same as kd_loss with alpha = 1 over the flattened tokens
    dummy = torch.zeros(b * length, dtype=torch.long)
    torch.testing.assert_close(loss, kd_loss(s.reshape(-1, vocab), t.reshape(-1, vocab), dummy, T, 1.0),
                               rtol=1e-4, atol=1e-6)


def test_sequence_kd_ignores_padded_positions():
    s, t = randn(0, 2, 5, 7), randn(1, 2, 5, 7)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float32)
    loss = sequence_kd_loss(s, t, mask, T=2.0)
    s2, t2 = s.clone(), t.clone()
    s2[0, 3:] = 1e3 * randn(5, 2, 7)
    t2[0, 3:] = -1e3 * randn(6, 2, 7)
    assert sequence_kd_loss(s2, t2, mask.bool(), T=2.0).item() == pytest.approx(loss.item(), rel=1e-6)
    # equal to the mean over the 8 real tokens computed directly
    real = mask.bool()
    direct = 4.0 * F.kl_div(F.log_softmax(s[real] / 2, -1), F.softmax(t[real] / 2, -1), reduction="batchmean")
    torch.testing.assert_close(loss, direct)
    # gradient flows to real positions only
    s3 = s.clone().requires_grad_()
    sequence_kd_loss(s3, t, mask, T=2.0).backward()
    assert s3.grad[0, 3:].abs().sum() == 0 and s3.grad[1].abs().sum() > 0


def test_sequence_kd_errors():
    s, t = randn(0, 2, 3, 4), randn(1, 2, 3, 4)
    with pytest.raises(ValueError, match="mask must mark at least one real token"):
        sequence_kd_loss(s, t, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="mask must contain only 0 and 1"):
        sequence_kd_loss(s, t, torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match=r"mask must have shape \[B, L\]"):
        sequence_kd_loss(s, t, torch.ones(3, 2))
    with pytest.raises(ValueError, match="T must be > 0"):
        sequence_kd_loss(s, t, torch.ones(2, 3), T=-1)
    with pytest.raises(ValueError, match="student_logits must be 3-D"):
        sequence_kd_loss(s[0], t[0], torch.ones(2, 3))
