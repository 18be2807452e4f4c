"""Tests for kdcore.llm.eval: perplexity on windows, calibration inputs through hooks, H = 2·XᵀX/n."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdcore.llm import eval as E
from kdcore.llm import gpt as G

SMALL = G.GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=8)


def _model(seed=0):
    torch.manual_seed(seed)
    model = G.GPT(SMALL).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def test_mean_nats_is_the_mean_cross_entropy_and_restores_training_mode():
    model = _model().train()
    windows = torch.randint(0, 11, (10, 13))
    expected = F.cross_entropy(model.eval()(windows[:, :-1]).reshape(-1, 11), windows[:, 1:].reshape(-1)).item()
    model.train()
    for batch_size in (1, 3, 64):
        assert E.mean_nats(model, windows, batch_size=batch_size) == pytest.approx(expected, rel=1e-5)
    assert model.training
    assert E.perplexity(model, windows) == pytest.approx(math.exp(expected), rel=1e-5)
    # a uniform model scores log V
    uniform = _model()
    with torch.no_grad():
        uniform.lm_head.weight.zero_()
    assert E.mean_nats(uniform, windows) == pytest.approx(math.log(11), rel=1e-6)


def test_mean_nats_through_a_plain_cache_equals_one_pass():
    model = _model()
    windows = torch.randint(0, 11, (6, 13))
    one_pass = E.mean_nats(model, windows)
    for chunk in (1, 4, 12):
        assert E.mean_nats(model, windows, cache_factory=lambda: G.KVCache(2), chunk=chunk) == pytest.approx(
            one_pass, rel=1e-5)
    with pytest.raises(ValueError, match="windows"):
        E.mean_nats(model, torch.zeros(3, 1, dtype=torch.long))


def test_collect_inputs_records_each_linears_input():
    model = _model()
    batches = [torch.randint(0, 11, (3, 7)), torch.randint(0, 11, (2, 7))]
    names = ["h.0.attn.c_attn", "h.1.mlp.c_proj"]
    xs = E.collect_inputs(model, names, batches)
    assert xs["h.0.attn.c_attn"].shape == (35, 8) and xs["h.1.mlp.c_proj"].shape == (35, 32)
    # recompute by hand: c_attn's input is ln_1 of the embeddings; c_proj's input is GELU(c_fc(ln_2(...)))
    b = batches[0]
    emb = model.wte(b) + model.wpe(torch.arange(7))
    torch.testing.assert_close(xs["h.0.attn.c_attn"][:21], model.h[0].ln_1(emb).reshape(-1, 8))
    out = {}
    h = model.h[1].mlp.c_proj.register_forward_hook(lambda m, a, o: out.setdefault("y", o))
    model(b)
    h.remove()
    layer = model.h[1].mlp.c_proj
    torch.testing.assert_close(layer(xs["h.1.mlp.c_proj"][:21]), out["y"].reshape(-1, 8))
    assert not any(m._forward_pre_hooks for m in model.modules())      # hooks removed


def test_collect_inputs_validates_names_and_removes_hooks_on_error():
    model = _model()
    with pytest.raises(ValueError, match="no module named 'h.9.attn'"):
        E.collect_inputs(model, ["h.9.attn"], [torch.zeros(1, 2, dtype=torch.long)])
    with pytest.raises(ValueError, match="not an nn.Linear"):
        E.collect_inputs(model, ["h.0.ln_1"], [torch.zeros(1, 2, dtype=torch.long)])
    with pytest.raises(ValueError, match="batches was empty"):
        E.collect_inputs(model, ["h.0.attn.c_attn"], [])
    with pytest.raises(ValueError, match="block_size"):
        E.collect_inputs(model, ["h.0.attn.c_attn"], [torch.zeros(1, 99, dtype=torch.long)])
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_hessian_is_the_gradient_of_the_layer_output_error():
    torch.manual_seed(0)
    x, w, q = torch.randn(50, 6), torch.randn(4, 6), torch.randn(4, 6)
    H = E.hessian(x)
    assert H.shape == (6, 6)
    torch.testing.assert_close(H, 2 * x.T @ x / 50, rtol=1e-5, atol=1e-5)
    # sum over rows of ‖(w − q) xᵀ‖² / n  ==  ½ Σ_rows (w − q) H (w − q)ᵀ
    d = w - q
    err = ((x @ d.T) ** 2).sum() / 50
    assert err.item() == pytest.approx(0.5 * torch.einsum("ri,ij,rj->", d, H, d).item(), rel=1e-4)
    with pytest.raises(ValueError, match="x contains NaN"):
        E.hessian(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="x must be 2-D"):
        E.hessian(torch.ones(3))


def test_calibration_and_validation_windows_are_fixed_and_disjoint_splits():
    from kdcore.llm.corpus import load_corpus
    corpus = load_corpus()
    val = E.val_windows(corpus)
    assert val.shape == (256, 129) and torch.equal(val, E.val_windows(corpus))
    batches = E.calib_batches(corpus, n=100, batch_size=32)
    assert [b.shape[0] for b in batches] == [32, 32, 32, 4] and batches[0].shape[1] == 128
