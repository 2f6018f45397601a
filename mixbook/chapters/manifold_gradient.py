"""Manifold mixup's gradient (chapter 3): its four terms, gradient surgery, and the experiment's loop.

* :func:`gradient_terms`: with a *linear* head ``G`` on a feature map ``F``, the gradient of the
  manifold-mixup squared loss with respect to ``F``'s parameters is a sum of four
  vector-Jacobian products, two "usual" (each example's own residual through its own Jacobian,
  weighted ``λ²`` and ``(1−λ)²``) and two "cross" (each residual through the *partner's*
  Jacobian, weighted ``λ(1−λ)``);
* :func:`decomposed_loss`: gradient surgery, a loss whose gradient for ``F`` keeps only some of
  the four terms while ``G`` gets the full manifold-mixup gradient;
* :func:`fit_decomposed` / :func:`repeat_decomposed`: the chapter's training runs of a feature
  map and a linear head under each gradient mode of :data:`MODES`, on paired seeds, and the
  control ``"expected"``: the mixed loss averaged over λ and partners (:func:`expected_mixed_loss`);
* flatness where it can show: :func:`gaussian_classes` (as many points a class as wanted),
  :func:`hidden_features` and :func:`class_spectra` (the full singular-value spectra of each
  class's centred features at every hidden layer).

Manifold mixup itself (the sampler at a layer, the training method) is :mod:`mixbook.methods.manifold`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core import _checks
from ..methods import mixup
from ..training import metrics
from ..training.data import Split
from .regression import expected_lam_product

__all__ = ["KEEP", "MODES", "EXPECTED", "ALL_MODES", "gradient_terms", "decomposed_loss", "beta_moments",
           "expected_mixed_loss",
           "fit_decomposed", "repeat_decomposed", "gaussian_classes", "hidden_features", "class_spectra",
           "effective_rank"]

KEEP = ("all", "usual", "cross", "none")
"""The choices of :func:`decomposed_loss`'s ``keep``."""


def _as_pairs(feature, head, x1, x2, y1, y2, lam):
    """Check and normalise the arguments of the gradient functions to batches.

    Returns ``x1, x2`` ``(b, *)``, ``y1, y2`` ``(b, k)``, ``lam`` ``(b, 1)`` in the targets' dtype.
    """
    if not isinstance(feature, nn.Module):
        raise TypeError(f"feature must be a torch.nn.Module, got {type(feature).__name__}")
    if not isinstance(head, nn.Linear):
        raise TypeError(f"head must be a torch.nn.Linear (the linear G), got {type(head).__name__}")
    x1, x2 = _checks.batch("x1", x1), _checks.batch("x2", x2)
    y1, y2 = _checks.tensor("y1", y1), _checks.tensor("y2", y2)
    if x1.shape != x2.shape:
        raise ValueError(f"x1 and x2 must have the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")
    single = x1.ndim == 1
    if single:
        x1, x2, y1, y2 = x1[None], x2[None], y1[None], y2[None]
    b, k = x1.shape[0], head.out_features
    for name, t in (("y1", y1), ("y2", y2)):
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor of regression targets, got {t.dtype}")
        if t.shape != (b, k):
            want = f"({k},) for a single example" if single else f"({b}, {k})"
            got = tuple(t.shape[1:]) if single else tuple(t.shape)
            raise ValueError(f"{name} must have shape {want} (head.out_features = {k}), got {got}")
    for name, t in (("x2", x2), ("y1", y1), ("y2", y2)):
        _checks.same_device(name, t, x1.device)
    if isinstance(lam, torch.Tensor):
        if not lam.is_floating_point():
            raise TypeError(f"lam must be a float or a floating tensor, got {lam.dtype}")
        if lam.shape not in ((), (b,)):
            raise ValueError(f"lam must be a float or have shape () or ({b},), got {tuple(lam.shape)}")
        _checks.same_device("lam", lam, x1.device)
        if _checks.check_values(lam) and not bool(((lam >= 0) & (lam <= 1)).all()):
            raise ValueError("lam must lie in [0, 1]")
        lam = lam.to(y1.dtype).expand(b).reshape(b, 1)
    else:
        lam = torch.full((b, 1), _checks.unit_interval("lam", lam, include_one=True), dtype=y1.dtype, device=x1.device)
    return x1, x2, y1, y2, lam


def _feature_params(feature: nn.Module) -> list[torch.nn.Parameter]:
    params = [p for p in feature.parameters() if p.requires_grad]
    if not params:
        raise ValueError("feature has no parameters that require grad")
    return params


def _mixed_squared_loss(head, h1, h2, y1, y2, lam) -> torch.Tensor:
    """``mean_i ½‖λ_i y1_i + (1−λ_i) y2_i − G(λ_i h1_i + (1−λ_i) h2_i)‖²``."""
    target = lam * y1 + (1 - lam) * y2
    return 0.5 * (target - head(lam * h1 + (1 - lam) * h2)).pow(2).sum(1).mean()


def _mixed_cross_entropy(head, h1, h2, y1, y2, lam) -> torch.Tensor:
    """``mean_i CE(λ_i y1_i + (1−λ_i) y2_i, softmax(G(λ_i h1_i + (1−λ_i) h2_i)))`` (soft targets)."""
    target = lam * y1 + (1 - lam) * y2
    return -(target * torch.log_softmax(head(lam * h1 + (1 - lam) * h2), dim=1)).sum(1).mean()


LOSSES = ("squared", "cross_entropy")


def gradient_terms(
    feature: nn.Module,
    head: nn.Linear,
    x1: torch.Tensor,
    x2: torch.Tensor,
    y1: torch.Tensor,
    y2: torch.Tensor,
    lam: float | torch.Tensor,
    loss: str = "squared",
) -> dict[str, torch.Tensor]:
    r"""The four terms of the manifold-mixup gradient with respect to the feature map.

    The loss, for a feature map ``F`` (parameters ``θ_F``) and a linear head
    ``G(h) = W h + c`` (an ``nn.Linear``, bias optional), is the squared loss at the mixed
    features::

        L = ½ ‖ λ y1 + (1−λ) y2 − G(λ F(x1) + (1−λ) F(x2)) ‖²      (sum over the k outputs)

    **Derivation.** ``G`` is affine and λ + (1−λ) = 1, so
    ``G(λh + (1−λ)h') = λ G(h) + (1−λ) G(h')``. With ``r = y1 − G(F(x1))`` and
    ``r' = y2 − G(F(x2))`` the residual at the mixed point is therefore ``R = λ r + (1−λ) r'``.
    Its derivative is ``∂R/∂θ_F = −(λ J(x1) + (1−λ) J(x2))`` with ``J(x) = ∂(G∘F)(x)/∂θ_F``
    (``k × |θ_F|``), and ``∇_{θ_F} L = (∂R/∂θ_F)ᵀ R`` expands into four terms::

        ∇_{θ_F} L = −λ²      J(x1)ᵀ r      usual_1   (x1's residual through x1's Jacobian)
                    −(1−λ)²  J(x2)ᵀ r'     usual_2   (x2's residual through x2's Jacobian)
                    −λ(1−λ)  J(x2)ᵀ r      cross_1   (x1's residual through x2's Jacobian)
                    −λ(1−λ)  J(x1)ᵀ r'     cross_2   (x2's residual through x1's Jacobian)

    The usual terms are ERM's gradients on each example, down-weighted by λ² and (1−λ)²; the
    cross terms couple an example's error to its partner's Jacobian. If ``G∘F`` fits both
    pairs exactly (``r = r' = 0``) every term vanishes, whatever ``G∘F`` does between ``x1``
    and ``x2`` in input space. Each term is one vector-Jacobian product
    (``torch.autograd.grad`` of ``G(F(x))`` with ``grad_outputs`` the weighted residual); no
    Jacobian is materialised.

    Args:
        feature: ``F``, any ``nn.Module``; it is called on ``x1`` and on ``x2`` as two separate
            batches (put models with BatchNorm in eval mode).
        head: ``G``, an ``nn.Linear`` with ``in_features`` = ``F``'s output width.
        x1, x2: two single examples of shape ``(d,)`` (``F`` sees them as batches of one), or
            two batches ``(b, *)`` of pairs ``(x1[i], x2[i])``.
        y1, y2: their targets, ``(k,)`` for single examples, ``(b, k)`` for batches.
        lam: λ in ``[0, 1]``: a float, or for batches a ``(b,)`` tensor (one λ a pair).
        loss: ``"squared"`` (the exact case above) or ``"cross_entropy"``: softmax
            cross-entropy against the mixed soft targets, ``L = CE(λ y1 + (1−λ) y2,
            softmax(G(λ h + (1−λ) h')))``. Its gradient with respect to the logits is
            ``−R̃ = p(z̃) − ỹ``; the four terms are then formed with the residuals
            ``r = y1 − softmax(G(F(x1)))`` and ``r'`` likewise, i.e. with the first-order
            approximation ``p(z̃) ≈ λ p(z) + (1−λ) p(z')``, so ``usual + cross`` differs from
            ``total`` by the softmax's curvature along the segment (exact at λ ∈ {0, 1}).

    Returns:
        A dict of flat vectors over ``F``'s parameters (those with ``requires_grad``,
        concatenated in ``feature.parameters()`` order, each ``reshape(-1)``):
        ``"usual_1"``, ``"usual_2"``, ``"cross_1"``, ``"cross_2"``, their sums ``"usual"``
        and ``"cross"``, and ``"total"``: autograd's gradient of ``L`` itself, for comparison
        (``total == usual + cross`` up to rounding). For batches ``L`` and every term are
        *averaged* over the ``b`` pairs. The tensors are detached; ``F`` and ``G``'s ``.grad``
        are not touched.
    """
    loss_form = _checks.choice("loss", loss, LOSSES)
    x1, x2, y1, y2, lam = _as_pairs(feature, head, x1, x2, y1, y2, lam)
    params = _feature_params(feature)
    b, mu = x1.shape[0], 1 - lam

    def flat(grads) -> torch.Tensor:
        return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])

    with torch.enable_grad():
        h1, h2 = feature(x1), feature(x2)
        o1, o2 = head(h1), head(h2)
        if loss_form == "squared":
            r1, r2 = (y1 - o1).detach(), (y2 - o2).detach()
            loss = _mixed_squared_loss(head, h1, h2, y1, y2, lam)
        else:
            r1, r2 = (y1 - o1.softmax(1)).detach(), (y2 - o2.softmax(1)).detach()
            loss = _mixed_cross_entropy(head, h1, h2, y1, y2, lam)

        def vjp(out: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
            return flat(torch.autograd.grad(out, params, grad_outputs=v, retain_graph=True, allow_unused=True))

        terms = {
            "usual_1": vjp(o1, -lam**2 * r1 / b),
            "usual_2": vjp(o2, -mu**2 * r2 / b),
            "cross_1": vjp(o2, -lam * mu * r1 / b),
            "cross_2": vjp(o1, -lam * mu * r2 / b),
            "total": vjp(loss, None),
        }
    terms["usual"] = terms["usual_1"] + terms["usual_2"]
    terms["cross"] = terms["cross_1"] + terms["cross_2"]
    return terms


def decomposed_loss(feature: nn.Module, head: nn.Linear,  # the arguments of gradient_terms, then keep
                    x1: torch.Tensor, x2: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor, lam: float | torch.Tensor,
                    keep: str = "all") -> torch.Tensor:
    """The manifold-mixup squared loss with only some gradient terms reaching ``F``.

    Same setting and arguments as :func:`gradient_terms` (batches ``(b, d)``, targets
    ``(b, k)``, ``lam`` a float or ``(b,)`` tensor; single examples also work). The returned
    scalar always has the *value* of the manifold-mixup loss
    ``mean_i ½‖λ_i y1_i + (1−λ_i) y2_i − G(λ_i F(x1_i) + (1−λ_i) F(x2_i))‖²``; its *gradient*:

    * for ``G``'s parameters: the full manifold-mixup gradient, for every ``keep``;
    * for ``F``'s parameters: ``keep="all"``: usual + cross (= plain autograd of the loss);
      ``"usual"``: ``usual_1 + usual_2`` only; ``"cross"``: ``cross_1 + cross_2`` only;
      ``"none"``: zero (a frozen feature map), all averaged over the batch as in
      :func:`gradient_terms`.

    Construction (stop-gradients, no hooks): with ``h = F(x1)``, ``h' = F(x2)``,

    * ``full = ½‖λy1 + (1−λ)y2 − G(λ h.detach() + (1−λ) h'.detach())‖²`` trains ``G`` only;
    * with ``G`` evaluated by ``F.linear`` on *detached* weights, ``o = G(h)``, ``o' = G(h')``
      and the constant residuals ``r = (y1 − o).detach()``, ``r' = (y2 − o').detach()``::

          s_usual = −[λ² r·o + (1−λ)² r'·o']        ∇_{θ_F} s_usual = usual_1 + usual_2
          s_cross = −λ(1−λ) [r·o' + r'·o]           ∇_{θ_F} s_cross = cross_1 + cross_2

    * the result is ``full + (s − s.detach())`` with ``s`` the kept surrogates (batch means),
      which adds their gradient and nothing to the value.

    Use it as any loss: ``decomposed_loss(model.features, model.head, x1, x2, y1, y2, lam,
    keep="usual").backward()`` then an optimiser step.
    """
    keep = _checks.choice("keep", keep, KEEP)
    x1, x2, y1, y2, lam = _as_pairs(feature, head, x1, x2, y1, y2, lam)
    mu = 1 - lam
    h1, h2 = feature(x1), feature(x2)
    full = _mixed_squared_loss(head, h1.detach(), h2.detach(), y1, y2, lam)
    if keep == "none":
        return full
    weight = head.weight.detach()
    bias = None if head.bias is None else head.bias.detach()
    o1, o2 = F.linear(h1, weight, bias), F.linear(h2, weight, bias)
    r1, r2 = (y1 - o1).detach(), (y2 - o2).detach()
    s = torch.zeros((), dtype=full.dtype, device=full.device)
    if keep in ("all", "usual"):
        s = s - (lam**2 * (r1 * o1).sum(1, keepdim=True) + mu**2 * (r2 * o2).sum(1, keepdim=True)).mean()
    if keep in ("all", "cross"):
        s = s - (lam * mu * ((r1 * o2).sum(1, keepdim=True) + (r2 * o1).sum(1, keepdim=True))).mean()
    return full + (s - s.detach())


def beta_moments(alpha: float) -> tuple[float, float]:
    """``(E[λ²], E[λ(1−λ)])`` for λ ~ Beta(α, α): ``((α+1) / (2(2α+1)), α / (2(2α+1)))``."""
    alpha = _checks.positive_float("alpha", alpha)
    return (alpha + 1) / (2 * (2 * alpha + 1)), expected_lam_product(alpha)


def expected_mixed_loss(outputs: torch.Tensor, targets: torch.Tensor, alpha: float) -> torch.Tensor:
    r"""The manifold-mixup squared loss at an affine head, averaged over λ and the partners.

    For a batch with outputs ``o_i = G(F(x_i))`` and targets ``y_i`` (residuals ``r_i = y_i − o_i``),
    manifold mixup at ``F``'s output draws λ ~ Beta(α, α) and a partner ``j`` (a uniformly random
    permutation of the batch, so each ``j`` is uniform over the batch) and pays
    ``½‖λ r_i + (1−λ) r_j‖²`` (the residual at the mixed point, by the head's linearity). Its
    expectation over λ and the permutation, averaged over the batch, is exactly::

        E[λ²] · mean_i ‖r_i‖²  +  E[λ(1−λ)] · ‖mean_i r_i‖²

    (chapter 3's eq. ``eq-manifold-expectation`` on the batch): ERM's loss ``½ mean ‖r‖²`` rescaled by
    ``2E[λ²] = (α+1)/(2α+1)``, plus a penalty on the mean residual. Training on it follows the
    *expected* manifold-mixup gradient without the noise of the draws: the chapter's control.

    Args:
        outputs, targets: ``(b, k)`` floating tensors (``targets`` one-hot or real-valued).
        alpha: the Beta's α > 0.

    Returns:
        A scalar tensor.
    """
    outputs, targets = _checks.batch("outputs", outputs), _checks.batch("targets", targets)
    if outputs.ndim != 2 or targets.shape != outputs.shape:
        raise ValueError(f"outputs and targets must both have shape (b, k), got {tuple(outputs.shape)} "
                         f"and {tuple(targets.shape)}")
    _checks.same_device("targets", targets, outputs.device)
    e_l2, e_l1l = beta_moments(alpha)
    r = targets - outputs
    return e_l2 * r.pow(2).sum(1).mean() + e_l1l * r.mean(0).pow(2).sum()


# ====================================================================== the experiment
MODES = ("erm", "input_mixup", "all", "usual", "cross")
"""The gradient modes of the decomposition experiment (:func:`repeat_decomposed`'s default)."""

EXPECTED = "expected"
"""The control mode: train on :func:`expected_mixed_loss`, manifold mixup's loss averaged over its draws."""

ALL_MODES = MODES + (EXPECTED,)
"""Every mode :func:`fit_decomposed` accepts."""


def fit_decomposed(
    feature: nn.Module,
    head: nn.Linear,
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    mode: str,
    alpha: float = 2.0,
    epochs: int = 50,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    probe_size: int = 256,
):
    """Train ``G∘F`` with the squared loss under one gradient mode; record the terms' sizes.

    Modes (all with λ ~ Beta(α, α) and random in-batch partners, as in mixup):

    * ``"erm"``: ``½‖y − G(F(x))‖²``, no mixing;
    * ``"input_mixup"``: mix inputs and targets, ``½‖W y − G(F(W x))‖²``;
    * ``"all"``: manifold mixup at ``F``'s output (:func:`decomposed_loss` with ``keep="all"``);
    * ``"usual"`` / ``"cross"``: the same loss, but only the usual / cross gradient terms reach
      ``F`` (``G`` always gets the full gradient);
    * ``"expected"`` (:data:`EXPECTED`, the control): :func:`expected_mixed_loss`, the loss of
      ``"all"`` averaged over λ and the partners, i.e. rescaled ERM plus the mean-residual penalty.
      It draws (and discards) the same λ and partners as the mixing modes, so that its batches are
      theirs step for step: against ``"all"`` only the noise of the draws differs.

    Each epoch the mean-over-pairs vectors ``usual`` and ``cross`` of :func:`gradient_terms`
    are evaluated on a fixed probe set of ``probe_size`` training pairs with fixed λ, and their
    norms recorded (whatever the mode, so the terms can be compared along any trajectory);
    ``probe_size=0`` skips the probe (the norms are then NaN).

    Not :func:`mixbook.training.train.fit`'s loop: a step is two networks whose gradient is
    surgically split (only some terms reach ``F``), with squared-loss targets and plain Adam
    without a schedule, and the record is the terms' norms, not fit's
    :class:`~mixbook.training.train.History`.

    Args:
        feature, head: ``F`` and a linear ``G``; trained in place (Adam).
        x, y: ``(n, *)`` inputs and ``(n, k)`` float targets (one-hot for classification).
        x_test, y_test: held-out data of the same kinds.
        mode: one of :data:`ALL_MODES`.
        probe_size: pairs in the probe set (0: none).

    Returns:
        A pandas DataFrame, one row per epoch: ``epoch``, ``train_loss``, ``test_mse``
        (mean over examples of ``½‖y − G(F(x))‖²``), ``test_accuracy`` (argmax agreement, for
        one-hot targets; NaN otherwise), ``usual_norm``, ``cross_norm``.
    """
    import pandas as pd

    mode = _checks.choice("mode", mode, ALL_MODES)
    alpha = _checks.positive_float("alpha", alpha)
    probe_size = _checks.non_negative_int("probe_size", probe_size)
    epochs = _checks.positive_int("epochs", epochs)
    batch_size = _checks.positive_int("batch_size", batch_size)
    lr = _checks.positive_float("lr", lr)
    for name, t in (("x", x), ("x_test", x_test)):
        _checks.batch(name, t)
    for name, t, ref in (("y", y, x), ("y_test", y_test, x_test)):
        _checks.batch(name, t)
        if t.ndim != 2:
            raise ValueError(f"{name} must be (n, k) float targets, got shape {tuple(t.shape)}")
        _checks.same_batch(name, t, ref.shape[0])
    one_hot_targets = bool(((y == 0) | (y == 1)).all()) and bool((y.sum(1) == 1).all())
    gen = torch.Generator(device=x.device).manual_seed(seed)
    params = list(feature.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    n = x.shape[0]
    if probe_size:
        probe = torch.randperm(n, generator=gen, device=x.device)[:probe_size]
        probe_m = mixup.sample(x[probe], alpha=alpha, generator=gen)
        p1, p2 = x[probe], x[probe][probe_m.partner]
        q1, q2 = y[probe], y[probe][probe_m.partner]
    rows = []
    for epoch in range(1, epochs + 1):
        feature.train()
        head.train()
        total = torch.zeros((), dtype=y.dtype, device=x.device)
        order = torch.randperm(n, generator=gen, device=x.device)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            xb, yb = x[idx], y[idx]
            if mode == "erm":
                loss = 0.5 * ((yb - head(feature(xb))) ** 2).sum(1).mean()
            else:
                m = mixup.sample(xb, alpha=alpha, per_sample=True, generator=gen)
                if mode == "input_mixup":
                    loss = 0.5 * ((m.apply(yb) - head(feature(m.apply(xb)))) ** 2).sum(1).mean()
                elif mode == EXPECTED:
                    loss = expected_mixed_loss(head(feature(xb)), yb, alpha)
                else:
                    loss = decomposed_loss(feature, head, xb, xb[m.partner], yb, yb[m.partner], m.lam.to(yb.dtype),
                                           keep=mode)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * idx.shape[0]
        terms = gradient_terms(feature, head, p1, p2, q1, q2, probe_m.lam.to(y.dtype)) if probe_size else None
        with torch.no_grad():
            feature.eval()
            head.eval()
            out = head(feature(x_test))
            mse = 0.5 * ((y_test - out) ** 2).sum(1).mean()
            acc = (out.argmax(1) == y_test.argmax(1)).double().mean() if one_hot_targets else torch.tensor(float("nan"))
        rows.append({"epoch": epoch, "train_loss": float(total) / n, "test_mse": float(mse),
                     "test_accuracy": float(acc),
                     "usual_norm": float(terms["usual"].norm()) if terms else float("nan"),
                     "cross_norm": float(terms["cross"].norm()) if terms else float("nan")})
    return pd.DataFrame(rows)


def repeat_decomposed(
    model_fn: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    seeds: Sequence[int],
    modes: Sequence[str] = MODES,
    **fit_kwargs,
):
    """:func:`fit_decomposed` for every (seed, mode), paired: one seed, one initial network.

    For each seed, ``torch.manual_seed(seed)`` then ``model_fn()`` builds the network before
    each mode, so every mode of a seed starts from the same weights, and ``fit_decomposed``'s
    own generator (seeded with ``seed``) gives the modes that mix the same λ and partners step
    for step. The model must split into ``features`` (``F``) and a linear ``head`` (``G``), as the
    book's :class:`mixbook.training.models.MLP` does; it is moved to ``x``'s device and dtype. Use it
    with :func:`mixbook.training.population.run_all` (``fn=repeat_decomposed``) to spread seeds over
    processes.

    Args:
        model_fn: builds one network (a ``functools.partial`` of a model class, so that it
            pickles).
        x, y, x_test, y_test: as in :func:`fit_decomposed`.
        seeds: integers ≥ 0.
        modes: a subset of :data:`ALL_MODES`.
        **fit_kwargs: ``alpha``, ``epochs``, ``batch_size``, ``lr``, ``probe_size`` of
            :func:`fit_decomposed`.

    Returns:
        ``(history, models)``: the concatenated per-epoch frames of :func:`fit_decomposed` with
        ``mode`` and ``seed`` columns, and ``{(mode, seed): trained model}``.
    """
    import pandas as pd

    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds or \
            any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty sequence of integers >= 0, got {seeds!r}")
    seeds = list(seeds)
    if isinstance(modes, str) or not modes:
        raise ValueError(f"modes must be a non-empty sequence drawn from {ALL_MODES}, got {modes!r}")
    modes = [_checks.choice("modes", m, ALL_MODES) for m in modes]
    bad = set(fit_kwargs) - {"alpha", "epochs", "batch_size", "lr", "probe_size"}
    if bad:
        raise TypeError(f"unexpected keyword argument(s) {sorted(bad)} for fit_decomposed")
    frames, trained = [], {}
    for seed in seeds:
        for mode in modes:
            torch.manual_seed(seed)
            model = model_fn()
            if not isinstance(getattr(model, "features", None), nn.Module) or \
                    not isinstance(getattr(model, "head", None), nn.Linear):
                raise TypeError("model_fn must build a model with a `features` module and a linear `head`, "
                                f"got {type(model).__name__}")
            model = model.to(device=x.device, dtype=x.dtype)
            hist = fit_decomposed(model.features, model.head, x, y, x_test, y_test, mode=mode, seed=seed,
                                  **fit_kwargs)
            frames.append(hist.assign(mode=mode, seed=seed))
            trained[mode, seed] = model
    return pd.concat(frames, ignore_index=True), trained


# ====================================================================== flatness where it can show
def gaussian_classes(num_classes: int = 6, dim: int = 8, n_per_class: int = 1000, n_test_per_class: int = 200,
                     separation: float = 1.5, seed: int = 0, task_seed: int = 0) -> Split:
    """Classes drawn as isotropic Gaussians: as many points a class as a flatness measure needs.

    Class ``c`` is ``N(μ_c, I_dim)`` with ``μ_c ~ N(0, separation² I_dim)`` drawn from
    ``task_seed`` (the task), so the classes overlap (a Bayes error above zero) and each class fills
    every input direction: a flat class representation is made by the network, not given by the
    data. The points are drawn from ``seed`` (a new sample of the same task for each seed): the
    training set has ``n_per_class`` points a class, the test set ``n_test_per_class``, in class
    order (training shuffles).

    Args:
        num_classes: ``C ≥ 2``.
        dim: input dimension ``≥ 1``.
        n_per_class, n_test_per_class: points a class, ``≥ 2`` and ``≥ 1``.
        separation: scale of the class means, ``> 0``.
        seed: ``int ≥ 0``, the sample's.
        task_seed: ``int ≥ 0``, the class means'.

    Returns:
        A :class:`mixbook.training.data.Split` (float32 inputs ``(n, dim)``), ``name="gaussian_classes"``.
    """
    num_classes = _checks.positive_int("num_classes", num_classes)
    if num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes}")
    dim = _checks.positive_int("dim", dim)
    n_per_class = _checks.positive_int("n_per_class", n_per_class)
    if n_per_class < 2:
        raise ValueError(f"n_per_class must be an int >= 2 (a class spectrum needs two points), got {n_per_class}")
    n_test_per_class = _checks.positive_int("n_test_per_class", n_test_per_class)
    separation = _checks.positive_float("separation", separation)
    seed, task_seed = _checks.seed("seed", seed), _checks.seed("task_seed", task_seed)
    means = separation * torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(task_seed))
    g = torch.Generator().manual_seed(seed)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(num_classes).repeat_interleave(n)
        return means[y] + torch.randn(len(y), dim, generator=g), y

    (x_tr, y_tr), (x_te, y_te) = draw(n_per_class), draw(n_test_per_class)
    return Split(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, num_classes=num_classes,
                 name="gaussian_classes")


def hidden_features(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The output of every non-linearity of ``model.features`` on ``x``, under ``no_grad``, in eval mode.

    ``model.features`` must be an ``nn.Sequential`` (as in :class:`mixbook.training.models.MLP`: Flatten,
    then Linear and activation per hidden layer). The outputs are keyed by module path
    (``"features.2"``, ``"features.4"``, …: the names manifold mixup's ``layers`` take); a module
    counts as a non-linearity when it has no parameters and is not ``nn.Flatten``.
    """
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        raise TypeError(f"model must have a `features` nn.Sequential, got {type(features).__name__}")
    x = _checks.batch("x", x)
    out, h = {}, x
    was = features.training
    features.eval()
    try:
        with torch.no_grad():
            for i, module in enumerate(features):
                h = module(h)
                if not isinstance(module, nn.Flatten) and next(module.parameters(), None) is None:
                    out[f"features.{i}"] = h
    finally:
        features.train(was)
    if not out:
        raise ValueError("model.features has no non-linearity (a module without parameters, not Flatten)")
    return out


def class_spectra(features: torch.Tensor, labels: torch.Tensor) -> dict:
    """The full singular-value spectrum of each class's centred features (``torch.linalg.svdvals``).

    For each class ``c`` (sorted; every class needs at least two points), with ``Z_c`` its
    ``(n_c, d)`` features centred on the class mean, the singular values of ``Z_c / √n_c`` in
    descending order: the standard deviations of the class along its principal directions, in the
    features' own units (the spectrum :func:`mixbook.training.metrics.flatness` normalises to sum 1).
    A spectrum of a class with ``n_c ≤ d`` has at most ``n_c − 1`` non-zero values, so compare
    models with ``n_c ≫ d``; ``n_per_class`` reports it.

    Args:
        features: ``(n, d)`` floating tensor; labels: ``(n,)`` integer labels on the same device.

    Returns:
        ``{"classes": (C,) int64, "n_per_class": (C,) int64, "singular_values": (C, d) float64
        (zero-padded where n_c < d), "effective_rank": (C,) float64}`` with the effective rank of
        :func:`mixbook.training.metrics.effective_rank`.
    """
    features, labels = metrics.class_features(features, labels)
    z = features.detach().to(torch.float64)
    classes, counts = torch.unique(labels, return_counts=True)
    if bool((counts < 2).any()):
        raise ValueError(f"every class needs at least two points, got {counts.min().item()} for one")
    d = z.shape[1]
    spectra = []
    for c, n_c in zip(classes.tolist(), counts.tolist()):
        zc = z[labels == c]
        s = torch.linalg.svdvals(zc - zc.mean(0, keepdim=True)) / n_c ** 0.5
        spectra.append(F.pad(s, (0, d - s.shape[0])))
    sv = torch.stack(spectra)
    return {"classes": classes.long(), "n_per_class": counts.long(), "singular_values": sv,
            "effective_rank": metrics.effective_rank(sv)}


effective_rank = metrics.effective_rank
"""The effective rank of a spectrum: :func:`mixbook.training.metrics.effective_rank`."""
