"""kdcore.measure against FlopCounterMode, hand counts, torch's CSR tensors and closed forms."""
from __future__ import annotations

import math

import pytest
import torch
import kdcore as kd
import torch.nn.utils.prune as torch_prune
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kdcore import measure as M
from kdcore.models import MLP, DigitsCNN, Mnist1dConvBase


def torch_flops(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


# ------------------------------------------------------------------ count_parameters

def test_count_parameters_hand_counts():
    assert M.count_parameters(MLP((64, 32, 10))) == 64 * 32 + 32 + 32 * 10 + 10  # 2,410
    conv1, conv2, fc = 1 * 32 * 9 + 32, 32 * 64 * 9 + 64, 64 * 16 * 10 + 10
    assert M.count_parameters(DigitsCNN()) == conv1 + conv2 + fc == 29_066
    assert M.count_parameters(nn.Conv2d(8, 8, 3, groups=4, bias=False)) == 8 * 2 * 9


def test_count_parameters_shared_tensors_once():
    layer = nn.Linear(5, 5)
    assert M.count_parameters(nn.Sequential(layer, nn.ReLU(), layer)) == 30  # same module twice
    tied = nn.Sequential(nn.Embedding(7, 4), nn.Linear(4, 7, bias=False))
    tied[1].weight = tied[0].weight  # weight tying, as in language models
    assert M.count_parameters(tied) == 28


def test_count_parameters_nonzero_only():
    model = MLP((6, 5, 3))
    with torch.no_grad():
        model.layers[0].weight[:2] = 0  # 12 zeros
        model.layers[1].bias.zero_()  # 3 zeros
    total = 6 * 5 + 5 + 5 * 3 + 3
    assert M.count_parameters(model) == total
    assert M.count_parameters(model, nonzero_only=True) == total - 15
    # torch.nn.utils.prune stores weight_orig + weight_mask: the count sees the mask, not the copy
    pruned = nn.Linear(10, 10)
    torch_prune.l1_unstructured(pruned, "weight", amount=0.4)
    assert M.count_parameters(pruned) == 110
    assert M.count_parameters(pruned, nonzero_only=True) == 110 - 40
    with pytest.raises(TypeError, match="model"):
        M.count_parameters(torch.randn(3))


# ------------------------------------------------------------------ conv2d_flops

@settings(max_examples=30, deadline=None)
@given(g=st.integers(1, 3), cin_per_g=st.integers(1, 3), cout_per_g=st.integers(1, 3),
       k=st.tuples(st.integers(1, 3), st.integers(1, 3)), stride=st.integers(1, 2), pad=st.integers(0, 1),
       hw=st.tuples(st.integers(3, 7), st.integers(3, 7)), as_int=st.booleans())
def test_conv2d_flops_equals_flop_counter(g, cin_per_g, cout_per_g, k, stride, pad, hw, as_int):
    if as_int:
        k = (k[0], k[0])
    c_in, c_out = g * cin_per_g, g * cout_per_g
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, groups=g)
    out = conv(torch.randn(1, c_in, *hw))
    out_hw = tuple(out.shape[-2:])
    kernel = k[0] if as_int else k
    size = out_hw[0] if as_int and out_hw[0] == out_hw[1] else out_hw
    assert M.conv2d_flops(c_in, c_out, kernel, size, groups=g) == torch_flops(conv, torch.randn(1, c_in, *hw))


def test_conv2d_flops_closed_form_and_validation():
    # DigitsCNN's conv2: 2·64·32·3·3·8·8
    assert M.conv2d_flops(32, 64, 3, 8) == 2 * 64 * 32 * 9 * 64 == 2_359_296
    assert M.conv2d_flops(32, 32, (3, 3), (8, 8), groups=32) == 2 * 32 * 1 * 9 * 64  # depthwise
    with pytest.raises(ValueError, match="groups"):
        M.conv2d_flops(6, 4, 3, 8, groups=4)
    with pytest.raises(ValueError, match="c_in"):
        M.conv2d_flops(0, 4, 3, 8)
    with pytest.raises(ValueError, match="kernel_size"):
        M.conv2d_flops(4, 4, (3, 3, 3), 8)
    with pytest.raises(TypeError, match="out_hw"):
        M.conv2d_flops(4, 4, 3, 8.0)


# ------------------------------------------------------------------ model_flops

class _GroupedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)  # depthwise
        self.pw = nn.Conv2d(8, 16, 1)  # pointwise
        self.bn = nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.bn(self.pw(self.dw(torch.relu(self.conv(x)))))
        return self.head(x.mean(dim=(2, 3)))


class _SharedTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(6, 6)

    def forward(self, x):
        return self.layer(torch.relu(self.layer(x)))


@pytest.mark.parametrize("make, x", [
    (lambda: DigitsCNN(), torch.randn(3, 1, 8, 8)),
    (lambda: DigitsCNN((8, 16)), torch.randn(1, 64)),
    (lambda: MLP((64, 256, 256, 10)), torch.randn(4, 64)),
    (lambda: Mnist1dConvBase(), torch.randn(2, 40)),
    (lambda: _GroupedNet(), torch.randn(2, 4, 6, 6)),
    (lambda: _SharedTwice(), torch.randn(3, 6)),
    (lambda: nn.Sequential(nn.Conv1d(3, 6, 5, stride=2, groups=3), nn.Flatten(), nn.Linear(6 * 8, 2)),
     torch.randn(2, 3, 20)),
    (lambda: nn.Linear(4, 3), torch.randn(2, 5, 4)),  # Linear on a 3-D input (a sequence)
])
def test_model_flops_equals_flop_counter(make, x):
    torch.manual_seed(0)
    model = make()
    assert M.model_flops(model, x) == torch_flops(model, x)


def test_model_flops_digits_cnn_closed_form_and_mode_restored():
    model = DigitsCNN()
    # conv1 2·32·1·9·64 + conv2 2·64·32·9·64 + fc 2·1024·10
    assert M.model_flops(model, torch.randn(1, 1, 8, 8)) == 36_864 + 2_359_296 + 20_480 == 2_416_640
    net = _GroupedNet().train()
    stats = net.bn.running_mean.clone()
    M.model_flops(net, torch.randn(2, 4, 6, 6))
    assert net.training and net.bn.training
    assert torch.equal(net.bn.running_mean, stats)  # ran in eval mode: BN statistics untouched
    assert not net.conv._forward_hooks  # hooks removed


# ------------------------------------------------------------------ csr_bytes / model_size_bytes

@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 12), cols=st.integers(1, 12), density=st.floats(0, 1), seed=st.integers(0, 1000))
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_csr_bytes_closed_form_and_torch_csr(rows, cols, density, seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=gen) * (torch.rand(rows, cols, generator=gen) < density)
    nnz = int((w != 0).sum())
    assert M.csr_bytes(w) == nnz * 8 + (rows + 1) * 4
    csr = w.to_sparse_csr()  # torch stores int64 indices: compare with index_bytes=8
    torch_bytes = sum(t.numel() * t.element_size() for t in (csr.values(), csr.col_indices(), csr.crow_indices()))
    assert M.csr_bytes(w, value_bytes=4, index_bytes=8) == torch_bytes


def test_csr_bytes_break_even_and_validation():
    w = torch.ones(100, 100)
    w[:, 50:] = 0  # density 0.5: CSR (8 bytes per non-zero) is already larger than dense (4 bytes per entry)
    assert M.csr_bytes(w) == 5000 * 8 + 101 * 4 > 100 * 100 * 4
    with pytest.raises(ValueError, match="weight"):
        M.csr_bytes(torch.ones(3, 3, 3))
    with pytest.raises(ValueError, match="value_bytes"):
        M.csr_bytes(torch.ones(3, 3), value_bytes=0)
    with pytest.raises(TypeError, match="weight"):
        M.csr_bytes([[1.0]])


def test_model_size_bytes_dense_and_sparse():
    torch.manual_seed(0)
    model = DigitsCNN((4, 8))
    n = M.count_parameters(model)
    assert M.model_size_bytes(model) == 4 * n
    assert M.model_size_bytes(model, bits=8) == n
    assert M.model_size_bytes(model, bits=4) == math.ceil(n / 2)
    with torch.no_grad():
        model.conv2.weight[model.conv2.weight.abs() < 0.1] = 0
    sparse = M.model_size_bytes(model, sparse=True)
    expected = sum(M.csr_bytes(m.weight.detach().reshape(m.weight.shape[0], -1)) + m.bias.numel() * 4
                   for m in (model.conv1, model.conv2, model.fc))
    assert sparse == expected
    with pytest.raises(ValueError, match="bits"):
        M.model_size_bytes(model, bits=0)
    with pytest.raises(TypeError, match="sparse"):
        M.model_size_bytes(model, sparse="yes")


# ------------------------------------------------------------------ measure_latency

def test_measure_latency_result_and_restored_state():
    model = MLP((64, 32, 10)).train()
    threads = torch.get_num_threads()
    result = M.measure_latency(model, torch.randn(8, 64), repeats=7, warmup=1, threads=1)
    assert set(result) == {"median_ms", "iqr_ms", "min_ms", "runs"}
    assert len(result["runs"]) == 7 and all(t > 0 for t in result["runs"])
    assert result["min_ms"] == min(result["runs"]) <= result["median_ms"] <= max(result["runs"])
    assert result["iqr_ms"] >= 0
    assert model.training and torch.get_num_threads() == threads
    single = M.measure_latency(model, torch.randn(1, 64), repeats=1, warmup=0)
    assert single["iqr_ms"] == 0 and single["median_ms"] == single["min_ms"]
    for kwargs, name in [({"repeats": 0}, "repeats"), ({"warmup": -1}, "warmup"), ({"threads": 0}, "threads")]:
        with pytest.raises(ValueError, match=name):
            M.measure_latency(model, torch.randn(1, 64), **kwargs)
    with pytest.raises(TypeError, match="example_input"):
        M.measure_latency(model, [1.0] * 64)


def test_compare_latency_ratios_against_the_baseline():
    torch.manual_seed(0)
    models = {"big": MLP((64, 256, 10)).train(), "small": MLP((64, 8, 10))}
    threads = torch.get_num_threads()
    result = M.compare_latency(models, torch.randn(4, 64), baseline="big", rounds=3, repeats=4, warmup=1)
    assert set(result) == {"big", "small"}
    assert result["big"]["speedup"] == 1.0 and result["big"]["speedup_iqr"] == (1.0, 1.0)  # baseline / itself
    for r in result.values():
        assert len(r["runs"]) == 3 * 4 and r["speedup"] > 0 and r["iqr_ms"] >= 0
        low, high = r["speedup_iqr"]
        assert low <= r["speedup"] <= high
    assert models["big"].training and torch.get_num_threads() == threads  # measure_latency restores both
    one = M.compare_latency(models, torch.randn(1, 64), baseline="small", rounds=1, repeats=1, warmup=0)
    assert one["small"]["speedup"] == 1.0 and one["big"]["iqr_ms"] == 0
    with pytest.raises(ValueError, match=r"baseline must be one of the model names \['big', 'small'\]"):
        M.compare_latency(models, torch.randn(1, 64), baseline="dense")
    with pytest.raises(ValueError, match="rounds"):
        M.compare_latency(models, torch.randn(1, 64), baseline="big", rounds=0)
    with pytest.raises(TypeError, match="models must be a non-empty dict"):
        M.compare_latency({}, torch.randn(1, 64), baseline="big")
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        M.compare_latency({"a": "not a model"}, torch.randn(1, 64), baseline="a")


def test_saved_bytes_is_the_size_of_the_saved_state_dict(tmp_path):
    model = kd.models.MLP((8, 16, 4))
    path = tmp_path / "archive.pt"   # torch names the zip root after the file stem; in memory it is "archive"
    torch.save(model.state_dict(), path)
    assert kd.measure.saved_bytes(model) == path.stat().st_size
    with pytest.raises(TypeError, match="model"):
        kd.measure.saved_bytes(torch.zeros(3))
