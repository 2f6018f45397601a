"""MultiMix: Dirichlet weights (n beyond b), the sampler and transform, dense MultiMix, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from _stats import assert_beta_moments
from mixbook.core import _checks
from mixbook.methods import multimix
from mixbook.core.mixing import Mixing
from mixbook.methods.multimix import MultiMix

SEEDS = st.integers(0, 2**31 - 1)
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _row_tol(dtype: torch.dtype) -> float:
    return 1e-12 if dtype == torch.float64 else 4 * torch.finfo(dtype).eps


# ---------------------------------------------------------------------- weights
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, n", [(8, 3), (8, 8), (8, 100), (128, 1000), (1, 5)])
@pytest.mark.parametrize("alpha", [0.05, 1.0, 10.0])
def test_weights_rows_are_on_the_simplex(dtype, b, n, alpha):
    W = multimix.weights(b, n=n, alpha=alpha, dtype=dtype, generator=_gen(b * n))
    assert W.shape == (n, b) and W.dtype == dtype and W.device.type == "cpu"
    assert bool((W >= 0).all()) and not bool(W.isnan().any())
    torch.testing.assert_close(W.double().sum(1), torch.ones(n, dtype=torch.float64), atol=_row_tol(dtype), rtol=0)


@pytest.mark.parametrize("alpha", [0.3, 1.0, 4.0])
@pytest.mark.parametrize("b", [2, 5])
def test_weights_dirichlet_moments(alpha, b):
    # Rows are independent; within a row the entries are not, so each column is tested on its own.
    # Every entry is Beta(α, (b − 1)α): mean 1/b, variance (1/b)(1 − 1/b)/(bα + 1).
    W = multimix.weights(b, n=40000, alpha=alpha, dtype=torch.float64, generator=_gen(7))
    for i in range(b):
        assert_beta_moments(W[:, i], alpha, (b - 1) * alpha, k=4.0)
    # The entries of a row are negatively correlated: Cov = −(1/b²)/(bα + 1).
    if b > 2:
        cov = float(torch.cov(W[:, :2].t())[0, 1])
        assert abs(cov - (-1 / b**2 / (b * alpha + 1))) < 0.002


def test_weights_alpha_limits():
    small = multimix.weights(6, n=2000, alpha=0.01, dtype=torch.float64, generator=_gen(1))
    assert float(small.max(1).values.median()) > 0.99  # α → 0: a vertex (one example copied)
    large = multimix.weights(6, n=2000, alpha=1e4, dtype=torch.float64, generator=_gen(1))
    assert float((large - 1 / 6).abs().max()) < 0.05   # α → ∞: the uniform average


def test_weights_seeds_and_device():
    a = multimix.weights(16, n=40, alpha=1.0, generator=_gen(3))
    assert torch.equal(a, multimix.weights(16, n=40, alpha=1.0, generator=_gen(3)))
    assert not torch.equal(a, multimix.weights(16, n=40, alpha=1.0, generator=_gen(4)))
    m = multimix.weights(4, n=9, alpha=1.0, device="meta", dtype=torch.float16)
    assert m.device.type == "meta" and m.dtype == torch.float16 and m.shape == (9, 4)


@pytest.mark.parametrize("n", [1, 3, 1000])
def test_batch_of_one(n):
    assert torch.equal(multimix.weights(1, n=n, alpha=0.2), torch.ones(n, 1))
    x, y = torch.rand(1, 3, 2, 2), torch.tensor([1])
    x_mix, y_mix = MultiMix(alpha=0.5, num_classes=3, n=n)(x, y)
    assert torch.equal(x_mix, x.expand(n, 3, 2, 2))
    assert torch.equal(y_mix, torch.tensor([[0.0, 1.0, 0.0]]).expand(n, 3))


# ---------------------------------------------------------------------- sample and MultiMix
@given(b=st.integers(1, 24), n=st.none() | st.integers(1, 60), alpha=st.floats(0.05, 20.0), seed=SEEDS)
def test_sample_apply_and_targets(b, n, alpha, seed):
    g = _gen(seed)
    c = 5
    x = torch.randn(b, 3, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (b,), generator=g)
    x0, y0 = x.clone(), y.clone()
    m = multimix.sample(x, y, n=n, alpha=alpha, generator=_gen(seed + 1))
    rows = b if n is None else n
    assert isinstance(m, Mixing) and not m.is_pairwise
    assert m.num_outputs == rows and m.batch_size == b and m.weights.dtype == torch.float64
    W = m.dense()
    assert torch.equal(W, multimix.weights(b, n=rows, alpha=alpha, dtype=torch.float64, generator=_gen(seed + 1)))
    out = m.apply(x)
    assert out.shape == (rows, 3, 2)
    torch.testing.assert_close(out, (W @ x.reshape(b, -1)).reshape(rows, 3, 2))
    t = m.targets(y, c)
    assert t.dtype == torch.float32 and t.shape == (rows, c)
    torch.testing.assert_close(t, W.float() @ F.one_hot(y, c).float())
    lo, hi = x.amin(0), x.amax(0)
    assert bool((out >= lo - 1e-12).all()) and bool((out <= hi + 1e-12).all())
    assert torch.equal(x, x0) and torch.equal(y, y0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sample_dtypes(dtype):
    x = torch.rand(8, 3, 4, 4, generator=_gen(0), dtype=torch.float64).to(dtype)
    m = multimix.sample(x, n=30, generator=_gen(1))
    assert m.weights.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    out = m.apply(x)
    assert out.dtype == dtype and out.shape == (30, 3, 4, 4)
    torch.testing.assert_close(out.double(), (m.weights.double() @ x.double().reshape(8, -1)).reshape(30, 3, 4, 4),
                               atol=8 * torch.finfo(dtype).eps, rtol=8 * torch.finfo(dtype).eps)


@pytest.mark.parametrize("n", [None, 5, 100])
def test_multimix_forward(n):
    b, c, smoothing = 12, 4, 0.1
    g = _gen(21)
    x = torch.rand(b, 3, 4, 4, generator=g)
    y = torch.randint(0, c, (b,), generator=g)
    x0, y0 = x.clone(), y.clone()
    mix = MultiMix(alpha=1.0, num_classes=c, n=n, smoothing=smoothing, generator=_gen(3))
    x_mix, y_mix = mix(x, y)
    rows = b if n is None else n
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert x_mix.shape == (rows, 3, 4, 4) and y_mix.shape == (rows, c)
    torch.testing.assert_close(y_mix.sum(1), torch.ones(rows), atol=1e-6, rtol=0)
    assert float(y_mix.min()) >= smoothing / c - 1e-6
    m = MultiMix(alpha=1.0, num_classes=c, n=n, generator=_gen(3)).sample(x, y)
    assert torch.equal(x_mix, m.apply(x))
    assert torch.equal(y_mix, m.targets(y, c, smoothing))
    W = m.dense()
    torch.testing.assert_close(x_mix, (W @ x.reshape(b, -1)).reshape(rows, 3, 4, 4))
    torch.testing.assert_close(y_mix, W @ ((1 - smoothing) * F.one_hot(y, c).float() + smoothing / c))


def test_multimix_defaults_repr_and_seeds():
    mix = MultiMix(num_classes=3)
    assert mix.alpha == multimix.DEFAULT_ALPHA == 1.0 and mix.n is None
    assert "alpha=1.0" in repr(mix) and "num_classes=3" in repr(mix)
    assert MultiMix(alpha=2, num_classes=3, n=7).alpha == 2.0
    x, y = torch.randn(16, 3), torch.randint(0, 5, (16,))
    a = MultiMix(num_classes=5, n=50, generator=_gen(1))(x, y)
    b = MultiMix(num_classes=5, n=50, generator=_gen(1))(x, y)
    c = MultiMix(num_classes=5, n=50, generator=_gen(2))(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_sample_is_differentiable():
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    m = multimix.sample(x, n=20, generator=_gen(0))
    m.apply(x).sum().backward()
    torch.testing.assert_close(x.grad, m.weights.sum(0)[:, None].expand(6, 4))


# ---------------------------------------------------------------------- dense MultiMix
def _dense_case(seed: int, b: int = 6, n: int = 9, c: int = 3, h: int = 2, w: int = 3):
    g = _gen(seed)
    base = multimix.weights(b, n=n, alpha=1.0, dtype=torch.float64, generator=g)
    att = torch.rand(b, h * w, generator=g, dtype=torch.float64)
    feats = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    return base, att, feats


def test_dense_weights_formula_and_rows():
    base, att, _ = _dense_case(0)
    Wd = multimix.dense_weights(base, att)
    r, (n, b) = att.shape[1], base.shape
    assert Wd.shape == (r, n, b) and Wd.dtype == torch.float64
    assert bool((Wd >= 0).all())
    torch.testing.assert_close(Wd.sum(-1), torch.ones(r, n, dtype=torch.float64), atol=1e-12, rtol=0)
    for j in range(r):  # explicit per-position reference (loop in the test only)
        num = base * att[:, j][None, :]
        torch.testing.assert_close(Wd[j], num / num.sum(1, keepdim=True))
    # The paper's column convention, transposed: M^j = diag(a^j) Λ, columns normalised.
    lam = base.t()
    for j in range(r):
        M = torch.diag(att[:, j]) @ lam
        torch.testing.assert_close(Wd[j], (M / M.sum(0, keepdim=True)).t())


@pytest.mark.parametrize("const", [1.0, 0.25])
def test_uniform_attention_is_plain_multimix(const):
    base, _, feats = _dense_case(1)
    b, c, h, w = feats.shape
    att = torch.full((b, h * w), const, dtype=torch.float64)
    Wd = multimix.dense_weights(base, att)
    for j in range(h * w):
        torch.testing.assert_close(Wd[j], base, atol=1e-15, rtol=1e-14)
    out = multimix.apply_dense(feats, Wd)
    plain = Mixing(batch_size=b, weights=base).apply(feats)
    assert out.shape == (base.shape[0], c, h, w)
    torch.testing.assert_close(out, plain)
    y = F.one_hot(torch.arange(b) % 4, 4).double()
    torch.testing.assert_close(multimix.dense_targets(y, Wd), base @ y)


def test_concentrated_attention_selects_the_example():
    base, att, _ = _dense_case(2)
    b = base.shape[1]
    base = base.clone()
    base[0, 3] = 0.0  # a row that does not use example 3 ...
    base[0] /= base[0].sum()
    att = att.clone()
    att[:, 1] = 0.0
    att[3, 1] = 2.0  # ... at a position where only example 3 is attended
    Wd = multimix.dense_weights(base, att)
    rows = base[:, 3] > 0
    assert int(rows.sum()) == base.shape[0] - 1
    assert torch.equal(Wd[1][rows], F.one_hot(torch.tensor(3), b).double().expand(int(rows.sum()), b))
    # Row 0 has zero re-weighted mass at position 1: it falls back to its unweighted row.
    torch.testing.assert_close(Wd[1][0], base[0])
    assert not bool(Wd.isnan().any())


def test_zero_attention_falls_back_without_nan_gradients():
    base, att, feats = _dense_case(3)
    att = att.clone()
    att[:, 0] = 0.0
    base = base.clone().requires_grad_(True)
    Wd = multimix.dense_weights(base, att)
    torch.testing.assert_close(Wd[0], base.detach())
    Wd.sum().backward()
    assert bool(torch.isfinite(base.grad).all())


@pytest.mark.parametrize("shape", [(5, 3, 7), (5, 3, 2, 4)])
def test_apply_dense_equals_a_loop_over_positions(shape):
    g = _gen(4)
    b, c = shape[:2]
    r = int(torch.tensor(shape[2:]).prod())
    n = 11
    feats = torch.randn(*shape, generator=g, dtype=torch.float64)
    f0 = feats.clone()
    Wd = multimix.dense_weights(multimix.weights(b, n=n, alpha=0.7, dtype=torch.float64, generator=g),
                                torch.rand(b, r, generator=g, dtype=torch.float64))
    out = multimix.apply_dense(feats, Wd)
    assert out.shape == (n, c, *shape[2:]) and out.dtype == torch.float64
    flat, ref = feats.reshape(b, c, r), torch.empty(n, c, r, dtype=torch.float64)
    for j in range(r):
        ref[:, :, j] = Wd[j] @ flat[:, :, j]
    torch.testing.assert_close(out.reshape(n, c, r), ref)
    lo, hi = flat.amin(0), flat.amax(0)
    assert bool((out.reshape(n, c, r) >= lo - 1e-12).all()) and bool((out.reshape(n, c, r) <= hi + 1e-12).all())
    assert torch.equal(feats, f0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_apply_dense_keeps_dtype(dtype):
    base, att, feats = _dense_case(5)
    Wd = multimix.dense_weights(base.float(), att.float())
    assert Wd.dtype == torch.float32
    out = multimix.apply_dense(feats.to(dtype), Wd)
    assert out.dtype == dtype
    ref = multimix.apply_dense(feats, Wd.double())
    tol = 16 * torch.finfo(dtype).eps
    torch.testing.assert_close(out.double(), ref, atol=tol * 4, rtol=tol)


def test_dense_targets_average_positions():
    base, att, _ = _dense_case(6)
    Wd = multimix.dense_weights(base, att)
    y = F.one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), 3).double() * 0.9 + 0.1 / 3
    t = multimix.dense_targets(y, Wd)
    ref = sum(Wd[j] @ y for j in range(Wd.shape[0])) / Wd.shape[0]
    torch.testing.assert_close(t, ref)
    torch.testing.assert_close(t.sum(1), torch.ones(base.shape[0], dtype=torch.float64))
    assert t.dtype == torch.float64


def test_cam_attention():
    g = _gen(7)
    b, c, h, w, C = 6, 4, 3, 5, 3
    feats = torch.randn(b, c, h, w, generator=g, requires_grad=True)
    head = torch.randn(C, c, generator=g, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    a = multimix.cam_attention(feats, head, labels)
    assert a.shape == (b, h * w) and not a.requires_grad and a.dtype == torch.float32
    assert bool((a >= 0).all())
    torch.testing.assert_close(a.sum(1), torch.ones(b))
    for i in range(b):
        cam = (head[labels[i]][:, None] * feats[i].reshape(c, -1)).sum(0).relu()
        torch.testing.assert_close(a[i], (cam / cam.sum()).detach())
    # A map that is zero everywhere becomes uniform.
    z = multimix.cam_attention(torch.zeros(2, c, h, w), head, torch.tensor([0, 1]))
    torch.testing.assert_close(z, torch.full((2, h * w), 1 / (h * w)))
    # End to end: attention → per-position weights → mixed feature maps.
    Wd = multimix.dense_weights(multimix.weights(b, n=20, alpha=1.0, generator=g), a)
    out = multimix.apply_dense(feats, Wd)
    assert out.shape == (20, c, h, w) and out.requires_grad


# ---------------------------------------------------------------------- bad input
BAD_ALPHAS = [
    (0, ValueError), (0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
    (float("inf"), ValueError), (True, TypeError), ("1.0", TypeError), (torch.tensor(1.0), TypeError),
]


@pytest.mark.parametrize("alpha, exc", BAD_ALPHAS)
def test_bad_alpha(alpha, exc):
    x = torch.zeros(4, 2)
    for call in (lambda: multimix.sample(x, alpha=alpha), lambda: MultiMix(alpha=alpha, num_classes=3),
                 lambda: multimix.weights(4, n=3, alpha=alpha)):
        with pytest.raises(exc, match="alpha"):
            call()


def test_weights_and_sample_bad_arguments():
    with pytest.raises(ValueError, match=r"\bb\b must be an int >= 1"):
        multimix.weights(0, n=3)
    with pytest.raises(ValueError, match=r"\bn\b must be an int >= 1"):
        multimix.weights(3, n=0)
    with pytest.raises(TypeError, match=r"\bn\b"):
        multimix.weights(3, n=2.0)
    with pytest.raises(TypeError, match="dtype"):
        multimix.weights(3, n=3, dtype=torch.int64)
    with pytest.raises(TypeError, match="generator"):
        multimix.weights(3, n=3, generator=1)
    with pytest.raises(ValueError, match="generator is on cpu but the batch is on meta"):
        multimix.weights(3, n=3, device="meta", generator=torch.Generator())
    x = torch.zeros(4, 2)
    with pytest.raises(TypeError, match=r"\bx\b must be a floating-point tensor"):
        multimix.sample(torch.zeros(4, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\bx\b must have a non-empty batch"):
        multimix.sample(torch.zeros(0, 3))
    with pytest.raises(ValueError, match=r"\by\b must have batch size 4"):
        multimix.sample(x, torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match=r"\bn\b must be"):
        multimix.sample(x, n=0)
    with pytest.raises(ValueError, match=r"\bn\b"):
        MultiMix(num_classes=3, n=0)
    with pytest.raises(ValueError, match="num_classes"):
        MultiMix(num_classes=0)
    with pytest.raises(ValueError, match="smoothing"):
        MultiMix(num_classes=3, smoothing=1.0)
    with pytest.raises(TypeError, match="generator"):
        MultiMix(num_classes=3, generator=123)


def test_dense_bad_arguments():
    base, att, feats = _dense_case(8)
    with pytest.raises(ValueError, match="attention must be finite and non-negative"):
        multimix.dense_weights(base, att - 0.5)
    bad = att.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="attention must be finite"):
        multimix.dense_weights(base, bad)
    with pytest.raises(ValueError, match=r"attention must have shape \(b, r\) = \(6, r\)"):
        multimix.dense_weights(base, att[:5])
    with pytest.raises(ValueError, match=r"attention must have shape \(b, r\)"):
        multimix.dense_weights(base, att[:, 0])
    with pytest.raises(TypeError, match="attention must be a floating-point"):
        multimix.dense_weights(base, (att > 0.5).long())
    with pytest.raises(ValueError, match=r"base must have shape \(r, n, b\) or \(n, b\)"):
        multimix.dense_weights(base[0], att)
    with pytest.raises(ValueError, match="base rows must sum to 1"):
        multimix.dense_weights(base * 2, att)
    with pytest.raises(ValueError, match="attention is on meta"):
        multimix.dense_weights(base, att.to("meta"))
    with _checks.value_checks("never"):
        multimix.dense_weights(base, att - 0.5)  # values unchecked in "never" mode
    Wd = multimix.dense_weights(base, att)
    with pytest.raises(TypeError, match="features must be a floating-point tensor"):
        multimix.apply_dense(feats.to(torch.uint8), Wd)
    with pytest.raises(ValueError, match=r"features must have shape \(b, c, r\) or \(b, c, h, w\)"):
        multimix.apply_dense(feats[:, 0, 0], Wd)
    with pytest.raises(ValueError, match=r"weights must have shape \(r, n, b\) = \(6, n, 5\)"):
        multimix.apply_dense(feats[:5], Wd)
    with pytest.raises(ValueError, match=r"weights must have shape \(r, n, b\) = \(3, n, 6\)"):
        multimix.apply_dense(feats[:, :, :1], Wd)
    with pytest.raises(ValueError, match=r"weights must have shape \(r, n, b\)"):
        multimix.apply_dense(feats, Wd[0])
    with pytest.raises(ValueError, match="y_soft rows must sum to 1"):
        multimix.dense_targets(torch.ones(6, 3, dtype=torch.float64), Wd)
    with pytest.raises(TypeError, match="y_soft must be a floating-point"):
        multimix.dense_targets(torch.zeros(6, dtype=torch.long), Wd)
    with pytest.raises(ValueError, match=r"weights must have shape \(r, n, b\) = \(r, n, 4\)"):
        multimix.dense_targets(torch.full((4, 2), 0.5, dtype=torch.float64), Wd)


def test_cam_attention_bad_arguments():
    feats, head, labels = torch.randn(4, 3, 2, 2), torch.randn(5, 3), torch.tensor([0, 1, 2, 4])
    with pytest.raises(TypeError, match="features must be a floating-point"):
        multimix.cam_attention(feats.long(), head, labels)
    with pytest.raises(ValueError, match=r"features must have shape \(b, c, h, w\)"):
        multimix.cam_attention(feats[:, :, 0], head, labels)
    with pytest.raises(ValueError, match=r"head_weight must have shape \(C, c\) = \(C, 3\)"):
        multimix.cam_attention(feats, head[:, :2], labels)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes\) = \[0, 5\)"):
        multimix.cam_attention(feats, head, torch.tensor([0, 1, 2, 5]))
    with pytest.raises(TypeError, match="labels must hold integer"):
        multimix.cam_attention(feats, head, labels.float())
    with pytest.raises(ValueError, match="labels must have batch size 4"):
        multimix.cam_attention(feats, head, labels[:3])
