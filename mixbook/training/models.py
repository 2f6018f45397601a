"""The book's small models.

Each splits into ``features`` (the representation) and ``head`` (a linear classifier), so the
manifold-mixup hooks can name a hidden layer by module path (``"features.2"``) and the
embedding by ``"features"``. :class:`MNIST1DConv` is the reference CNN of MNIST-1D
(Greydanus & Kobak); ``MLP(40, 10, hidden=())`` is its logistic regression.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..core import _checks

__all__ = ["MLP", "SmallCNN", "CifarResNet18", "MNIST1DConv"]


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class MLP(nn.Module):
    """Multi-layer perceptron ``(b, *in_shape) -> (b, num_classes)``.

    ``features`` = Flatten, then (Linear, activation) per hidden width — (Linear, activation,
    Dropout) when ``dropout > 0`` — and ``head`` = Linear. ``num_classes`` is the output width (1 for
    scalar regression). ``hidden=()`` is a linear model (logistic regression under cross-entropy).

    Module paths: without dropout the post-activation outputs are ``"features.2"``,
    ``"features.4"``, …; with dropout every hidden layer takes three slots, so they are
    ``"features.2"``, ``"features.5"``, … (the dropout outputs ``"features.3"``, ``"features.6"``, …).

    Args:
        in_features: flattened input size.
        num_classes: outputs of the head, ≥ 1.
        hidden: widths of the hidden layers (each ≥ 1; may be empty).
        activation: ``"relu"`` (default), ``"tanh"`` or ``"gelu"``.
        head_bias: whether the linear head has a bias (chapter 3 trains one without).
        dropout: drop probability of an ``nn.Dropout`` after each hidden activation, in ``[0, 1)``.
            ``0`` (default) adds no module at all: the module list, parameter names and
            initialisation are those of a model built without the option.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (128, 128),
                 activation: str = "relu", head_bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        _checks.positive_int("in_features", in_features)
        _checks.positive_int("num_classes", num_classes)
        act = _ACTIVATIONS[_checks.choice("activation", activation, tuple(_ACTIVATIONS))]
        p = _checks.unit_interval("dropout", dropout)
        widths = [in_features, *[_checks.positive_int("hidden", h) for h in hidden]]
        layers: list[nn.Module] = [nn.Flatten()]
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), act()]
            if p > 0:
                layers.append(nn.Dropout(p))
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


def _conv_length(length: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a ``Conv1d`` (dilation 1): ``floor((L + 2p − k) / s) + 1``."""
    return (length + 2 * padding - kernel) // stride + 1


class MNIST1DConv(nn.Module):
    """The reference CNN of MNIST-1D, ``(b, 40)`` or ``(b, 1, 40)`` → ``(b, num_classes)``.

    The ``ConvBase`` of Greydanus & Kobak's repository (github.com/greydanus/mnist1d,
    ``notebooks/models.py``, 5,210 parameters at the defaults): three ``Conv1d`` layers with
    ReLUs — ``Conv1d(1, 25, 5, stride=2, padding=1)``, ``Conv1d(25, 25, 3, 2, 1)``,
    ``Conv1d(25, 25, 3, 2, 1)`` — the ``(b, 25, 5)`` map flattened to 125 features and a
    ``Linear(125, 10)`` classifier; PyTorch's default initialisation, as there.

    Split like the other models: ``features`` = Sequential(conv, ReLU, conv, ReLU, conv, ReLU,
    Flatten) and ``head`` = Linear. Module paths for the hooks: ``"features.1"`` ``(b, 25, 19)``,
    ``"features.3"`` ``(b, 25, 10)``, ``"features.5"`` ``(b, 25, 5)`` (post-ReLU maps),
    ``"features"`` the ``(b, 125)`` embedding. A ``(b, length)`` input gets its channel axis in
    :meth:`forward`, before ``features`` (``model.features`` itself takes ``(b, 1, length)``).

    Args:
        num_classes: outputs of the head, ≥ 1 (10 for MNIST-1D).
        channels: channels of every conv layer, ≥ 1 (25 in the reference).
        length: input length, ≥ 3 (40 for MNIST-1D); sets the head's input width
            (``channels × 5`` at 40).
    """

    def __init__(self, num_classes: int = 10, channels: int = 25, length: int = 40) -> None:
        super().__init__()
        _checks.num_classes(num_classes)
        c = _checks.positive_int("channels", channels)
        length = _checks.positive_int("length", length)
        if length < 3:
            raise ValueError(f"length must be an int >= 3 (the first conv has kernel 5 and padding 1), got {length}")
        self.length = length
        out = _conv_length(_conv_length(_conv_length(length, 5, 2, 1), 3, 2, 1), 3, 2, 1)
        self.features = nn.Sequential(
            nn.Conv1d(1, c, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(c, c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(c, c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Linear(c * out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, length)`` or ``(b, 1, length)`` → ``(b, num_classes)`` logits."""
        if x.ndim == 2 and x.shape[1] == self.length:
            x = x.unsqueeze(1)
        elif not (x.ndim == 3 and x.shape[1] == 1 and x.shape[2] == self.length):
            raise ValueError(f"x must have shape (b, {self.length}) or (b, 1, {self.length}), got {tuple(x.shape)}")
        return self.head(self.features(x))
