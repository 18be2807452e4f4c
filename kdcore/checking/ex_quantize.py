"""Cases and misconception catalogue of the quantization exercises (notebook 09)."""
from __future__ import annotations

import torch
from torch import nn
from torch.ao.quantization import MinMaxObserver

from .cases import call_case, gen, randn
from .core import (Case, Exercise, Observation, Variant, changed, compare_obs, compare_values, register,
                   tensor_snapshot, type_name, MUTATION_HINT)

EPS = torch.finfo(torch.float32).eps


# ===================================================================================================
# quantize_affine
# ===================================================================================================
def _as_number(value):
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def _qa_case(name: str, build, **kwargs) -> Case:
    def observe(fn):
        x = build()
        before = tensor_snapshot(x)
        out = fn(x, **kwargs)
        return {"mutated": changed(before, x), "out": out}

    def compare(cand: Observation, ref: Observation):
        if cand.get("mutated") != ref["mutated"]:
            return "x was modified", MUTATION_HINT
        out, r = cand.get("out"), ref["out"]
        if not isinstance(out, list) or len(out) != 3:
            return f"expected a tuple (q, scale, zero_point), got {type_name(out)}", None
        q, scale, zp = out
        rq, rscale, rzp = r
        if not isinstance(q, torch.Tensor) or q.shape != rq.shape:
            return f"q: expected a tensor of shape {tuple(rq.shape)}, got {type_name(q)}", None
        if q.is_floating_point() != rq.is_floating_point():
            return (f"q has dtype {str(q.dtype).replace('torch.', '')}, expected an integer tensor",
                    "return q as integers: torch.round(...).clamp(qmin, qmax).to(torch.int32)")
        s, z = _as_number(scale), _as_number(zp)
        if s is None or z is None:
            return f"scale and zero_point must be numbers, got {type_name(scale)} and {type_name(zp)}", None
        if float(z) != round(float(z)) and float(rzp) == round(float(rzp)):
            return (f"zero_point = {z:.6g} is not an integer",
                    "the zero point is an integer: qmin − round(min / scale) (then clamped to [qmin, qmax])")
        failure = compare_values(float(s), float(rscale), what="scale", rtol=1e-5, atol=1e-12)
        if failure:
            return failure
        if z != rzp:
            return f"zero_point: expected {rzp}, got {z}", None
        diff = (q.double() - rq.double()).abs()
        # float32 vs float64 arithmetic may flip a value sitting exactly between two levels: allow a few ±1
        if diff.max() > 1 or int((diff > 0).sum()) > max(1, rq.numel() // 100):
            return (f"q: {int((diff > 0).sum())} of {rq.numel()} values differ (max difference "
                    f"{diff.max().item():.0f})", None)
        return None
    return Case(name, observe, compare)


def _qa_cases() -> list[Case]:
    return [
        _qa_case("random [4, 8], 8-bit asymmetric", lambda: randn(4, 8, seed=181, scale=2) + 0.5, bits=8,
                 symmetric=False),
        _qa_case("random [4, 8], 8-bit symmetric", lambda: randn(4, 8, seed=182, scale=2) + 0.5, bits=8,
                 symmetric=True),
        _qa_case("4-bit asymmetric, [20]", lambda: randn(20, seed=183), bits=4, symmetric=False),
        _qa_case("all positive (the range is widened to include 0)",
                 lambda: torch.rand(3, 5, generator=gen(184)) + 1.0, bits=8, symmetric=False),
        _qa_case("all negative, asymmetric", lambda: -torch.rand(3, 5, generator=gen(185)) - 0.5, bits=8,
                 symmetric=False),
        _qa_case("all zeros: scale = float32 eps", lambda: torch.zeros(2, 3), bits=8, symmetric=False),
        _qa_case("symmetric with |min| > max", lambda: randn(30, seed=186) - 1.5, bits=8, symmetric=True),
        _qa_case("3-bit symmetric [5, 5]", lambda: randn(5, 5, seed=187), bits=3, symmetric=True),
        _qa_case("one outlier, 8-bit asymmetric",
                 lambda: torch.cat([randn(40, seed=188) * 0.1, torch.tensor([8.0])]), bits=8, symmetric=False),
        _qa_case("defaults (bits=8, asymmetric), called without them", lambda: randn(6, 6, seed=189)),
    ]


def _qrange(bits, symmetric):
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)


def _qa_generic(x, bits=8, symmetric=False, *, widen=True, clamp_zp=True, round_zp=True, eps=True,
                sym_div=None, rounding=torch.round, cast=True, qrange=None, scale_div=None):
    qmin, qmax = qrange or _qrange(bits, symmetric)
    lo, hi = x.min().item(), x.max().item()
    if widen:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    lo32, hi32 = torch.tensor(lo), torch.tensor(hi)
    if symmetric:
        scale = torch.maximum(-lo32, hi32) / (sym_div if sym_div is not None else (qmax - qmin) / 2)
        zp = 0
    else:
        scale = (hi32 - lo32) / (scale_div if scale_div is not None else (qmax - qmin))
    if eps:
        scale = torch.clamp(scale, min=EPS)
    if not symmetric:
        zp = qmin - (torch.round(lo32 / scale) if round_zp else lo32 / scale)
        zp = int(zp.clamp(qmin, qmax)) if clamp_zp and round_zp else (int(zp) if round_zp else float(zp))
    q = torch.clamp(rounding(x / scale) + zp, qmin, qmax)
    return (q.to(torch.int32) if cast else q), float(scale), zp


def _qa_float_q(x, bits=8, symmetric=False):
    return _qa_generic(x, bits, symmetric, cast=False)


def _qa_trunc(x, bits=8, symmetric=False):
    return _qa_generic(x, bits, symmetric, rounding=torch.trunc)


def _qa_floor(x, bits=8, symmetric=False):
    return _qa_generic(x, bits, symmetric, rounding=torch.floor)


def _qa_not_widened(x, bits=8, symmetric=False):
    return _qa_generic(x, bits, symmetric, widen=False)


def _qa_zp_unclamped(x, bits=8, symmetric=False):
    return _qa_generic(x, bits, symmetric, widen=False, clamp_zp=False)


def _qa_zp_float(x, bits=8, symmetric=False):
    return _qa_generic(x, bits, symmetric, round_zp=False)


def _qa_sym_127(x, bits=8, symmetric=False):
    return _qa_generic(x, bits, symmetric, sym_div=2 ** (bits - 1) - 1)


def _qa_sym_unsigned(x, bits=8, symmetric=False):
    if not symmetric:
        return _qa_generic(x, bits, symmetric)
    qmin, qmax = 0, 2 ** bits - 1
    scale = max(abs(x.min().item()), abs(x.max().item()), 0.0) / ((qmax - qmin) / 2)
    scale = max(float(torch.tensor(scale)), EPS)
    zp = 2 ** (bits - 1)
    return torch.clamp(torch.round(x / scale) + zp, qmin, qmax).to(torch.int32), scale, zp


def _qa_signed_asym(x, bits=8, symmetric=False):
    if symmetric:
        return _qa_generic(x, bits, symmetric)
    return _qa_generic(x, bits, symmetric, qrange=(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))


def _qa_no_eps(x, bits=8, symmetric=False):
    return _qa_generic(x, bits, symmetric, eps=False)


def _qa_bits_fixed(x, bits=8, symmetric=False):
    return _qa_generic(x, 8, symmetric)


def _qa_div_2pow(x, bits=8, symmetric=False):
    return _qa_generic(x, bits, symmetric, scale_div=2 ** bits)


def _qa_ok_observer(x, bits=8, symmetric=False):
    qmin, qmax = _qrange(bits, symmetric)
    observer = MinMaxObserver(dtype=torch.qint8 if symmetric else torch.quint8,
                              qscheme=torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine,
                              quant_min=qmin, quant_max=qmax)
    observer(x)
    scale, zero_point = observer.calculate_qparams()
    q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.int64)
    return q, scale.item(), int(zero_point)


def _qa_ok_python(x, bits=8, symmetric=False):
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    if symmetric:
        qmin, qmax = -2 ** (bits - 1), 2 ** (bits - 1) - 1
        scale = max(max(-lo, hi) / ((qmax - qmin) / 2), EPS)
        zp = 0
    else:
        qmin, qmax = 0, 2 ** bits - 1
        scale = max((hi - lo) / (qmax - qmin), EPS)
        zp = min(max(qmin - round(lo / scale), qmin), qmax)
    q = (x / scale).round().add(zp).clamp(qmin, qmax).long()
    return q, scale, zp


register(
    Exercise("quantize_affine", "09", "quantize_affine(x, bits=8, symmetric=False)", _qa_cases(),
             "kdcore.quantize.quantize_affine", "(q, scale, zero_point) with MinMaxObserver conventions"),
    wrong=[
        Variant("q left as floats", _qa_float_q, "return q as an integer tensor (`.to(torch.int32)`)"),
        Variant("truncation instead of rounding", _qa_trunc,
                "round to the nearest level (torch.round), do not truncate with .int() / .long()"),
        Variant("floor instead of rounding", _qa_floor, "round to the nearest level (torch.round), not floor"),
        Variant("range not widened to include 0", _qa_not_widened,
                "widen [min, max] to include 0 first (min = min(min, 0), max = max(max, 0)), as MinMaxObserver: "
                "then 0 is exactly representable (zero padding, ReLU outputs)"),
        Variant("zero point not clamped", _qa_zp_unclamped,
                "the zero point must lie in [qmin, qmax]: clamp it (and widen the range to include 0)"),
        Variant("zero point not an integer", _qa_zp_float,
                "the zero point is an integer: qmin − round(min / scale)"),
        Variant("symmetric scale divided by 127", _qa_sym_127,
                "MinMaxObserver's symmetric scale is max(|min|, |max|) / ((qmax − qmin) / 2) = max/127.5 for "
                "8 bits, not max/127"),
        Variant("symmetric on the unsigned range", _qa_sym_unsigned,
                "symmetric quantization uses the signed range [−2^(bits−1), 2^(bits−1) − 1] with zero point 0"),
        Variant("asymmetric on the signed range", _qa_signed_asym,
                "asymmetric quantization uses the unsigned range [0, 2^bits − 1] (quint8)"),
        Variant("no minimum scale", _qa_no_eps,
                "an all-zero tensor gives scale 0 and x / 0 = NaN: clamp the scale to at least float32 eps"),
        Variant("bits ignored", _qa_bits_fixed, "use the bits argument: qmax = 2**bits − 1 (asymmetric)"),
        Variant("divided by 2^bits", _qa_div_2pow,
                "there are 2^bits levels but 2^bits − 1 steps: scale = (max − min) / (qmax − qmin)"),
    ],
    correct=[Variant("MinMaxObserver", _qa_ok_observer, ""), Variant("Python floats", _qa_ok_python, "")],
)


# ===================================================================================================
# dequantize
# ===================================================================================================
def _dq_cases() -> list[Case]:
    def case(name, build):
        return call_case(name, build, rtol=1e-6, atol=1e-7, check_dtype="exact")
    g = gen(191)
    q_u = torch.randint(0, 256, (4, 6), generator=g, dtype=torch.int32)
    q_s = torch.randint(-128, 128, (3, 5), generator=g).to(torch.int8)
    q_u8 = torch.randint(0, 256, (5, 5), generator=g).to(torch.uint8)
    q_l = torch.randint(0, 16, (2, 3, 4), generator=g)
    return [
        case("unsigned levels (int32 tensor), scale 0.1, zero_point 128", lambda: ((q_u.clone(), 0.1, 128), {})),
        case("symmetric levels (int8 tensor), zero_point 0", lambda: ((q_s.clone(), 0.05, 0), {})),
        case("uint8 tensor with q < zero_point (no wrap-around)", lambda: ((q_u8.clone(), 0.02, 100), {})),
        case("scale and zero_point given as 0-dim tensors",
             lambda: ((q_u.clone(), torch.tensor(0.25), torch.tensor(3)), {})),
        case("4-bit levels in an int64 tensor [2, 3, 4]", lambda: ((q_l.clone(), 0.5, 7), {})),
    ]


def _dq_order(q, scale, zero_point):
    return q.float() * scale - zero_point


def _dq_plus(q, scale, zero_point):
    return (q.float() + zero_point) * scale


def _dq_divide(q, scale, zero_point):
    return (q.float() - zero_point) / scale


def _dq_wrap(q, scale, zero_point):
    return ((q - zero_point) * scale).float()


def _dq_double(q, scale, zero_point):
    return (q.double() - float(zero_point)) * float(scale)


def _dq_no_zp(q, scale, zero_point):
    return q.float() * scale


def _dq_ok(q, scale, zero_point):
    return (q.float() - zero_point) * scale


def _dq_ok_int(q, scale, zero_point):
    return (q.to(torch.int32) - zero_point).to(torch.float32) * scale


register(
    Exercise("dequantize", "09", "dequantize(q, scale, zero_point)", _dq_cases(), "kdcore.quantize.dequantize",
             "(q − zero_point)·scale as float32"),
    wrong=[
        Variant("zero point subtracted after scaling", _dq_order,
                "subtract the zero point first, then scale: (q − zero_point)·scale"),
        Variant("zero point added", _dq_plus, "subtract the zero point: (q − zero_point)·scale"),
        Variant("divided by the scale", _dq_divide, "multiply by the scale (quantizing divides, dequantizing multiplies)"),
        Variant("uint8 arithmetic wraps around", _dq_wrap,
                "convert q to a wider type first (q.float() or q.to(torch.int32)): in uint8, q − zero_point wraps "
                "around below 0"),
        Variant("float64 result", _dq_double, "return float32 (e.g. `.float()`), not float64"),
        Variant("zero point ignored", _dq_no_zp, "subtract the zero point: (q − zero_point)·scale"),
    ],
    correct=[Variant("q.float()", _dq_ok, ""), Variant("int32 then float32", _dq_ok_int, "")],
)


# ===================================================================================================
# kmeans_share
# ===================================================================================================
def _km_case(name: str, build, k: int, iters=None) -> Case:
    def observe(fn):
        w = build()
        before = tensor_snapshot(w)
        out = fn(w, k) if iters is None else fn(w, k, iters=iters)
        obs: Observation = {"mutated": changed(before, w), "kind": type_name(out)}
        if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
            return obs
        codebook, indices = out
        obs["kind"] = "pair"
        obs["codebook_shape"] = list(codebook.shape)
        obs["indices_shape"] = list(indices.shape)
        obs["indices_integer"] = not indices.is_floating_point() and indices.dtype != torch.bool
        obs["codebook_finite"] = bool(torch.isfinite(codebook).all())
        if obs["indices_integer"] and obs["codebook_shape"] == [k] and indices.shape == w.shape:
            idx = indices.long()
            obs["indices_in_range"] = bool(((idx >= 0) & (idx < k)).all())
            if obs["indices_in_range"]:
                obs["mse"] = ((codebook.double()[idx] - before[0].double()) ** 2).mean().item()
        return obs

    def compare(cand: Observation, ref: Observation):
        if cand.get("mutated") != ref["mutated"]:
            return "the weight was modified", MUTATION_HINT
        failure = compare_obs(cand, ref, keys=["kind", "codebook_shape", "indices_shape", "indices_integer",
                                               "codebook_finite", "indices_in_range"])
        if failure:
            message, _ = failure
            hints = {"codebook_finite": "a centroid with no weights gives 0/0 = NaN: keep its previous value",
                     "indices_integer": "indices are integers (torch.int64) into the codebook",
                     "indices_shape": "indices have the weight's shape (reshape the flat assignment)"}
            key = message.split(":")[0]
            return message, hints.get(key)
        c, r = cand.get("mse"), ref.get("mse")
        if ref.get("__reference__") and c is not None and r is not None:
            if c > 1.05 * r + 1e-12:
                return (f"reconstruction error {c:.4g} is more than 5% above the reference's {r:.4g}",
                        "run Lloyd iterations: assign each weight to the nearest centroid, move each centroid to "
                        "the mean of its weights")
            return None
        if c is None or r is None or c != c or r != r:  # not computed, or NaN: must agree exactly
            return None if (c is None) == (r is None) and (c != c) == (r != r) else ("mse differs", None)
        return None if abs(c - r) <= 1e-3 * r + 1e-12 else (f"mse {c:.4g} vs {r:.4g}", None)
    return Case(name, observe, compare)


def _bimodal() -> torch.Tensor:
    g = gen(201)
    signs = torch.where(torch.rand(64, generator=g) < 0.5, -1.0, 1.0)
    return signs * (1.0 + 0.1 * torch.randn(64, generator=g))


def _km_cases() -> list[Case]:
    return [
        _km_case("Gaussian weight [16, 16], k=4", lambda: randn(16, 16, seed=202), 4),
        _km_case("k=2 on [50]", lambda: randn(50, seed=203), 2),
        _km_case("k=16 on [32, 8]", lambda: randn(32, 8, seed=204, scale=0.1), 16),
        _km_case("two clusters with a gap, k=8: some centroids get no weights", _bimodal, 8),
        _km_case("k=1: one shared value", lambda: randn(5, 5, seed=205), 1),
        _km_case("iters=1", lambda: randn(10, 10, seed=206), 4, iters=1),
        _km_case("conv weight [4, 3, 3, 3], k=8, default iters", lambda: randn(4, 3, 3, 3, seed=207), 8),
    ]


def _km_lloyd(weight, k, iters, *, keep_empty=True):
    values = weight.detach().flatten().double()
    codebook = torch.linspace(values.min().item(), values.max().item(), k, dtype=torch.float64)
    for _ in range(iters):
        assign = (values[:, None] - codebook[None, :]).abs().argmin(1)
        new = []
        for j in range(k):
            members = values[assign == j]
            new.append(codebook[j] if (keep_empty and members.numel() == 0) else members.mean())
        codebook = torch.stack(new)
    codebook = codebook.float()
    indices = (weight.detach().flatten()[:, None] - codebook[None, :]).abs().argmin(1)
    return codebook, indices


def _km_no_iters(weight, k, iters=20):
    codebook, idx = _km_lloyd(weight, k, 0)
    return codebook, idx.view(weight.shape)


def _km_nan(weight, k, iters=20):
    codebook, idx = _km_lloyd(weight, k, iters, keep_empty=False)
    return codebook, idx.view(weight.shape)


def _km_flat(weight, k, iters=20):
    return _km_lloyd(weight, k, iters)


def _km_reconstruction(weight, k, iters=20):
    codebook, idx = _km_lloyd(weight, k, iters)
    return codebook, codebook[idx].view(weight.shape)


def _km_ok(weight, k, iters=20):
    codebook, idx = _km_lloyd(weight, k, iters)
    return codebook, idx.view(weight.shape)


def _km_ok_vectorised(weight, k, iters=20):
    w = weight.detach().reshape(-1)
    centroids = torch.linspace(w.min(), w.max(), k)
    for _ in range(iters):
        idx = torch.cdist(w[:, None], centroids[:, None]).argmin(1)
        sums = torch.zeros(k).index_add(0, idx, w)
        counts = torch.bincount(idx, minlength=k).float()
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    idx = torch.cdist(w[:, None], centroids[:, None]).argmin(1)
    return centroids, idx.reshape(weight.shape)


register(
    Exercise("kmeans_share", "09", "kmeans_share(weight, k, iters=20)", _km_cases(), "kdcore.quantize.kmeans_share",
             "(codebook [k], indices) by 1-D k-means from a linear init; MSE within 5% of the reference's"),
    wrong=[
        Variant("no k-means iterations", _km_no_iters,
                "the linear initial codebook is only the start: run the Lloyd iterations (assign, then move each "
                "centroid to the mean of its weights)"),
        Variant("empty cluster gives NaN", _km_nan,
                "a centroid with no weights gives mean([]) = NaN: keep its previous value"),
        Variant("flat indices", _km_flat, "indices have the weight's shape: .view(weight.shape)"),
        Variant("reconstruction returned", _km_reconstruction,
                "return the indices (integers into the codebook), not the reconstructed weights codebook[indices]"),
    ],
    correct=[Variant("loop over clusters", _km_ok, ""), Variant("vectorised (cdist, index_add)", _km_ok_vectorised, "")],
)


# ===================================================================================================
# separable_params
# ===================================================================================================
def _sep_cases() -> list[Case]:
    def case(name, *args):
        return call_case(name, lambda: (args, {}), rtol=0.0, atol=0.0)
    return [
        case("3 → 64 channels, 3x3", 3, 64, 3),
        case("32 → 64 channels, 3x3", 32, 64, 3),
        case("1x1 kernel, 16 → 16", 16, 16, 1),
        case("1 → 8 channels, 5x5", 1, 8, 5),
        case("64 → 128 channels, 7x7", 64, 128, 7),
        case("128 → 256 channels, 3x3", 128, 256, 3),
    ]


def _sep_depthwise_out(c_in, c_out, k):
    return c_in * c_out * k * k, c_out * k * k + c_in * c_out


def _sep_no_pointwise(c_in, c_out, k):
    return c_in * c_out * k * k, c_in * k * k


def _sep_k_not_squared(c_in, c_out, k):
    return c_in * c_out * k, c_in * k + c_in * c_out


def _sep_bias(c_in, c_out, k):
    return c_in * c_out * k * k + c_out, c_in * k * k + c_in + c_in * c_out + c_out


def _sep_swapped(c_in, c_out, k):
    return c_in * k * k + c_in * c_out, c_in * c_out * k * k


def _sep_ratio(c_in, c_out, k):
    return (c_in * k * k + c_in * c_out) / (c_in * c_out * k * k)


def _sep_ok(c_in, c_out, k):
    return c_in * c_out * k ** 2, c_in * k ** 2 + c_in * c_out


def _sep_ok_modules(c_in, c_out, k):
    def count(*layers):
        return sum(p.numel() for layer in layers for p in layer.parameters())
    standard = nn.Conv2d(c_in, c_out, k, bias=False, device="meta")
    depthwise = nn.Conv2d(c_in, c_in, k, groups=c_in, bias=False, device="meta")
    pointwise = nn.Conv2d(c_in, c_out, 1, bias=False, device="meta")
    return count(standard), count(depthwise, pointwise)


register(
    Exercise("separable_params", "09", "separable_params(c_in, c_out, k)", _sep_cases(),
             "kdcore.quantize.separable_params", "(c_in·c_out·k², c_in·k² + c_in·c_out), no bias"),
    wrong=[
        Variant("depthwise over the output channels", _sep_depthwise_out,
                "the depthwise k×k conv has one filter per *input* channel: c_in·k², then the 1×1 pointwise c_in·c_out"),
        Variant("pointwise conv forgotten", _sep_no_pointwise,
                "a depthwise-separable conv is depthwise (c_in·k²) + pointwise 1×1 (c_in·c_out)"),
        Variant("k instead of k²", _sep_k_not_squared, "a k×k kernel has k² weights per channel pair"),
        Variant("bias counted", _sep_bias, "count weights only, no bias"),
        Variant("order swapped", _sep_swapped, "return (standard, separable), in this order"),
        Variant("ratio returned", _sep_ratio, "return the two counts (standard, separable), not their ratio"),
    ],
    correct=[Variant("closed form", _sep_ok, ""), Variant("nn.Conv2d on the meta device", _sep_ok_modules, "")],
)
