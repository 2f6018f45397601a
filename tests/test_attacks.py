"""mixbook.chapters.attacks: perturbations stay in the ε-ball, ε = 0 is the clean accuracy, attacks hurt."""

import pytest
import torch

from mixbook.chapters import attacks
from mixbook.training import models


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = models.MLP(64, 10, (32,)).eval()
    x = torch.randn(40, 1, 8, 8)
    y = model(x).argmax(1)          # every point correctly classified at ε = 0
    return model, x, y


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
@pytest.mark.parametrize("norm", attacks.NORMS)
@pytest.mark.parametrize("eps", [0.0, 0.05, 0.5])
def test_within_ball(setup, attack, norm, eps):
    model, x, y = setup
    adv = attacks.ATTACKS[attack](model, x, y, eps, norm=norm)
    d = (adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert adv.shape == x.shape and not adv.requires_grad
    assert bool((size <= eps * (1 + 1e-5) + 1e-7).all())


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_eps_zero_is_clean_accuracy(setup, attack):
    model, x, y = setup
    y = y.clone()
    y[:10] = (y[:10] + 1) % 10
    clean = float((model(x).argmax(1) == y).double().mean())
    assert attacks.accuracy_under_attack(model, x, y, 0.0, attack=attack) == pytest.approx(clean)


def test_attacks_lower_accuracy_and_pgd_is_stronger(setup):
    model, x, y = setup
    f = attacks.accuracy_under_attack(model, x, y, 0.3, attack="fgsm")
    p = attacks.accuracy_under_attack(model, x, y, 0.3, attack="pgd", steps=10)
    assert f < 1.0 and p <= f + 1e-12


def test_pgd_random_start_and_clamp(setup):
    model, x, y = setup
    adv = attacks.pgd(model, x, y, 0.2, steps=3, random_start=True, clamp=(-1.0, 1.0),
                      generator=torch.Generator().manual_seed(0))
    assert adv.min() >= -1.0 and adv.max() <= 1.0


def test_leaves_parameters_alone(setup):
    model, x, y = setup
    before = [p.detach().clone() for p in model.parameters()]
    attacks.pgd(model, x, y, 0.1, steps=2)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


@pytest.mark.parametrize("bad", [-0.1, float("nan"), True, "0.1"])
def test_bad_eps(setup, bad):
    model, x, y = setup
    with pytest.raises(ValueError, match="eps"):
        attacks.fgsm(model, x, y, bad)


def test_bad_norm_and_labels(setup):
    model, x, y = setup
    with pytest.raises(ValueError, match="norm"):
        attacks.fgsm(model, x, y, 0.1, norm="l1")
    with pytest.raises(ValueError):
        attacks.fgsm(model, x, y[:5], 0.1)
