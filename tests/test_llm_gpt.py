"""Tests for kdcore.llm.gpt and kdcore.llm.train: shapes, causality, head gates, KV cache, checkpoints."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kdcore.llm import gpt as G
from kdcore.llm import train as TR

SMALL = G.GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _model(config=SMALL, seed=0):
    torch.manual_seed(seed)
    model = G.GPT(config).eval()
    with torch.no_grad():  # larger than the 0.02 init so that every position's logits differ visibly
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def test_config_validation_names_the_argument():
    with pytest.raises(ValueError, match="n_embd must be a multiple of n_head"):
        G.GPTConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="dropout"):
        G.GPTConfig(dropout=1.5)
    with pytest.raises(TypeError, match="config"):
        G.GPT({"n_layer": 2})


def test_shapes_parameter_count_and_linear_names():
    model = _model()
    idx = torch.randint(0, 11, (3, 7))
    assert model(idx).shape == (3, 7, 11)
    C, V, L = 8, 11, 2
    per_block = (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C) + 4 * C
    assert model.num_parameters() == V * C + 16 * C + L * per_block + 2 * C   # tied head counted once
    assert model.lm_head.weight is model.wte.weight
    untied = G.GPT(G.GPTConfig(**{**SMALL.to_dict(), "tie_weights": False}))
    assert untied.num_parameters() == model.num_parameters() + V * C
    names = G.block_linear_names(model)
    assert names == [f"h.{i}.{n}" for i in range(2) for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    assert all(isinstance(model.get_submodule(n), nn.Linear) for n in names)
    teacher, students = G.GPT(G.TEACHER_CONFIG), [G.GPT(c) for c in G.STUDENT_CONFIGS.values()]
    assert 1_000_000 <= teacher.num_parameters() <= 3_000_000
    assert all(4 <= teacher.num_parameters() / s.num_parameters() <= 8 for s in students)


def test_future_tokens_do_not_change_earlier_logits():
    model = _model()
    idx = torch.randint(0, 11, (2, 12))
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 11
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-3     # and the later ones do change


def test_too_long_input_and_bad_head_mask_are_refused():
    model = _model()
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"head_mask must have shape \[n_layer, n_head\]"):
        model(torch.zeros(1, 4, dtype=torch.long), head_mask=torch.ones(2))


def test_head_mask_gates_each_head_and_gives_gradients():
    model = _model()
    idx = torch.randint(0, 11, (2, 9))
    ones = torch.ones(2, 2)
    torch.testing.assert_close(model(idx, head_mask=ones), model(idx))
    # zeroing head 1 of layer 0 equals zeroing the matching input columns of that layer's c_proj
    mask = ones.clone()
    mask[0, 1] = 0.0
    edited = _model()
    with torch.no_grad():
        edited.h[0].attn.c_proj.weight[:, 4:8] = 0.0
    torch.testing.assert_close(model(idx, head_mask=mask), edited(idx))
    gate = torch.ones(2, 2, requires_grad=True)
    model(idx, head_mask=gate).logsumexp(-1).sum().backward()
    assert gate.grad.shape == (2, 2) and (gate.grad.abs() > 0).all()


def test_cache_in_chunks_equals_one_pass_and_crop_rolls_back():
    model = _model()
    idx = torch.randint(0, 11, (2, 13))
    full = model(idx)
    for chunk in (1, 3, 13):
        cache = G.KVCache(SMALL.n_layer)
        parts = [model(idx[:, i:i + chunk], cache=cache) for i in range(0, 13, chunk)]
        torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
        assert cache.length == 13
    cache = G.KVCache(SMALL.n_layer)
    model(idx[:, :10], cache=cache)
    cache.crop(6)
    assert cache.length == 6
    torch.testing.assert_close(model(idx[:, 6:], cache=cache), full[:, 6:], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="length"):
        cache.crop(99)


@pytest.mark.parametrize("temperature,top_k", [(0.0, None), (1.0, None), (0.8, 3)])
def test_generate_with_cache_equals_without(temperature, top_k):
    model = _model()
    prompt = torch.randint(0, 11, (3, 4))
    runs = []
    for use_cache in (True, False):
        gen = torch.Generator().manual_seed(5)
        runs.append(model.generate(prompt, 20, temperature=temperature, top_k=top_k, use_cache=use_cache,
                                   generator=gen))     # 24 > block_size 16: the window slides too
    assert runs[0].shape == (3, 24) and torch.equal(runs[0][:, :4], prompt)
    assert torch.equal(runs[0], runs[1])


def test_generate_greedy_follows_argmax_and_validates():
    model = _model()
    prompt = torch.randint(0, 11, (2, 3))
    out = model.generate(prompt, 5, temperature=0.0)
    for t in range(3, 8):
        assert torch.equal(out[:, t], model(out[:, :t])[:, -1].argmax(-1))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompt, 2, temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        model.generate(prompt, 2, top_k=0)
    with pytest.raises(ValueError, match="cache must be empty"):
        cache = G.KVCache(SMALL.n_layer)
        model(prompt, cache=cache)
        model.generate(prompt, 2, cache=cache)


def test_lr_schedule_warms_up_then_decays_to_min_lr():
    kw = dict(steps=100, lr=1.0, min_lr=0.1, warmup=10)
    lrs = [TR.lr_at(s, **kw) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert TR.lr_at(100, **kw) == pytest.approx(0.1)


def test_train_gpt_lowers_the_loss_and_checkpoint_round_trips(tmp_path):
    from kdcore.llm.corpus import Corpus, encode
    text = "the quick brown fox jumps over the lazy dog. " * 40
    corpus = Corpus(encode(text), encode(text[:400]), encode(text[:200]), "x", {})
    config = G.GPTConfig(block_size=32, n_layer=1, n_head=2, n_embd=16)
    model, log = TR.train_gpt(config, corpus, steps=60, batch_size=8, context=32, warmup=5, lr=1e-2,
                              progress=False)
    assert sum(l for _, l, _ in log[-5:]) / 5 < sum(l for _, l, _ in log[:5]) / 5 - 1.0
    path = tmp_path / "m.safetensors"
    TR.save_checkpoint(model, path, {"note": "hello", "numbers": [1, 2]})
    loaded, meta = TR.load_checkpoint(path)
    assert meta["note"] == "hello" and meta["numbers"] == [1, 2] and meta["config"] == config.to_dict()
    assert loaded.lm_head.weight is loaded.wte.weight
    idx = torch.randint(0, 96, (2, 10))
    torch.testing.assert_close(loaded(idx), model(idx))
    with pytest.raises(FileNotFoundError, match="path"):
        TR.load_checkpoint(tmp_path / "missing.safetensors")


def test_recipe_hash_is_canonical():
    r = {"a": 1, "b": [1, 2]}
    assert TR.recipe_hash(r) == TR.recipe_hash({"b": [1, 2], "a": 1})
    assert TR.recipe_hash(r) != TR.recipe_hash({**r, "a": 2})


def test_shipped_teacher_matches_recipe_and_reaches_its_stated_loss():
    from kdcore.llm.corpus import load_corpus
    from kdcore.llm.eval import mean_nats, val_windows
    assert TR.TEACHER_PATH.stat().st_size <= 8 * 2**20
    model, meta = TR.load_checkpoint(TR.TEACHER_PATH)
    assert meta["recipe"] == TR.TEACHER_RECIPE
    assert meta["recipe_hash"] == TR.recipe_hash(TR.TEACHER_RECIPE)
    teacher = TR.load_teacher()
    assert teacher.config == G.TEACHER_CONFIG
    nats = mean_nats(teacher, val_windows(load_corpus()))
    assert nats < 1.6                                   # a teacher worth compressing (perplexity < 5)
    if load_corpus().sha256 == meta["corpus_sha256"]:   # same Python, same text: the stated figure exactly
        assert nats == pytest.approx(meta["val_nats"], abs=2e-3)
    else:                                                # another Python's standard library: close to it
        assert abs(nats - meta["val_nats"]) < 0.1
    assert math.exp(nats) < 5.0
