"""Mixup without mixed labels: keep the first label, draw λ from Beta(α + 1, α).

For a loss linear in its target (cross-entropy with one-hot or soft targets), the mixup
objective

    E_{i,j} E_{λ~Beta(α,α)} ℓ(f(λ x_i + (1−λ) x_j), λ y_i + (1−λ) y_j)

equals

    E_{i,j} E_{λ~Beta(α+1,α)} ℓ(f(λ x_i + (1−λ) x_j), y_i)

(linearity in the target; a Bernoulli(λ) indicator picks which label to keep; Beta–Bernoulli
conjugacy gives the posterior of λ given that the first label was kept; the symmetry λ ↔ 1−λ
with i ↔ j folds the other case onto this one — chapter 2 derives it). Beta(a, b) is in the
standard parameterisation, density ∝ λ^(a−1)(1−λ)^(b−1) as in NumPy, SciPy and torch: the
kept example's weight has mean (α+1)/(2α+1) > ½.

The partner's label never enters, so partners may be *unlabelled*: :func:`sample` takes an
optional separate batch of partners of any size, which gives a semi-supervised form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks, _random
from . import steps
from .distributions import beta
from .mixing import Mixing

__all__ = ["sample", "mix", "kept_label_weight", "monte_carlo", "agreement", "FORMS"]

FORMS = ("symmetric", "reformulated", "wrong_order")


def sample(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    alpha: float = 1.0,
    partners: torch.Tensor | None = None,
    per_sample: bool = True,
    generator: torch.Generator | None = None,
) -> Mixing:
    """Sample the reformulated mixing: λ ~ Beta(α + 1, α), output ``k`` = λ_k x_k + (1 − λ_k) p.

    Args:
        x: ``(b, *)`` batch (its size and device are used).
        y: optional ``(b,)`` or ``(b, C)`` labels of ``x``, checked against ``x`` but not used to
            draw: the reformulation keeps each example's own label, so the draw needs none. It
            is there so that every sampler has the signature ``sample(x, y=None, *, generator,
            **hp)``.
        alpha: α > 0.
        partners: optional ``(m, *)`` separate batch (e.g. unlabelled examples) of any size
            ``m``; each output's partner is drawn uniformly from it, with replacement.
            ``None``: partners are a random permutation of the batch itself.
        per_sample: one λ per example (default) or one per batch.
        generator: optional ``torch.Generator`` on ``x``'s device.

    Returns:
        A pairwise :class:`~mixbook.mixing.Mixing` (with ``partner_size=m`` when ``partners``
        is given); apply it with ``m.apply(x)`` or ``m.apply(x, partners)``.
    """
    x = _checks.non_empty("x", x)
    _checks.optional_companion("y", y, x)
    alpha = _checks.positive_float("alpha", alpha)
    per_sample = _checks.boolean("per_sample", per_sample)
    _checks.generator(generator, x.device)
    b = x.shape[0]
    if partners is None:
        partner = _random.randperm(b, device=x.device, generator=generator)
        size = None
    else:
        partners = _checks.non_empty("partners", partners)
        _checks.same_device("partners", partners, x.device)
        if partners.shape[1:] != x.shape[1:]:
            raise ValueError(f"partners must have x's trailing shape {tuple(x.shape[1:])}, got {tuple(partners.shape[1:])}")
        size = partners.shape[0]
        partner = _random.randint(size, (b,), device=x.device, generator=generator)
    lam_dtype = _checks.weight_dtype(x)
    lam = beta(alpha + 1, alpha, (b if per_sample else 1,), device=x.device, dtype=lam_dtype, generator=generator)
    return Mixing(batch_size=b, partner=partner, lam=lam.expand(b), partner_size=size)


def mix(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    alpha: float = 1.0,
    partners: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixed inputs and the *integer* labels of the kept examples: train with plain ``cross_entropy``.

    Args:
        x: ``(b, *)`` floating batch (torchvision boxes, masks and key points are refused);
            y: ``(b,)`` integer labels.
        alpha: α > 0; λ ~ Beta(α + 1, α) per example.
        partners: optional ``(m, *)`` unlabelled partner batch (see :func:`sample`).

    Returns:
        ``(b, *)`` mixed inputs and ``y`` itself (the kept labels).
    """
    _checks.tensor("x", x)
    _checks.not_boxes_or_masks("x", x)
    x = _checks.batch("x", x)
    _checks.labels("y", y)
    _checks.same_batch("y", y, x.shape[0])
    _checks.same_device("y", y, x.device)
    m = sample(x, alpha=alpha, partners=partners, generator=generator)
    return m.apply(x, partners), y


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


@steps.register("reformulation")
def training_method(alpha: float = 1.0, unlabelled: torch.Tensor | None = None) -> steps.SamplerMethod:
    """The reformulation as a training method (``make_method("reformulation", ...)``).

    :func:`sample` at the input (λ ~ Beta(α + 1, α)), scored by the plain cross-entropy against
    the kept (first) label. ``unlabelled``: optional ``(m, *)`` pool of unlabelled inputs; if
    given, every example's partner is drawn uniformly from it (the semi-supervised form),
    otherwise from the batch. The pool is moved to the training device once and never modified.
    """
    if unlabelled is not None:
        unlabelled = _checks.batch("unlabelled", unlabelled)
    return steps.SamplerMethod(sample, loss="kept", partners=unlabelled, alpha=alpha)
