"""Cases and misconception catalogue of the measuring exercises (notebook 07)."""
from __future__ import annotations

import math

import torch
from torch import nn

from .cases import call_case, randn
from .core import Case, Exercise, Variant, compare_obs, module_state, register


# ===================================================================================================
# count_parameters
# ===================================================================================================
class _Tied(nn.Module):
    """Embedding and output layer share one weight (weight tying, as in language models)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.hidden = nn.Linear(4, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.emb.weight


class _Reused(nn.Module):
    """One Linear registered under two names (applied twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Linear(5, 5)
        self.again = self.block
        self.head = nn.Linear(5, 2)


def _cp_model(kind: str) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(161)
        if kind == "mlp":
            return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        if kind == "bn":
            return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))
        if kind == "tied":
            return _Tied()
        if kind == "reused":
            return _Reused()
        if kind == "frozen":
            model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))
            model[0].requires_grad_(False)
            return model
        model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))  # "pruned"
        with torch.no_grad():
            model[0].weight[torch.rand(8, 10) < 0.6] = 0.0
            model[2].bias[1] = 0.0
        return model


def _cp_case(name: str, kind: str, nonzero_only=None) -> Case:
    def observe(fn):
        model = _cp_model(kind)
        before = module_state(model)
        out = fn(model) if nonzero_only is None else fn(model, nonzero_only=nonzero_only)
        after = module_state(model)
        return {"mutated": any(not torch.equal(before[k], after[k]) for k in before), "out": out}

    return Case(name, observe, lambda c, r: compare_obs(c, r, rtol=0.0, atol=0.0))


def _cp_cases() -> list[Case]:
    return [
        _cp_case("MLP 64-32-10 (2,410 parameters)", "mlp"),
        _cp_case("conv + BatchNorm: running statistics are buffers, not parameters", "bn"),
        _cp_case("tied embedding / output weight counted once", "tied"),
        _cp_case("one Linear registered under two names counted once", "reused"),
        _cp_case("frozen layer (requires_grad=False) still counts", "frozen"),
        _cp_case("pruned model, nonzero_only=True", "pruned", True),
        _cp_case("pruned model, nonzero_only=False counts the zeros too", "pruned", False),
        _cp_case("tied weights, nonzero_only=True", "tied", True),
    ]


def _cp_state_dict(model, nonzero_only=False):
    values = model.state_dict().values()
    return sum(int(torch.count_nonzero(v)) if nonzero_only else v.numel() for v in values)


def _cp_no_dedup(model, nonzero_only=False):
    params = [p for _, p in model.named_parameters(remove_duplicate=False)]
    return sum(int(torch.count_nonzero(p)) if nonzero_only else p.numel() for p in params)


def _cp_per_module(model, nonzero_only=False):
    total = 0
    for m in model.modules():
        for p in m.parameters(recurse=False):
            total += int(torch.count_nonzero(p)) if nonzero_only else p.numel()
    return total


def _cp_trainable(model, nonzero_only=False):
    params = [p for p in model.parameters() if p.requires_grad]
    return sum(int(torch.count_nonzero(p)) if nonzero_only else p.numel() for p in params)


def _cp_ignores_flag(model, nonzero_only=False):
    return sum(p.numel() for p in model.parameters())


def _cp_counts_zeros(model, nonzero_only=False):
    if nonzero_only:
        return sum(int((p == 0).sum()) for p in model.parameters())
    return sum(p.numel() for p in model.parameters())


def _cp_weights_only(model, nonzero_only=False):
    params = [p for n, p in model.named_parameters() if n.endswith("weight")]
    return sum(int(torch.count_nonzero(p)) if nonzero_only else p.numel() for p in params)


def _cp_tensors(model, nonzero_only=False):
    return len(list(model.parameters()))


def _cp_ok(model, nonzero_only=False):
    if nonzero_only:
        return sum(int((p != 0).sum()) for p in model.parameters())
    return sum(p.numel() for p in model.parameters())


def _cp_ok_ptr(model, nonzero_only=False):
    seen, total = set(), 0
    for _, p in model.named_parameters(remove_duplicate=False):
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        total += torch.count_nonzero(p).item() if nonzero_only else p.numel()
    return total


register(
    Exercise("count_parameters", "07", "count_parameters(model, nonzero_only=False)", _cp_cases(),
             "kdcore.measure.count_parameters", "parameters, each shared tensor once; nonzero_only counts ≠ 0"),
    wrong=[
        Variant("state_dict counted", _cp_state_dict,
                "state_dict() also holds buffers (BatchNorm running statistics) and lists tied weights under "
                "each name: count model.parameters()"),
        Variant("shared tensors counted twice", _cp_no_dedup,
                "a shared (tied) parameter counts once: model.parameters() already skips duplicates"),
        Variant("per-module sum", _cp_per_module,
                "summing each module's own parameters counts a tied weight in every module that holds it; "
                "use model.parameters(), which yields each tensor once"),
        Variant("trainable only", _cp_trainable,
                "count every parameter, frozen ones (requires_grad=False) included"),
        Variant("nonzero_only ignored", _cp_ignores_flag,
                "with nonzero_only=True count only the entries that are not 0 (torch.count_nonzero)"),
        Variant("zeros counted", _cp_counts_zeros, "nonzero_only counts the entries != 0, not the zeros"),
        Variant("weights only", _cp_weights_only, "biases are parameters too"),
        Variant("number of tensors", _cp_tensors,
                "count scalar parameters (sum of p.numel()), not parameter tensors"),
    ],
    correct=[Variant("parameters()", _cp_ok, ""), Variant("dedup by data_ptr", _cp_ok_ptr, "")],
)


# ===================================================================================================
# conv2d_flops
# ===================================================================================================
def _flops_case(name: str, *args, **kwargs) -> Case:
    return call_case(name, lambda: (args, kwargs), rtol=0.0, atol=0.0)


def _flops_cases() -> list[Case]:
    return [
        _flops_case("3 → 8 channels, 3x3 kernel, 8x8 output", 3, 8, 3, 8),
        _flops_case("kernel and output given as pairs: (3, 5) kernel, (7, 9) output", 16, 32, (3, 5), (7, 9)),
        _flops_case("groups=2, (4, 6) output", 8, 8, 3, (4, 6), groups=2),
        _flops_case("depthwise: groups = c_in = 16", 16, 16, 3, 10, groups=16),
        _flops_case("1x1 (pointwise) conv, 64 → 128, 14x14", 64, 128, 1, 14),
        _flops_case("DigitsCNN conv2: 32 → 64, 3x3, 8x8", 32, 64, 3, 8),
        _flops_case("single input channel, 5x5 kernel, (28, 28) output", 1, 4, 5, (28, 28)),
    ]


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _fl_macs(c_in, c_out, kernel_size, out_hw, groups=1):
    (kh, kw), (h, w) = _pair(kernel_size), _pair(out_hw)
    return c_out * (c_in // groups) * kh * kw * h * w


def _fl_bias(c_in, c_out, kernel_size, out_hw, groups=1):
    (kh, kw), (h, w) = _pair(kernel_size), _pair(out_hw)
    return 2 * c_out * (c_in // groups) * kh * kw * h * w + c_out * h * w


def _fl_no_groups(c_in, c_out, kernel_size, out_hw, groups=1):
    (kh, kw), (h, w) = _pair(kernel_size), _pair(out_hw)
    return 2 * c_out * c_in * kh * kw * h * w


def _fl_groups_twice(c_in, c_out, kernel_size, out_hw, groups=1):
    (kh, kw), (h, w) = _pair(kernel_size), _pair(out_hw)
    return 2 * (c_out // groups) * (c_in // groups) * kh * kw * h * w


def _fl_square_kernel(c_in, c_out, kernel_size, out_hw, groups=1):
    k = kernel_size[0] if isinstance(kernel_size, (tuple, list)) else kernel_size
    h, w = _pair(out_hw)
    return 2 * c_out * (c_in // groups) * k * k * h * w


def _fl_square_output(c_in, c_out, kernel_size, out_hw, groups=1):
    kh, kw = _pair(kernel_size)
    h = out_hw[0] if isinstance(out_hw, (tuple, list)) else out_hw
    return 2 * c_out * (c_in // groups) * kh * kw * h * h


def _fl_no_spatial(c_in, c_out, kernel_size, out_hw, groups=1):
    kh, kw = _pair(kernel_size)
    return 2 * c_out * (c_in // groups) * kh * kw


def _fl_int_only(c_in, c_out, kernel_size, out_hw, groups=1):
    return 2 * c_out * (c_in // groups) * kernel_size * kernel_size * out_hw * out_hw


def _fl_ok(c_in, c_out, kernel_size, out_hw, groups=1):
    k = kernel_size if isinstance(kernel_size, (tuple, list)) else (kernel_size, kernel_size)
    o = out_hw if isinstance(out_hw, (tuple, list)) else (out_hw, out_hw)
    macs_per_output = (c_in // groups) * math.prod(k)
    return 2 * macs_per_output * c_out * math.prod(o)


register(
    Exercise("conv2d_flops", "07", "conv2d_flops(c_in, c_out, kernel_size, out_hw, groups=1)", _flops_cases(),
             "kdcore.measure.conv2d_flops", "2·c_out·(c_in/groups)·kh·kw·H_out·W_out (FlopCounterMode convention)"),
    wrong=[
        Variant("MACs instead of FLOPs", _fl_macs,
                "off by a factor of 2: one multiply-add is 2 FLOPs (FlopCounterMode's convention); you counted MACs"),
        Variant("bias counted", _fl_bias, "the bias is not counted (FlopCounterMode's convention)"),
        Variant("groups ignored", _fl_no_groups,
                "with groups, each output sees only c_in/groups input channels: divide c_in by groups"),
        Variant("groups divided twice", _fl_groups_twice,
                "divide only c_in by groups: every one of the c_out outputs still exists"),
        Variant("square kernel assumed", _fl_square_kernel, "kernel_size can be a pair (kh, kw): use kh·kw"),
        Variant("square output assumed", _fl_square_output, "out_hw can be a pair (H, W): use H·W"),
        Variant("output size ignored", _fl_no_spatial,
                "the kernel is applied at every output position: multiply by H_out·W_out"),
        Variant("pairs not accepted", _fl_int_only,
                "kernel_size and out_hw accept an int or a pair: turn an int k into (k, k)"),
    ],
    correct=[Variant("math.prod", _fl_ok, "")],
)


# ===================================================================================================
# csr_bytes
# ===================================================================================================
def _sparse(rows: int, cols: int, seed: int, density: float) -> torch.Tensor:
    w = randn(rows, cols, seed=seed)
    keep = torch.rand(rows, cols, generator=torch.Generator().manual_seed(seed + 1)) < density
    return w * keep


def _csr_cases() -> list[Case]:
    def case(name, build, **kwargs):
        return call_case(name, lambda: ((build(),), dict(kwargs)), rtol=0.0, atol=0.0)
    return [
        case("[8, 10], about half zeros", lambda: _sparse(8, 10, 171, 0.5)),
        case("all zeros [4, 5]: only the row pointers", lambda: torch.zeros(4, 5)),
        case("dense [3, 3]", lambda: randn(3, 3, seed=172) + 5.0),
        case("negative values count as non-zero", lambda: -_sparse(6, 6, 173, 0.7).abs()),
        case("fp16 values, 2-byte indices", lambda: _sparse(5, 7, 174, 0.3), value_bytes=2, index_bytes=2),
        case("1-byte values, 4-byte indices", lambda: _sparse(6, 4, 175, 0.5), value_bytes=1, index_bytes=4),
        case("single row [1, 12]", lambda: _sparse(1, 12, 176, 0.4)),
        case("tall [20, 2]", lambda: _sparse(20, 2, 177, 0.5)),
    ]


def _nnz(w):
    return int(torch.count_nonzero(w))


def _csr_rows(weight, value_bytes=4, index_bytes=4):
    return _nnz(weight) * (value_bytes + index_bytes) + weight.shape[0] * index_bytes


def _csr_cols(weight, value_bytes=4, index_bytes=4):
    return _nnz(weight) * (value_bytes + index_bytes) + (weight.shape[1] + 1) * index_bytes


def _csr_numel(weight, value_bytes=4, index_bytes=4):
    return weight.numel() * (value_bytes + index_bytes) + (weight.shape[0] + 1) * index_bytes


def _csr_no_rowptr(weight, value_bytes=4, index_bytes=4):
    return _nnz(weight) * (value_bytes + index_bytes)


def _csr_values_only(weight, value_bytes=4, index_bytes=4):
    return _nnz(weight) * value_bytes + (weight.shape[0] + 1) * index_bytes


def _csr_rowptr_value_bytes(weight, value_bytes=4, index_bytes=4):
    return _nnz(weight) * (value_bytes + index_bytes) + (weight.shape[0] + 1) * value_bytes


def _csr_fixed_bytes(weight, value_bytes=4, index_bytes=4):
    return _nnz(weight) * 8 + (weight.shape[0] + 1) * 4


def _csr_positive(weight, value_bytes=4, index_bytes=4):
    nnz = int((weight > 0).sum())
    return nnz * (value_bytes + index_bytes) + (weight.shape[0] + 1) * index_bytes


def _csr_ok_torch(weight, value_bytes=4, index_bytes=4):
    csr = weight.to_sparse_csr()
    return (csr.values().numel() * value_bytes + csr.col_indices().numel() * index_bytes
            + csr.crow_indices().numel() * index_bytes)


def _csr_ok_count(weight, value_bytes=4, index_bytes=4):
    rows = weight.size(0)
    nnz = (weight != 0).sum().item()
    return nnz * value_bytes + nnz * index_bytes + (rows + 1) * index_bytes


register(
    Exercise("csr_bytes", "07", "csr_bytes(weight, value_bytes=4, index_bytes=4)", _csr_cases(),
             "kdcore.measure.csr_bytes", "nnz·(value_bytes + index_bytes) + (rows + 1)·index_bytes"),
    wrong=[
        Variant("rows instead of rows + 1", _csr_rows,
                "the row-pointer array has rows + 1 entries (the last marks the end of the last row)"),
        Variant("column pointers (CSC)", _csr_cols, "CSR stores row pointers: (rows + 1) of them, not cols + 1"),
        Variant("all entries stored", _csr_numel, "CSR stores only the non-zeros: nnz = torch.count_nonzero(weight)"),
        Variant("row pointers forgotten", _csr_no_rowptr, "add the (rows + 1) row pointers of index_bytes each"),
        Variant("column indices forgotten", _csr_values_only,
                "every non-zero also stores its column index: nnz·(value_bytes + index_bytes)"),
        Variant("row pointers sized as values", _csr_rowptr_value_bytes, "row pointers are indices: index_bytes each"),
        Variant("byte sizes hard-coded", _csr_fixed_bytes, "use the value_bytes and index_bytes arguments"),
        Variant("positive entries only", _csr_positive,
                "count every non-zero entry, negative ones included (weight != 0, not weight > 0)"),
    ],
    correct=[Variant("torch CSR tensor", _csr_ok_torch, ""), Variant("count != 0", _csr_ok_count, "")],
)
