"""kdcore.llm.distill against independent references: F.kl_div, float64 brute force, closed forms."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from kdcore.distill import sequence_kd_loss
from kdcore.llm.distill import generalized_jsd_loss, reverse_kl_loss, topk_kd_loss

FAST = settings(max_examples=25, deadline=None)


def randn(seed, *shape, scale=1.0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


def random_mask(seed, B, L):
    """Rows of different lengths, every row with at least one real token."""
    lengths = torch.randint(1, L + 1, (B,), generator=torch.Generator().manual_seed(seed + 7))
    return torch.arange(L)[None, :] < lengths[:, None]


def masked_mean(per_token, mask):
    return per_token[mask.bool()].mean()


# ------------------------------------------------------------------------ independent references
def reference_reverse_kl(s, t, mask, T):
    """F.kl_div(input, target) = Σ target·(log target − input) = KL(target ‖ exp(input)): the student is
    the target argument for the reverse direction KL(q ‖ p)."""
    per = F.kl_div(F.log_softmax(t / T, -1), F.log_softmax(s / T, -1), reduction="none", log_target=True).sum(-1)
    return T * T * masked_mean(per, mask)


def reference_forward_kl(s, t, mask, T):
    per = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction="none", log_target=True).sum(-1)
    return T * T * masked_mean(per, mask)


def brute_force_gjsd(s, t, mask, beta, T):
    """Eq. (1) of Agarwal et al. (2024) written with probabilities, in float64, one term at a time."""
    p = torch.softmax(t.double() / T, -1)            # teacher
    q = torch.softmax(s.double() / T, -1)            # student
    m = beta * p + (1 - beta) * q
    kl_pm = (p * (p.log() - m.log())).sum(-1)
    kl_qm = (q * (q.log() - m.log())).sum(-1)
    return T * T * masked_mean(beta * kl_pm + (1 - beta) * kl_qm, mask)


def brute_force_topk(s, t, k, mask, T):
    """Teacher renormalised over its top k, as a full-vocabulary distribution with zeros elsewhere; F.kl_div
    treats target zeros as 0·log 0 = 0."""
    p = torch.softmax(t.double() / T, -1)
    top = p.topk(k, dim=-1)
    p_tilde = torch.zeros_like(p).scatter(-1, top.indices, top.values / top.values.sum(-1, keepdim=True))
    per = F.kl_div(F.log_softmax(s.double() / T, -1), p_tilde, reduction="none").sum(-1)
    return T * T * masked_mean(per, mask)


shapes = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(2, 11))


# ------------------------------------------------------------------------------------- reverse KL
@FAST
@given(seed=st.integers(0, 10_000), shape=shapes, T=st.floats(0.3, 8.0), scale=st.sampled_from([1.0, 5.0, 50.0]))
def test_reverse_kl_matches_f_kl_div(seed, shape, T, scale):
    B, L, V = shape
    s, t, m = randn(seed, B, L, V, scale=scale), randn(seed + 1, B, L, V, scale=scale), random_mask(seed, B, L)
    torch.testing.assert_close(reverse_kl_loss(s, t, m, T), reference_reverse_kl(s, t, m, T), rtol=1e-4, atol=1e-5)


def test_reverse_kl_gradient_reaches_the_student_only_and_equals_the_reference():
    s = randn(0, 2, 4, 6).requires_grad_()
    t = randn(1, 2, 4, 6, scale=3.0).requires_grad_()
    m = random_mask(0, 2, 4)
    reverse_kl_loss(s, t, m, T=2.0).backward()
    assert t.grad is None
    s_ref = s.detach().clone().requires_grad_()
    reference_reverse_kl(s_ref, t.detach(), m, 2.0).backward()
    torch.testing.assert_close(s.grad, s_ref.grad)


def test_reverse_and_forward_kl_differ_and_are_zero_only_at_equality():
    s, t, m = randn(3, 2, 3, 5), randn(4, 2, 3, 5, scale=2.0), torch.ones(2, 3)
    rev, fwd = reverse_kl_loss(s, t, m).item(), sequence_kd_loss(s, t, m).item()
    assert rev > 0 and fwd > 0 and abs(rev - fwd) > 1e-3          # KL is not symmetric
    assert reverse_kl_loss(t, t, m).item() == pytest.approx(0.0, abs=1e-6)
    # a constant added to every logit of a position changes no probability
    shift = randn(5, 2, 3, 1, scale=100.0)
    torch.testing.assert_close(reverse_kl_loss(s + shift, t, m), reverse_kl_loss(s, t, m), rtol=1e-4, atol=1e-5)


def test_reverse_kl_is_mode_seeking_on_a_two_mode_teacher():
    """A student that sits on one of two equal modes pays log 2 in reverse KL but +inf-like in forward KL."""
    t = torch.log(torch.tensor([0.5, 0.5, 1e-9, 1e-9]))[None, None]
    one_mode = torch.log(torch.tensor([1 - 3e-6, 1e-6, 1e-6, 1e-6]))[None, None]
    m = torch.ones(1, 1)
    assert reverse_kl_loss(one_mode, t, m).item() == pytest.approx(math.log(2), abs=1e-3)
    assert sequence_kd_loss(one_mode, t, m).item() > 5.0


def test_padding_never_counts():
    s, t = randn(6, 2, 5, 7), randn(7, 2, 5, 7)
    m = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    s2, t2 = s.clone(), t.clone()
    s2[0, 3:], t2[0, 3:] = 1e3, -1e3                               # garbage in the padded positions
    for loss in (reverse_kl_loss, generalized_jsd_loss):
        torch.testing.assert_close(loss(s2, t2, m), loss(s, t, m))
        torch.testing.assert_close(loss(s, t, m), loss(s, t, m.bool()))
        torch.testing.assert_close(loss(s, t, m), loss(s, t, m.float()))
    # the mean is over the 8 real positions: a per-position sum divided by 8
    per = F.kl_div(F.log_softmax(t, -1), F.log_softmax(s, -1), reduction="none", log_target=True).sum(-1)
    assert reverse_kl_loss(s, t, m).item() == pytest.approx((per * m).sum().item() / 8, rel=1e-5)


def test_finite_for_huge_logits():
    s, t, m = randn(8, 2, 3, 9, scale=1e3), randn(9, 2, 3, 9, scale=1e3), torch.ones(2, 3)
    for value in (reverse_kl_loss(s, t, m, 2.0), generalized_jsd_loss(s, t, m, 0.3, 2.0)):
        assert torch.isfinite(value)


# ------------------------------------------------------------------------------ generalized JSD
@FAST
@given(seed=st.integers(0, 10_000), shape=shapes, T=st.floats(0.5, 4.0),
       beta=st.floats(0.01, 0.99), scale=st.sampled_from([1.0, 4.0]))
def test_gjsd_matches_brute_force(seed, shape, T, beta, scale):
    B, L, V = shape
    s, t, m = randn(seed, B, L, V, scale=scale), randn(seed + 1, B, L, V, scale=scale), random_mask(seed, B, L)
    got = generalized_jsd_loss(s, t, m, beta=beta, T=T)
    torch.testing.assert_close(got.double(), brute_force_gjsd(s, t, m, beta, T), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gjsd_limits_beta_to_0_is_forward_kl_and_beta_to_1_is_reverse_kl(seed):
    """Agarwal et al. (2024) after Huszár (2015): JSD(β)/β → KL(p ‖ q) as β → 0 (p = teacher) and
    JSD(β)/(1 − β) → KL(q ‖ p) as β → 1.  Checked numerically in float64 with β = 1e-7 from each end."""
    s, t = randn(seed, 2, 3, 8, dtype=torch.float64), randn(seed + 9, 2, 3, 8, scale=2.0, dtype=torch.float64)
    m = random_mask(seed, 2, 3)
    fwd, rev = reference_forward_kl(s, t, m, 1.0), reference_reverse_kl(s, t, m, 1.0)
    eps = 1e-7
    near0, near1 = generalized_jsd_loss(s, t, m, beta=eps), generalized_jsd_loss(s, t, m, beta=1 - eps)
    torch.testing.assert_close(near0 / eps, fwd, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(near1 / eps, rev, rtol=1e-5, atol=1e-9)
    assert abs(fwd.item() - rev.item()) > 1e-2                     # the two limits are different numbers
    # JSD(β) itself vanishes at both ends; the endpoints are defined as the KLs themselves (TRL's convention)
    assert near0.item() < 1e-5 and near1.item() < 1e-5
    torch.testing.assert_close(generalized_jsd_loss(s, t, m, beta=0.0), fwd)
    torch.testing.assert_close(generalized_jsd_loss(s, t, m, beta=1), rev)


def test_gjsd_at_one_half_is_the_symmetric_jsd_bounded_by_log_2():
    s, t, m = randn(10, 3, 4, 6, scale=20.0), randn(11, 3, 4, 6, scale=20.0), torch.ones(3, 4)
    a, b = generalized_jsd_loss(s, t, m, 0.5), generalized_jsd_loss(t, s, m, 0.5)
    torch.testing.assert_close(a, b)
    assert 0 < a.item() <= math.log(2) + 1e-6
    # swapping the roles of teacher and student is the same as β ↔ 1 − β
    torch.testing.assert_close(generalized_jsd_loss(s, t, m, 0.2), generalized_jsd_loss(t, s, m, 0.8))


def test_gjsd_gradient_reaches_the_student_only():
    s, t = randn(12, 2, 3, 5).requires_grad_(), randn(13, 2, 3, 5).requires_grad_()
    m = torch.ones(2, 3)
    generalized_jsd_loss(s, t, m, beta=0.3, T=2.0).backward()
    assert t.grad is None and s.grad is not None and s.grad.abs().sum() > 0
    s_ref = s.detach().double().requires_grad_()
    brute_force_gjsd(s_ref, t.detach(), m, 0.3, 2.0).backward()
    torch.testing.assert_close(s.grad.double(), s_ref.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("beta", [-0.1, 1.5, float("nan")])
def test_gjsd_rejects_beta_outside_unit_interval(beta):
    s = randn(0, 1, 2, 3)
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd_loss(s, s, torch.ones(1, 2), beta=beta)


# ------------------------------------------------------------------------------------------ top-k
@FAST
@given(seed=st.integers(0, 10_000), shape=shapes, T=st.floats(0.5, 4.0), data=st.data())
def test_topk_matches_brute_force_renormalised_teacher(seed, shape, T, data):
    B, L, V = shape
    k = data.draw(st.integers(1, V))
    s, t, m = randn(seed, B, L, V, scale=3.0), randn(seed + 1, B, L, V, scale=3.0), random_mask(seed, B, L)
    values, indices = t.topk(k, dim=-1)
    got = topk_kd_loss(s, values, indices, m, T)
    torch.testing.assert_close(got.double(), brute_force_topk(s, t, k, m, T), rtol=1e-4, atol=1e-6)


def test_topk_full_vocabulary_is_forward_kl_and_top1_is_cross_entropy_on_the_argmax():
    s, t, m = randn(20, 2, 4, 7), randn(21, 2, 4, 7, scale=3.0), random_mask(1, 2, 4)
    values, indices = t.topk(7, dim=-1)
    torch.testing.assert_close(topk_kd_loss(s, values, indices, m, 2.0), sequence_kd_loss(s, t, m, 2.0))
    values, indices = t.topk(1, dim=-1)
    ce = F.cross_entropy((s / 2.0)[m.bool()], t.argmax(-1)[m.bool()])
    torch.testing.assert_close(topk_kd_loss(s, values, indices, m, 2.0), 4.0 * ce)


def test_topk_accepts_log_probabilities_and_any_order_of_the_k_entries():
    s, t, m = randn(22, 2, 3, 9), randn(23, 2, 3, 9), torch.ones(2, 3)
    values, indices = t.topk(4, dim=-1)
    reference = topk_kd_loss(s, values, indices, m)
    log_probs = F.log_softmax(t, -1).gather(-1, indices)            # stored as log-probabilities instead
    torch.testing.assert_close(topk_kd_loss(s, log_probs, indices, m), reference)
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(topk_kd_loss(s, values[..., perm], indices[..., perm], m), reference)


def test_topk_missing_mass_goes_to_the_stored_tokens_and_the_tail_is_pushed_down():
    """p̃ = p / Σ_top-k p on the stored tokens, 0 elsewhere: the gradient on every unstored token's logit
    is T·q_j / (number of real tokens) > 0, so gradient descent lowers the tail."""
    T = 2.0
    s = randn(24, 1, 2, 6).requires_grad_()
    t = randn(25, 1, 2, 6, scale=2.0)
    m = torch.ones(1, 2)
    values, indices = t.topk(3, dim=-1)
    topk_kd_loss(s, values, indices, m, T).backward()
    q = torch.softmax(s.detach() / T, -1)
    tail = torch.ones_like(q, dtype=torch.bool).scatter(-1, indices, False)
    torch.testing.assert_close(s.grad[tail], (T * q / 2)[tail])
    # the minimiser is the renormalised teacher: its loss is 0, the untruncated teacher's is not
    p = torch.softmax(t / T, -1)
    p_tilde = torch.zeros_like(p).scatter(-1, indices, p.gather(-1, indices))
    p_tilde = p_tilde / p_tilde.sum(-1, keepdim=True)
    at_p_tilde = topk_kd_loss(T * (p_tilde + 1e-30).log(), values, indices, m, T)
    at_p = topk_kd_loss(t, values, indices, m, T)
    assert at_p_tilde.item() == pytest.approx(0.0, abs=1e-5)
    missing = 1 - p.gather(-1, indices).sum(-1)                      # teacher mass not stored, per position
    # KL(p̃ ‖ p) restricted to the k tokens = log(1 / stored mass) = -log(1 - missing)
    assert at_p.item() == pytest.approx((T * T * -torch.log1p(-missing)).mean().item(), rel=1e-4)


def test_topk_validation():
    s = randn(0, 1, 2, 5)
    values, indices = randn(1, 1, 2, 3), torch.tensor([[[0, 1, 2], [4, 3, 2]]])
    m = torch.ones(1, 2)
    with pytest.raises(ValueError, match="larger than the vocabulary"):
        topk_kd_loss(s, randn(1, 1, 2, 6), torch.arange(6).repeat(1, 2, 1), m)
    with pytest.raises(ValueError, match=r"topk_indices must be token ids in \[0, 4\]"):
        topk_kd_loss(s, values, indices + 1, m)
    with pytest.raises(ValueError, match="distinct"):
        topk_kd_loss(s, values, torch.tensor([[[0, 1, 1], [4, 3, 2]]]), m)
    with pytest.raises(TypeError, match="topk_indices must be an integer"):
        topk_kd_loss(s, values, indices.float(), m)
    with pytest.raises(ValueError, match="same shape"):
        topk_kd_loss(s, values[..., :2], indices, m)
    with pytest.raises(ValueError, match="mask"):
        topk_kd_loss(s, values, indices, torch.zeros(1, 2))
    assert torch.isfinite(topk_kd_loss(s, values, indices, m))


# ------------------------------------------------------------------------------ shared validation
@pytest.mark.parametrize("loss", [reverse_kl_loss, generalized_jsd_loss])
def test_losses_reject_bad_input_with_the_argument_named(loss):
    s, t, m = randn(0, 2, 3, 5), randn(1, 2, 3, 5), torch.ones(2, 3)
    with pytest.raises(ValueError, match="same vocabulary size"):
        loss(s, randn(1, 2, 3, 6), m)
    with pytest.raises(ValueError, match="same shape"):
        loss(s, randn(1, 2, 4, 5), m)
    with pytest.raises(ValueError, match="at least one real token"):
        loss(s, t, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="mask must contain only 0 and 1"):
        loss(s, t, torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match=r"mask must have shape \[B, L\]"):
        loss(s, t, torch.ones(3, 2))
    with pytest.raises(ValueError, match="T must be > 0"):
        loss(s, t, m, T=0.0)
    with pytest.raises(ValueError, match="student_logits contains NaN"):
        loss(torch.full_like(s, float("nan")), t, m)
    with pytest.raises(ValueError, match="teacher_logits must be 3-D"):
        loss(s, t[0], m)
    with pytest.raises(TypeError, match="student_logits must be a torch.Tensor"):
        loss(s.tolist(), t, m)
