"""kdcore._validate: the shared argument checks name the argument and catch every bad value."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from kdcore import _validate as v


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 8), cols=st.integers(1, 40), data=st.data(),
       bad=st.sampled_from([float("nan"), float("inf"), -float("inf")]),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]))
def test_finite_rejects_nan_or_inf_anywhere(rows, cols, data, bad, dtype):
    x = torch.randn(rows, cols).to(dtype)
    position = data.draw(st.integers(0, rows * cols - 1))
    x.view(-1)[position] = bad
    with pytest.raises(ValueError, match="logits contains NaN or inf"):
        v.finite("logits", x)


def test_finite_accepts_finite_extremes_and_non_float():
    big = torch.tensor([torch.finfo(torch.float32).max, -torch.finfo(torch.float32).max, 0.0])
    assert v.finite("x", big) is big                         # huge but finite values pass
    assert v.finite("x", torch.empty(0, 3)).shape == (0, 3)  # nothing to check
    labels = torch.tensor([0, 3])
    assert v.finite("labels", labels) is labels              # integer tensors cannot hold NaN


def test_tensor_names_the_argument():
    with pytest.raises(TypeError, match="student_logits must be a torch.Tensor, got list"):
        v.tensor("student_logits", [1.0, 2.0])
    with pytest.raises(ValueError, match=r"x must be 2-D, got shape \(3,\)"):
        v.tensor("x", torch.zeros(3), ndim=2)
