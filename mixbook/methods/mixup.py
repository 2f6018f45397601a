"""Input mixup (Zhang et al. 2018): λ ~ Beta(α, α), pairs from the same batch.

``x̃ = λ x_i + (1 − λ) x_j``, ``ỹ = λ y_i + (1 − λ) y_j`` — the vicinal distribution of
Zhang et al., eq. (2). As a :class:`~mixbook.core.mixing.Mixing` this is the pairwise form with
``lam`` either one draw for the whole batch (as in the paper, torchvision and timm's batch
mode) or one draw per example (timm's elem mode).

Pairings (``partner[k]`` = the example output ``k`` is mixed with), all vectorised:

* ``"random"``: a uniform random permutation of the batch (the paper's shuffled batch). A
  random permutation has one fixed point on average, whatever the batch size: about one
  example a batch is paired with itself and left unmixed (at least one in 63% of batches,
  ``1 − 1/e``);
* ``"derangement"``: a random permutation with no fixed point: a uniformly random single cycle
  through the batch (each of the ``(b − 1)!`` cycles equally likely; the partner of each
  example is uniform over the *other* ``b − 1``, and every example is the partner of exactly one).
  A batch of one is paired with itself;
* ``"flip"``: ``b − 1 − k`` (timm's pairing);
* ``"roll"``: ``k − 1 mod b`` (torchvision's ``MixUp``: ``x.roll(1, 0)``);
* ``"same_class"`` / ``"cross_class"``: a partner drawn uniformly and independently among the
  *other* examples of the same / a different class. An example with no such partner in the
  batch is paired with itself, so its output is the example unchanged.
* ``"nearest"`` (:func:`nearest_partner`, accepted by :func:`sample` only, since it needs the
  inputs): a partner drawn uniformly among the ``k`` nearest *other* examples of the batch in
  input space (Euclidean distance over the flattened example). Local mixing for regression,
  where mixing targets linearly is biased unless the target is locally linear (chapter 8).

Everything is sampled on the batch's device from the optional generator: no host
synchronisation, no Python loop over the batch.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core import _checks, _random
from ..core.benchmark import BenchEntry, Limit, Target
from ..core.distributions import _beta
from ..core.mixing import Mixing, MixingTransform, draw_applied
from ..core.registry import MethodSpec, register

__all__ = ["PAIRINGS", "pair", "derangement", "nearest_partner", "fixed_lam", "sample", "MixUp"]

PAIRINGS = ("random", "flip", "roll", "same_class", "cross_class", "derangement")


def pair(
    batch_size: int,
    pairing: str = "random",
    *,
    y: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Partner indices ``(b,)`` (int64) for a pairing in :data:`PAIRINGS`.

    ``y`` (integer labels ``(b,)``) is required for the class-aware pairings; its device is
    then the device of the result.
    """
    b = _checks.positive_int("batch_size", batch_size)
    pairing = _checks.choice("pairing", pairing, PAIRINGS)
    if y is not None:
        device = y.device
    device = torch.device(device) if device is not None else torch.device("cpu")
    _checks.generator(generator, device)
    if pairing == "random":
        return _random.randperm(b, device=device, generator=generator)
    if pairing == "flip":
        return torch.arange(b - 1, -1, -1, device=device)
    if pairing == "roll":
        return torch.arange(b, device=device).roll(1)
    if pairing == "derangement":
        return derangement(b, device=device, generator=generator)
    if y is None:
        raise TypeError(f"pairing={pairing!r} needs the integer labels y")
    _checks.labels("y", y)
    if y.shape[0] != b:
        raise ValueError(f"y has batch size {y.shape[0]} but batch_size={b}")
    return _class_partner(y, same=pairing == "same_class", generator=generator)


def derangement(batch_size: int, *, device: torch.device | str | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Partner indices ``(b,)`` with no fixed point: a uniformly random ``b``-cycle.

    A random order ``σ`` of the batch, each example paired with the next in that order
    (``partner[σ_i] = σ_{i+1 mod b}``): one ``randperm`` and one scatter, on the device. For
    ``b = 1`` the only partner is the example itself.
    """
    b = _checks.positive_int("batch_size", batch_size)
    device = torch.device(device) if device is not None else torch.device("cpu")
    order = _random.randperm(b, device=device, generator=generator)
    partner = torch.empty_like(order)
    partner[order] = order.roll(-1)
    return partner


def _class_partner(y: torch.Tensor, *, same: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform partner among the other examples of the same (``same``) or another class.

    Sort the batch by label; in sorted order the class of position ``i`` occupies the run
    ``[start_i, end_i)`` (found with ``searchsorted``, no host sync). Draw ``u ~ U[0, 1)`` and
    index into the allowed positions: the ``c_i − 1`` others of the run, or the ``b − c_i``
    positions outside it.
    """
    b = y.shape[0]
    order = torch.argsort(y, stable=True)
    ys = y[order]
    start = torch.searchsorted(ys, ys, right=False)
    end = torch.searchsorted(ys, ys, right=True)
    count = end - start
    pos = torch.arange(b, device=y.device)
    u = _random.rand((b,), device=y.device, generator=generator)
    if same:
        n_allowed = count - 1
        r = (u * n_allowed).long().clamp_max_(torch.clamp(n_allowed - 1, min=0))
        own = pos - start
        chosen = start + r + (r >= own).long()  # skip yourself
    else:
        n_allowed = b - count
        r = (u * n_allowed).long().clamp_max_(torch.clamp(n_allowed - 1, min=0))
        chosen = torch.where(r < start, r, r + count)  # skip your own run
    chosen = torch.where(n_allowed > 0, chosen, pos)
    partner = torch.empty_like(order)
    partner[order] = order[chosen]
    return partner


def nearest_partner(x: torch.Tensor, k: int = 1, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Partner indices ``(b,)`` (int64): one of the ``k`` nearest other examples, uniformly.

    Distances are Euclidean over the flattened examples (``torch.cdist`` on ``(b, d)``; the
    diagonal is excluded). ``k`` is clipped to ``b − 1``; a batch of one is paired with itself.
    Vectorised: one ``cdist``, one ``topk`` and one draw of ``b`` uniform indices in ``[0, k)``.

    Args:
        x: ``(b, *)`` floating batch.
        k: how many nearest neighbours to choose among, ``≥ 1``.
        generator: optional ``torch.Generator`` on ``x``'s device.
    """
    x = _checks.non_empty("x", x)
    k = _checks.positive_int("k", k)
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating tensor for pairing='nearest', got {x.dtype}")
    _checks.generator(generator, x.device)
    b = x.shape[0]
    if b == 1:
        return torch.zeros(1, dtype=torch.int64, device=x.device)
    flat = x.reshape(b, -1)
    dist = torch.cdist(flat, flat)
    dist.fill_diagonal_(float("inf"))
    k = min(k, b - 1)
    nearest = dist.topk(k, dim=1, largest=False).indices          # (b, k)
    pick = _random.randint(k, (b, 1), device=x.device, generator=generator)
    return nearest.gather(1, pick).squeeze(1)


def sample(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    alpha: float = 1.0,
    per_sample: bool = False,
    pairing: str = "random",
    k: int = 1,
    prob: float = 1.0,
    lam: float | tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> Mixing:
    """Sample a mixup :class:`~mixbook.core.mixing.Mixing` for the batch ``x``.

    Args:
        x: ``(b, *)`` batch (only its size and device are used).
        y: ``(b,)`` integer labels; needed for ``"same_class"``/``"cross_class"`` pairing.
        alpha: α > 0 of Beta(α, α). As α → 0, λ ∈ {0, 1} (no mixing); α = 1 is uniform.
        per_sample: one λ per example instead of one per batch.
        pairing: one of :data:`PAIRINGS`, or ``"nearest"`` (:func:`nearest_partner`).
        k: the number of nearest neighbours ``pairing="nearest"`` chooses among.
        prob: probability in ``[0, 1]`` that the batch (with ``per_sample``: each example) is
            mixed at all (timm's ``prob``, kornia's ``p``); an unmixed one keeps λ = 1.
        lam: ``None`` (λ ~ Beta(α, α)), a fixed λ in ``[0, 1]``, or a range ``(lo, hi)`` with
            ``0 ≤ lo ≤ hi ≤ 1`` from which λ is drawn uniformly (kornia's ``lambda_val``);
            ``alpha`` is then unused.
        generator: optional ``torch.Generator`` on ``x``'s device.

    Returns:
        A pairwise mixing with ``lam`` of shape ``(b,)`` (float64 for float64 ``x``, else
        float32) and ``partner`` ``(b,)``.
    """
    x = _checks.non_empty("x", x)
    alpha = _checks.concentration("alpha", alpha)
    per_sample = _checks.boolean("per_sample", per_sample)
    b = x.shape[0]
    _checks.optional_companion("y", y, x)
    _checks.generator(generator, x.device)
    if pairing == "random":     # the hot path: pair()'s checks are the ones just made
        partner = _random.randperm(b, device=x.device, generator=generator)
    elif pairing == "nearest":
        partner = nearest_partner(x, k, generator=generator)
    else:
        partner = pair(b, pairing, y=y if pairing in ("same_class", "cross_class") else None,
                       device=x.device, generator=generator)
    k_draws = b if per_sample else 1
    dtype = _checks.weight_dtype(x)
    if lam is None:
        lam = _beta(alpha, alpha, (k_draws,), x.device, dtype, generator)
    else:
        lam = fixed_lam(lam, k_draws, device=x.device, dtype=dtype, generator=generator)
    if prob != 1.0:
        applied = draw_applied(_checks.unit_interval("prob", prob, include_one=True), k_draws, x.device, generator)
        if applied is not None:
            lam = torch.where(applied, lam, torch.ones_like(lam))
    return Mixing._drawn(partner, lam.expand(b))


def fixed_lam(lam: float | tuple[float, float], k: int, *, device: torch.device, dtype: torch.dtype,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """``(k,)`` λ from a fixed value in ``[0, 1]`` or uniform over a range ``(lo, hi)`` ⊂ ``[0, 1]``."""
    if isinstance(lam, (tuple, list)):
        if len(lam) != 2:
            raise ValueError(f"lam as a range must be (lo, hi), got {lam!r}")
        lo = _checks.unit_interval("lam[0]", lam[0], include_one=True)
        hi = _checks.unit_interval("lam[1]", lam[1], include_one=True)
        if lo > hi:
            raise ValueError(f"lam=(lo, hi) needs 0 <= lo <= hi <= 1, got {lam!r}")
        return lo + (hi - lo) * _random.rand((k,), device=device, generator=generator).to(dtype)
    value = _checks.unit_interval("lam", lam, include_one=True)
    return torch.full((k,), value, device=device, dtype=dtype)


class MixUp(MixingTransform):
    """Batch transform ``(x, y) -> (mixed x, soft targets)``, like torchvision's ``v2.MixUp``.

    Args:
        alpha: α > 0 of Beta(α, α).
        num_classes: number of classes of the integer labels; ``None`` if the labels come as
            ``(b, C)`` one-hot or soft targets.
        per_sample: one λ per example (default: one per batch).
        pairing: one of :data:`~mixbook.methods.mixup.PAIRINGS` (default ``"random"``: about
            one example a batch is paired with itself; ``"derangement"`` has no such example,
            ``"roll"`` is torchvision's, ``"flip"`` timm's).
        prob: probability that a batch (with ``per_sample``, an example) is mixed (timm's
            ``prob``, kornia's ``p``).
        lam: a fixed λ, or a range ``(lo, hi)`` to draw it from uniformly, instead of Beta(α, α).
        smoothing: label smoothing ε in ``[0, 1)`` applied before mixing (multi-hot targets are
            smoothed towards 1/2 per label, as timm).
        multi_label: the labels are ``(b, C)`` multi-hot targets.
        labels_getter: ``"default"`` or a callable finding the labels in a packed sample
            (see :meth:`mixbook.MixingTransform.forward`).
        mix_keys: entries of a packed sample to mix besides the images (see
            :mod:`mixbook.core.samples`).
        generator: optional ``torch.Generator`` on the batches' device.

    Example::

        mix = MixUp(alpha=0.4, num_classes=10)
        x_mix, y_soft = mix(x, y)
        loss = mixbook.core.losses.soft_cross_entropy(model(x_mix), y_soft)
    """

    sampler = staticmethod(sample)
    hyper_parameters = ("alpha", "per_sample", "pairing", "prob", "lam")

    def __init__(self, *, alpha: float = 1.0, per_sample: bool = False, pairing: str = "random", prob: float = 1.0,
                 lam: float | tuple[float, float] | None = None, **options: Any) -> None:
        self.alpha = _checks.concentration("alpha", alpha)
        self.per_sample = _checks.boolean("per_sample", per_sample)
        self.pairing = _checks.choice("pairing", pairing, PAIRINGS)
        self.prob = _checks.unit_interval("prob", prob, include_one=True)
        if lam is not None:
            fixed_lam(lam, 1, device=torch.device("cpu"), dtype=torch.float32)   # validates it
            lam = tuple(lam) if isinstance(lam, (tuple, list)) else float(lam)
        self.lam = lam
        super().__init__(**options)   # num_classes, smoothing, multi_label, labels_getter, mix_keys, generator


@register("mixup")
def spec(alpha: float = 1.0, per_sample: bool = False, pairing: str = "random", loss: str = "mixed") -> MethodSpec:
    """Input mixup (Zhang et al. 2018) as a training method (``make_method("mixup", ...)``).

    :func:`sample` at the input; ``loss="mixed"`` (λ-weighted integer-target cross-entropy, the
    default) or ``"soft"`` (soft-target cross-entropy on ``Mixing.targets``), equal in value and
    gradient. ``alpha``, ``per_sample`` and ``pairing`` are :func:`sample`'s.
    """
    return MethodSpec(sample, dict(alpha=alpha, per_sample=per_sample, pairing=pairing),
                      loss=_checks.choice("loss", loss, ("soft", "mixed")))


# ---------------------------------------------------------------------- benchmark entries
def _bench(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, per_sample: bool):
    def call():
        m = sample(x, alpha=1.0, per_sample=per_sample)
        return m.apply(x), m.targets(y, num_classes)
    return call


def _bench_targets(x: torch.Tensor, y: torch.Tensor, num_classes: int, n: int | None):
    m = sample(x, alpha=1.0)
    return lambda: m.targets(y, num_classes)


_BOUND = "of the gather-and-interpolate bound (>= 100 MB moved)"
_PEER_DEVICES = ("cpu", "cuda")   # torchvision and timm run on both

BENCH = (
    BenchEntry(op="mixbook_mixup", kind="image", family="pairwise",
               make=lambda x, y, num_classes, n: _bench(x, y, num_classes, per_sample=False),
               targets=(Target("pairwise >= 1.0x torchvision MixUp", peer="torchvision_mixup", minimum=1.0,
                               devices=_PEER_DEVICES),
                        Target("pairwise >= 1.0x timm batch (in place)", peer="timm_batch", minimum=1.0,
                               devices=_PEER_DEVICES),
                        Target("pairwise >= 1.0x timm batch (fresh clone)", peer="timm_batch_clone", minimum=1.0,
                               devices=_PEER_DEVICES)),
               limits=(Limit(f"pairwise >= 80% {_BOUND}", measure="bound_fraction", bound=0.80, min_mb=100.0),)),
    BenchEntry(op="mixbook_mixup_per_sample", kind="image", family="pairwise",
               make=lambda x, y, num_classes, n: _bench(x, y, num_classes, per_sample=True),
               targets=(Target("per-sample lambda >= 1.0x timm elem", peer="timm_elem", minimum=1.0,
                               devices=_PEER_DEVICES),),
               limits=(Limit(f"per-sample lambda >= 80% {_BOUND}", measure="bound_fraction", bound=0.80,
                             min_mb=100.0),)),
    BenchEntry(op="mixbook_mixup_sample", kind="image", family="call",
               make=lambda x, y, num_classes, n: lambda: sample(x, alpha=1.0),
               limits=(Limit("mixup.sample <= 40 us a call on CUDA", measure="us_per_call", bound=40.0,
                             devices=("cuda",)),)),
    BenchEntry(op="mixbook_mixup_targets", kind="image", family="call", make=_bench_targets,
               limits=(Limit("Mixing.targets <= 30 us a call on CUDA", measure="us_per_call", bound=30.0,
                             devices=("cuda",)),)),
)
"""What :mod:`mixbook.bench` times for this module (:class:`~mixbook.core.benchmark.BenchEntry`): one
λ a batch and one λ an example, sample + apply + targets, with their speed targets against peers
and the pairwise bound; ``mixup.sample`` alone and ``Mixing.targets`` alone, for their fixed cost
a call on a GPU."""
