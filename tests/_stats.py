"""Statistical assertions and generators shared by the test modules."""

from __future__ import annotations

import math

import torch
from scipy import stats


def cuda_gen(seed: int) -> torch.Generator:
    return torch.Generator(device="cuda").manual_seed(seed)


def cpu_gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_beta_moments(sample: torch.Tensor, a: float, b: float, k: float = 4.0) -> tuple[float, float]:
    """Mean and variance within k standard errors of Beta(a, b) (variance SE from the 4th central
    moment); returns (sample mean, SE of the mean)."""
    s = sample.detach().double().flatten().cpu()
    n = s.numel()
    assert not bool(s.isnan().any())
    mean, var, _, kurt = (float(v) for v in stats.beta.stats(a, b, moments="mvsk"))
    mu4 = (kurt + 3.0) * var**2
    se_mean, se_var = math.sqrt(var / n), math.sqrt((mu4 - var**2) / n)
    m, v = float(s.mean()), float(s.var())
    assert abs(m - mean) < k * se_mean, f"Beta({a}, {b}) mean {m:.5f} vs {mean:.5f} (SE {se_mean:.2g})"
    assert abs(v - var) < k * se_var, f"Beta({a}, {b}) variance {v:.5f} vs {var:.5f} (SE {se_var:.2g})"
    return m, se_mean
