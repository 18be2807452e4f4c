"""Tests for kdcore.llm.quantize against brute force and the papers' equations."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from kdcore.llm import gpt as G
from kdcore.llm import quantize as Q
from kdcore.llm.eval import hessian


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _layer(out_f=8, in_f=32, n=256, seed=0, dtype=torch.float64, outlier=None):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=g, dtype=dtype)
    # correlated inputs, as in a real layer (GPTQ's update only helps when columns are correlated)
    mix = torch.randn(in_f, in_f, generator=g, dtype=dtype) / math.sqrt(in_f) + torch.eye(in_f, dtype=dtype)
    x = torch.randn(n, in_f, generator=g, dtype=dtype) @ mix
    if outlier is not None:
        x[:, outlier] *= 30.0
    return w, x


# ------------------------------------------------------------------------------ quantize_groupwise
def _brute_groupwise(w, bits, g, symmetric):
    """Element by element from the formulas, one group at a time, in Python floats."""
    out = torch.empty_like(w)
    for r in range(w.shape[0]):
        for c0 in range(0, w.shape[1], g):
            vals = [float(t) for t in w[r, c0:c0 + g]]
            if symmetric:
                qmax = 2 ** (bits - 1) - 1
                scale = max(max(abs(t) for t in vals), 1e-5) / qmax
                deq = [min(max(round(t / scale), -qmax - 1), qmax) * scale for t in vals]
            else:
                qmax = 2 ** bits - 1
                scale = max(max(vals) - min(vals), 1e-5) / qmax
                zero = min(max(-round(min(vals) / scale), 0), qmax)
                deq = [(min(max(round(t / scale) + zero, 0), qmax) - zero) * scale for t in vals]
            out[r, c0:c0 + g] = torch.tensor(deq, dtype=w.dtype)
    return out


@pytest.mark.parametrize("bits,g,symmetric", [(4, 8, False), (3, 16, False), (2, 4, False), (8, None, False),
                                              (4, 8, True), (3, None, True)])
def test_groupwise_matches_the_formulas_element_by_element(bits, g, symmetric):
    w, _ = _layer(6, 16, seed=bits)
    got = Q.quantize_groupwise(w, bits, g, symmetric)
    torch.testing.assert_close(got, _brute_groupwise(w, bits, g or 16, symmetric), rtol=0, atol=1e-12)
    size = g or 16
    assert all(got[r, c:c + size].unique().numel() <= 2 ** bits for r in range(6) for c in range(0, 16, size))


def test_groupwise_groups_run_along_the_input_dimension():
    w = torch.zeros(2, 8)
    w[0, :4] = torch.tensor([0.0, 1.0, 2.0, 3.0])     # group (row 0, cols 0..3): range 3
    w[0, 4:] = torch.tensor([0.0, 10.0, 20.0, 30.0])  # group (row 0, cols 4..7): range 30
    got = Q.quantize_groupwise(w, bits=2, group_size=4)
    torch.testing.assert_close(got[0], w[0])          # 4 levels per group fit both groups exactly
    assert torch.equal(got[1], w[1])


def test_groupwise_rounds_the_zero_point_to_an_integer():
    w = torch.tensor([[-0.37, 0.2, 0.5, 1.13]])
    got = Q.quantize_groupwise(w, bits=2, group_size=4)
    scale = (1.13 + 0.37) / 3
    zero = round(0.37 / scale)                          # 0.74 -> 1
    expected = [(min(max(round(t / scale) + zero, 0), 3) - zero) * scale for t in w[0].tolist()]
    torch.testing.assert_close(got[0], torch.tensor(expected))
    assert (got / scale - torch.round(got / scale)).abs().max() < 1e-5   # 0.0 is on the grid


@pytest.mark.parametrize("kwargs,match", [
    (dict(bits=1), "bits must be in \\[2, 8\\]"), (dict(bits=9), "bits must be in \\[2, 8\\]"),
    (dict(group_size=5), "group_size must divide the input dimension 32"),
    (dict(group_size=0), "group_size must be in"),
])
def test_groupwise_refuses_bad_arguments(kwargs, match):
    w, _ = _layer()
    with pytest.raises(ValueError, match=match):
        Q.quantize_groupwise(w, **kwargs)


def test_groupwise_refuses_nan_and_non_matrices():
    w, _ = _layer()
    w[0, 0] = float("nan")
    with pytest.raises(ValueError, match="w contains NaN"):
        Q.quantize_groupwise(w)
    with pytest.raises(ValueError, match="w must be 2-D"):
        Q.quantize_groupwise(torch.ones(4))


# ------------------------------------------------------------------------------------------ GPTQ
def _gptq_obs(w, H, bits, g, damp):
    """The paper's OBS form (Frantar et al. 2023, eqs. 2-3; no Cholesky): quantize column q, update the
    remaining columns by δ = −(w_q − quant(w_q)) / [H⁻¹]_qq · H⁻¹_{:,q}, then remove q from H⁻¹ by Gaussian
    elimination. Grids as quantize_groupwise, computed when a group's first column is reached."""
    W = w.clone().double()
    H = H.clone().double()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * torch.diag(H).mean() * torch.eye(len(H), dtype=H.dtype)
    Hinv = torch.linalg.inv(H)
    Qm = torch.zeros_like(W)
    for q in range(W.shape[1]):
        if q % g == 0:
            grid = W[:, q:q + g].clone()                           # the group's grid, from current weights
        col = W[:, q:q + 1]
        qcol = _on_grid(col, grid, bits)
        Qm[:, q] = qcol[:, 0]
        err = (col - qcol) / Hinv[q, q]                          # [out, 1]
        W -= err @ Hinv[q:q + 1, :]                               # δ for every column (q itself ends at q̂)
        Hinv = Hinv - Hinv[:, q:q + 1] @ Hinv[q:q + 1, :] / Hinv[q, q]
    return Qm


def _on_grid(col, grid, bits):
    qmax = 2 ** bits - 1
    low, high = grid.amin(1, keepdim=True), grid.amax(1, keepdim=True)
    scale = (high - low).clamp(min=1e-5) / qmax
    zero = torch.clamp(-torch.round(low / scale), 0, qmax)
    return (torch.clamp(torch.round(col / scale) + zero, 0, qmax) - zero) * scale


@pytest.mark.parametrize("bits,g", [(4, None), (3, 8), (2, 16)])
def test_gptq_equals_the_obs_equations(bits, g):
    w, x = _layer(6, 32, seed=bits)
    H = hessian(x).double()
    torch.testing.assert_close(Q.gptq_quantize(w, H, bits, g, 0.01), _gptq_obs(w, H, bits, g or 32, 0.01),
                               rtol=0, atol=1e-9)


def test_gptq_on_a_wide_layer_equals_the_obs_equations():
    w, x = _layer(4, 160, n=400, seed=3)
    H = hessian(x).double()
    torch.testing.assert_close(Q.gptq_quantize(w, H, 3, 32), _gptq_obs(w, H, 3, 32, 0.01), rtol=0, atol=1e-9)


@pytest.mark.parametrize("bits,g", [(4, None), (4, 8), (2, 16), (8, 32)])
def test_gptq_with_identity_hessian_is_rtn(bits, g):
    w, _ = _layer(8, 32, seed=bits)
    torch.testing.assert_close(Q.gptq_quantize(w, torch.eye(32, dtype=w.dtype), bits, g),
                               Q.quantize_groupwise(w, bits, g), rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("bits,g", [(4, None), (3, 8), (2, 16)])
def test_gptq_beats_rtn_on_its_calibration_inputs(seed, bits, g):
    w, x = _layer(16, 32, n=512, seed=seed)
    rtn = Q.layer_output_error(w, Q.quantize_groupwise(w, bits, g), x)
    gptq = Q.layer_output_error(w, Q.gptq_quantize(w, hessian(x).double(), bits, g), x)
    assert gptq < rtn


def test_gptq_dead_inputs_are_zeroed_and_do_not_break_cholesky():
    w, x = _layer(6, 16, seed=1)
    x[:, 3] = 0.0                                             # an input that is always 0
    H = hessian(x).double()
    got = Q.gptq_quantize(w, H, 4, None, damp=0.0)            # H singular without the dead-input fix
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, _gptq_obs(w, H, 4, 16, 0.0), rtol=0, atol=1e-9)


def test_gptq_is_float32_by_default_and_validates():
    w, x = _layer(4, 16, dtype=torch.float32)
    H = hessian(x)
    assert Q.gptq_quantize(w, H).dtype == torch.float32
    with pytest.raises(ValueError, match=r"H must be square \[in, in\] = \[16, 16\]"):
        Q.gptq_quantize(w, H[:8])
    with pytest.raises(ValueError, match=r"H must be square"):
        Q.gptq_quantize(w, torch.eye(8))
    with pytest.raises(ValueError, match="damp must be in"):
        Q.gptq_quantize(w, H, damp=-0.1)
    with pytest.raises(ValueError, match="bits must be in"):
        Q.gptq_quantize(w, H, bits=12)
    with pytest.raises(ValueError, match="group_size must divide"):
        Q.gptq_quantize(w, H, group_size=5)
    bad = H.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="H contains NaN"):
        Q.gptq_quantize(w, bad)
    with pytest.raises(ValueError, match="not positive definite"):
        Q.gptq_quantize(w, -torch.eye(16), damp=0.0)


# ------------------------------------------------------------------------------------------- AWQ
def test_awq_scales_equal_a_brute_force_grid_search():
    w, x = _layer(8, 32, n=128, seed=2, outlier=5)
    s = Q.awq_scales(w, x, bits=3, group_size=8, grid=10)
    a = x.abs().mean(0)
    errors = []
    for k in range(10):
        cand = a.pow(k / 10).clamp(min=1e-4)
        cand = cand / (cand.max() * cand.min()).sqrt()
        w_hat = Q.quantize_groupwise(w * cand, 3, 8) / cand
        errors.append(((x @ w.T - x @ w_hat.T) ** 2).mean().item())
        if k == min(range(len(errors)), key=errors.__getitem__):
            best = cand
    best_k = min(range(10), key=errors.__getitem__)
    expected = a.pow(best_k / 10).clamp(min=1e-4)
    expected = expected / (expected.max() * expected.min()).sqrt()
    torch.testing.assert_close(s, expected)
    torch.testing.assert_close(best, expected)


def test_awq_never_worse_than_rtn_and_helps_with_a_salient_channel():
    w, x = _layer(16, 64, n=256, seed=4, outlier=7)
    s = Q.awq_scales(w, x, bits=3, group_size=32)
    rtn = Q.layer_output_error(w, Q.quantize_groupwise(w, 3, 32), x)
    awq = Q.layer_output_error(w, Q.quantize_groupwise(w * s, 3, 32) / s, x)
    assert awq < 0.8 * rtn                               # the outlier channel is protected
    assert s[7] == s.max()                                # ... by the largest scale
    w2, x2 = _layer(16, 64, n=256, seed=5)
    s2 = Q.awq_scales(w2, x2, bits=4, group_size=16)
    assert Q.layer_output_error(w2, Q.quantize_groupwise(w2 * s2, 4, 16) / s2, x2) <= \
        Q.layer_output_error(w2, Q.quantize_groupwise(w2, 4, 16), x2)


def test_awq_grid_of_one_is_rtn_and_validates():
    w, x = _layer(4, 16)
    torch.testing.assert_close(Q.awq_scales(w, x, grid=1, group_size=8), torch.ones(16, dtype=w.dtype))
    with pytest.raises(ValueError, match=r"x must be \[n >= 1, in = 16\]"):
        Q.awq_scales(w, x[:, :8])
    with pytest.raises(ValueError, match="grid must be in"):
        Q.awq_scales(w, x, group_size=8, grid=0)


# ----------------------------------------------------------------------------------- SmoothQuant
def test_smoothquant_scales_follow_the_formula_and_balance_the_ranges():
    xa = torch.tensor([1.0, 4.0, 100.0, 0.0])
    wa = torch.tensor([0.5, 2.0, 0.1, 1.0])
    for alpha in (0.0, 0.5, 0.8, 1.0):
        s = Q.smoothquant_scales(xa, wa, alpha)
        expected = [max(a ** alpha / b ** (1 - alpha), 1e-5) for a, b in zip(xa.tolist(), wa.tolist())]
        torch.testing.assert_close(s, torch.tensor(expected))
    s = Q.smoothquant_scales(xa, wa, 0.5)
    torch.testing.assert_close((xa / s)[:3], (wa * s)[:3])   # α = 0.5: equal ranges after migration
    s0 = Q.smoothquant_scales(xa, torch.zeros(4), 0.5)      # a zero weight column: clamped, finite
    assert torch.isfinite(s0).all()
    with pytest.raises(ValueError, match="alpha must be in"):
        Q.smoothquant_scales(xa, wa, 1.5)
    with pytest.raises(ValueError, match="same shape"):
        Q.smoothquant_scales(xa, wa[:3])
    with pytest.raises(ValueError, match=">= 0"):
        Q.smoothquant_scales(-xa, wa)


def test_smoothing_rescues_per_tensor_int8_with_an_outlier_channel():
    w, x = _layer(16, 64, n=256, seed=6, dtype=torch.float32, outlier=3)
    x[:, 3] *= 10.0                                       # 300x the other channels
    lin = torch.nn.Linear(64, 16, bias=False)
    lin.weight.data = w.clone()
    plain = Q.FakeQuantLinear(lin)
    s = Q.smoothquant_scales(x.abs().amax(0), w.abs().amax(0), 0.5)
    smooth = Q.FakeQuantLinear(lin, smooth=s)
    ref = x @ w.T
    assert ((smooth(x) - ref) ** 2).mean() < 0.2 * ((plain(x) - ref) ** 2).mean()


# ------------------------------------------------------------------------------- bits accounting
def test_bits_per_weight_counts_scales_and_zero_points():
    assert Q.bits_per_weight(4, 128, 4096) == pytest.approx(4 + (16 + 4) / 128)
    assert Q.bits_per_weight(4, 128, 4096, symmetric=True) == pytest.approx(4 + 16 / 128)
    assert Q.bits_per_weight(8, None, 160) == pytest.approx(8 + 24 / 160)
    assert Q.bits_per_weight(3, 32, 64, zero_bits=16) == pytest.approx(3 + 1.0)
    model = G.GPT(G.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    names = G.block_linear_names(model)
    fp = sum(p.numel() for p in model.parameters()) * 4
    assert Q.quantized_size_bytes(model, names, None) == fp
    linear_w = sum(model.get_submodule(n).weight.numel() for n in names)
    expected = fp - 4 * linear_w + sum(model.get_submodule(n).weight.numel() *
                                       Q.bits_per_weight(4, 16, model.get_submodule(n).in_features) / 8
                                       for n in names)
    assert Q.quantized_size_bytes(model, names, 4, 16) == math.ceil(expected)


# --------------------------------------------------------------------------------- whole models
def _model():
    torch.manual_seed(0)
    model = G.GPT(G.GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def test_model_helpers_leave_the_original_alone_and_quantize_every_block_linear():
    from kdcore.llm.eval import mean_nats
    model = _model()
    before = {k: t.clone() for k, t in model.state_dict().items()}
    batches = [torch.randint(0, 11, (4, 16)) for _ in range(2)]
    windows = torch.randint(0, 11, (8, 17))
    base = mean_nats(model, windows)
    rtn = Q.quantize_model_rtn(model, 3, 8)
    gptq = Q.quantize_model_gptq(model, batches, 3, 8)
    awq = Q.quantize_model_awq(model, batches, 3, 8, grid=5)
    w8a8 = Q.quantize_model_w8a8(model, batches, alpha=0.5)
    for name, t in model.state_dict().items():
        assert torch.equal(t, before[name]), name
    for q in (rtn, gptq, awq):
        for name in G.block_linear_names(model):
            wq = q.get_submodule(name).weight
            assert not torch.equal(wq, model.get_submodule(name).weight)
            # every group holds at most 2^bits distinct values (AWQ: after undoing s, per column scale)
        assert torch.equal(q.wte.weight, model.wte.weight)
    w = rtn.h[0].mlp.c_fc.weight.reshape(-1, 8)
    assert max(row.unique().numel() for row in w) <= 8
    assert all(isinstance(w8a8.get_submodule(n), Q.FakeQuantLinear) for n in G.block_linear_names(model))
    assert abs(mean_nats(w8a8, windows) - base) < 0.05
    assert math.isfinite(mean_nats(gptq, windows))


def test_model_gptq_is_sequential_over_blocks():
    """Block i's Hessians come from the model whose blocks before i are already quantized."""
    from kdcore.llm.eval import collect_inputs
    model = _model()
    batches = [torch.randint(0, 11, (3, 16)) for _ in range(2)]
    got = Q.quantize_model_gptq(model, batches, 3, 8)
    expected = copy.deepcopy(model)
    for i in range(2):
        names = [n for n in G.block_linear_names(expected) if n.startswith(f"h.{i}.")]
        xs = collect_inputs(expected, names, batches)        # whole-model passes, earlier blocks quantized
        with torch.no_grad():
            for name in names:
                layer = expected.get_submodule(name)
                layer.weight.copy_(Q.gptq_quantize(layer.weight, hessian(xs[name]), 3, 8))
    for name in G.block_linear_names(model):
        torch.testing.assert_close(got.get_submodule(name).weight, expected.get_submodule(name).weight)


# ------------------------------------------------------------------------------------ KV cache
def test_kv_quantizers_use_the_right_axes():
    k = torch.randn(1, 2, 8, 4)
    k[..., 1] += 50.0                                     # an outlier channel
    qk = Q.quantize_keys_per_channel(k, 2)
    for c in range(4):                                    # per channel: at most 4 values per (b, h, channel)
        assert qk[0, 0, :, c].unique().numel() <= 4
    qt = Q.quantize_per_token(k, 2)
    for t in range(8):                                    # per token: at most 4 values per (b, h, token)
        assert qt[0, 0, t].unique().numel() <= 4
    assert ((qk - k) ** 2).mean() < ((qt - k) ** 2).mean()   # the outlier channel ruins per-token grids
    assert torch.equal(Q.quantize_values_per_token(k, 2), qt)


def test_quantized_cache_is_causal_and_high_bits_change_nothing():
    from kdcore.llm.eval import mean_nats
    model = _model()
    windows = torch.randint(0, 11, (4, 17))
    base = mean_nats(model, windows)
    eight = mean_nats(model, windows, cache_factory=lambda: Q.QuantizedKVCache(2, bits=8, group=4), chunk=4)
    two = mean_nats(model, windows, cache_factory=lambda: Q.QuantizedKVCache(2, bits=2, group=4), chunk=4)
    assert abs(eight - base) < 2e-3 and abs(two - base) > abs(eight - base)
    # feeding one token at a time reads the same tensors as feeding a group at a time
    one = mean_nats(model, windows, cache_factory=lambda: Q.QuantizedKVCache(2, bits=2, group=4), chunk=1)
    assert one == pytest.approx(two, rel=1e-5)
    # causality: changing later tokens leaves earlier logits unchanged
    x = windows[:, :-1]
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 11
    outs = []
    for inp in (x, y):
        cache = Q.QuantizedKVCache(2, bits=2, group=4)
        outs.append(torch.cat([model(inp[:, i:i + 4], cache=cache) for i in range(0, 16, 4)], 1))
    torch.testing.assert_close(outs[0][:, :10], outs[1][:, :10])
    with pytest.raises(ValueError, match="key_axis"):
        Q.QuantizedKVCache(2, key_axis="row")


def test_kv_cache_bytes_per_token():
    # 2 layers, 64 channels, 4 heads: 256 numbers per token
    assert Q.kv_cache_bytes_per_token(2, 64, 4, None) == 256 * 4
    # 4 bits: 128 bytes; keys per channel: 64/32 = 2 grids, values: 4 grids, per layer, 2 fp16 numbers each
    assert Q.kv_cache_bytes_per_token(2, 64, 4, 4, group=32) == 128 + 2 * (2 + 4) * 4
    assert Q.kv_cache_bytes_per_token(2, 64, 4, 2, key_axis="token") == 64 + 2 * (4 + 4) * 4
    with pytest.raises(ValueError, match="key_axis"):
        Q.kv_cache_bytes_per_token(2, 64, 4, 4, key_axis="row")
