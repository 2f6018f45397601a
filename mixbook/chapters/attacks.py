"""Adversarial examples: FGSM (Goodfellow et al. 2015) and projected gradient descent (Madry et al. 2018).

Chapter 8 (beyond accuracy: robustness to adversarial examples).

Both attacks maximise the cross-entropy of a classifier ``model: (b, *) -> (b, C)`` within a
ball of radius ε around the input, in the L∞ norm (``norm="linf"``, the papers' setting) or the
L2 norm (``norm="l2"``, per example over all its features). The perturbation never leaves the
ball: FGSM takes one step of size ε along the sign (L∞) or the normalised gradient (L2); PGD
takes ``steps`` steps of size ``step_size`` and projects back onto the ball after each one.
ε = 0 returns the input unchanged, so :func:`accuracy_under_attack` at ε = 0 is the clean
accuracy. An optional box ``clamp=(low, high)`` keeps the adversarial input in the data range.

The model's parameters are not updated and their ``.grad`` is left as it was; the model's
train/eval mode is the caller's (put it in ``eval()`` first).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..core import _checks

__all__ = ["NORMS", "project", "fgsm", "pgd", "ATTACKS", "accuracy_under_attack"]

NORMS = ("linf", "l2")


def _check(model: object, x: object, y: object, eps: object, norm: str) -> tuple[torch.Tensor, torch.Tensor, float, str]:
    if not callable(model):
        raise TypeError(f"model must be callable (an nn.Module), got {type(model).__name__}")
    x = _checks.non_empty("x", x)
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating tensor, got {x.dtype}")
    y = _checks.labels("y", y)
    _checks.same_batch("y", y, x.shape[0])
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0 or eps != eps:
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")
    return x, y, float(eps), _checks.choice("norm", norm, NORMS)


def _input_grad(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂ CE(model(x), y) / ∂x, ``(b, *)``, without touching the parameters' ``.grad``."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x)
    return g


def _per_example_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm of each example, shaped ``(b, 1, ..., 1)`` to broadcast against ``t``."""
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def _direction(g: torch.Tensor, norm: str) -> torch.Tensor:
    return g.sign() if norm == "linf" else g / _per_example_norm(g)


def project(delta: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """Project perturbations ``delta`` ``(b, *)`` onto the ε-ball of ``norm``, example by example."""
    norm = _checks.choice("norm", norm, NORMS)
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = _per_example_norm(delta)
    return delta * torch.clamp(eps / n, max=1.0)


def _box(x: torch.Tensor, clamp: tuple[float, float] | None) -> torch.Tensor:
    return x if clamp is None else x.clamp(*clamp)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "linf",
         clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """The fast gradient sign method: ``x + ε · sign(∇ₓ CE)`` (L∞) or ``x + ε · ∇/‖∇‖₂`` (L2).

    Args:
        model: classifier ``(b, *) -> (b, C)`` logits.
        x: ``(b, *)`` floating inputs; y: ``(b,)`` integer labels.
        eps: radius ε ≥ 0 of the ball, in the units of ``x``.
        norm: ``"linf"`` or ``"l2"``.
        clamp: optional ``(low, high)`` box applied after the step.

    Returns:
        ``(b, *)`` adversarial inputs, detached, ``‖x_adv − x‖ ≤ ε`` per example.
    """
    x, y, eps, norm = _check(model, x, y, eps, norm)
    if eps == 0:
        return x.detach().clone()
    step = eps * _direction(_input_grad(model, x, y), norm)
    return _box(x.detach() + project(step, eps, norm), clamp).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int = 10,
        step_size: float | None = None, norm: str = "linf", random_start: bool = False,
        clamp: tuple[float, float] | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient ascent on the cross-entropy within the ε-ball (Madry et al. 2018).

    Args:
        model, x, y, eps, norm, clamp: as in :func:`fgsm`.
        steps: number of ascent steps, ≥ 1.
        step_size: size of each step (default ``2.5 ε / steps``, Madry et al.'s rule).
        random_start: start from a uniform point of the L∞ ball (a scaled Gaussian direction
            for L2) instead of ``x``.
        generator: optional ``torch.Generator`` for the random start.

    Returns:
        ``(b, *)`` adversarial inputs, detached, ``‖x_adv − x‖ ≤ ε`` per example.
    """
    x, y, eps, norm = _check(model, x, y, eps, norm)
    steps = _checks.positive_int("steps", steps)
    if eps == 0:
        return x.detach().clone()
    alpha = 2.5 * eps / steps if step_size is None else _checks.positive_float("step_size", step_size)
    x0 = x.detach()
    delta = torch.zeros_like(x0)
    if random_start:
        _checks.generator(generator, x.device)
        if norm == "linf":
            delta = (torch.rand(x0.shape, device=x.device, dtype=x.dtype, generator=generator) * 2 - 1) * eps
        else:
            d = torch.randn(x0.shape, device=x.device, dtype=x.dtype, generator=generator)
            delta = project(d * eps, eps, norm)
    for _ in range(steps):
        adv = _box(x0 + delta, clamp)
        delta = project(delta + alpha * _direction(_input_grad(model, adv, y), norm), eps, norm)
    return _box(x0 + delta, clamp).detach()


ATTACKS: dict[str, Callable[..., torch.Tensor]] = {"fgsm": fgsm, "pgd": pgd}


@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (model(x).argmax(1) == y).double().sum()


def accuracy_under_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                          attack: str = "fgsm", batch_size: int = 1024, **options: object) -> float:
    """Accuracy of ``model`` on ``attack(model, x, y, eps, **options)``, in ``[0, 1]``.

    ``attack`` is ``"fgsm"`` or ``"pgd"``; ``options`` go to it (``steps``, ``norm``, …). The
    data is attacked in chunks of ``batch_size``; ε = 0 gives the clean accuracy.
    """
    attack = _checks.choice("attack", attack, tuple(ATTACKS))
    x, y, eps, _ = _check(model, x, y, eps, str(options.get("norm", "linf")))
    fn = ATTACKS[attack]
    correct = torch.zeros((), dtype=torch.float64, device=x.device)
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        correct += _correct(model, fn(model, xb, yb, eps, **options), yb)
    return float(correct) / x.shape[0]
