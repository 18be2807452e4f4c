"""kdcore.data: fixed splits, offline generation, no global-RNG side effects, no network."""
import random
import socket
from collections import Counter

import numpy as np
import pytest
import torch

import kdcore.data as data


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a host fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_digits_split_is_fixed_and_stratified(no_network):
    a, b = data.load_digits(), data.load_digits()
    assert a.x_train.shape == (1347, 64) and a.x_test.shape == (450, 64)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    # stratified: every class's share in test is within 1 sample of its share overall
    counts_test = torch.bincount(a.y_test, minlength=10).float()
    counts_all = torch.bincount(torch.cat([a.y_train, a.y_test]), minlength=10).float()
    assert torch.all((counts_test - counts_all * 450 / 1797).abs() <= 1)
    images = data.load_digits(flat=False)
    assert images.x_train.shape == (1347, 1, 8, 8)
    assert torch.equal(images.x_train.reshape(-1, 64), a.x_train)


def test_mnist1d_generated_offline_into_cache(no_network, tmp_path, monkeypatch):
    monkeypatch.setenv("KDCORE_CACHE", str(tmp_path))
    np.random.seed(123)
    random.seed(123)
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    split = data.load_mnist1d(n_unlabelled=25)
    # make_dataset reseeds the global generators; load_mnist1d must restore them
    assert np.array_equal(np.random.get_state()[1], np_before) and random.getstate() == py_before
    assert split.x_train.shape == (4000, 40) and split.x_test.shape == (1000, 40)
    assert split.x_unlabelled.shape == (25, 40)
    assert sorted(split.y_train.unique().tolist()) == list(range(10))
    (cached,) = tmp_path.glob("mnist1d_[0-9a-f]*.npz")  # the main set; the transfer set has its own file
    assert len(list(tmp_path.glob("mnist1d_unlabelled_*.npz"))) == 1
    again = data.load_mnist1d(n_unlabelled=25)  # from the cache: identical
    assert torch.equal(again.x_train, split.x_train) and torch.equal(again.x_unlabelled, split.x_unlabelled)
    # the transfer set is not a copy of the training set
    assert not any(torch.equal(row, split.x_train[0]) for row in split.x_unlabelled)
    # a corrupt cache file is regenerated, not trusted
    cached.write_bytes(b"not an npz file")
    assert torch.equal(data.load_mnist1d().x_test, split.x_test)


def test_labelled_subset_stratified_and_deterministic():
    split = data.load_digits()
    x, y = data.labelled_subset(split.x_train, split.y_train, 100, seed=3)
    x2, y2 = data.labelled_subset(split.x_train, split.y_train, 100, seed=3)
    assert x.shape == (100, 64) and torch.equal(x, x2) and torch.equal(y, y2)
    assert torch.bincount(y, minlength=10).min() >= 9  # ~10 per class
    with pytest.raises(ValueError, match="n must be in"):
        data.labelled_subset(split.x_train, split.y_train, 5)
    with pytest.raises(ValueError, match="same length"):
        data.labelled_subset(split.x_train, split.y_train[:10], 50)


def test_labelled_subset_rest_is_every_other_row_exactly_once():
    split = data.load_digits()
    x, y = split.x_train, split.y_train
    xs, ys, rest = data.labelled_subset(x, y, 100, seed=3, return_rest=True)
    assert torch.equal(xs, data.labelled_subset(x, y, 100, seed=3)[0]) and len(rest) == len(x) - 100
    as_multiset = lambda t: Counter(tuple(r.tolist()) for r in t)
    assert as_multiset(torch.cat([xs, rest])) == as_multiset(x)               # every row exactly once
    assert len(data.labelled_subset(x, y, len(y), return_rest=True)[2]) == 0


def test_shift_images_moves_pixels_and_fills_zero():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 2, 3] = 1.0
    shifted = data.shift_images(x, dx=2, dy=-1)
    assert shifted[0, 0, 1, 5] == 1.0 and shifted.sum() == 1.0
    assert data.shift_images(x, 7, 0).sum() == 0  # shifted off the image
    flat = data.shift_images(x.reshape(1, 64), 1, 1)
    assert flat.shape == (1, 64) and flat.reshape(1, 1, 8, 8)[0, 0, 3, 4] == 1.0
    with pytest.raises(ValueError, match="dx must be in"):
        data.shift_images(x, 8, 0)


def test_add_noise_is_seeded_and_does_not_mutate():
    x = torch.zeros(3, 64)
    a, b = data.add_noise(x, 0.5, seed=1), data.add_noise(x, 0.5, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, x) and torch.count_nonzero(x) == 0
    assert abs(data.add_noise(torch.zeros(10000), 0.5).std().item() - 0.5) < 0.02
    with pytest.raises(ValueError, match="std must be >= 0"):
        data.add_noise(x, -1.0)
