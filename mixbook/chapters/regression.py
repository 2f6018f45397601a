"""Mixup for regression: mixed targets, the bias they carry, and local (nearest-neighbour) pairing.

Chapter 8 (mixup for regression).

Mixing the targets linearly, ``ỹ = λ y_i + (1 − λ) y_j``, assumes the regression function is
linear between the two inputs. For ``f(x) = x²`` the mixed target exceeds the truth at the mixed
input by exactly ``λ (1 − λ) (x_i − x_j)²`` (:func:`quadratic_bias`), whose mean under
λ ~ Beta(α, α) and independent ``x_i, x_j`` is ``E[λ(1 − λ)] · 2 Var(x) = α Var(x) / (2α + 1)``.
Pairing each example with one of its nearest neighbours (:func:`mixbook.methods.mixup.nearest_partner`)
shrinks ``(x_i − x_j)²`` and so the bias. :func:`fit` trains a regressor with either pairing.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core import _checks
from ..methods import mixup

__all__ = ["expected_lam_product", "quadratic_bias", "mix", "fit", "Ensemble", "fit_many"]


def expected_lam_product(alpha: float) -> float:
    """``E[λ (1 − λ)]`` for λ ~ Beta(α, α): ``α / (2 (2α + 1))``."""
    alpha = _checks.positive_float("alpha", alpha)
    return alpha / (2 * (2 * alpha + 1))


def quadratic_bias(x_i: torch.Tensor, x_j: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``λ y_i + (1 − λ) y_j − f(λ x_i + (1 − λ) x_j)`` for ``f(x) = x²``, in closed form: ``λ(1 − λ)(x_i − x_j)²``."""
    return lam * (1 - lam) * (x_i - x_j) ** 2


def mix(x: torch.Tensor, y: torch.Tensor, *, alpha: float, pairing: str = "random", k: int = 1,
        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix a regression batch: inputs ``(b, d)`` and real targets ``(b, t)`` with the same λ, per example.

    ``pairing`` is ``"random"`` or ``"nearest"`` (one of the ``k`` nearest inputs); λ ~ Beta(α, α)
    is drawn per example (:func:`mixbook.methods.mixup.sample` with ``per_sample=True``).
    """
    _checks.choice("pairing", pairing, ("random", "nearest"))
    m = mixup.sample(x, alpha=alpha, per_sample=True, pairing=pairing, k=k, generator=generator)
    return m.apply(x), m.apply(y)


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, method: str = "erm", alpha: float = 1.0, k: int = 1,
        epochs: int = 200, batch_size: int = 64, lr: float = 3e-3, seed: int = 0) -> nn.Module:
    """Train ``model`` ``(b, d) -> (b, t)`` on ``(x, y)`` with squared error; returns the model.

    Not :func:`mixbook.training.train.fit`'s loop, which trains classifiers on a ``Split`` with
    cross-entropy methods: this is regression on real ``(n, t)`` targets (squared error, mixing of
    inputs and targets here), AdamW at its default weight decay and no learning-rate schedule.

    Args:
        method: ``"erm"``, ``"mixup"`` (random pairs) or ``"local"`` (``k`` nearest pairs).
        alpha: α of Beta(α, α) for the mixing methods.
        epochs, batch_size, lr: AdamW, shuffled minibatches.
        seed: seeds the data order and the mixing (one generator); the model's initial weights
            are the caller's.
    """
    method = _checks.choice("method", method, ("erm", "mixup", "local"))
    epochs = _checks.positive_int("epochs", epochs)
    batch_size = _checks.positive_int("batch_size", batch_size)
    _checks.same_batch("y", y, x.shape[0])
    g = torch.Generator(device=x.device).manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    n = x.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, generator=g, device=x.device)
        for idx in order.split(batch_size):
            xb, yb = x[idx], y[idx]
            if method != "erm" and xb.shape[0] > 1:
                xb, yb = mix(xb, yb, alpha=alpha, pairing="nearest" if method == "local" else "random", k=k, generator=g)
            loss = (model(xb) - yb).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


class Ensemble:
    """``M`` independent tanh MLPs ``d -> H -> H -> t`` with stacked parameters, run as one batched call.

    Member ``m``'s initial weights are those of ``nn.Sequential(Linear(d, H), Tanh(), Linear(H, H),
    Tanh(), Linear(H, t))`` built right after ``torch.manual_seed(seeds[m])``, so a member equals
    the separately built network of its seed.
    """

    def __init__(self, seeds: list[int], d: int, hidden: int, t: int = 1) -> None:
        shapes = []
        for s in seeds:
            torch.manual_seed(s)
            net = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, t))
            shapes.append([p.detach().clone() for p in net.parameters()])
        # (M, in, out) weights and (M, 1, out) biases
        self.params = []
        for i in range(len(shapes[0])):
            stacked = torch.stack([ps[i] for ps in shapes])
            stacked = stacked.transpose(1, 2).contiguous() if stacked.dim() == 3 else stacked.unsqueeze(1).contiguous()
            self.params.append(stacked.requires_grad_(True))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(M, n, d)`` (or ``(n, d)``, shared by every member) -> ``(M, n, t)``."""
        w1, b1, w2, b2, w3, b3 = self.params
        if x.dim() == 2:
            x = x.expand(w1.shape[0], *x.shape)
        h = torch.tanh(torch.baddbmm(b1, x, w1))
        h = torch.tanh(torch.baddbmm(b2, h, w2))
        return torch.baddbmm(b3, h, w3)


def _batched_nearest(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Per member, a partner among the ``k`` nearest others: ``x`` ``(M, B, d)`` -> ``(M, B)``."""
    m, b, _ = x.shape
    dist = torch.cdist(x, x)
    dist.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    k = min(k, b - 1)
    nearest = dist.topk(k, dim=2, largest=False).indices
    pick = torch.randint(k, (m, b, 1), generator=generator, device=x.device)
    return nearest.gather(2, pick).squeeze(2)


def fit_many(x: torch.Tensor, y: torch.Tensor, methods: list[str], seeds: list[int], *, hidden: int = 32,
             alpha: float = 1.0, k: int = 1, epochs: int = 200, batch_size: int = 32, lr: float = 3e-3) -> tuple[Ensemble, list[tuple[str, int]]]:
    """Train one regressor per ``(method, seed)`` at once (an :class:`Ensemble`), squared error, AdamW.

    Every method of a seed starts from the same weights and sees the same batches (the order is
    drawn from ``torch.Generator().manual_seed(seed)``); ``"mixup"`` pairs at random, ``"local"``
    with one of the ``k`` nearest inputs of the batch, λ ~ Beta(α, α) per example; ``"erm"`` does
    not mix. Members do not interact: the loss is a sum of per-member means and AdamW acts
    element by element.

    Not :func:`mixbook.training.train.fit`'s loop: all members train at once as one batched
    ensemble, on regression targets with squared error (no classes, no
    :class:`~mixbook.training.train.History`).

    Args:
        x: ``(n, d)`` inputs; y: ``(n, t)`` real targets.
        methods: names among ``"erm"``, ``"mixup"``, ``"local"``; seeds: integers ≥ 0.

    Returns:
        The trained ensemble and its members' ``(method, seed)`` in order (seed-major).
    """
    from ..core.distributions import beta

    for mth in methods:
        _checks.choice("method", mth, ("erm", "mixup", "local"))
    epochs = _checks.positive_int("epochs", epochs)
    batch_size = _checks.positive_int("batch_size", batch_size)
    alpha = _checks.positive_float("alpha", alpha)
    _checks.same_batch("y", y, x.shape[0])
    members = [(mth, s) for s in seeds for mth in methods]
    model = Ensemble([s for _, s in members], x.shape[1], hidden, y.shape[1])
    opt = torch.optim.AdamW(model.params, lr=lr)
    n, mcount = x.shape[0], len(members)
    kind = torch.tensor([("erm", "mixup", "local").index(mth) for mth, _ in members])
    order_gens = {s: torch.Generator().manual_seed(s) for s in seeds}
    mix_gen = torch.Generator().manual_seed(min(seeds) if seeds else 0)
    for _ in range(epochs):
        perms = {s: torch.randperm(n, generator=order_gens[s]) for s in seeds}
        order = torch.stack([perms[s] for _, s in members])                  # (M, n)
        for idx in order.split(batch_size, dim=1):
            xb, yb = x[idx], y[idx]                                          # (M, B, d), (M, B, t)
            b = idx.shape[1]
            if b > 1:
                rand_partner = torch.rand(mcount, b, generator=mix_gen).argsort(1)
                near_partner = _batched_nearest(xb, k, mix_gen)
                partner = torch.where((kind == 2).view(-1, 1), near_partner, rand_partner)
                lam = beta(alpha, alpha, (mcount, b, 1), dtype=x.dtype, generator=mix_gen)
                lam = torch.where((kind == 0).view(-1, 1, 1), torch.ones_like(lam), lam)
                gather = partner.unsqueeze(2)
                xb = lam * xb + (1 - lam) * xb.gather(1, gather.expand(-1, -1, xb.shape[2]))
                yb = lam * yb + (1 - lam) * yb.gather(1, gather.expand(-1, -1, yb.shape[2]))
            loss = (model(xb) - yb).square().mean(dim=(1, 2)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model, members
