"""mixbook.methods.smoothing: label smoothing and mixup with smoothed targets as registered training methods."""

import pytest
import torch
import torch.nn.functional as F

from mixbook.training import models, population, train
from mixbook.methods import smoothing
from mixbook.training.data import Split


def test_smoothed_targets():
    t = smoothing.smoothed_targets(torch.tensor([0, 2]), 4, 0.2)
    assert torch.allclose(t, torch.tensor([[0.85, 0.05, 0.05, 0.05], [0.05, 0.05, 0.85, 0.05]]))


def test_label_smoothing_loss_equals_torch():
    torch.manual_seed(0)
    model = models.MLP(5, 3, (8,))
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    m = train.make_method("label_smoothing", smoothing=0.1)
    got = m.loss(model, x, y, 3, torch.Generator().manual_seed(0))
    assert torch.allclose(got, F.cross_entropy(model(x), y, label_smoothing=0.1), atol=1e-6)


def test_mixup_smoothing_zero_is_mixup_soft():
    torch.manual_seed(0)
    model = models.MLP(5, 3, (8,))
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    a = train.make_method("mixup_smoothing", alpha=0.4, smoothing=0.0).loss(model, x, y, 3, torch.Generator().manual_seed(1))
    b = train.make_method("mixup", alpha=0.4, loss="soft").loss(model, x, y, 3, torch.Generator().manual_seed(1))
    assert torch.allclose(a, b, atol=1e-6)


def test_bad_smoothing_and_population_support():
    with pytest.raises(ValueError, match="smoothing"):
        train.make_method("label_smoothing", smoothing=1.5)
    assert population.supports(train.make_method("mixup_smoothing"), models.MLP(4, 2, (4,)))
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randn(40, 4, generator=g), torch.randint(0, 2, (40,), generator=g),
                  torch.randn(20, 4, generator=g), torch.randint(0, 2, (20,), generator=g), num_classes=2)
    frame = population.repeat(lambda: models.MLP(4, 2, (4,)), split, {"LS": "label_smoothing"}, [0, 1], epochs=1,
                              batch_size=16, device="cpu", progress=False)
    assert len(frame) == 2
