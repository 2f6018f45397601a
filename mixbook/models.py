"""The book's small models.

Both split into ``features`` (the representation) and ``head`` (a linear classifier), so the
manifold-mixup hooks can name a hidden layer by module path (``"features.2"``) and the
embedding by ``"features"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import _checks


class MLP(nn.Module):
    """Multi-layer perceptron ``(b, *in_shape) -> (b, num_classes)``.

    ``features`` = Flatten, then (Linear, ReLU) per hidden width; ``head`` = Linear.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (128, 128)) -> None:
        super().__init__()
        _checks.positive_int("in_features", in_features)
        _checks.num_classes(num_classes)
        widths = [in_features, *[_checks.positive_int("hidden", h) for h in hidden]]
        layers: list[nn.Module] = [nn.Flatten()]
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SmallCNN(nn.Module):
    """A small convolutional net for ``(b, C, H, W)`` images, e.g. digits ``(b, 1, 8, 8)``.

    ``features`` = three 3×3 conv blocks (conv, ReLU; a 2×2 max-pool after the second) and a
    global average pool to ``(b, 2·width)``; ``head`` = Linear to ``num_classes``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        _checks.positive_int("in_channels", in_channels)
        _checks.num_classes(num_classes)
        w = _checks.positive_int("width", width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(2 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
