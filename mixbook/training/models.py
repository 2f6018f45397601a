"""The book's small models.

Both split into ``features`` (the representation) and ``head`` (a linear classifier), so the
manifold-mixup hooks can name a hidden layer by module path (``"features.2"``) and the
embedding by ``"features"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..core import _checks

__all__ = ["MLP", "SmallCNN", "CifarResNet18"]


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class MLP(nn.Module):
    """Multi-layer perceptron ``(b, *in_shape) -> (b, num_classes)``.

    ``features`` = Flatten, then (Linear, activation) per hidden width; ``head`` = Linear.
    ``num_classes`` is the output width (1 for scalar regression).

    Args:
        in_features: flattened input size.
        num_classes: outputs of the head, ≥ 1.
        hidden: widths of the hidden layers.
        activation: ``"relu"`` (default), ``"tanh"`` or ``"gelu"``.
        head_bias: whether the linear head has a bias (chapter 3 trains one without).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (128, 128),
                 activation: str = "relu", head_bias: bool = True) -> None:
        super().__init__()
        _checks.positive_int("in_features", in_features)
        _checks.positive_int("num_classes", num_classes)
        act = _ACTIVATIONS[_checks.choice("activation", activation, tuple(_ACTIVATIONS))]
        widths = [in_features, *[_checks.positive_int("hidden", h) for h in hidden]]
        layers: list[nn.Module] = [nn.Flatten()]
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), act()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], num_classes, bias=_checks.boolean("head_bias", head_bias))

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


class CifarResNet18(nn.Module):
    """ResNet-18 for 32×32 images (the CIFAR variant of the mixup papers), ``(b, 3, 32, 32) -> (b, C)``.

    torchvision's ``resnet18`` blocks (random initialisation, nothing downloaded) with the
    ImageNet stem replaced by a 3×3 stride-1 convolution and no max-pool, as in Zhang et al. (2018)
    and Verma et al. (2019). Split like the other models: ``features`` = Sequential(stem,
    layer1, layer2, layer3, layer4, global average pool, Flatten) → ``(b, 512)``; ``head`` =
    Linear(512, C). Module paths: ``"features.1"``…``"features.4"`` are the residual stages
    (``"features.4"`` is the last ``(b, 512, 4, 4)`` feature map, where dense MultiMix mixes),
    ``"features"`` the embedding.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        from torchvision.models import resnet18

        _checks.num_classes(num_classes)
        _checks.positive_int("in_channels", in_channels)
        net = resnet18(weights=None, num_classes=num_classes)
        stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False), net.bn1, net.relu)
        self.features = nn.Sequential(stem, net.layer1, net.layer2, net.layer3, net.layer4,
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
