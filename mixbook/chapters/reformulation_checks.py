"""Monte Carlo checks of the reformulation (chapter 2), apart from the sampler they check.

:func:`kept_label_weight` samples the weight of the label a Bernoulli(λ) indicator keeps under
symmetric mixup (by Beta–Bernoulli conjugacy it is Beta(α + 1, α)); :func:`monte_carlo` estimates
a model's loss, its logits' gradient and its parameters' gradient under the three objectives of
:data:`FORMS` (mixup's symmetric one, the reformulated one and the wrong order, Beta(α, α + 1));
:func:`agreement` compares two estimates. The reformulation itself is :mod:`mixbook.methods.reformulation`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core import _checks
from ..core.distributions import beta

__all__ = ["FORMS", "kept_label_weight", "monte_carlo", "agreement"]

FORMS = ("symmetric", "reformulated", "wrong_order")


def kept_label_weight(alpha: float, n: int, *, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Empirical weight of the label a Bernoulli(λ) indicator keeps under symmetric mixup.

    Draw λ ~ Beta(α, α) and z ~ Bernoulli(λ); the kept label (``y_i`` if z = 1, else ``y_j``)
    carries weight ``w = λ`` if z = 1 else ``1 − λ``. By conjugacy ``w ~ Beta(α + 1, α)``.

    Returns:
        ``(n,)`` samples of ``w`` on the CPU (or the generator's device).
    """
    alpha = _checks.positive_float("alpha", alpha)
    n = _checks.positive_int("n", n)
    device = torch.device(generator.device) if generator is not None else torch.device("cpu")
    lam = beta(alpha, alpha, (n,), device=device, dtype=dtype, generator=generator)
    z = torch.rand(n, device=device, dtype=dtype, generator=generator) < lam
    return torch.where(z, lam, 1 - lam)


def _form_batch(form: str, x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float,
                n: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` Monte Carlo draws of (mixed input, target) of one objective; targets soft ``(n, C)``."""
    i = torch.randint(x.shape[0], (n,), device=x.device, generator=generator)
    j = torch.randint(x.shape[0], (n,), device=x.device, generator=generator)
    a, b = {"symmetric": (alpha, alpha), "reformulated": (alpha + 1, alpha), "wrong_order": (alpha, alpha + 1)}[form]
    lam = beta(a, b, (n,), device=x.device, dtype=x.dtype, generator=generator)
    lam_x = lam.view(-1, *([1] * (x.ndim - 1)))
    inputs = lam_x * x[i] + (1 - lam_x) * x[j]
    yi = F.one_hot(y[i], num_classes).to(x.dtype)
    if form == "symmetric":
        target = lam[:, None] * yi + (1 - lam[:, None]) * F.one_hot(y[j], num_classes).to(x.dtype)
    else:
        target = yi
    return inputs, target


def monte_carlo(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    alpha: float,
    form: str,
    n: int,
    generator: torch.Generator | None = None,
    chunk: int = 2048,
    gradients: bool = True,
) -> dict[str, torch.Tensor]:
    """Monte Carlo estimate (mean and standard error) of a mixup objective and of its gradient.

    Pairs ``(i, j)`` are drawn uniformly with replacement from ``(x, y)``; the objective is

    * ``"symmetric"``: CE against λ y_i + (1 − λ) y_j, λ ~ Beta(α, α) (mixup);
    * ``"reformulated"``: CE against y_i, λ ~ Beta(α + 1, α);
    * ``"wrong_order"``: CE against y_i, λ ~ Beta(α, α + 1) (the arguments swapped).

    Per-sample gradients with respect to the model's parameters come from ``torch.func``
    (``vmap`` of ``grad``), accumulated in chunks.

    Returns:
        ``{"loss": mean, "loss_se": standard error}`` (0-dim) and, with ``gradients``,
        ``{"grad": (P,), "grad_se": (P,)}`` over the flattened parameters.
    """
    from torch.func import functional_call, grad, vmap

    form = _checks.choice("form", form, FORMS)
    n = _checks.positive_int("n", n)
    if n < 2:
        raise ValueError(f"n must be >= 2 (a standard error needs two draws), got {n}")
    alpha = _checks.positive_float("alpha", alpha)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p, xi, ti):
        logits = functional_call(model, p, (xi.unsqueeze(0),))
        return -(ti * logits.log_softmax(dim=1).squeeze(0)).sum()

    per_sample_grad = vmap(grad(loss_one), in_dims=(None, 0, 0))
    s1 = torch.zeros((), dtype=torch.float64, device=x.device)
    s2 = torch.zeros_like(s1)
    g1 = g2 = None
    done = 0
    while done < n:
        k = min(chunk, n - done)
        inputs, target = _form_batch(form, x, y, num_classes, alpha, k, generator)
        with torch.no_grad():
            losses = -(target * functional_call(model, params, (inputs,)).log_softmax(dim=1)).sum(1).double()
        s1 += losses.sum()
        s2 += (losses ** 2).sum()
        if gradients:
            g = per_sample_grad(params, inputs, target)
            flat = torch.cat([g[name].reshape(k, -1) for name in params], dim=1).double()
            g1 = flat.sum(0) if g1 is None else g1 + flat.sum(0)
            g2 = (flat ** 2).sum(0) if g2 is None else g2 + (flat ** 2).sum(0)
        done += k
    mean = s1 / n
    out = {"loss": mean, "loss_se": ((s2 - n * mean ** 2).clamp_min(0) / (n - 1) / n).sqrt()}
    if gradients:
        gm = g1 / n
        out["grad"] = gm
        out["grad_se"] = ((g2 - n * gm ** 2).clamp_min(0) / (n - 1) / n).sqrt()
    return out



def agreement(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    """Compare two :func:`monte_carlo` estimates drawn independently.

    Returns:
        ``loss_z``: difference of the losses in combined standard errors; ``grad_z2``: mean over
        parameters (with non-zero standard error) of the squared z-score of the gradient
        difference (≈ 1 when the two agree, ≫ 1 when they differ); ``grad_z_over_4``: share of
        parameters with |z| > 4; ``cosine``: cosine similarity of the two mean gradients.
    """
    se_loss = (a["loss_se"] ** 2 + b["loss_se"] ** 2).sqrt()
    diff = a["loss"] - b["loss"]
    out = {"loss_z": float(diff / se_loss) if se_loss > 0 else (0.0 if diff == 0 else float("inf"))}
    if "grad" in a and "grad" in b:
        se = (a["grad_se"] ** 2 + b["grad_se"] ** 2).sqrt()
        live = se > 0
        z = (a["grad"] - b["grad"])[live] / se[live]
        out["grad_z2"] = float((z ** 2).mean())
        out["grad_z_over_4"] = float((z.abs() > 4).double().mean())
        out["cosine"] = float(F.cosine_similarity(a["grad"], b["grad"], dim=0))
    return out
