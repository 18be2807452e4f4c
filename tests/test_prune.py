"""kdcore.prune against torch.nn.utils.prune, closed forms and hypothesis properties."""
from __future__ import annotations

import copy

import pytest
import torch
import kdcore as kd
import torch.nn.functional as F
import torch.nn.utils.prune as torch_prune
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kdcore import prune as P
from kdcore.models import DigitsCNN, MLP

SETTINGS = settings(max_examples=40, deadline=None)
shapes = st.lists(st.integers(1, 7), min_size=1, max_size=3).map(tuple)
sparsities = st.floats(0.0, 1.0, allow_nan=False)


def _holder(w: torch.Tensor) -> nn.Module:
    module = nn.Module()
    module.weight = nn.Parameter(w.clone())
    return module


# ------------------------------------------------------------------ magnitude_mask

@SETTINGS
@given(shape=shapes, sparsity=sparsities, seed=st.integers(0, 10_000))
def test_magnitude_mask_equals_torch_l1_unstructured(shape, sparsity, seed):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(seed))  # continuous: no ties
    holder = _holder(w)
    torch_prune.l1_unstructured(holder, "weight", amount=sparsity)
    mask = P.magnitude_mask(w, sparsity)
    assert mask.dtype == torch.bool and mask.shape == w.shape
    assert torch.equal(mask, holder.weight_mask.bool())


@SETTINGS
@given(shape=shapes, sparsity=sparsities, seed=st.integers(0, 10_000), levels=st.integers(1, 4))
def test_magnitude_mask_properties_with_ties(shape, sparsity, seed, levels):
    # few distinct magnitudes and both signs: many ties
    gen = torch.Generator().manual_seed(seed)
    w = torch.randint(-levels, levels + 1, shape, generator=gen).float()
    original = w.clone()
    mask = P.magnitude_mask(w, sparsity)
    assert torch.equal(w, original)  # input not modified
    assert mask.shape == w.shape
    assert int((~mask).sum()) == round(sparsity * w.numel())
    a = w.abs().flatten()
    kept, pruned = a[mask.flatten()], a[~mask.flatten()]
    if kept.numel() and pruned.numel():
        assert pruned.max() <= kept.min()  # the pruned entries are the smallest |w|
        # ties at the threshold: lower flat index pruned first
        at_threshold = (a == pruned.max()).nonzero().flatten()
        flags = mask.flatten()[at_threshold]  # False..False True..True
        assert torch.equal(flags, flags.sort().values)


def test_magnitude_mask_edges_and_dtypes():
    w = torch.randn(4, 5)
    assert P.magnitude_mask(w, 0.0).all()
    assert not P.magnitude_mask(w, 1.0).any()
    assert P.magnitude_mask(torch.tensor([3.0, -1.0, 2.0, -0.5]), 0.5).tolist() == [True, False, True, False]
    # round(0.5 * 5) = 2 (Python rounds half to even), as torch.nn.utils.prune does
    assert int((~P.magnitude_mask(torch.randn(5), 0.5)).sum()) == 2
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        x = torch.randn(50, dtype=torch.float64).to(dtype)
        holder = _holder(x)
        torch_prune.l1_unstructured(holder, "weight", amount=0.3)
        if x.unique().numel() == x.numel():
            assert torch.equal(P.magnitude_mask(x, 0.3), holder.weight_mask.bool())


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_magnitude_mask_rejects_bad_sparsity(bad):
    with pytest.raises(ValueError, match="sparsity"):
        P.magnitude_mask(torch.randn(3), bad)


def test_int_sparsity_is_refused_because_torch_reads_an_int_amount_as_a_count():
    # torch.nn.utils.prune: amount=1 (int) prunes ONE weight, amount=1.0 prunes all of them. kdcore always reads
    # a fraction, so an int other than 0 would be a silent surprise: it is refused, naming both conventions.
    w = torch.randn(4, 5)
    holder = _holder(w.clone())
    torch_prune.l1_unstructured(holder, "weight", amount=1)
    assert int((holder.weight_mask == 0).sum()) == 1                        # torch: a count
    for call in (lambda s: P.magnitude_mask(w, s), lambda s: P.global_magnitude_masks({"w": w}, s),
                 lambda s: P.sparsity_schedule(0, 0.0, s, 0, 1, 1), lambda s: P.sparsity_schedule(0, s, 0.5, 0, 1, 1)):
        for bad in (1, 2, torch.tensor(1)):
            with pytest.raises(TypeError, match=r"(?s)(sparsity|s_final|s_initial).*int.*count"):
                call(bad)
    with pytest.raises(TypeError, match="s_final"):
        P.gradual_prune(MLP((4, 3, 2)), torch.randn(8, 4), torch.randint(0, 2, (8,)), 1, epochs=1)
    # 0 means "nothing" under both readings; 1.0 (a float) is every weight
    assert P.magnitude_mask(w, 0).all() and P.global_magnitude_masks({"w": w}, 0)["w"].all()
    assert P.sparsity_schedule(0, 0, 0.5, 0, 1, 1) == 0.0
    assert not P.magnitude_mask(w, 1.0).any()
    assert P.magnitude_mask(w, torch.tensor(0.5)).sum() == 10                # float tensors are fractions


def test_magnitude_mask_rejects_non_float():
    with pytest.raises(TypeError, match="weight"):
        P.magnitude_mask([1.0, 2.0], 0.5)
    with pytest.raises(TypeError, match="weight"):
        P.magnitude_mask(torch.arange(4), 0.5)


# ------------------------------------------------------------------ global_magnitude_masks

@SETTINGS
@given(shape_list=st.lists(shapes, min_size=1, max_size=4), sparsity=sparsities, seed=st.integers(0, 10_000))
def test_global_masks_equal_torch_global_unstructured(shape_list, sparsity, seed):
    gen = torch.Generator().manual_seed(seed)
    weights = {f"w{i}": torch.randn(s, generator=gen) * (i + 1) for i, s in enumerate(shape_list)}
    originals = {k: w.clone() for k, w in weights.items()}
    holders = [_holder(w) for w in weights.values()]
    torch_prune.global_unstructured([(h, "weight") for h in holders], pruning_method=torch_prune.L1Unstructured,
                                    amount=sparsity)
    masks = P.global_magnitude_masks(weights, sparsity)
    assert list(masks) == list(weights)
    for (name, w), h in zip(weights.items(), holders):
        assert torch.equal(masks[name], h.weight_mask.bool())
        assert torch.equal(w, originals[name])
    total = sum(w.numel() for w in weights.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(sparsity * total)


@SETTINGS
@given(shape_list=st.lists(shapes, min_size=1, max_size=4), sparsity=sparsities, seed=st.integers(0, 10_000))
def test_global_masks_exact_count_with_ties(shape_list, sparsity, seed):
    gen = torch.Generator().manual_seed(seed)
    weights = {f"w{i}": torch.randint(-2, 3, s, generator=gen).float() for i, s in enumerate(shape_list)}
    masks = P.global_magnitude_masks(weights, sparsity)
    flat_w = torch.cat([w.abs().flatten() for w in weights.values()])
    flat_m = torch.cat([m.flatten() for m in masks.values()])
    assert int((~flat_m).sum()) == round(sparsity * flat_w.numel())
    if flat_m.any() and (~flat_m).any():
        assert flat_w[~flat_m].max() <= flat_w[flat_m].min()
        ties = flat_m[flat_w == flat_w[~flat_m].max()]
        assert torch.equal(ties, ties.sort().values)  # lower global index pruned first


def test_global_masks_one_threshold_across_tensors():
    weights = {"small": torch.tensor([0.1, 0.2, 5.0]), "large": torch.tensor([1.0, 2.0, 3.0, 4.0])}
    masks = P.global_magnitude_masks(weights, 3 / 7)
    assert masks["small"].tolist() == [False, False, True]
    assert masks["large"].tolist() == [False, True, True, True]


def test_global_masks_float64_and_validation():
    weights = {"a": torch.randn(30, dtype=torch.float64), "b": torch.randn(20)}
    holders = [_holder(w.double()) for w in weights.values()]
    torch_prune.global_unstructured([(h, "weight") for h in holders], pruning_method=torch_prune.L1Unstructured,
                                    amount=0.6)
    masks = P.global_magnitude_masks(weights, 0.6)
    assert all(torch.equal(masks[k], h.weight_mask.bool()) for k, h in zip(weights, holders))
    with pytest.raises(ValueError, match="weights"):
        P.global_magnitude_masks({}, 0.5)
    with pytest.raises(TypeError, match="weights"):
        P.global_magnitude_masks([torch.randn(3)], 0.5)
    with pytest.raises(ValueError, match="sparsity"):
        P.global_magnitude_masks({"a": torch.randn(3)}, 2.0)


# ------------------------------------------------------------------ prune_neurons

def _zero_units(x: torch.Tensor, keep_idx: torch.Tensor, dim: int = 1) -> torch.Tensor:
    keep = torch.zeros(x.shape[dim], dtype=torch.bool)
    keep[keep_idx] = True
    shape = [1] * x.dim()
    shape[dim] = -1
    return x * keep.view(shape)


@settings(max_examples=25, deadline=None)
@given(n_in=st.integers(1, 8), hidden=st.integers(1, 12), n_out=st.integers(1, 5), data=st.data())
def test_prune_neurons_matches_zeroed_activations_and_torch_choice(n_in, hidden, n_out, data):
    keep = data.draw(st.integers(1, hidden))
    torch.manual_seed(data.draw(st.integers(0, 1000)))
    fc1, fc2 = nn.Linear(n_in, hidden), nn.Linear(hidden, n_out)
    before = copy.deepcopy((fc1.state_dict(), fc2.state_dict()))
    new1, new2 = P.prune_neurons(fc1, fc2, keep)
    assert (new1.in_features, new1.out_features) == (n_in, keep)
    assert (new2.in_features, new2.out_features) == (keep, n_out)
    for module, state in zip((fc1, fc2), before):  # inputs not modified
        assert all(torch.equal(module.state_dict()[k], state[k]) for k in state)
    # the neuron choice equals torch's L1 structured pruning of fc1's rows
    ref = copy.deepcopy(fc1)
    torch_prune.ln_structured(ref, "weight", amount=hidden - keep, n=1, dim=0)
    kept_idx = ref.weight_mask.any(dim=1).nonzero().flatten()
    x = torch.randn(6, n_in)
    expected = fc2(_zero_units(F.relu(fc1(x)), kept_idx))
    torch.testing.assert_close(new2(F.relu(new1(x))), expected)


def test_prune_neurons_ties_keep_lower_index_and_validation():
    fc1, fc2 = nn.Linear(2, 4), nn.Linear(4, 3)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0], [3.0, 0.0], [0.5, 0.5]]))
    new1, new2 = P.prune_neurons(fc1, fc2, 2)  # norms 1, 1, 3, 1 -> keep 0 and 2
    torch.testing.assert_close(new1.weight, fc1.weight[[0, 2]])
    torch.testing.assert_close(new1.bias, fc1.bias[[0, 2]])
    torch.testing.assert_close(new2.weight, fc2.weight[:, [0, 2]])
    torch.testing.assert_close(new2.bias, fc2.bias)
    no_bias = P.prune_neurons(nn.Linear(2, 4, bias=False), nn.Linear(4, 3, bias=False), 3)
    assert no_bias[0].bias is None and no_bias[1].bias is None
    with pytest.raises(ValueError, match="keep"):
        P.prune_neurons(fc1, fc2, 0)
    with pytest.raises(ValueError, match="keep"):
        P.prune_neurons(fc1, fc2, 5)
    with pytest.raises(ValueError, match="in_features"):
        P.prune_neurons(fc1, nn.Linear(5, 3), 2)
    with pytest.raises(TypeError, match="fc1"):
        P.prune_neurons(nn.Conv2d(1, 2, 3), fc2, 2)


# ------------------------------------------------------------------ prune_conv_channels

def _channels_torch_keeps(conv: nn.Module, keep: int) -> torch.Tensor:
    ref = copy.deepcopy(conv)
    torch_prune.ln_structured(ref, "weight", amount=conv.out_channels - keep, n=1, dim=0)
    return ref.weight_mask.flatten(1).any(dim=1).nonzero().flatten()


@pytest.mark.parametrize("keep", [1, 3, 6])
def test_prune_conv_channels_conv_bn_conv(keep):
    torch.manual_seed(keep)
    conv, bn, nxt = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.Conv2d(6, 4, 3, stride=2)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    bn.eval()
    states = [copy.deepcopy(m.state_dict()) for m in (conv, bn, nxt)]
    new_conv, new_next, new_bn = P.prune_conv_channels(conv, nxt, keep, bn=bn)
    assert new_conv.weight.shape == (keep, 3, 3, 3) and new_next.weight.shape == (4, keep, 3, 3)
    assert new_bn.num_features == keep and new_bn.running_var.shape == (keep,)
    assert (new_next.stride, new_conv.padding) == ((2, 2), (1, 1))
    for m, state in zip((conv, bn, nxt), states):
        assert all(torch.equal(m.state_dict()[k], state[k]) for k in state)
    idx = _channels_torch_keeps(conv, keep)
    x = torch.randn(2, 3, 9, 9)
    expected = nxt(_zero_units(F.relu(bn(conv(x))), idx))
    torch.testing.assert_close(new_next(F.relu(new_bn(new_conv(x)))), expected)


def test_prune_conv_channels_digits_cnn_conv_to_linear():
    torch.manual_seed(0)
    model = DigitsCNN()
    x = torch.randn(5, 1, 8, 8)
    conv2, fc, bn = P.prune_conv_channels(model.conv2, model.fc, 32, spatial=16)
    assert bn is None and conv2.weight.shape == (32, 32, 3, 3)
    assert fc.weight.shape == (10, 32 * 16)
    # conv1 → conv2 pair: equals zeroing conv1's dropped channels
    idx1 = _channels_torch_keeps(model.conv1, 16)
    new1, new2, _ = P.prune_conv_channels(model.conv1, model.conv2, 16)
    torch.testing.assert_close(new2(F.relu(new1(x))), model.conv2(_zero_units(F.relu(model.conv1(x)), idx1)))
    # conv2 → maxpool → flatten → fc: equals zeroing conv2's dropped channels
    idx2 = _channels_torch_keeps(model.conv2, 32)
    h = F.relu(model.conv1(x))
    expected = model.fc(F.max_pool2d(_zero_units(F.relu(model.conv2(h)), idx2), 2).flatten(1))
    torch.testing.assert_close(fc(F.max_pool2d(F.relu(conv2(h)), 2).flatten(1)), expected)


def test_prune_conv_channels_validation():
    conv = nn.Conv2d(1, 4, 3)
    with pytest.raises(ValueError, match="keep"):
        P.prune_conv_channels(conv, nn.Conv2d(4, 2, 3), 5)
    with pytest.raises(ValueError, match="in_channels"):
        P.prune_conv_channels(conv, nn.Conv2d(3, 2, 3), 2)
    with pytest.raises(ValueError, match="spatial"):
        P.prune_conv_channels(conv, nn.Linear(4 * 9, 2), 2, spatial=4)
    with pytest.raises(ValueError, match="groups"):
        P.prune_conv_channels(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 2, 3), 2)
    with pytest.raises(ValueError, match="num_features"):
        P.prune_conv_channels(conv, nn.Conv2d(4, 2, 3), 2, bn=nn.BatchNorm2d(3))
    with pytest.raises(TypeError, match="conv"):
        P.prune_conv_channels(nn.Linear(3, 4), nn.Linear(4, 2), 2)


# ------------------------------------------------------------------ apply_masks / masked_sgd_step

def _mlp_and_masks(sparsity=0.8, seed=0):
    torch.manual_seed(seed)
    model = MLP((64, 32, 10))
    weights = {n: p for n, p in model.named_parameters() if p.dim() == 2}
    return model, P.global_magnitude_masks(weights, sparsity)


def test_apply_masks_zeroes_exactly_the_pruned_entries():
    model, masks = _mlp_and_masks()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert P.apply_masks(model, masks) is None
    for name, p in model.named_parameters():
        expected = before[name] * masks[name] if name in masks else before[name]
        assert torch.equal(p.detach(), expected)
    with pytest.raises(ValueError, match="not a parameter"):
        P.apply_masks(model, {"layers.9.weight": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="same shape"):
        P.apply_masks(model, {"layers.0.weight": torch.ones(2, dtype=torch.bool)})


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
    lambda p: torch.optim.Adam(p, lr=1e-2),
    lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
])
def test_masked_sgd_step_keeps_pruned_weights_zero(make_opt):
    model, masks = _mlp_and_masks()
    opt = make_opt(model.parameters())
    # momentum / Adam moments from dense training: they would move pruned weights without the re-zeroing
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for _ in range(5):
        loss = P.masked_sgd_step(model, masks, x, y, opt)
        assert isinstance(loss, float)
    for name, mask in masks.items():
        assert (dict(model.named_parameters())[name][~mask] == 0).all()


def test_masked_sgd_step_plain_sgd_equals_hand_update():
    model, masks = _mlp_and_masks(0.5, seed=1)
    P.apply_masks(model, masks)
    x, y = torch.randn(16, 64), torch.randint(0, 10, (16,))
    ref = copy.deepcopy(model)
    loss_ref = F.cross_entropy(ref(x), y)
    grads = torch.autograd.grad(loss_ref, list(ref.parameters()))
    expected = {n: (p - 0.05 * g).detach() for (n, p), g in zip(ref.named_parameters(), grads)}
    loss = P.masked_sgd_step(model, masks, x, y, torch.optim.SGD(model.parameters(), lr=0.05))
    assert loss == pytest.approx(float(loss_ref.detach()))
    for name, p in model.named_parameters():
        want = expected[name] * masks[name] if name in masks else expected[name]
        torch.testing.assert_close(p.detach(), want)


# ------------------------------------------------------------------ sparsity_schedule

@SETTINGS
@given(s_i=st.floats(0, 1), s_f=st.floats(0, 1), t0=st.integers(0, 100), n=st.integers(1, 50),
       dt=st.integers(1, 20), step=st.integers(-50, 2000))
def test_sparsity_schedule_closed_form(s_i, s_f, t0, n, dt, step):
    t = min(max(step, t0), t0 + n * dt)
    expected = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3
    got = P.sparsity_schedule(step, s_i, s_f, t0, n, dt)
    assert got == pytest.approx(expected, abs=1e-12)
    assert min(s_i, s_f) - 1e-12 <= got <= max(s_i, s_f) + 1e-12


def test_sparsity_schedule_endpoints_and_validation():
    assert P.sparsity_schedule(0, 0.0, 0.9, 10, 10, 5) == 0.0
    assert P.sparsity_schedule(60, 0.0, 0.9, 10, 10, 5) == pytest.approx(0.9)
    assert P.sparsity_schedule(10_000, 0.0, 0.9, 10, 10, 5) == pytest.approx(0.9)
    # halfway in time, 7/8 of the way in sparsity: 0.9·(1 − 0.5³)
    assert P.sparsity_schedule(35, 0.0, 0.9, 10, 10, 5) == pytest.approx(0.9 * 0.875)
    with pytest.raises(ValueError, match="n"):
        P.sparsity_schedule(0, 0.0, 0.9, 0, 0, 1)
    with pytest.raises(ValueError, match="dt"):
        P.sparsity_schedule(0, 0.0, 0.9, 0, 1, 0)
    with pytest.raises(ValueError, match="s_final"):
        P.sparsity_schedule(0, 0.0, 1.2, 0, 1, 1)


# ------------------------------------------------------------------ snip_scores

def test_snip_scores_equal_grad_times_weight_and_leave_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 10))
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    model[0].weight.grad = torch.full_like(model[0].weight, 7.0)  # pre-existing gradient must survive
    state = copy.deepcopy(model.state_dict())
    ref = copy.deepcopy(model)
    ref.zero_grad(set_to_none=True)
    F.cross_entropy(ref(x), y).backward()
    scores = P.snip_scores(model, x, y)
    assert sorted(scores) == ["0.weight", "4.weight"]
    torch.testing.assert_close(scores["0.weight"], (ref[0].weight.grad * ref[0].weight).abs())
    torch.testing.assert_close(scores["4.weight"], (ref[4].weight.grad * ref[4].weight).abs())
    assert model.training and all(torch.equal(model.state_dict()[k], state[k]) for k in state)  # incl. BN stats
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 7.0))
    assert model[4].weight.grad is None
    model.eval()
    P.snip_scores(model, x, y)
    assert not model.training and not model[1].training


# ------------------------------------------------------------------ sparsity_report

def test_sparsity_report_counts_and_torch_pruned_models():
    model, masks = _mlp_and_masks(0.75)
    P.apply_masks(model, masks)
    rows = P.sparsity_report(model)
    assert [r["name"] for r in rows] == ["layers.0.weight", "layers.1.weight", "total"]
    for row in rows[:-1]:
        assert row["zeros"] == int((~masks[row["name"]]).sum())
        assert row["sparsity"] == pytest.approx(row["zeros"] / row["numel"])
    assert rows[-1]["numel"] == 64 * 32 + 32 * 10 and rows[-1]["zeros"] == round(0.75 * (64 * 32 + 32 * 10))
    pruned = nn.Sequential(nn.Linear(10, 10))
    torch_prune.l1_unstructured(pruned[0], "weight", amount=0.3)
    rows = P.sparsity_report(pruned)
    assert rows[0]["name"] == "0.weight" and rows[0]["zeros"] == 30


def test_prunable_weights_are_the_linear_and_conv_weights_only():
    model = kd.models.DigitsCNN()
    names = set(kd.prune.prunable_weights(model))
    expected = {n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1}
    assert names == expected and names   # no biases, no norm layers
    mlp = kd.models.MLP((4, 8, 3))
    assert set(kd.prune.prunable_weights(mlp)) == {n for n, p in mlp.named_parameters() if p.dim() == 2}
    with pytest.raises(TypeError, match="model"):
        kd.prune.prunable_weights({"w": torch.zeros(2, 2)})


def test_gradual_prune_reaches_the_final_sparsity_and_keeps_pruned_weights_at_zero():
    torch.manual_seed(0)
    x, y = torch.randn(256, 16), torch.randint(0, 3, (256,))
    model = kd.models.MLP((16, 32, 3))
    regrown = kd.prune.gradual_prune(model, x, y, 0.8, epochs=3, seed=0, batch_size=32, events=4)
    weights = kd.prune.prunable_weights(model)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    total = sum(w.numel() for w in weights.values())
    assert zeros == round(0.8 * total)
    assert regrown >= 0
    with pytest.raises(ValueError, match="s_final"):
        kd.prune.gradual_prune(model, x, y, 1.5, epochs=1)
