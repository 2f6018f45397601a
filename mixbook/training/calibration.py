"""Temperature scaling: one scalar ``T > 0`` fitted on a validation split to calibrate a classifier.

Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks", ICML 2017, §4.2:
the calibrated prediction is ``softmax(z / T)`` with ``T`` minimising the mean negative
log-likelihood on held-out data,

    NLL(T) = (1/n) Σ_i [ logsumexp_c(z_ic / T) − z_{i,y_i} / T ].

``T`` does not change the arg-max, so accuracy is unchanged; ``T > 1`` softens an
over-confident model, ``T < 1`` sharpens an under-confident one.

**How it is fitted.** In the inverse temperature ``β = 1/T`` the NLL is convex (a
log-sum-exp of functions linear in ``β``), with derivative

    g(β) = dNLL/dβ = (1/n) Σ_i ( E_{softmax(β z_i)}[z_i] − z_{i,y_i} ),

non-decreasing in ``β`` (its derivative is a variance). So the minimiser over ``T ∈ [lo, hi]``
is the root of ``g`` in ``[1/hi, 1/lo]`` when ``g`` changes sign there, and otherwise the bound
``g`` points at. :func:`fit_temperature` finds the root by Newton's method on ``g`` (``g'`` is
the mean softmax variance of the logits) safeguarded by a bracket: a Newton step that leaves the
bracket is replaced by a bisection step (in ``log β``), so it cannot diverge. Starting from
``T = 1`` it converges in a handful of steps, to float64 resolution, deterministically; it
computes in float64 on the logits' device. It reads a few scalars on the host per step (a fit is done
once, on a validation split, not in a training step).

Imports torch and :mod:`mixbook.core` only (no SciPy: the training floor must not need it).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core import _checks

__all__ = ["Temperature", "fit_temperature", "temperature_scale"]

_MAX_STEPS = 200
"""At most this many Newton/bisection steps: far more than needed (Newton converges in a handful;
a bisection step halves the bracket in ``log β``, and float64 runs out after ~60)."""
_RTOL = 1e-13
"""Stop when a step, or the bracket, is below this relative size in ``β``."""


@dataclass(frozen=True)
class Temperature:
    """A fitted temperature.

    Attributes:
        value: ``T`` in ``[lo, hi]``.
        nll_before: mean NLL of ``softmax(logits)`` (``T = 1``) on the fitting data.
        nll_after: mean NLL of ``softmax(logits / T)`` on the fitting data; ``≤ nll_before``
            whenever ``1 ∈ [lo, hi]`` (``T`` minimises the NLL over the bounds).
        at_bound: ``True`` when the NLL still decreases towards a bound, so the minimiser is
            the bound itself (the unconstrained optimum lies at or beyond it: e.g. separable
            validation data, whose NLL keeps falling as ``T → 0``); widen ``bounds`` or treat
            ``value`` as a limit, not an estimate.

    ``float(t)`` is ``t.value``, and :func:`temperature_scale` accepts a ``Temperature``.
    """

    value: float
    nll_before: float
    nll_after: float
    at_bound: bool

    def __float__(self) -> float:
        return self.value


def _logits(logits: object) -> torch.Tensor:
    logits = _checks.tensor("logits", logits)
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor (float16, bfloat16, float32 or float64), got {logits.dtype}")
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] < 2:
        raise ValueError(f"logits must have shape (n, num_classes) with n >= 1 and num_classes >= 2, "
                         f"got {tuple(logits.shape)}")
    return logits


def _bounds(bounds: object) -> tuple[float, float]:
    if not isinstance(bounds, tuple) or len(bounds) != 2:
        raise TypeError(f"bounds must be a tuple (lo, hi) of two real numbers, got {bounds!r}")
    lo = _checks.positive_float("bounds[0]", bounds[0])
    hi = _checks.positive_float("bounds[1]", bounds[1])
    if not lo < hi:
        raise ValueError(f"bounds must satisfy 0 < lo < hi, got {bounds!r}")
    return lo, hi


def _nll(z: torch.Tensor, y: torch.Tensor, beta: float) -> float:
    return float(F.cross_entropy(z * beta, y))


def _slope(z: torch.Tensor, zy: torch.Tensor, beta: float, curvature: bool = False):
    """``g(β) = dNLL/dβ`` (see the module docstring), and with ``curvature`` also
    ``g'(β) = (1/n) Σ_i Var_{softmax(β z_i)}[z_i] ≥ 0``."""
    p = torch.softmax(z * beta, dim=1)
    m1 = (p * z).sum(1)
    g = float((m1 - zy).mean())
    if not curvature:
        return g
    return g, float(((p * z * z).sum(1) - m1 * m1).mean())


def fit_temperature(logits: torch.Tensor, y: torch.Tensor, *, bounds: tuple[float, float] = (0.05, 20.0)) -> Temperature:
    """The temperature ``T ∈ [lo, hi]`` minimising the mean NLL of ``softmax(logits / T)`` (Guo et al. 2017).

    Fit it on a validation split (never the test set), then apply it to test logits with
    :func:`temperature_scale`. Method: the root of the NLL's derivative in ``β = 1/T``, which is
    monotone, by bracket-safeguarded Newton steps (module docstring); deterministic, float64.

    Args:
        logits: ``(n, C)`` floating tensor, ``n ≥ 1``, ``C ≥ 2``, finite.
        y: ``(n,)`` integer labels in ``[0, C)``, on the logits' device.
        bounds: ``(lo, hi)`` with ``0 < lo < hi``: the range searched. If the NLL keeps
            decreasing up to a bound, that bound is returned with ``at_bound=True``.

    Returns:
        :class:`Temperature` ``(value, nll_before, nll_after, at_bound)``. If the NLL does not
        depend on ``T`` at all (every row of logits constant), ``value`` is 1 clipped into the
        bounds and ``at_bound`` is ``False``.
    """
    logits = _logits(logits)
    y = _checks.labels("y", y)
    _checks.same_batch("y", y, logits.shape[0])
    _checks.same_device("y", y, logits.device)
    lo, hi = _bounds(bounds)
    z = logits.detach().to(torch.float64)
    if not bool(torch.isfinite(z).all()):
        raise ValueError("logits must be finite (no NaN or ±inf)")
    num_classes = z.shape[1]
    y_min, y_max = int(y.min()), int(y.max())
    if y_min < 0 or y_max >= num_classes:
        raise ValueError(f"y must lie in [0, num_classes) = [0, {num_classes}), got values in [{y_min}, {y_max}]")
    y = y.long()
    zy = z.gather(1, y[:, None]).squeeze(1)

    b_lo, b_hi = 1.0 / hi, 1.0 / lo          # the bracket in β = 1/T
    g_lo, g_hi = _slope(z, zy, b_lo), _slope(z, zy, b_hi)
    at_bound = False
    if g_lo >= 0 and g_hi <= 0:               # g is non-decreasing: both hold only if g ≡ 0 (flat NLL)
        beta = 1.0 / min(max(1.0, lo), hi)
    elif g_lo >= 0:                            # NLL increases in β from the smallest β: T = hi
        beta, at_bound = b_lo, True
    elif g_hi <= 0:                            # NLL decreases in β up to the largest β: T = lo
        beta, at_bound = b_hi, True
    else:                                      # g(b_lo) < 0 < g(b_hi): safeguarded Newton on the root of g
        beta = min(max(1.0, b_lo), b_hi)
        for _ in range(_MAX_STEPS):
            g, h = _slope(z, zy, beta, curvature=True)
            if g == 0:
                break
            if g < 0:
                b_lo = beta
            else:
                b_hi = beta
            step = beta - g / h if h > 0 else math.nan
            new = step if b_lo < step < b_hi else math.sqrt(b_lo * b_hi)
            if abs(new - beta) <= _RTOL * beta or b_hi - b_lo <= _RTOL * b_lo:
                beta = new
                break
            beta = new
    value = min(max(1.0 / beta, lo), hi)
    return Temperature(value, _nll(z, y, 1.0), _nll(z, y, 1.0 / value), at_bound)


def temperature_scale(logits: torch.Tensor, temperature: float | Temperature) -> torch.Tensor:
    """``logits / T``: the logits of the temperature-scaled prediction ``softmax(logits / T)``.

    Args:
        logits: floating tensor of any shape, classes on the last dimension; not modified.
        temperature: ``T``, a finite real number ``> 0``, or a :class:`Temperature` from
            :func:`fit_temperature`.

    Returns:
        A new tensor of ``logits``' shape, dtype and device.
    """
    logits = _checks.tensor("logits", logits)
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor (float16, bfloat16, float32 or float64), got {logits.dtype}")
    if isinstance(temperature, Temperature):
        temperature = temperature.value
    elif isinstance(temperature, torch.Tensor) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a real number > 0 or a Temperature, got {type(temperature).__name__}")
    t = _checks.positive_float("temperature", temperature)
    return logits / t
