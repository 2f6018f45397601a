"""The Mixing value: invariants of every sampler, application, labels, errors.

Every sampled mixing, whatever produced it, must be a row-stochastic matrix ``W`` applied
as ``W @ x``. The property tests below check that for :func:`mixbook.methods.mixup.sample` (every
pairing, batch and per-sample λ, α from 0.05 to 10) and for :meth:`Mixing.from_dense`
(random row-stochastic matrices, ``n != b`` included), in every floating dtype.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from mixbook.core import _checks
from mixbook.methods import mixup
from mixbook.core.mixing import Mixing

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
ALPHAS = st.one_of(st.sampled_from([0.05, 0.4, 1.0, 10.0]), st.floats(0.05, 10.0))
SEEDS = st.integers(0, 2**31 - 1)
FEATURES = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


# ---------------------------------------------------------------------- helpers
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_batch(seed: int, b: int, features: tuple[int, ...], dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
    x = torch.randn(b, *features, generator=_gen(seed), dtype=torch.float64) * scale
    return x.to(dtype)


def make_labels(seed: int, b: int, num_classes: int) -> torch.Tensor:
    return torch.randint(0, num_classes, (b,), generator=_gen(seed + 7))


def random_stochastic(seed: int, n: int, b: int, sparsity: float, dtype: torch.dtype) -> torch.Tensor:
    """A random ``(n, b)`` row-stochastic matrix; sparsity 1 gives one-hot rows."""
    g = _gen(seed)
    w = torch.rand(n, b, generator=g, dtype=torch.float64) ** 3
    w = w.masked_fill(torch.rand(n, b, generator=g, dtype=torch.float64) < sparsity, 0.0)
    w[torch.arange(n), torch.randint(0, b, (n,), generator=g)] += 0.05  # no empty row
    return (w / w.sum(1, keepdim=True)).to(dtype)


def reference_one_hot(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Smoothed one-hot in float64, built independently of mixbook.core.losses.one_hot."""
    return F.one_hot(y, num_classes).double() * (1 - smoothing) + smoothing / num_classes


def check_invariants(m: Mixing, x: torch.Tensor, y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> None:
    """Everything a sampled mixing must satisfy on the batch ``(x, y)``."""
    n, b = m.num_outputs, m.batch_size
    assert b == x.shape[0]

    # W is row-stochastic.
    w = m.dense(torch.float64)
    assert w.shape == (n, b)
    assert bool((w >= 0).all()), w
    row_tol = 1e-9 if m.is_pairwise else torch.finfo(m.weights.dtype).eps
    torch.testing.assert_close(w.sum(1), torch.ones(n, dtype=torch.float64), atol=row_tol, rtol=0)

    # apply: dtype, device and shape kept; input untouched; output is a fresh tensor.
    x_before = x.clone()
    out = m.apply(x)
    assert torch.equal(x, x_before), "apply modified its input"
    assert out.dtype == x.dtype and out.device == x.device
    assert out.shape == (n, *x.shape[1:])
    assert out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()

    # apply == W @ x.flatten(1), and every output lies inside the inputs' per-coordinate range.
    xd, od = x.double(), out.double()
    eps = torch.finfo(x.dtype).eps
    tol = (b + 4) * eps * float(xd.abs().max()) + 1e-300
    ref = (w @ xd.reshape(b, -1)).reshape(od.shape)
    err = float((od - ref).abs().max())
    assert err <= tol, f"apply differs from dense() @ x by {err} > {tol}"
    lo, hi = xd.amin(0), xd.amax(0)
    assert bool((od >= lo - tol).all()), "an output is below the inputs' minimum"
    assert bool((od <= hi + tol).all()), "an output is above the inputs' maximum"

    # targets: rows sum to 1, equal W @ Y, labels untouched.
    y_before = y.clone()
    t = m.targets(y, num_classes, smoothing)
    assert torch.equal(y, y_before)
    assert t.shape == (n, num_classes) and t.dtype == torch.float32 and t.device == y.device
    assert bool((t >= 0).all())
    t_tol = 1e-5 + row_tol  # W stored in fp16/bf16 has rows summing to 1 only to that precision
    torch.testing.assert_close(t.double().sum(1), torch.ones(n, dtype=torch.float64), atol=t_tol, rtol=0)
    torch.testing.assert_close(t.double(), w @ reference_one_hot(y, num_classes, smoothing), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------- properties
@given(
    seed=SEEDS,
    b=st.integers(1, 16),
    features=FEATURES,
    dtype=st.sampled_from(DTYPES),
    scale=st.sampled_from([1e-3, 1.0, 100.0]),
    alpha=ALPHAS,
    per_sample=st.booleans(),
    pairing=st.sampled_from(mixup.PAIRINGS),
    num_classes=st.integers(1, 5),
    smoothing=st.sampled_from([0.0, 0.1]),
)
def test_mixup_sample_is_a_valid_mixing(seed, b, features, dtype, scale, alpha, per_sample, pairing, num_classes, smoothing):
    x = make_batch(seed, b, features, dtype, scale)
    y = make_labels(seed, b, num_classes)
    m = mixup.sample(x, y, alpha=alpha, per_sample=per_sample, pairing=pairing, generator=_gen(seed + 1))

    assert m.is_pairwise and m.num_outputs == b == m.batch_size
    assert m.partner.dtype == torch.int64 and m.partner.shape == (b,)
    assert m.lam.shape == (b,) and m.lam.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert bool(((m.lam >= 0) & (m.lam <= 1)).all()) and not bool(m.lam.isnan().any())
    if not per_sample:
        assert bool((m.lam == m.lam[0]).all()), "batch mode must use one λ for the whole batch"
    check_invariants(m, x, y, num_classes, smoothing)

    # Same seed, same mixing and the same output.
    m2 = mixup.sample(x.clone(), y.clone(), alpha=alpha, per_sample=per_sample, pairing=pairing,
                      generator=_gen(seed + 1))
    assert torch.equal(m.partner, m2.partner) and torch.equal(m.lam, m2.lam)
    assert torch.equal(m.apply(x), m2.apply(x))
    assert torch.equal(m.targets(y, num_classes, smoothing), m2.targets(y, num_classes, smoothing))


@given(
    seed=SEEDS,
    n=st.integers(1, 20),
    b=st.integers(1, 12),
    features=FEATURES,
    dtype=st.sampled_from(DTYPES),
    weight_dtype=st.sampled_from(DTYPES),
    sparsity=st.sampled_from([0.0, 0.5, 1.0]),
    num_classes=st.integers(1, 5),
    smoothing=st.sampled_from([0.0, 0.2]),
)
def test_from_dense_is_a_valid_mixing(seed, n, b, features, dtype, weight_dtype, sparsity, num_classes, smoothing):
    w = random_stochastic(seed, n, b, sparsity, weight_dtype)
    w_before = w.clone()
    m = Mixing.from_dense(w)
    assert not m.is_pairwise and m.num_outputs == n and m.batch_size == b
    assert m.dense() is w or torch.equal(m.dense(), w)
    x = make_batch(seed + 3, b, features, dtype)
    y = make_labels(seed, b, num_classes)
    check_invariants(m, x, y, num_classes, smoothing)
    assert torch.equal(w, w_before), "the weights were modified"
    # Deterministic: the same matrix applied twice gives the same bits.
    assert torch.equal(m.apply(x), Mixing.from_dense(w.clone()).apply(x))


@given(
    seed=SEEDS,
    b=st.integers(1, 12),
    num_classes=st.integers(1, 6),
    dtype=st.sampled_from(DTYPES),
    pairing=st.sampled_from(mixup.PAIRINGS),
    smoothing=st.sampled_from([0.0, 0.1]),
)
def test_targets_of_soft_labels(seed, b, num_classes, dtype, pairing, smoothing):
    """Soft targets are mixed in their own dtype; rows still sum to 1."""
    g = _gen(seed)
    soft = torch.softmax(3 * torch.randn(b, num_classes, generator=g, dtype=torch.float64), 1).to(dtype)
    y = soft.argmax(1)
    m = mixup.sample(soft, y, alpha=0.7, per_sample=True, pairing=pairing, generator=g)
    before = soft.clone()
    t = m.targets(soft, num_classes, smoothing)
    assert torch.equal(soft, before)
    assert t.dtype == dtype and t.shape == (b, num_classes)
    eps = torch.finfo(dtype).eps
    assert bool((t >= 0).all())
    torch.testing.assert_close(t.double().sum(1), torch.ones(b, dtype=torch.float64), atol=8 * eps, rtol=0)
    ref = m.dense(torch.float64) @ (soft.double() * (1 - smoothing) + smoothing / num_classes)
    torch.testing.assert_close(t.double(), ref, atol=8 * eps, rtol=0)


@given(seed=SEEDS, n=st.integers(1, 8), b=st.integers(1, 8), pairwise=st.booleans())
def test_apply_is_differentiable(seed, n, b, pairwise):
    """d/dx <g, W x> = W^T g (manifold mixup mixes features that need gradients)."""
    g = _gen(seed)
    if pairwise:
        m = mixup.sample(torch.empty(b), alpha=1.0, per_sample=True, generator=g)
        n = b
    else:
        m = Mixing.from_dense(random_stochastic(seed, n, b, 0.3, torch.float64))
    x = torch.randn(b, 3, dtype=torch.float64, generator=g, requires_grad=True)
    up = torch.randn(n, 3, dtype=torch.float64, generator=g)
    (grad,) = torch.autograd.grad((m.apply(x) * up).sum(), x)
    torch.testing.assert_close(grad, m.dense(torch.float64).T @ up)


# ---------------------------------------------------------------------- explicit cases
def test_pairwise_apply_matches_the_formula():
    partner = torch.tensor([2, 0, 1, 3])
    lam = torch.tensor([0.25, 0.5, 1.0, 0.1])
    m = Mixing.pairwise(partner, lam)
    x = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0], [8.0, 80.0]])
    expected = torch.tensor([
        [0.25 * 1 + 0.75 * 4, 0.25 * 10 + 0.75 * 40],
        [0.5 * 2 + 0.5 * 1, 0.5 * 20 + 0.5 * 10],
        [4.0, 40.0],
        [8.0, 80.0],  # self-pair: unchanged whatever λ
    ])
    torch.testing.assert_close(m.apply(x), expected)
    w = torch.tensor([
        [0.25, 0.0, 0.75, 0.0],
        [0.5, 0.5, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    torch.testing.assert_close(m.dense(), w)
    y = torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(m.targets(y, 3), w @ F.one_hot(y, 3).float())


def test_dense_with_more_outputs_than_inputs():
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.8], [0.9, 0.1]])
    m = Mixing.from_dense(w)
    x = torch.tensor([[0.0, 2.0], [10.0, -4.0]])
    out = m.apply(x)
    assert out.shape == (5, 2)
    torch.testing.assert_close(out, w @ x)
    t = m.targets(torch.tensor([1, 0]), 2)
    torch.testing.assert_close(t, torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.8, 0.2], [0.1, 0.9]]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pairing", mixup.PAIRINGS)
@pytest.mark.parametrize("alpha", [0.05, 1.0, 10.0])
def test_batch_of_one_is_a_no_op(dtype, pairing, alpha):
    x = torch.randn(1, 3, 5, dtype=torch.float64).to(dtype)
    y = torch.tensor([2])
    m = mixup.sample(x, y, alpha=alpha, per_sample=True, pairing=pairing, generator=torch.Generator().manual_seed(3))
    assert m.partner.tolist() == [0]
    out = m.apply(x)
    assert torch.equal(out, x) and out.dtype == dtype
    assert torch.equal(m.targets(y, 4), F.one_hot(y, 4).float())
    dense = Mixing.from_dense(torch.ones(1, 1, dtype=dtype))
    assert torch.equal(dense.apply(x), x)
    assert torch.equal(dense.targets(y, 4), F.one_hot(y, 4).float())


def test_self_pairs_return_the_example_bitwise():
    x = torch.randn(5, 7)
    m = Mixing.pairwise(torch.arange(5), torch.tensor([0.0, 0.3, 0.5, 0.77, 1.0]))
    assert torch.equal(m.apply(x), x)


def test_lambda_one_and_zero_select_examples():
    x = torch.randn(4, 3)
    partner = torch.tensor([1, 2, 3, 0])
    assert torch.equal(Mixing.pairwise(partner, torch.ones(4)).apply(x), x)
    assert torch.equal(Mixing.pairwise(partner, torch.zeros(4)).apply(x), x[partner])


def test_to_and_repr():
    m = Mixing.pairwise(torch.tensor([1, 0]), torch.tensor([0.3, 0.7]))
    m2 = m.to("cpu")
    assert torch.equal(m2.partner, m.partner) and torch.equal(m2.lam, m.lam)
    assert m.to("meta").device.type == "meta"
    assert "pairwise" in repr(m) and "n=2" in repr(m)
    d = Mixing.from_dense(torch.full((3, 2), 0.5))
    assert d.to("meta").weights.device.type == "meta"
    assert "dense" in repr(d) and "n=3" in repr(d) and "b=2" in repr(d)


def test_dense_dtype_argument():
    m = Mixing.pairwise(torch.tensor([1, 0]), torch.tensor([0.3, 0.7]))
    assert m.dense().dtype == torch.float32
    assert m.dense(torch.float64).dtype == torch.float64
    torch.testing.assert_close(m.dense(torch.float64), torch.tensor([[0.3, 0.7], [0.3, 0.7]], dtype=torch.float64))


# ---------------------------------------------------------------------- bad input
@pytest.fixture
def m3() -> Mixing:
    return Mixing.pairwise(torch.tensor([1, 2, 0]), torch.tensor([0.2, 0.5, 0.9]))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64, torch.bool])
def test_apply_refuses_integer_images(m3, dtype):
    with pytest.raises(TypeError, match=r"\bx\b.*floating"):
        m3.apply(torch.zeros(3, 2, 2, dtype=dtype))


def test_apply_bad_batches(m3):
    with pytest.raises(TypeError, match=r"\bx\b.*torch.Tensor"):
        m3.apply([[0.0]] * 3)
    with pytest.raises(ValueError, match=r"\bx\b.*batch size 3"):
        m3.apply(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"\bx\b.*non-empty"):
        m3.apply(torch.zeros(0, 2))
    with pytest.raises(ValueError, match=r"\bx\b.*non-empty"):
        m3.apply(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"\bx\b is on meta"):
        m3.apply(torch.zeros(3, 2, device="meta"))
    dense = Mixing.from_dense(torch.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"\bx\b.*batch size 3"):
        dense.apply(torch.zeros(2, 5))


def test_targets_bad_labels(m3):
    with pytest.raises(TypeError, match="num_classes"):
        m3.targets(torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\by\b.*\[0, num_classes\) = \[0, 3\)"):
        m3.targets(torch.tensor([0, 1, 3]), 3)
    with pytest.raises(ValueError, match=r"\by\b.*\[0, num_classes\)"):
        m3.targets(torch.tensor([0, -1, 2]), 3)
    with pytest.raises(ValueError, match="num_classes"):
        m3.targets(torch.tensor([0, 0, 0]), 0)
    with pytest.raises(TypeError, match="num_classes"):
        m3.targets(torch.tensor([0, 0, 0]), True)
    with pytest.raises(ValueError, match=r"\by\b.*batch size 3"):
        m3.targets(torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match=r"\by\b.*1-D"):
        m3.targets(torch.zeros(3, 2, dtype=torch.long), 3)
    with pytest.raises(TypeError, match=r"\by\b.*integer"):
        m3.targets(torch.tensor([True, False, True]), 3)
    with pytest.raises(TypeError, match=r"\by\b.*torch.Tensor"):
        m3.targets([0, 1, 2], 3)


def test_targets_bad_soft_targets(m3):
    with pytest.raises(ValueError, match=r"\by\b rows must sum to 1"):
        m3.targets(torch.full((3, 4), 0.3))
    with pytest.raises(ValueError, match=r"\by\b.*non-negative"):
        m3.targets(torch.tensor([[1.5, -0.5], [0.5, 0.5], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"\by\b.*finite"):
        m3.targets(torch.tensor([[float("nan"), 1.0], [0.5, 0.5], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"\by\b.*\(batch, num_classes\)"):
        m3.targets(torch.tensor([0.5, 0.5, 1.0]))
    with pytest.raises(ValueError, match="num_classes"):
        m3.targets(torch.full((3, 4), 0.25), num_classes=5)
    with pytest.raises(ValueError, match=r"\by\b.*batch size 3"):
        m3.targets(torch.full((2, 4), 0.25))


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, 2.0, float("nan")])
def test_targets_bad_smoothing(m3, smoothing):
    with pytest.raises(ValueError, match="smoothing"):
        m3.targets(torch.tensor([0, 1, 2]), 3, smoothing=smoothing)


def test_targets_smoothing_type(m3):
    with pytest.raises(TypeError, match="smoothing"):
        m3.targets(torch.tensor([0, 1, 2]), 3, smoothing="0.1")


def test_from_dense_bad_weights():
    with pytest.raises(ValueError, match="weights.*non-negative"):
        Mixing.from_dense(torch.tensor([[1.2, -0.2], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="weights rows must sum to 1"):
        Mixing.from_dense(torch.tensor([[0.7, 0.7], [0.5, 0.5]]))
    with pytest.raises(TypeError, match="weights.*floating"):
        Mixing.from_dense(torch.tensor([[1, 0], [0, 1]]))
    with pytest.raises(ValueError, match=r"weights.*\(n, b\)"):
        Mixing.from_dense(torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"weights.*\(n, b\)"):
        Mixing.from_dense(torch.zeros(0, 3))
    with pytest.raises(ValueError, match=r"weights.*\(n, b\)"):
        Mixing.from_dense(torch.zeros(3, 0))
    with pytest.raises(TypeError, match="weights.*torch.Tensor"):
        Mixing.from_dense([[1.0]])


def test_pairwise_bad_arguments():
    with pytest.raises(ValueError, match=r"partner must lie in \[0, 3\)"):
        Mixing.pairwise(torch.tensor([0, 1, 3]), torch.full((3,), 0.5))
    with pytest.raises(ValueError, match=r"partner must lie"):
        Mixing.pairwise(torch.tensor([0, -1, 2]), torch.full((3,), 0.5))
    with pytest.raises(TypeError, match="partner.*integer"):
        Mixing.pairwise(torch.tensor([0.0, 1.0]), torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="partner.*non-empty"):
        Mixing.pairwise(torch.tensor([], dtype=torch.long), torch.tensor([]))
    with pytest.raises(ValueError, match=r"lam must have shape \(3,\)"):
        Mixing.pairwise(torch.tensor([0, 1, 2]), torch.full((2,), 0.5))
    with pytest.raises(TypeError, match="lam.*floating"):
        Mixing.pairwise(torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"lam must lie in \[0, 1\]"):
        Mixing.pairwise(torch.tensor([0, 1]), torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"lam must lie in \[0, 1\]"):
        Mixing.pairwise(torch.tensor([0, 1]), torch.tensor([-0.1, 0.5]))
    with pytest.raises(ValueError, match="lam is on meta"):
        Mixing.pairwise(torch.tensor([0, 1]), torch.tensor([0.5, 0.5], device="meta"))


def test_value_check_modes(m3):
    bad = torch.full((3, 4), 0.3)
    with pytest.raises(ValueError, match="mode"):
        _checks.set_value_checks("sometimes")
    with _checks.value_checks("never"):
        assert m3.targets(bad).shape == (3, 4)  # not checked
        assert _checks.check_values(bad) is False
    with pytest.raises(ValueError, match="rows must sum to 1"):
        m3.targets(bad)  # the mode was restored
    with _checks.value_checks("always"):
        assert _checks.check_values(torch.empty(1, device="meta")) is True
    assert _checks.check_values(torch.empty(1, device="meta")) is False
    assert _checks.check_values(bad) is True


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(batch_size=3), ValueError, "either partner and lam"),
    (dict(batch_size=0, weights=torch.ones(1, 1)), ValueError, "batch_size"),
    (dict(batch_size=2.0, weights=torch.ones(1, 2) / 2), ValueError, "batch_size"),
    (dict(batch_size=2, weights=torch.ones(1, 3) / 3), ValueError, "weights must be a floating (n, 2)"),
    (dict(batch_size=2, weights=torch.ones(1, 2, dtype=torch.int64)), ValueError, "weights"),
    (dict(batch_size=2, weights=torch.ones(1, 2) / 2, partner=torch.arange(2), lam=torch.ones(2)), ValueError, "both"),
    (dict(batch_size=3, partner=torch.arange(3), lam=torch.ones(2)), ValueError, "lam must be a (3,)"),
    (dict(batch_size=3, partner=torch.arange(3)), ValueError, "lam must be a (3,)"),
    (dict(batch_size=3, partner=torch.arange(3.0), lam=torch.ones(3)), TypeError, "partner must be an integer"),
    (dict(batch_size=3, partner=torch.arange(3), lam=torch.ones(3, dtype=torch.int64)), TypeError, "lam must be a floating"),
    (dict(batch_size=3, partner=torch.arange(3), lam=torch.ones(3), partner_size=0), ValueError, "partner_size"),
    (dict(batch_size=2, weights=torch.ones(1, 2) / 2, partner_size=4), ValueError, "partner_size"),
])
def test_direct_construction_checks_the_structure(kwargs, error, words):
    """``Mixing(...)`` called directly refuses a malformed matrix at once, not at apply time."""
    with pytest.raises(error, match=re.escape(words)):
        Mixing(**kwargs)
    assert Mixing(batch_size=3, partner=torch.arange(3), lam=torch.ones(3)).num_outputs == 3
    assert Mixing(batch_size=2, weights=torch.ones(5, 2) / 2).num_outputs == 5


def test_a_drawn_mixing_is_the_checked_one():
    """The samplers' unchecked constructor builds what the checked one builds."""
    p, lam = torch.tensor([2, 0, 1]), torch.tensor([0.25, 0.5, 1.0])
    a, b = Mixing._drawn(p, lam), Mixing.pairwise(p, lam)
    for field in ("batch_size", "partner_size", "weights"):
        assert getattr(a, field) == getattr(b, field)
    assert torch.equal(a.partner, b.partner) and torch.equal(a.lam, b.lam) and torch.equal(a.dense(), b.dense())
    x = torch.randn(3, 4)
    assert torch.equal(a.apply(x), b.apply(x))
