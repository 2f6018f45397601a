"""mixbook.chapters.shrinkage: E[max(λ, 1 − λ)] against Monte Carlo and its limits."""

import numpy as np
import pytest

from mixbook.chapters import shrinkage


@pytest.mark.parametrize("alpha", [0.1, 0.4, 1.0, 2.0, 8.0])
def test_dominant_weight_matches_monte_carlo(alpha):
    lam = np.random.default_rng(0).beta(alpha, alpha, 400_000)
    mc = np.maximum(lam, 1 - lam).mean()
    assert shrinkage.dominant_weight(alpha) == pytest.approx(mc, abs=3e-3)


def test_limits_and_closed_form_at_one():
    assert shrinkage.dominant_weight(1.0) == pytest.approx(0.75, abs=1e-12)   # uniform λ
    assert shrinkage.dominant_weight(1e-4) > 0.999 and shrinkage.dominant_weight(1e4) < 0.51
    assert shrinkage.predicted_confidence(1.0, 10) == pytest.approx(0.75 + 0.025)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_bad_alpha(bad):
    with pytest.raises(ValueError, match="alpha"):
        shrinkage.dominant_weight(bad)


def test_bad_classes():
    with pytest.raises(ValueError, match="num_classes"):
        shrinkage.predicted_confidence(1.0, 1)
