"""kdcore.models: the course's networks have the documented sizes and shapes."""
import pytest
import torch

from kdcore.models import MLP, DigitsCNN, Mnist1dConvBase


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_hand_counts():
    # conv1 1*32*9+32, conv2 32*64*9+64, fc 64*4*4*10+10
    assert n_params(DigitsCNN()) == (32 * 9 + 32) + (32 * 64 * 9 + 64) + (1024 * 10 + 10) == 29_066
    assert n_params(MLP()) == (64 * 32 + 32) + (32 * 10 + 10) == 2_410
    assert n_params(Mnist1dConvBase()) == (25 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + (125 * 10 + 10) == 5_210


def test_shapes_and_features():
    x = torch.randn(5, 1, 8, 8)
    logits, (f1, f2) = DigitsCNN((8, 16))(x, return_features=True)
    assert logits.shape == (5, 10) and f1.shape == (5, 8, 8, 8) and f2.shape == (5, 16, 8, 8)
    assert DigitsCNN()(x.reshape(5, 64)).shape == (5, 10)
    assert MLP((64, 256, 256, 10))(x).shape == (5, 10)
    assert Mnist1dConvBase()(torch.randn(5, 40)).shape == (5, 10)
    mlp = MLP((4, 3))
    assert len(mlp.layers) == 1 and torch.all(mlp(-torch.ones(2, 4)) == mlp.layers[0](-torch.ones(2, 4)))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="channels"):
        DigitsCNN((8,))
    with pytest.raises(ValueError, match="sizes"):
        MLP((64,))
    with pytest.raises(ValueError, match="sizes must be in"):
        MLP((64, 0, 10))
