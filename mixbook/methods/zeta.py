"""ζ-mixup (Abhishek, Brown & Hamarneh, J. Big Data 11:43, 2024): p-series weights over a batch.

mixup mixes two examples; ζ-mixup mixes ``T`` of them with weights from a normalised
p-series. For ``T`` examples in a random order ``s`` (a random permutation ``π``), the
synthetic example is

    x̂ = Σ_{i=1..T} w_i x_{s(i)},    ŷ = Σ_{i=1..T} w_i y_{s(i)},
    w_i = i^(−γ) / C,               C = Σ_{j=1..T} j^(−γ),

so the weights are decreasing, non-negative and sum to 1, and γ > 0 sets how fast they
decay: the example put first gets the largest weight ``1/C`` and the others get
``2^(−γ)/C, 3^(−γ)/C, …``. In the paper's batch form ``T = m`` (the whole mini-batch) and
output ``k`` puts the first (largest) weight on input ``k``, the rest of the ordering being
uniformly random. As a :class:`~mixbook.core.mixing.Mixing` this is the dense form: an ``(n, b)``
matrix ``W`` each of whose rows is a permutation of the same p-series, with the largest entry
of row ``k`` on column ``dominant[k]`` (default ``k mod b``). :func:`weights` builds all of
``W`` on the device in one shot: random keys, the dominant key forced below the others, an
``argsort`` per row gives the ordering ``s``, and one ``scatter_`` writes the p-series into
it. No NumPy, no FFT, no Python loop over the rows, no host synchronisation.

**Normalisation.** Each row is normalised by its own sum ``C``. The authors' reference code
divides an ``(m, m)`` matrix by ``W.sum(dim=1)`` *without* ``keepdim``, which broadcasts that
``(m,)`` vector along the last axis, i.e. divides column ``j`` by the sum of row ``j``. That is
harmless only because every row is a permutation of the same series (all row sums are equal);
with ``n ≠ b`` or with masked entries it would break row-stochasticity. Here the p-series is
normalised once, before it is scattered, so every row sums to 1 by construction.

**The dominance threshold.** The top weight ``1/C`` exceeds the sum of all the others,
``(C − 1)/C``, exactly when ``C = Σ_{j≤T} j^(−γ) < 2``. The sum grows with ``T`` towards
``ζ(γ)`` (the Riemann zeta function, finite for γ > 1), so the condition holds for *every*
batch size iff ``ζ(γ) ≤ 2``, i.e. ``γ ≥ γ* = 1.7286472389…`` (the paper's ``γ_min ≈ 1.72865``,
its Theorem 1): then every synthetic example stays closest to one original example, "on the
manifold", and its label is dominated by that example's. For a finite ``T`` the threshold
``γ*(T)`` (:func:`dominance_threshold`) is smaller and increases with ``T`` towards ``γ*``;
for ``T = 2`` it is 0 (``1 + 2^(−γ) < 2`` for every γ > 0), and ζ-mixup is mixup with the fixed
``λ = 1 / (1 + 2^(−γ))`` (:func:`mixup_lambda`; the paper's Theorem 2).

The default ``γ = 2.8`` is the default of the authors' reference implementation
(``zeta_mixup(..., gamma=2.8)`` in github.com/kakumarabhishek/zeta-mixup), which is above
``γ*``: at γ = 2.8 the dominant weight is ``1/ζ(2.8) ≈ 0.80`` for a large batch.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from typing import Any

import torch

from ..core import _checks, _random
from ..core.benchmark import BenchEntry, Limit, Target
from ..core.mixing import DenseMixingTransform, Mixing, draw_applied, gate
from ..core.registry import MethodSpec, register

__all__ = ["pseries", "weights", "sample", "ZetaMixup", "dominance_sum", "dominance_threshold",
           "mixup_lambda", "num_orderings", "DEFAULT_GAMMA", "GAMMA_STAR"]

DEFAULT_GAMMA = 2.8
"""The default γ of the authors' reference implementation."""

GAMMA_STAR = 1.7286472389981835
"""``γ*`` with ``ζ(γ*) = 2``: for γ above it one weight dominates for every batch size."""


def pseries(
    n: int,
    gamma: float,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The normalised p-series ``w_j = j^(−γ) / Σ_{i=1..n} i^(−γ)``, ``j = 1..n``.

    Args:
        n: length ``n >= 1``.
        gamma: γ > 0 (finite).
        device: where to build it (default CPU).
        dtype: floating dtype of the result; computed in float64 and rounded once.

    Returns:
        ``(n,)`` tensor, strictly decreasing in exact arithmetic (in the result's dtype
        neighbouring weights may round equal, or to 0, for extreme γ), summing to 1.
    """
    n = _checks.positive_int("n", n)
    gamma = _checks.positive_float("gamma", gamma)
    dtype = _checks.floating_dtype("dtype", dtype)
    j = torch.arange(1, n + 1, device=device, dtype=torch.float64)
    w = j.pow_(-gamma)
    # Sum from the smallest term up (flip) so the normaliser is accurate for long series.
    return (w / w.flip(0).sum()).to(dtype)


def _dominant(dominant: object, n: int, b: int, device: torch.device) -> torch.Tensor:
    d = _checks.tensor("dominant", dominant)
    if d.is_floating_point() or d.is_complex() or d.dtype == torch.bool:
        raise TypeError(f"dominant must be an integer tensor of input indices, got {d.dtype}")
    if d.shape != (n,):
        raise ValueError(f"dominant must have shape ({n},) (one input index per output), got {tuple(d.shape)}")
    _checks.same_device("dominant", d, device)
    if _checks.check_values(d):
        lo, hi = int(d.min()), int(d.max())
        if lo < 0 or hi >= b:
            raise ValueError(f"dominant must lie in [0, b) = [0, {b}), got values in [{lo}, {hi}]")
    return d.long()


def weights(
    b: int,
    *,
    gamma: float = DEFAULT_GAMMA,
    n: int | None = None,
    dominant: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The ζ-mixup matrix ``W`` ``(n, b)``: every row a permutation of :func:`pseries` ``(b, γ)``.

    Row ``k`` puts the largest weight ``1/C`` on column ``dominant[k]`` and the remaining
    weights ``2^(−γ)/C, …, b^(−γ)/C`` on the other ``b − 1`` columns in a uniformly random
    order, independently across rows. Built in one shot on the device: keys
    ``U[0, 1)`` (float64, so ties have probability ~2^-53), the dominant key set to −1,
    ``order = keys.argsort(1)`` (``order[k, i]`` = the input that gets weight ``i + 1``), then
    ``W.scatter_(1, order, pseries)``.

    Args:
        b: number of inputs (columns), ``b >= 1``.
        gamma: γ > 0 (finite).
        n: number of outputs (rows), ``n >= 1``; ``n > b`` is allowed (inputs then dominate
            several outputs). Default: ``len(dominant)`` if given, else ``b``.
        dominant: ``(n,)`` integer tensor of input indices in ``[0, b)`` (values checked on
            the CPU only, see ``mixbook.core._checks``); default ``arange(n) % b``, i.e. output
            ``k`` is dominated by input ``k``.
        device: where to build ``W``; default ``dominant``'s device, else the CPU.
        dtype: floating dtype of ``W`` (default float32).
        generator: optional ``torch.Generator`` on that device.

    Returns:
        ``(n, b)`` tensor, non-negative, rows summing to 1. ``b = 1`` gives a column of ones.
    """
    b = _checks.positive_int("b", b)
    gamma = _checks.positive_float("gamma", gamma)
    dtype = _checks.floating_dtype("dtype", dtype)
    if dominant is not None:
        _checks.tensor("dominant", dominant)
        if device is None:
            device = dominant.device
        if n is None and dominant.ndim == 1 and dominant.shape[0] > 0:
            n = dominant.shape[0]
    # Resolve "cuda" to "cuda:<current>" so it compares equal to dominant's device.
    device = torch.empty(0, device=device).device if device is not None else torch.device("cpu")
    n = b if n is None else _checks.positive_int("n", n)
    # float64 keys, their argsort and the weights: about 3 float64 (n, b) tensors at once
    _checks.allocation("ζ-mixup weights (n, b)", (n, b), torch.float64, device, copies=3)
    compiling = torch.compiler.is_compiling()
    mode = None if compiling else torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.FAKE)
    if dominant is None:
        dom = torch.arange(n, device=device) % b if compiling else _default_dominant(n, b, device, mode)
    else:
        dom = _dominant(dominant, n, b, device)
    _checks.generator(generator, device)
    keys = _random.rand((n, b), device=device, dtype=torch.float64, generator=generator)
    keys.scatter_(1, dom[:, None], -1.0)  # the dominant input sorts first
    order = keys.argsort(dim=1)
    # one p-series for every row (a constant of b, γ, device and dtype: built once, then reused)
    series = pseries(b, gamma, device=device, dtype=dtype) if compiling else _series(b, gamma, device, dtype, mode)
    return torch.zeros(n, b, device=device, dtype=dtype).scatter_(1, order, series.expand(n, b))


@functools.lru_cache(maxsize=64)
def _series(b: int, gamma: float, device: torch.device, dtype: torch.dtype, mode: object = None) -> torch.Tensor:
    """:func:`pseries` ``(b, γ)``, cached: read-only, the scatter source of every row of :func:`weights`.
    ``mode``: the active fake-tensor mode (tensors made under one belong to it), else ``None``."""
    return pseries(b, gamma, device=device, dtype=dtype)


@functools.lru_cache(maxsize=64)
def _default_dominant(n: int, b: int, device: torch.device, mode: object = None) -> torch.Tensor:
    """``arange(n) % b`` (output ``k`` dominated by input ``k mod b``), cached: read-only."""
    return torch.arange(n, device=device) % b


def sample(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    gamma: float = DEFAULT_GAMMA,
    n: int | None = None,
    dominant: torch.Tensor | None = None,
    prob: float = 1.0,
    generator: torch.Generator | None = None,
) -> Mixing:
    """Sample a ζ-mixup :class:`~mixbook.core.mixing.Mixing` (dense form) for the batch ``x``.

    Every output mixes *all* ``b`` examples of the batch (``T = b``) with p-series weights,
    output ``k`` dominated by ``dominant[k]`` (default ``k mod b``). Apply it with
    ``m.apply(x)`` (one matmul, ``(n, *)``) and ``m.targets(y, num_classes)`` (``(n, C)``).

    Args:
        x: ``(b, *)`` floating batch (its size, dtype and device are used).
        y: optional ``(b,)`` labels or ``(b, C)`` soft targets; only checked against ``x``
            (batch size, device), not used to sample.
        gamma: γ > 0. Default 2.8, the default of the authors' reference code; γ ≥ γ* ≈ 1.7286
            makes one example dominate every output for any batch size.
        n: number of outputs (default ``b``, or ``len(dominant)``).
        dominant: optional ``(n,)`` integer indices in ``[0, b)`` on ``x``'s device.
        prob: probability in ``[0, 1]`` that the batch is mixed at all (timm's ``prob``, kornia's
            ``p``); an unmixed batch is the identity mixing (needs ``n == b`` when ``prob < 1``).
        generator: optional ``torch.Generator`` on ``x``'s device.

    Returns:
        A dense mixing with ``weights`` ``(n, b)``: float64 for float64 ``x``, else float32.
    """
    x = _checks.batch("x", x)
    _checks.optional_companion("y", y, x)
    b, dtype = x.shape[0], _checks.weight_dtype(x)
    w = weights(b, gamma=gamma, n=n, dominant=dominant, device=x.device, dtype=dtype, generator=generator)
    m = Mixing(batch_size=b, weights=w)  # weights validated gamma, n, dominant: no from_dense host checks
    if prob != 1.0:
        m = gate(m, draw_applied(_checks.unit_interval("prob", prob, include_one=True), 1, x.device, generator))
    return m


class ZetaMixup(DenseMixingTransform):
    """Batch transform ``(x, y) -> (mixed x, soft targets)`` with ζ-mixup's p-series weights over a
    random ordering of the batch for every output (:func:`~mixbook.methods.zeta.sample`,
    :func:`~mixbook.methods.zeta.weights`).

    Args:
        gamma: γ > 0 of the p-series ``j^(−γ)`` (default 2.8, as in the authors' code); with
            γ ≥ γ* the first weight dominates every row (:func:`~mixbook.methods.zeta.dominance_threshold`).
        n: number of outputs per batch (default: the batch size).
        **options: ``num_classes`` and the options every transform shares
            (:class:`mixbook.core.mixing.MixingTransform`).

    Example, in a training step::

        zeta_mix = ZetaMixup(gamma=2.8, num_classes=10)
        x_mix, y_soft = zeta_mix(x, y)      # (b, *), (b, 10): most of each row's weight on one example
        loss = torch.sum(-y_soft * model(x_mix).log_softmax(1), 1).mean()
    """

    sampler = staticmethod(sample)
    hyper_parameters = ("gamma", "n", "prob")

    def __init__(self, *, gamma: float = DEFAULT_GAMMA, n: int | None = None, **options: Any) -> None:
        self.gamma = _checks.positive_float("gamma", gamma)
        super().__init__(n=n, **options)   # n, then num_classes, smoothing, ... (MixingTransform)


# ---------------------------------------------------------------------- the maths of the chapter
def dominance_sum(N: int | None, gamma: float) -> float:
    """``C = Σ_{j=1..N} j^(−γ)``, the normaliser of the weights; ``N=None`` gives ``ζ(γ)``.

    The top weight ``1/C`` exceeds the sum of the others iff ``C < 2``. For ``N=None`` and
    γ ≤ 1 the series diverges and ``inf`` is returned (``scipy.special.zeta`` would return the
    analytic continuation instead).
    """
    N = _checks.optional_positive_int("N", N)
    gamma = _checks.positive_float("gamma", gamma)
    if N is None:
        if gamma <= 1:
            return math.inf
        from scipy.special import zeta

        return float(zeta(gamma))
    j = np.arange(N, 0, -1, dtype=np.float64)  # smallest terms first
    return float(np.sum(j ** -gamma))


def dominance_threshold(N: int | None = None) -> float:
    """The γ at which the top weight equals the sum of all the others: ``Σ_{j≤N} j^(−γ) = 2``.

    The top weight exceeds the rest iff γ is above the threshold. The sum decreases in γ and
    increases in ``N``, so the threshold increases with ``N`` towards ``γ* = 1.7286472389…``
    (``ζ(γ*) = 2``, ``N=None``), found with ``scipy.optimize.brentq``.

    Args:
        N: the number of mixed examples, ``N >= 2``, or ``None`` for the limit ``N → ∞``.

    Returns:
        The threshold γ. For ``N = 2`` it is ``0.0``: ``1 + 2^(−γ) < 2`` for every γ > 0, so
        one weight dominates for every γ > 0 (ζ-mixup of two examples is mixup with
        ``λ = 1/(1 + 2^(−γ)) > 1/2``).

    Raises:
        ValueError: for ``N = 1`` (a single weight, nothing to dominate).
    """
    from scipy.optimize import brentq

    N = _checks.optional_positive_int("N", N)
    if N is None:
        from scipy.special import zeta

        return float(brentq(lambda g: zeta(g) - 2.0, 1.5, 3.0, xtol=1e-15))
    if N == 1:
        raise ValueError("N must be >= 2 (or None): with one example there is no other weight to dominate")
    if N == 2:
        return 0.0
    j = np.arange(N, 0, -1, dtype=np.float64)
    # f(0) = N − 2 > 0 and f(2) < ζ(2) − 2 < 0: the root lies in (0, 2) and is below γ*.
    return float(brentq(lambda g: float(np.sum(j ** -g)) - 2.0, 0.0, 2.0, xtol=1e-15))


def mixup_lambda(gamma: float) -> float:
    """The mixup λ that ζ-mixup of ``T = 2`` examples uses: ``λ = 1 / (1 + 2^(−γ))``.

    With two examples the weights are ``(1, 2^(−γ)) / (1 + 2^(−γ))``: mixup with a fixed λ
    (the dominant example's weight, always > 1/2) instead of λ ~ Beta(α, α).
    """
    gamma = _checks.positive_float("gamma", gamma)
    return 1.0 / (1.0 + 2.0 ** -gamma)


def num_orderings(N: int) -> int:
    """``N!``: the number of distinct synthetic examples one γ can make from ``N`` examples.

    Each ordering of the ``N`` examples gives its own convex combination (the p-series weights
    are distinct). With the dominant example fixed, as in the batch form where output ``k``
    is dominated by input ``k``, there are ``(N − 1)!`` of them per output — against one
    segment of points for mixup of a pair.
    """
    return math.factorial(_checks.positive_int("N", N))


@register("zeta")
def spec(gamma: float = DEFAULT_GAMMA) -> MethodSpec:
    """ζ-mixup (Abhishek et al. 2024) as a training method (``make_method("zeta", ...)``): every
    output a p-series-weighted mix of the whole batch (:func:`sample`), soft-target cross-entropy.
    The top weight dominates the rest iff γ > γ*(b)."""
    return MethodSpec(sample, dict(gamma=gamma), loss="soft")


# ---------------------------------------------------------------------- benchmark entries
def _bench(x: torch.Tensor, y: torch.Tensor, num_classes: int, n: int | None):
    return lambda: sample(x, gamma=DEFAULT_GAMMA).apply(x)


BENCH = (
    BenchEntry(op="mixbook_zeta", kind="image", family="dense", make=_bench,
               targets=(Target("zeta >= 1.0x NumPy reference", peer="numpy_zeta", minimum=1.0),),
               limits=(Limit("zeta <= 1.5x one matmul of its shape (sampling included)", measure="matmul_ratio",
                             bound=1.5),)),
)
"""What :mod:`mixbook.bench` times for this module (:class:`~mixbook.core.benchmark.BenchEntry`): the
weights and the mixing (sample + apply)."""
