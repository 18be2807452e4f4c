"""Tests for kdcore.text: generated corpus, encoding with padding masks, char LM, masked loss, training."""
from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from kdcore import text


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The GRUs here are tiny: one thread is faster than two and keeps the suite quick on a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_corpus_is_deterministic_and_leaves_global_random_alone():
    state = random.getstate()
    a = text.generate_corpus(50, seed=3)
    assert random.getstate() == state
    assert a == text.generate_corpus(50, seed=3)
    assert a != text.generate_corpus(50, seed=4)
    assert all(s.endswith(".") and s == s.lower() for s in a)


def test_load_text_validation_set_does_not_depend_on_train_size():
    small, big = text.load_text(20, 30), text.load_text(200, 30)
    assert small.val_text == big.val_text
    assert big.train_text[:20] == small.train_text  # nested training sets


def test_vocab_round_trip_and_unknown_character():
    vocab = text.load_text(5, 5).vocab
    s = "the cat sees a box."
    assert vocab.decode(vocab.encode(s)) == s
    assert vocab.decode(vocab.encode(s) + [text.BOUNDARY] + vocab.encode("dog")) == s
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.encode("Zebra")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(alphabet="abc .", min_size=0, max_size=12), min_size=1, max_size=6))
def test_encode_shifts_targets_and_masks_exactly_the_real_tokens(sentences):
    vocab = text.CharVocab("abc .")
    inputs, targets, mask = text.encode(sentences, vocab)
    assert inputs.shape == targets.shape == mask.shape == (len(sentences), max(map(len, sentences)) + 1)
    for row, s in enumerate(sentences):
        n = len(s)
        assert mask[row].sum().item() == n + 1  # n characters + EOS
        assert inputs[row, 0].item() == text.BOUNDARY
        assert targets[row, n].item() == text.BOUNDARY
        # next-character shift: input t+1 is target t
        assert torch.equal(inputs[row, 1:n + 1], targets[row, :n])
        assert (targets[row, n + 1:] == text.PAD).all() and (inputs[row, n + 1:] == text.PAD).all()


def test_lm_loss_matches_cross_entropy_on_real_tokens_and_ignores_padding():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11)
    targets = torch.randint(2, 11, (3, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 1 + [0] * 6]).float()
    keep = mask.bool()
    expected = F.cross_entropy(logits[keep], targets[keep])
    assert torch.allclose(text.lm_loss(logits, targets, mask), expected, atol=1e-6)
    garbage = logits.clone()
    garbage[~keep] = 1e3 * torch.randn_like(garbage[~keep])
    assert torch.allclose(text.lm_loss(garbage, targets, mask), expected, atol=1e-6)


def test_char_gru_shapes_and_causality():
    torch.manual_seed(0)
    model = text.CharGRU(10, hidden=8).eval()
    x = torch.randint(1, 10, (2, 6))
    y = x.clone()
    y[:, 4:] = torch.randint(1, 10, (2, 2))
    out_x, out_y = model(x), model(y)
    assert out_x.shape == (2, 6, 10)
    assert torch.allclose(out_x[:, :4], out_y[:, :4])  # position t sees tokens 0..t only
    with pytest.raises(ValueError, match="vocab_size"):
        text.CharGRU(2)


def test_uniform_model_has_perplexity_equal_to_vocab_size():
    data = text.load_text(10, 10)
    V = len(data.vocab)

    class Uniform(torch.nn.Module):
        def forward(self, tokens):
            return torch.zeros(*tokens.shape, V)

    assert math.isclose(text.perplexity(Uniform(), *data.val), V, rel_tol=1e-5)


def test_training_lowers_perplexity_and_kd_training_runs_without_touching_the_teacher():
    data = text.load_text(60, 40)
    V = len(data.vocab)
    torch.manual_seed(0)
    teacher = text.CharGRU(V, hidden=16)
    before = text.perplexity(teacher, *data.val)
    losses = text.train_lm(teacher, *data.train, steps=20, batch_size=16, lr=2e-2, progress=False)
    assert text.perplexity(teacher, *data.val) < 0.7 * before
    assert losses[-1] < losses[0]
    snapshot = {k: t.clone() for k, t in teacher.state_dict().items()}
    student = text.CharGRU(V, hidden=8)
    kd_losses = text.train_lm(student, *data.train, teacher=teacher, T=2.0, alpha=0.5, steps=5,
                              batch_size=16, progress=False)
    assert len(kd_losses) == 5 and all(math.isfinite(x) for x in kd_losses)
    assert all(torch.equal(snapshot[k], t) for k, t in teacher.state_dict().items())
    # same seed, same start -> same result (deterministic)
    torch.manual_seed(1)
    a = text.CharGRU(V, hidden=8)
    b = text.CharGRU(V, hidden=8)
    b.load_state_dict(a.state_dict())
    text.train_lm(a, *data.train, steps=3, batch_size=8, seed=5, progress=False)
    text.train_lm(b, *data.train, steps=3, batch_size=8, seed=5, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_alpha_one_with_teacher_equal_to_student_gives_zero_soft_loss():
    data = text.load_text(20, 10)
    torch.manual_seed(0)
    model = text.CharGRU(len(data.vocab), hidden=8)
    twin = text.CharGRU(len(data.vocab), hidden=8)
    twin.load_state_dict(model.state_dict())
    losses = text.train_lm(model, *data.train, teacher=twin, alpha=1.0, steps=1, batch_size=8, progress=False)
    assert abs(losses[0]) < 1e-5


def test_sample_is_seeded_and_uses_the_vocabulary():
    data = text.load_text(20, 10)
    torch.manual_seed(0)
    model = text.CharGRU(len(data.vocab), hidden=8)
    a = text.sample(model, data.vocab, 5, max_len=20, seed=1)
    assert a == text.sample(model, data.vocab, 5, max_len=20, seed=1)
    assert len(a) == 5 and all(len(s) <= 20 and set(s) <= set(data.vocab.chars) for s in a)
    with pytest.raises(ValueError, match="temperature"):
        text.sample(model, data.vocab, 1, temperature=0.0)
