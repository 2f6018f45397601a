"""ζ-mixup: the p-series weight matrix, the sampler and transform, thresholds, bad input."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from scipy import special, stats

from mixbook.core import _checks
from mixbook.methods import zeta
from mixbook.core.mixing import Mixing
from mixbook.methods.zeta import ZetaMixup

SEEDS = st.integers(0, 2**31 - 1)
# Above ~0.05 the top two weights of a p-series stay distinct even in float16 for b <= 40.
GAMMAS = st.floats(0.05, 8.0)
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _row_tol(dtype: torch.dtype) -> float:
    return 1e-12 if dtype == torch.float64 else 4 * torch.finfo(dtype).eps


# ---------------------------------------------------------------------- pseries
@given(n=st.integers(1, 300), gamma=st.floats(0.01, 20.0))
def test_pseries_formula(n, gamma):
    w = zeta.pseries(n, gamma, dtype=torch.float64)
    j = torch.arange(1, n + 1, dtype=torch.float64)
    expected = j ** -gamma / (j ** -gamma).sum()
    assert w.shape == (n,) and w.dtype == torch.float64
    torch.testing.assert_close(w, expected, rtol=1e-12, atol=0)
    assert abs(float(w.sum()) - 1) < 1e-12
    assert bool((w[1:] <= w[:-1]).all())


def test_pseries_known_values():
    torch.testing.assert_close(zeta.pseries(2, 1.0, dtype=torch.float64),
                               torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(zeta.pseries(3, 2.0, dtype=torch.float64),
                               torch.tensor([1, 1 / 4, 1 / 9], dtype=torch.float64) / (1 + 1 / 4 + 1 / 9))
    assert zeta.pseries(1, 3.0).tolist() == [1.0]
    for dtype in DTYPES:
        w = zeta.pseries(10, 2.8, dtype=dtype)
        assert w.dtype == dtype and abs(float(w.double().sum()) - 1) < _row_tol(dtype)


# ---------------------------------------------------------------------- the weight matrix
@given(b=st.integers(1, 40), n=st.none() | st.integers(1, 60), gamma=GAMMAS, seed=SEEDS,
       dtype=st.sampled_from(DTYPES))
def test_weights_properties(b, n, gamma, seed, dtype):
    W = zeta.weights(b, gamma=gamma, n=n, dtype=dtype, generator=_gen(seed))
    rows = b if n is None else n
    assert W.shape == (rows, b) and W.dtype == dtype and W.device.type == "cpu"
    assert bool((W >= 0).all())
    torch.testing.assert_close(W.double().sum(1), torch.ones(rows, dtype=torch.float64), atol=_row_tol(dtype), rtol=0)
    # Every row is a permutation of the same normalised p-series (bit for bit).
    series = zeta.pseries(b, gamma, dtype=dtype)
    assert torch.equal(W.sort(dim=1, descending=True).values, series.sort(descending=True).values.expand(rows, b))
    # Output k is dominated by input k mod b.
    assert torch.equal(W.argmax(dim=1), torch.arange(rows) % b)
    # Same seed, same matrix.
    assert torch.equal(W, zeta.weights(b, gamma=gamma, n=n, dtype=dtype, generator=_gen(seed)))


@given(b=st.integers(1, 30), n=st.integers(1, 50), gamma=GAMMAS, seed=SEEDS)
def test_weights_dominant(b, n, gamma, seed):
    g = _gen(seed)
    dominant = torch.randint(0, b, (n,), generator=g)
    W = zeta.weights(b, gamma=gamma, dominant=dominant, generator=g)  # n inferred from dominant
    assert W.shape == (n, b)
    assert torch.equal(W.argmax(dim=1), dominant)
    torch.testing.assert_close(W.gather(1, dominant[:, None]).squeeze(1), zeta.pseries(b, gamma)[0].expand(n))
    for dt in (torch.int32, torch.int16, torch.uint8):
        assert torch.equal(zeta.weights(b, gamma=gamma, dominant=dominant.to(dt), generator=_gen(seed)),
                           zeta.weights(b, gamma=gamma, dominant=dominant, generator=_gen(seed)))


@pytest.mark.parametrize("n, b", [(3, 7), (7, 3), (12, 4), (1, 5), (5, 1)])
def test_weights_n_not_b(n, b):
    W = zeta.weights(b, gamma=2.8, n=n, generator=_gen(n * 10 + b))
    assert W.shape == (n, b)
    torch.testing.assert_close(W.sum(1), torch.ones(n))
    assert W.argmax(1).tolist() == [k % b for k in range(n)]


def test_weights_batch_of_one():
    assert zeta.weights(1, gamma=2.8).tolist() == [[1.0]]
    assert zeta.weights(1, gamma=0.3, n=3).tolist() == [[1.0], [1.0], [1.0]]
    x = torch.randn(1, 3, 4)
    m = zeta.sample(x, gamma=1.0)
    assert torch.equal(m.apply(x), x)


def test_weights_device_and_seeds():
    W = zeta.weights(6, gamma=2.0, device="meta")
    assert W.device.type == "meta" and W.shape == (6, 6)
    assert zeta.weights(4, gamma=2.0, dominant=torch.zeros(2, dtype=torch.long, device="meta")).device.type == "meta"
    a = zeta.weights(16, gamma=2.0, generator=_gen(1))
    assert not torch.equal(a, zeta.weights(16, gamma=2.0, generator=_gen(2)))
    torch.manual_seed(3)
    c = zeta.weights(16, gamma=2.0)
    torch.manual_seed(3)
    assert torch.equal(c, zeta.weights(16, gamma=2.0))


def test_non_dominant_order_is_uniform():
    """With the dominant input fixed, the other b − 1 inputs get the other weights in a uniform
    random order: all (b − 1)! orderings equally likely, and the runner-up uniform."""
    b, reps = 4, 6000
    W = zeta.weights(b, gamma=2.0, n=reps, dominant=torch.zeros(reps, dtype=torch.long), generator=_gen(7))
    order = W.argsort(dim=1, descending=True)
    assert bool((order[:, 0] == 0).all())
    counts = Counter(tuple(r) for r in order[:, 1:].tolist())
    assert len(counts) == math.factorial(b - 1) == zeta.num_orderings(b) // b
    assert set(counts) == set(itertools.permutations(range(1, b)))
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3, counts
    # Default dominants: among rows dominated by input 0 (of b = 5), the runner-up is uniform.
    b = 5
    W = zeta.weights(b, gamma=2.8, n=b * 4000, generator=_gen(8))
    second = W.argsort(dim=1, descending=True)[:, 1]
    for k in range(b):
        c = Counter(second[k::b].tolist())
        assert set(c) == set(range(b)) - {k}
        assert stats.chisquare(list(c.values())).pvalue > 1e-3, (k, c)


def test_ordering_is_not_fixed():
    """A non-uniform construction (e.g. a fixed cyclic shift of the series) would fail here."""
    W = zeta.weights(5, gamma=2.0, n=500, dominant=torch.zeros(500, dtype=torch.long), generator=_gen(9))
    assert len({tuple(r) for r in W.argsort(1).tolist()}) == 24


# ---------------------------------------------------------------------- the normalisation guard
def _unnormalised(W: torch.Tensor, gamma: float) -> torch.Tensor:
    """``W · C``: the raw p-series terms j^(−γ) in W's positions."""
    return W * zeta.dominance_sum(W.shape[1], gamma)


@pytest.mark.parametrize("n, b", [(6, 9), (9, 6), (8, 8)])
def test_wrong_axis_normalisation_breaks_rows(n, b):
    """Normalising columns instead of rows only works by accident (every row a permutation of
    one series, n == b). With n != b, or with masked entries, it is not row-stochastic; the
    row normalisation and ``weights`` are."""
    gamma = 1.5
    W = zeta.weights(b, gamma=gamma, n=n, dtype=torch.float64, generator=_gen(n + b))
    raw = _unnormalised(W, gamma)
    torch.testing.assert_close(raw.sort(1, descending=True).values[:, 0], torch.ones(n, dtype=torch.float64))
    torch.testing.assert_close(raw / raw.sum(1, keepdim=True), W)  # rows: the right axis
    mask = torch.ones(n, b, dtype=torch.float64)
    mask[0, W[0].argsort()[:2]] = 0  # drop two of row 0's small weights
    for U in (raw, raw * mask):
        right = U / U.sum(dim=1, keepdim=True)
        torch.testing.assert_close(right.sum(1), torch.ones(n, dtype=torch.float64))
        wrong = U / U.sum(dim=0, keepdim=True)  # columns
        assert float((wrong.sum(1) - 1).abs().max()) > 1e-3
    if n == b:
        # The authors' broadcast `U / U.sum(dim=1)` divides column j by row j's sum: exact only
        # while all row sums agree, wrong as soon as one row is masked.
        torch.testing.assert_close((raw / raw.sum(dim=1)).sum(1), torch.ones(n, dtype=torch.float64))
        masked = raw * mask
        assert float(((masked / masked.sum(dim=1)).sum(1) - 1).abs().max()) > 1e-3
    assert float((W.sum(1) - 1).abs().max()) < 1e-12


# ---------------------------------------------------------------------- sample and ZetaMixup
@given(b=st.integers(1, 24), n=st.none() | st.integers(1, 30), gamma=GAMMAS, seed=SEEDS)
def test_sample_apply_and_targets(b, n, gamma, seed):
    g = _gen(seed)
    c = 5
    x = torch.randn(b, 3, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (b,), generator=g)
    x0, y0 = x.clone(), y.clone()
    m = zeta.sample(x, y, gamma=gamma, n=n, generator=_gen(seed + 1))
    rows = b if n is None else n
    assert isinstance(m, Mixing) and not m.is_pairwise
    assert m.num_outputs == rows and m.batch_size == b and m.weights.dtype == torch.float64
    W = m.dense()
    assert torch.equal(W, zeta.weights(b, gamma=gamma, n=n, dtype=torch.float64, generator=_gen(seed + 1)))
    out = m.apply(x)
    assert out.shape == (rows, 3, 2)
    torch.testing.assert_close(out, (W @ x.reshape(b, -1)).reshape(rows, 3, 2))
    t = m.targets(y, c)
    assert t.dtype == torch.float32 and t.shape == (rows, c)
    torch.testing.assert_close(t, W.float() @ F.one_hot(y, c).float())
    # Convex combinations stay inside the per-coordinate range of the batch.
    lo, hi = x.amin(0), x.amax(0)
    assert bool((out >= lo - 1e-12).all()) and bool((out <= hi + 1e-12).all())
    assert torch.equal(x, x0) and torch.equal(y, y0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sample_dtypes(dtype):
    x = torch.rand(8, 3, 4, 4, generator=_gen(0), dtype=torch.float64).to(dtype)
    m = zeta.sample(x, generator=_gen(1))
    assert m.weights.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    out = m.apply(x)
    assert out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out.double(), (m.weights.double() @ x.double().reshape(8, -1)).reshape(x.shape),
                               atol=8 * torch.finfo(dtype).eps, rtol=8 * torch.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [None, 5, 20])
def test_zeta_mixup_forward(dtype, n):
    b, c, smoothing = 12, 4, 0.1
    g = _gen(21)
    x = torch.rand(b, 3, 4, 4, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, c, (b,), generator=g)
    x0, y0 = x.clone(), y.clone()
    mix = ZetaMixup(gamma=2.8, num_classes=c, n=n, smoothing=smoothing, generator=_gen(3))
    x_mix, y_mix = mix(x, y)
    rows = b if n is None else n
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert x_mix.dtype == dtype and x_mix.shape == (rows, 3, 4, 4)
    assert y_mix.dtype == torch.float32 and y_mix.shape == (rows, c)
    torch.testing.assert_close(y_mix.sum(1), torch.ones(rows), atol=1e-6, rtol=0)
    assert float(y_mix.min()) >= smoothing / c - 1e-6
    m = ZetaMixup(gamma=2.8, num_classes=c, n=n, generator=_gen(3)).sample(x, y)
    assert torch.equal(x_mix, m.apply(x))
    assert torch.equal(y_mix, m.targets(y, c, smoothing))
    # The dominant label carries the top weight: argmax of the soft target is y[k mod b]
    # when γ is above the threshold (top weight > 1/2).
    assert torch.equal(y_mix.argmax(1), y[torch.arange(rows) % b])


def test_zeta_mixup_default_gamma_and_repr():
    mix = ZetaMixup(num_classes=3)
    assert mix.gamma == zeta.DEFAULT_GAMMA == 2.8 and isinstance(mix.gamma, float)
    assert "gamma=2.8" in repr(mix) and "num_classes=3" in repr(mix)
    assert ZetaMixup(gamma=2, num_classes=3).gamma == 2.0


def test_zeta_mixup_seeds():
    x, y = torch.randn(16, 3), torch.randint(0, 5, (16,))
    a = ZetaMixup(num_classes=5, generator=_gen(1))(x, y)
    b = ZetaMixup(num_classes=5, generator=_gen(1))(x, y)
    c = ZetaMixup(num_classes=5, generator=_gen(2))(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_sample_is_differentiable():
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    m = zeta.sample(x, generator=_gen(0))
    m.apply(x).sum().backward()
    # d/dx_j Σ_k (W x)_k = Σ_k W_kj: the column sums.
    torch.testing.assert_close(x.grad, m.weights.sum(0)[:, None].expand(6, 4))


# ---------------------------------------------------------------------- thresholds and counts
def test_threshold_infinite():
    g = zeta.dominance_threshold()
    assert abs(g - 1.7286472389) < 1e-9
    assert g == zeta.dominance_threshold(None) and abs(g - zeta.GAMMA_STAR) < 1e-12
    assert abs(special.zeta(g) - 2) < 1e-12
    assert zeta.dominance_sum(None, g) == pytest.approx(2.0, abs=1e-12)


SIZES = [3, 4, 8, 16, 32, 64, 128, 256, 512, 1024]


def test_threshold_increases_with_n_towards_gamma_star():
    t = [zeta.dominance_threshold(N) for N in SIZES]
    assert all(a < b for a, b in zip(t, t[1:])), t
    assert all(0 < v < zeta.GAMMA_STAR for v in t)
    assert zeta.GAMMA_STAR - t[-1] < 0.01
    # N = 3: 2^(−γ) + 3^(−γ) = 1.
    g3 = t[0]
    assert abs(2 ** -g3 + 3 ** -g3 - 1) < 1e-12


@pytest.mark.parametrize("N", SIZES)
def test_threshold_is_where_the_top_weight_dominates(N):
    g = zeta.dominance_threshold(N)
    assert zeta.dominance_sum(N, g) == pytest.approx(2.0, abs=1e-12)
    for gamma, dominates in ((g + 1e-4, True), (g - 1e-4, False)):
        w = zeta.pseries(N, gamma, dtype=torch.float64)
        assert (float(w[0]) > float(w[1:].sum())) is dominates, (N, gamma)


def test_threshold_two_and_one():
    assert zeta.dominance_threshold(2) == 0.0
    for gamma in (1e-3, 0.1, 0.5, 1.0, 2.8, 10.0):
        assert float(zeta.pseries(2, gamma, dtype=torch.float64)[0]) > 0.5
        top = float(zeta.pseries(2, gamma, dtype=torch.float64)[0])
        assert zeta.mixup_lambda(gamma) == pytest.approx(top, rel=1e-14)
    assert zeta.mixup_lambda(1.0) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"\bN\b must be >= 2"):
        zeta.dominance_threshold(1)
    with pytest.raises(ValueError, match=r"\bN\b"):
        zeta.dominance_threshold(0)
    with pytest.raises(TypeError, match=r"\bN\b"):
        zeta.dominance_threshold(3.0)


def test_dominance_sum():
    assert zeta.dominance_sum(1, 2.0) == 1.0
    assert zeta.dominance_sum(3, 1.0) == pytest.approx(1 + 1 / 2 + 1 / 3)
    assert zeta.dominance_sum(None, 2.0) == pytest.approx(math.pi**2 / 6, rel=1e-14)
    assert zeta.dominance_sum(None, 1.0) == math.inf and zeta.dominance_sum(None, 0.5) == math.inf
    assert zeta.dominance_sum(10**6, 2.8) == pytest.approx(float(special.zeta(2.8)), rel=1e-9)
    # The normaliser of the weights.
    assert float(zeta.pseries(50, 2.8, dtype=torch.float64)[0]) == pytest.approx(1 / zeta.dominance_sum(50, 2.8))


def test_num_orderings():
    assert [zeta.num_orderings(N) for N in range(1, 7)] == [1, 2, 6, 24, 120, 720]
    assert zeta.num_orderings(20) == math.factorial(20)
    # All 3! orderings of 3 examples with distinct weights give 3! distinct mixed points.
    x = torch.tensor([[0.0], [1.0], [10.0]], dtype=torch.float64)
    w = zeta.pseries(3, 1.0, dtype=torch.float64)
    points = {round(float(w @ x[list(p), 0]), 12) for p in itertools.permutations(range(3))}
    assert len(points) == zeta.num_orderings(3)
    with pytest.raises(ValueError, match=r"\bN\b"):
        zeta.num_orderings(0)
    with pytest.raises(TypeError, match=r"\bN\b"):
        zeta.num_orderings(True)


# ---------------------------------------------------------------------- bad input
BAD_GAMMAS = [
    (0, ValueError), (0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
    (float("inf"), ValueError), (True, TypeError), (False, TypeError), ("2.8", TypeError),
    (None, TypeError), (torch.tensor(2.8), TypeError),
]


@pytest.mark.parametrize("gamma, exc", BAD_GAMMAS)
def test_bad_gamma(gamma, exc):
    x = torch.zeros(4, 2)
    for call in (lambda: zeta.sample(x, gamma=gamma), lambda: ZetaMixup(gamma=gamma, num_classes=3),
                 lambda: zeta.weights(4, gamma=gamma), lambda: zeta.pseries(4, gamma),
                 lambda: zeta.mixup_lambda(gamma), lambda: zeta.dominance_sum(3, gamma)):
        with pytest.raises(exc, match="gamma"):
            call()


def test_weights_bad_arguments():
    with pytest.raises(ValueError, match=r"\bb\b must be an int >= 1"):
        zeta.weights(0, gamma=2.0)
    with pytest.raises(TypeError, match=r"\bb\b"):
        zeta.weights(3.0, gamma=2.0)
    with pytest.raises(ValueError, match=r"\bn\b must be an int >= 1"):
        zeta.weights(3, gamma=2.0, n=0)
    with pytest.raises(TypeError, match=r"\bn\b"):
        zeta.weights(3, gamma=2.0, n=True)
    with pytest.raises(ValueError, match=r"dominant must lie in \[0, b\) = \[0, 3\)"):
        zeta.weights(3, gamma=2.0, dominant=torch.tensor([0, 3, 1]))
    with pytest.raises(ValueError, match=r"dominant must lie in \[0, b\)"):
        zeta.weights(3, gamma=2.0, dominant=torch.tensor([0, -1]))
    with pytest.raises(TypeError, match="dominant must be an integer tensor"):
        zeta.weights(3, gamma=2.0, dominant=torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="dominant must be an integer tensor"):
        zeta.weights(3, gamma=2.0, dominant=torch.tensor([True, False, True]))
    with pytest.raises(TypeError, match="dominant must be a torch.Tensor"):
        zeta.weights(3, gamma=2.0, dominant=[0, 1, 2])
    with pytest.raises(ValueError, match=r"dominant must have shape \(4,\)"):
        zeta.weights(3, gamma=2.0, n=4, dominant=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"dominant must have shape \(3,\)"):
        zeta.weights(3, gamma=2.0, dominant=torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"dominant must have shape \(3,\)"):
        zeta.weights(3, gamma=2.0, dominant=torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="dominant is on meta"):
        zeta.weights(3, gamma=2.0, device="cpu", dominant=torch.zeros(3, dtype=torch.long, device="meta"))
    with pytest.raises(TypeError, match="dtype"):
        zeta.weights(3, gamma=2.0, dtype=torch.int64)
    with pytest.raises(TypeError, match="dtype"):
        zeta.pseries(3, 2.0, dtype="float32")
    with pytest.raises(TypeError, match="generator"):
        zeta.weights(3, gamma=2.0, generator=1)
    with pytest.raises(ValueError, match="generator is on cpu but the batch is on meta"):
        zeta.weights(3, gamma=2.0, device="meta", generator=torch.Generator())
    # Values are not checked off the CPU in "auto" mode (that would synchronise), and are
    # checked in "always" mode.
    zeta.weights(3, gamma=2.0, dominant=torch.tensor([0, 7, 1], device="meta"))
    with _checks.value_checks("never"):
        zeta.weights(3, gamma=2.0, dominant=torch.tensor([0, 1, 2]))


def test_sample_bad_arguments():
    x, y = torch.zeros(4, 2), torch.tensor([0, 1, 0, 1])
    with pytest.raises(TypeError, match=r"\bx\b must be a floating-point tensor"):
        zeta.sample(torch.zeros(4, 2, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"\bx\b must be a torch.Tensor"):
        zeta.sample([1.0, 2.0])
    with pytest.raises(ValueError, match=r"\bx\b must have a non-empty batch"):
        zeta.sample(torch.zeros(0, 3))
    with pytest.raises(ValueError, match=r"\bx\b must have a non-empty batch"):
        zeta.sample(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"\by\b must have batch size 4"):
        zeta.sample(x, torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match=r"\by\b is on meta"):
        zeta.sample(x, torch.zeros(4, dtype=torch.long, device="meta"))
    with pytest.raises(ValueError, match=r"dominant must lie in \[0, b\) = \[0, 4\)"):
        zeta.sample(x, dominant=torch.tensor([4, 0]))
    with pytest.raises(ValueError, match=r"\bn\b must be"):
        zeta.sample(x, n=0)
    with pytest.raises(ValueError, match="generator is on cpu but the batch is on meta"):
        zeta.sample(torch.zeros(4, 2, device="meta"), generator=torch.Generator())


def test_zeta_mixup_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        ZetaMixup(num_classes=0)
    with pytest.raises(TypeError, match="num_classes"):
        ZetaMixup(num_classes=True)
    with pytest.raises(ValueError, match="num_classes must be passed"):
        ZetaMixup()(torch.rand(4, 3), torch.tensor([0, 1, 2, 1]))      # integer labels need num_classes
    with pytest.raises(ValueError, match=r"\bn\b"):
        ZetaMixup(num_classes=3, n=0)
    with pytest.raises(ValueError, match="smoothing"):
        ZetaMixup(num_classes=3, smoothing=1.0)
    with pytest.raises(TypeError, match="generator"):
        ZetaMixup(num_classes=3, generator=123)


def test_zeta_mixup_batch_of_one():
    x, y = torch.rand(1, 3, 2, 2), torch.tensor([1])
    x_mix, y_mix = ZetaMixup(gamma=0.5, num_classes=3)(x, y)
    assert torch.equal(x_mix, x)
    assert torch.equal(y_mix, torch.tensor([[0.0, 1.0, 0.0]]))
