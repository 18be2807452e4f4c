"""kdcore.quantize against NumPy closed forms, scikit-learn's KMeans and, where it is still installed, the
deprecated torch.ao.quantization observers (an optional cross-check: nothing else depends on torch.ao)."""
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans
from torch import nn

try:  # deprecated since torch 2.13 in favour of torchao (issue 16): only an optional cross-check here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver
except ImportError:  # pragma: no cover - a torch without torch.ao.quantization
    MinMaxObserver = PerChannelMinMaxObserver = None

from kdcore.quantize import (dequantize, fake_quantize_model, kmeans_share, quantize_affine,
                             quantize_per_channel, separable_params)

FAST = settings(max_examples=40, deadline=None)
EPS = torch.finfo(torch.float32).eps
needs_torch_ao = pytest.mark.skipif(MinMaxObserver is None, reason="torch.ao.quantization is not installed")


def random_tensor(seed, n, scale, shift):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g) * scale + shift


def observer_qparams(x, symmetric, per_channel=False, axis=0):
    if per_channel:
        obs = PerChannelMinMaxObserver(ch_axis=axis, dtype=torch.qint8 if symmetric else torch.quint8,
                                       qscheme=torch.per_channel_symmetric if symmetric
                                       else torch.per_channel_affine)
    else:
        obs = MinMaxObserver(dtype=torch.qint8 if symmetric else torch.quint8,
                             qscheme=torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine)
    obs(x)
    return obs.calculate_qparams()


def numpy_qparams(x, bits, symmetric):
    """The contract's scale and zero point in NumPy float32 (docs/EXERCISES.md), independent of torch."""
    f32 = np.float32
    lo, hi = min(f32(x.min().item()), f32(0)), max(f32(x.max().item()), f32(0))
    if symmetric:
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        scale = max(max(-lo, hi) / f32((qmax - qmin) / 2), f32(EPS))
        return scale, 0, qmin, qmax
    qmin, qmax = 0, 2 ** bits - 1
    scale = max((hi - lo) / f32(qmax - qmin), f32(EPS))
    zero_point = int(np.clip(qmin - np.round(lo / scale), qmin, qmax))
    return scale, zero_point, qmin, qmax


def numpy_q(x, scale, zero_point, qmin, qmax):
    """Closed form in NumPy: float32 division, np.round (half to even), clip."""
    return np.clip(np.round(x.numpy() / np.float32(scale)) + zero_point, qmin, qmax)


tensors = dict(seed=st.integers(0, 10_000), n=st.integers(1, 200), scale=st.floats(1e-3, 100),
               shift=st.floats(-50, 50))


@FAST
@given(symmetric=st.booleans(), bits=st.sampled_from([2, 4, 8, 16]), **tensors)
def test_matches_the_closed_form(symmetric, bits, seed, n, scale, shift):
    x = random_tensor(seed, n, scale, shift)
    q, s, z = quantize_affine(x, bits=bits, symmetric=symmetric)
    np_scale, np_zp, qmin, qmax = numpy_qparams(x, bits, symmetric)
    assert s == float(np_scale) and z == np_zp
    assert isinstance(s, float) and isinstance(z, int)
    assert q.dtype == torch.int32 and q.shape == x.shape
    np.testing.assert_array_equal(q.numpy(), numpy_q(x, s, z, qmin, qmax))
    # every value lies in the (widened) range, so the round-trip error is at most half a step
    err = (dequantize(q, s, z) - x).abs().max().item()
    assert err <= s / 2 * (1 + 1e-4) + 1e-6 * x.abs().max().item()


@needs_torch_ao
@FAST
@given(symmetric=st.booleans(), **tensors)
def test_bits8_matches_minmax_observer(symmetric, seed, n, scale, shift):
    x = random_tensor(seed, n, scale, shift)
    _, s, z = quantize_affine(x, bits=8, symmetric=symmetric)
    obs_scale, obs_zp = observer_qparams(x, symmetric)
    assert s == obs_scale.item() and z == obs_zp.item()


@needs_torch_ao
def test_edge_cases_match_minmax_observer():
    for x in (torch.zeros(5), torch.tensor([-2.0, -5.0]), torch.tensor([2.0, 3.0, 5.0])):
        for symmetric in (False, True):
            _, s, z = quantize_affine(x, symmetric=symmetric)
            obs_scale, obs_zp = observer_qparams(x, symmetric)
            assert s == obs_scale.item() and z == obs_zp.item()


@needs_torch_ao
def test_a_solution_built_on_minmax_observer_passes_the_grader():
    """The grader judges with kdcore's reference (no torch.ao); a learner who uses the observer still passes."""
    from kdcore.checking import check

    def with_observer(x, bits=8, symmetric=False):
        qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)
        observer = MinMaxObserver(dtype=torch.qint8 if symmetric else torch.quint8,
                                  qscheme=torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine,
                                  quant_min=qmin, quant_max=qmax)
        observer(x)
        scale, zero_point = observer.calculate_qparams()
        q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.int64)
        return q, scale.item(), int(zero_point)

    result = check("quantize_affine", with_observer, raise_on_fail=False, verbose=False)
    assert result.passed, result.feedback


@FAST
@given(symmetric=st.booleans(), bits=st.integers(2, 16), **tensors)
def test_other_bit_widths_stay_in_range(symmetric, bits, seed, n, scale, shift):
    x = random_tensor(seed, n, scale, shift)
    q, s, z = quantize_affine(x, bits=bits, symmetric=symmetric)
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)
    assert qmin <= q.min() and q.max() <= qmax and qmin <= z <= qmax
    # 0.0 is exactly representable (zero padding, ReLU outputs)
    assert dequantize(torch.tensor([z], dtype=torch.int32), s, z).item() == 0.0


def test_round_half_to_even():
    # symmetric 8-bit with max |x| = 127.5 gives scale exactly 1.0, so x / scale are exact halves
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 127.5, -127.5])
    q, s, z = quantize_affine(x, bits=8, symmetric=True)
    assert s == 1.0 and z == 0
    assert q.tolist() == [0, 2, 2, 0, -2, 127, -128]  # 127.5 → 128 → clamped to 127


def test_all_zero_tensor_gets_eps_scale():
    for symmetric in (False, True):
        q, s, z = quantize_affine(torch.zeros(5), symmetric=symmetric)
        assert s == EPS and z == 0
        assert torch.equal(q, torch.zeros(5, dtype=torch.int32))
        assert torch.equal(dequantize(q, s, z), torch.zeros(5))


def test_zero_point_clamping_at_the_ends():
    # an all-positive tensor: the range widens to [0, max], zero_point = qmin
    _, _, z = quantize_affine(torch.tensor([2.0, 3.0, 5.0]), bits=8)
    assert z == 0
    # an all-negative tensor: the range widens to [min, 0], zero_point = qmax
    for bits in (4, 8):
        q, s, z = quantize_affine(torch.tensor([-2.0, -3.0, -5.0]), bits=bits)
        assert z == 2 ** bits - 1 and q.max() <= z


def test_quantize_does_not_mutate_and_validates():
    x = torch.randn(10)
    before = x.clone()
    quantize_affine(x)
    quantize_per_channel(x.reshape(2, 5))
    kmeans_share(x, 3)
    assert torch.equal(x, before)
    with pytest.raises(ValueError, match=r"bits must be in \[2, 16\]"):
        quantize_affine(x, bits=1)
    with pytest.raises(TypeError, match="bits must be an int"):
        quantize_affine(x, bits=8.0)
    with pytest.raises(ValueError, match="x contains NaN"):
        quantize_affine(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="x must have at least one element"):
        quantize_affine(torch.zeros(0))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        quantize_affine(torch.arange(4))
    with pytest.raises(TypeError, match="q must be an integer tensor"):
        dequantize(torch.ones(3), 0.1, 0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        dequantize(torch.ones(3, dtype=torch.int32), 0.0, 0)


# --------------------------------------------------------------------------------------- per channel
@FAST
@given(symmetric=st.booleans(), bits=st.sampled_from([4, 8]), seed=st.integers(0, 10_000), out=st.integers(1, 8),
       inner=st.integers(1, 20))
def test_per_channel_is_per_tensor_on_each_channel(symmetric, bits, seed, out, inner):
    w = torch.randn(out, inner, generator=torch.Generator().manual_seed(seed)) * torch.logspace(-3, 1, out)[:, None]
    q, s, z = quantize_per_channel(w, bits=bits, axis=0, symmetric=symmetric)
    for c in range(out):
        q_c, s_c, z_c = quantize_affine(w[c], bits=bits, symmetric=symmetric)
        assert torch.equal(q[c], q_c) and s[c, 0].item() == s_c and z[c, 0].item() == z_c


@needs_torch_ao
@FAST
@given(symmetric=st.booleans(), seed=st.integers(0, 10_000), out=st.integers(1, 8), inner=st.integers(1, 20),
       axis=st.integers(0, 1))
def test_per_channel_matches_observer(symmetric, seed, out, inner, axis):
    g = torch.Generator().manual_seed(seed)
    # channels with very different ranges, as in real layers
    w = torch.randn(out, inner, generator=g) * torch.logspace(-3, 1, out).unsqueeze(1)
    if axis == 1:
        w = w.t().contiguous()
    q, s, z = quantize_per_channel(w, bits=8, axis=axis, symmetric=symmetric)
    obs_scale, obs_zp = observer_qparams(w, symmetric, per_channel=True, axis=axis)
    assert torch.equal(s.flatten(), obs_scale) and torch.equal(z.flatten(), obs_zp)
    assert q.dtype == torch.int32 and q.shape == w.shape
    keep = [1, 1]
    keep[axis] = out
    assert list(s.shape) == keep and list(z.shape) == keep
    w_hat = dequantize(q, s, z)
    # each channel's error is at most half of its own step
    assert ((w_hat - w).abs() <= s / 2 * (1 + 1e-4) + 1e-7).all()
    # PyTorch's own fake-quantization agrees to within one step (it multiplies by 1/scale, which can
    # flip a rounding tie)
    ref = torch.fake_quantize_per_channel_affine(w, obs_scale, obs_zp.int(), axis,
                                                 -128 if symmetric else 0, 127 if symmetric else 255)
    assert ((ref - w_hat).abs() <= s * (1 + 1e-4)).all()


def test_per_channel_beats_per_tensor_on_uneven_channels():
    w = torch.randn(4, 64) * torch.tensor([[0.01], [0.1], [1.0], [10.0]])
    per_tensor = dequantize(*quantize_affine(w, symmetric=True))
    per_channel = dequantize(*quantize_per_channel(w))
    assert (per_channel - w).pow(2).mean() < (per_tensor - w).pow(2).mean()
    with pytest.raises(ValueError, match="axis must be in"):
        quantize_per_channel(w, axis=2)


# ------------------------------------------------------------------------------------ fake quantization
def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.ConvTranspose2d(8, 4, 2), nn.Flatten(),
                         nn.Linear(4 * 7 * 7, 5))


def test_fake_quantize_model_copies_and_quantizes_every_weight():
    model = small_net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fq = fake_quantize_model(model, bits=8, per_channel=True, symmetric=True)
    assert fq is not model
    for key, value in model.state_dict().items():  # the input is untouched
        assert torch.equal(value, state[key])
    for (name, m), m_q in zip(model.named_modules(), fq.modules()):
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            axis = 1 if isinstance(m, nn.ConvTranspose2d) else 0
            expected = dequantize(*quantize_per_channel(m.weight.detach(), axis=axis))
            assert torch.equal(m_q.weight, expected), name
            assert torch.equal(m_q.bias, m.bias)  # biases stay float
            assert not torch.equal(m_q.weight, m.weight)
            # at most 256 levels per output channel
            per_channel = m_q.weight.detach().movedim(axis, 0).flatten(1)
            assert max(len(row.unique()) for row in per_channel) <= 256
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(fq(x), model(x), atol=0.05, rtol=0.05)


def test_fake_quantize_model_per_tensor_and_percentile():
    model = nn.Sequential(nn.Linear(200, 3))
    with torch.no_grad():
        model[0].weight[0, 0] = 25.0  # one outlier
    w = model[0].weight.detach()
    fq = fake_quantize_model(model, bits=4, per_channel=False, symmetric=False)
    assert torch.equal(fq[0].weight, dequantize(*quantize_affine(w, bits=4)))
    # percentile 100 is min-max
    assert torch.equal(fake_quantize_model(model, calibration="percentile", percentile=100.0)[0].weight,
                      fake_quantize_model(model)[0].weight)
    # clipping the outlier channel's range saturates the outlier but quantizes the rest more finely
    minmax = fake_quantize_model(model, bits=4)[0].weight
    clipped = fake_quantize_model(model, bits=4, calibration="percentile", percentile=99.0)[0].weight
    assert clipped[0, 0] < 25.0
    bulk = torch.ones_like(w, dtype=torch.bool)
    bulk[0, 0] = False
    assert (clipped - w)[bulk].pow(2).mean() < (minmax - w)[bulk].pow(2).mean()
    with pytest.raises(ValueError, match="calibration must be one of"):
        fake_quantize_model(model, calibration="mse")
    with pytest.raises(ValueError, match=r"percentile must be in \(50, 100\]"):
        fake_quantize_model(model, calibration="percentile", percentile=120)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        fake_quantize_model(w)


# -------------------------------------------------------------------------------------- weight sharing
@pytest.mark.parametrize("k", [2, 4, 8, 16])
def test_kmeans_matches_sklearn_lloyd_with_linear_init(k):
    w = torch.randn(30, 40, generator=torch.Generator().manual_seed(k))
    codebook, indices = kmeans_share(w, k, iters=100)
    assert codebook.shape == (k,) and codebook.dtype == torch.float32
    assert indices.shape == w.shape and indices.dtype == torch.int64
    init = np.linspace(w.min().item(), w.max().item(), k).reshape(-1, 1)
    km = KMeans(k, init=init, n_init=1, max_iter=100, tol=0.0, algorithm="lloyd").fit(
        w.double().numpy().reshape(-1, 1))
    np.testing.assert_allclose(codebook.numpy(), km.cluster_centers_.ravel(), atol=1e-5)
    # every weight points at its nearest centroid
    dist = (w.unsqueeze(-1) - codebook).abs()
    torch.testing.assert_close(dist.gather(-1, indices.unsqueeze(-1)).squeeze(-1), dist.min(-1).values)


def test_kmeans_error_decreases_with_codebook_size_and_iterations():
    w = torch.randn(2000, generator=torch.Generator().manual_seed(0)) ** 3  # heavy-tailed, like weights

    def mse(k, iters=20):
        codebook, indices = kmeans_share(w, k, iters)
        return (codebook[indices] - w).pow(2).mean().item()

    by_k = [mse(k) for k in (2, 4, 8, 16, 32)]
    assert all(a > b for a, b in zip(by_k, by_k[1:]))
    by_iters = [mse(8, i) for i in (0, 1, 5, 20)]
    assert all(a >= b for a, b in zip(by_iters, by_iters[1:])) and by_iters[-1] < by_iters[0]


def test_kmeans_edge_cases():
    # the middle centroid (5.0) gets no weight and keeps its value
    codebook, indices = kmeans_share(torch.tensor([0.0, 0.0, 0.0, 10.0]), 3)
    assert codebook.tolist() == [0.0, 5.0, 10.0] and indices.tolist() == [0, 0, 0, 2]
    codebook, indices = kmeans_share(torch.tensor([1.0, 2.0, 6.0]), 1)
    assert codebook.tolist() == [3.0]
    w = torch.randn(5, 7)
    a, b = kmeans_share(w, 4), kmeans_share(w, 4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # deterministic
    with pytest.raises(ValueError, match=r"k must be in \[1, inf\]"):
        kmeans_share(w, 0)


@FAST
@given(c_in=st.integers(1, 16), c_out=st.integers(1, 16), k=st.integers(1, 5))
def test_separable_params_count_real_layers(c_in, c_out, k):
    def n(*layers):
        return sum(p.numel() for layer in layers for p in layer.parameters())

    standard = nn.Conv2d(c_in, c_out, k, bias=False)
    depthwise = nn.Conv2d(c_in, c_in, k, groups=c_in, bias=False)
    pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
    assert separable_params(c_in, c_out, k) == (n(standard), n(depthwise, pointwise))


def test_separable_params_validates():
    with pytest.raises(ValueError, match="c_in must be"):
        separable_params(0, 3, 3)
    with pytest.raises(TypeError, match="k must be an int"):
        separable_params(3, 3, 3.0)


@pytest.fixture(autouse=True)
def _quiet_deprecations():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield
