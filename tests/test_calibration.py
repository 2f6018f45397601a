"""Tests of mixbook.training.calibration: temperature scaling (Guo et al. 2017).

References are computed here independently: the NLL with NumPy/SciPy's ``logsumexp``, a dense
grid over ``T``, and ``scipy.optimize.minimize_scalar``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import optimize, special

from mixbook.training import calibration as cal


def _nll(logits: np.ndarray, y: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Mean NLL of softmax(logits / t), vectorised over an array of temperatures ``t``."""
    t = np.asarray(t, dtype=np.float64)
    z = logits[None] / t.reshape(-1, 1, 1)
    out = (special.logsumexp(z, axis=-1) - np.take_along_axis(z, y[None, :, None], -1)[..., 0]).mean(-1)
    return out.reshape(t.shape)


def _calibrated(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a calibrated model: labels drawn from softmax(logits)."""
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, c, generator=g, dtype=torch.float64)
    y = torch.multinomial(torch.softmax(logits, 1), 1, generator=g).squeeze(1)
    return logits, y


@pytest.mark.parametrize("k", [0.5, 3.0])
def test_recovers_the_temperature_of_a_rescaled_calibrated_model(k):
    logits, y = _calibrated(10000, 5, seed=int(10 * k))
    fit = cal.fit_temperature(k * logits, y)
    assert fit.value == pytest.approx(k, rel=0.05)
    assert not fit.at_bound
    assert fit.nll_after < fit.nll_before
    # and the calibrated model itself needs none
    assert cal.fit_temperature(logits, y).value == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("seed", range(4))
def test_agrees_with_a_dense_grid_and_scipy(seed):
    rng = np.random.default_rng(seed)
    n, c = 300, 4
    logits = rng.normal(0, rng.uniform(0.5, 6), (n, c))
    y = np.where(rng.random(n) < 0.7, logits.argmax(1), rng.integers(0, c, n))
    fit = cal.fit_temperature(torch.from_numpy(logits), torch.from_numpy(y))
    lo, hi = 0.05, 20.0
    grid = np.exp(np.linspace(math.log(lo), math.log(hi), 5001))
    values = _nll(logits, y, grid)
    best = int(values.argmin())
    assert 0 < best < grid.size - 1                     # an interior optimum in these cases
    step = math.log(grid[1] / grid[0])
    assert abs(math.log(fit.value) - math.log(grid[best])) <= step
    assert fit.nll_after <= values[best] + 1e-12
    ref = optimize.minimize_scalar(lambda u: float(_nll(logits, y, math.exp(u))), bounds=(math.log(lo), math.log(hi)),
                                   method="bounded", options={"xatol": 1e-10})
    assert fit.value == pytest.approx(math.exp(ref.x), rel=1e-5)
    assert fit.nll_before == pytest.approx(float(_nll(logits, y, 1.0)), rel=1e-12)
    assert fit.nll_after == pytest.approx(float(_nll(logits, y, fit.value)), rel=1e-12)
    assert not fit.at_bound


def test_nll_after_never_exceeds_nll_before():
    rng = np.random.default_rng(7)
    for _ in range(30):
        n, c = int(rng.integers(1, 60)), int(rng.integers(2, 8))
        logits = torch.from_numpy(rng.normal(0, rng.uniform(0.01, 30), (n, c)))
        y = torch.from_numpy(rng.integers(0, c, n))
        fit = cal.fit_temperature(logits, y)
        assert fit.nll_after <= fit.nll_before + 1e-12
        assert 0.05 <= fit.value <= 20.0


def test_optimum_on_a_bound_is_returned_and_flagged():
    # separable validation data: the NLL keeps falling as T -> 0
    y = torch.arange(6) % 3
    logits = 0.5 * torch.nn.functional.one_hot(y, 3).double()
    low = cal.fit_temperature(logits, y)
    assert low.value == 0.05 and low.at_bound
    assert np.all(np.diff(_nll(logits.numpy(), y.numpy(), [0.05, 0.06, 0.1])) > 0)
    # labels independent of confident logits: the best T lies beyond a small upper bound
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.normal(0, 10, (500, 3)))
    high = cal.fit_temperature(noise, torch.from_numpy(rng.integers(0, 3, 500)), bounds=(0.1, 2.0))
    assert high.value == 2.0 and high.at_bound


def test_flat_nll_gives_one():
    fit = cal.fit_temperature(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]))
    assert fit.value == 1.0 and not fit.at_bound
    assert fit.nll_before == pytest.approx(math.log(3)) and fit.nll_after == pytest.approx(math.log(3))
    assert cal.fit_temperature(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), bounds=(2.0, 3.0)).value == 2.0


def test_deterministic_float32_and_leaves_the_logits_alone():
    logits, y = _calibrated(2000, 10, seed=3)
    logits = (2.5 * logits).float().requires_grad_()
    before = logits.detach().clone()
    a, b = cal.fit_temperature(logits, y), cal.fit_temperature(logits, y)
    assert a == b
    assert torch.equal(logits.detach(), before)
    assert a.value == pytest.approx(cal.fit_temperature(logits.detach().double(), y).value, rel=1e-6)
    assert float(a) == a.value
    assert cal.fit_temperature(logits, y.int()).value == a.value


def test_temperature_scale():
    logits = torch.randn(5, 3)
    out = cal.temperature_scale(logits, 2.0)
    assert torch.equal(out, logits / 2.0) and out is not logits
    fit = cal.Temperature(4.0, 1.0, 0.9, False)
    assert torch.equal(cal.temperature_scale(logits, fit), logits / 4.0)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        assert cal.temperature_scale(logits.to(dtype), 0.5).dtype == dtype
    # the scaled softmax is the calibrated prediction: same arg-max
    assert torch.equal(cal.temperature_scale(logits, 3.0).argmax(1), logits.argmax(1))
    assert cal.temperature_scale(torch.randn(2, 4, 3), 1.0).shape == (2, 4, 3)


@pytest.mark.parametrize("t,exc", [(0.0, ValueError), (-1.0, ValueError), (math.nan, ValueError), (math.inf, ValueError),
                                   (True, TypeError), ("2", TypeError), (torch.tensor(2.0), TypeError)])
def test_temperature_scale_bad_temperature(t, exc):
    with pytest.raises(exc, match="temperature"):
        cal.temperature_scale(torch.randn(3, 2), t)


def test_temperature_scale_bad_logits():
    with pytest.raises(TypeError, match="logits"):
        cal.temperature_scale(np.zeros((2, 3)), 1.0)
    with pytest.raises(TypeError, match="floating"):
        cal.temperature_scale(torch.zeros(2, 3, dtype=torch.long), 1.0)


_Y = torch.tensor([0, 1, 2])
_L = torch.randn(3, 3)


@pytest.mark.parametrize("logits,y,kwargs,exc,match", [
    (np.zeros((3, 3)), _Y, {}, TypeError, "logits must be a torch.Tensor"),
    (torch.zeros(3, 3, dtype=torch.long), _Y, {}, TypeError, "floating"),
    (torch.zeros(3), _Y, {}, ValueError, r"shape \(n, num_classes\)"),
    (torch.zeros(0, 3), _Y[:0], {}, ValueError, "n >= 1"),
    (torch.zeros(3, 1), _Y * 0, {}, ValueError, "num_classes >= 2"),
    (_L, _Y.float(), {}, TypeError, "integer class labels"),
    (_L, _Y.bool(), {}, TypeError, "integer class labels"),
    (_L, _Y[:, None], {}, ValueError, "1-D"),
    (_L, _Y[:2], {}, ValueError, "batch size 3"),
    (_L, torch.tensor([0, 1, 3]), {}, ValueError, r"\[0, 3\)"),
    (_L, torch.tensor([0, -1, 2]), {}, ValueError, r"\[0, 3\)"),
    (torch.tensor([[0.0, math.nan, 1.0]] * 3), _Y, {}, ValueError, "finite"),
    (torch.tensor([[0.0, math.inf, 1.0]] * 3), _Y, {}, ValueError, "finite"),
    (_L, _Y.to("meta"), {}, ValueError, "is on meta"),
    (_L, _Y, {"bounds": (2.0, 1.0)}, ValueError, "lo < hi"),
    (_L, _Y, {"bounds": (0.0, 1.0)}, ValueError, r"bounds\[0\]"),
    (_L, _Y, {"bounds": (0.1, math.inf)}, ValueError, r"bounds\[1\]"),
    (_L, _Y, {"bounds": [0.1, 2.0]}, TypeError, "bounds must be a tuple"),
    (_L, _Y, {"bounds": (0.1, "2")}, TypeError, r"bounds\[1\]"),
])
def test_fit_temperature_bad_input(logits, y, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cal.fit_temperature(logits, y, **kwargs)
