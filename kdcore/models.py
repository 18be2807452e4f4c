"""Small teacher and student networks for the course's data sets (all train in seconds on a CPU).

(Used by notebooks 01–10; no exercise of its own.)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate as v

__all__ = ["DigitsCNN", "MLP", "Mnist1dConvBase"]


class DigitsCNN(nn.Module):
    """CNN for 8x8 digits: conv3x3 → ReLU → conv3x3 → ReLU → maxpool2 → Linear.

    Input ``[B, 1, 8, 8]`` (or ``[B, 64]``, reshaped). With ``channels=(32, 64)``: 29,066 parameters,
    the course's teacher. ``forward(x, return_features=True)`` also returns the two ReLU feature maps
    (``[B, c1, 8, 8]``, ``[B, c2, 8, 8]``) used by attention transfer and hint losses.
    """

    def __init__(self, channels: Sequence[int] = (32, 64), n_classes: int = 10) -> None:
        super().__init__()
        if len(channels) != 2:
            raise ValueError(f"channels must have 2 entries (conv1, conv2), got {tuple(channels)}")
        c1, c2 = (v.integer("channels", int(c), minimum=1) for c in channels)
        v.integer("n_classes", n_classes, minimum=2)
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc = nn.Linear(c2 * 4 * 4, n_classes)  # 8x8 -> maxpool2 -> 4x4

    def forward(self, x: torch.Tensor, return_features: bool = False):
        x = x.reshape(-1, 1, 8, 8)
        f1 = F.relu(self.conv1(x))
        f2 = F.relu(self.conv2(f1))
        logits = self.fc(F.max_pool2d(f2, 2).flatten(1))
        return (logits, [f1, f2]) if return_features else logits


class MLP(nn.Module):
    """Linear–ReLU stack; ``sizes=(64, 32, 10)`` is the digits student (2,410 parameters).

    ``MLP((64, 256, 256, 10))`` is the pruning model. Inputs are flattened from dim 1, so digits
    images ``[B, 1, 8, 8]`` and vectors ``[B, 64]`` both work.
    """

    def __init__(self, sizes: Sequence[int] = (64, 32, 10)) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least input and output sizes, got {tuple(sizes)}")
        sizes = [v.integer("sizes", int(s), minimum=1) for s in sizes]
        self.sizes = tuple(sizes)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class Mnist1dConvBase(nn.Module):
    """Greydanus' (2020) ConvBase for MNIST-1D: three strided Conv1d layers and a Linear; 5,210 parameters.

    Input ``[B, 40]`` or ``[B, 1, 40]``; lengths 40 → 20 → 10 → 5.
    """

    def __init__(self, channels: int = 25, n_classes: int = 10) -> None:
        super().__init__()
        v.integer("channels", channels, minimum=1)
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.fc = nn.Linear(channels * 5, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, -1)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.fc(x.flatten(1))
