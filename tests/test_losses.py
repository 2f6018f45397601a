"""Losses: soft-target CE, λ-weighted CE (same value and gradient), smoothed one-hot."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from mixbook.core import losses
from mixbook.methods import mixup
from mixbook.methods.mixup import PAIRINGS

SEEDS = st.integers(0, 2**31 - 1)
REDUCTIONS = ["mean", "sum", "none"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------- one_hot
@given(
    b=st.integers(1, 20),
    c=st.integers(1, 12),
    smoothing=st.one_of(st.just(0.0), st.floats(0.0, 0.99)),
    seed=SEEDS,
    dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]),
)
def test_one_hot(b, c, smoothing, seed, dtype):
    y = torch.randint(0, c, (b,), generator=_gen(seed))
    t = losses.one_hot(y, c, smoothing, dtype=dtype)
    assert t.shape == (b, c) and t.dtype == dtype
    tol = torch.finfo(dtype).eps
    expected = torch.full((b, c), smoothing / c, dtype=torch.float64)
    expected[torch.arange(b), y] = 1 - smoothing + smoothing / c
    torch.testing.assert_close(t.double(), expected, atol=tol, rtol=tol)
    torch.testing.assert_close(t.double().sum(1), torch.ones(b, dtype=torch.float64), atol=c * tol, rtol=0)
    assert torch.equal(t.argmax(1), y)


def test_one_hot_exact_without_smoothing():
    y = torch.tensor([3, 0, 2, 2])
    assert torch.equal(losses.one_hot(y, 5), F.one_hot(y, 5).float())
    assert torch.equal(losses.one_hot(y.int(), 5), F.one_hot(y, 5).float())


def test_one_hot_bad_arguments():
    with pytest.raises(ValueError, match=r"\by\b must lie in \[0, num_classes\) = \[0, 3\)"):
        losses.one_hot(torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match=r"\by\b must lie"):
        losses.one_hot(torch.tensor([-1, 0]), 3)
    with pytest.raises(ValueError, match="num_classes"):
        losses.one_hot(torch.tensor([0]), 0)
    with pytest.raises(TypeError, match="num_classes"):
        losses.one_hot(torch.tensor([0]), 2.0)
    with pytest.raises(ValueError, match="smoothing"):
        losses.one_hot(torch.tensor([0]), 2, smoothing=1.0)
    with pytest.raises(TypeError, match=r"\by\b must hold integer"):
        losses.one_hot(torch.tensor([0.0]), 2)


# ---------------------------------------------------------------------- soft_cross_entropy
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_soft_cross_entropy_equals_torch(reduction, dtype):
    g = _gen(1)
    logits = torch.randn(9, 6, generator=g, dtype=dtype, requires_grad=True)
    target = torch.softmax(torch.randn(9, 6, generator=g, dtype=dtype), 1)
    ours = losses.soft_cross_entropy(logits, target, reduction=reduction)
    ref = F.cross_entropy(logits, target, reduction=reduction)
    manual = -(target * torch.log_softmax(logits, 1)).sum(1)
    manual = {"mean": manual.mean(), "sum": manual.sum(), "none": manual}[reduction]
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(ours, manual)
    assert ours.dtype == dtype and ours.shape == ref.shape
    (g1,) = torch.autograd.grad(ours.sum(), logits)
    (g2,) = torch.autograd.grad(manual.sum(), logits)
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_soft_cross_entropy_low_precision_targets(dtype):
    """Smoothed one-hot targets in fp16/bf16 sum to 1 only to that precision; accepted."""
    y = torch.arange(8) % 10
    target = losses.one_hot(y, 10, 0.1, dtype=dtype)
    logits = torch.randn(8, 10, dtype=dtype)
    loss = losses.soft_cross_entropy(logits, target)
    assert loss.dtype == torch.float32          # computed and returned in float32 for fp16/bf16 logits
    ref = F.cross_entropy(logits.double(), losses.one_hot(y, 10, 0.1, dtype=torch.float64))
    torch.testing.assert_close(loss.double(), ref, atol=0.05, rtol=0.02)


def test_soft_cross_entropy_bad_arguments():
    logits = torch.randn(3, 4)
    good = torch.full((3, 4), 0.25)
    with pytest.raises(ValueError, match="target rows must sum to 1"):
        losses.soft_cross_entropy(logits, torch.full((3, 4), 0.3))
    with pytest.raises(ValueError, match="target.*non-negative"):
        losses.soft_cross_entropy(logits, torch.tensor([[1.5, -0.5, 0, 0]] * 3))
    with pytest.raises(TypeError, match="target must hold soft targets"):
        losses.soft_cross_entropy(logits, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"target.*\(batch, num_classes\)"):
        losses.soft_cross_entropy(logits, torch.tensor([0.5, 0.5, 1.0]))
    with pytest.raises(ValueError, match="target shape"):
        losses.soft_cross_entropy(logits, torch.full((3, 2), 0.5))
    with pytest.raises(ValueError, match="logits have batch size 3 but the targets have 2"):
        losses.soft_cross_entropy(logits, torch.full((2, 4), 0.25))
    with pytest.raises(ValueError, match="reduction"):
        losses.soft_cross_entropy(logits, good, reduction="avg")
    with pytest.raises(TypeError, match="logits must be a floating-point"):
        losses.soft_cross_entropy(torch.zeros(3, 4, dtype=torch.long), good)
    with pytest.raises(ValueError, match=r"logits must have shape \(batch, num_classes\)"):
        losses.soft_cross_entropy(torch.zeros(3, 4, 1), good)
    with pytest.raises(TypeError, match="target must be a torch.Tensor"):
        losses.soft_cross_entropy(logits, [[0.25] * 4] * 3)


# ---------------------------------------------------------------------- mixed_cross_entropy
@given(
    seed=SEEDS,
    b=st.integers(1, 16),
    c=st.integers(2, 7),
    pairing=st.sampled_from(PAIRINGS),
    per_sample=st.booleans(),
    alpha=st.sampled_from([0.05, 0.4, 1.0, 10.0]),
    smoothing=st.sampled_from([0.0, 0.1, 0.3]),
    reduction=st.sampled_from(REDUCTIONS),
)
def test_mixed_equals_soft_cross_entropy(seed, b, c, pairing, per_sample, alpha, smoothing, reduction):
    """Value and gradient of λ CE(z, y) + (1 − λ) CE(z, y') equal CE against Mixing.targets."""
    g = _gen(seed)
    x = torch.randn(b, 3, generator=g)
    y = torch.randint(0, c, (b,), generator=g)
    m = mixup.sample(x, y, alpha=alpha, per_sample=per_sample, pairing=pairing, generator=g)
    logits = (3 * torch.randn(b, c, generator=g, dtype=torch.float64)).requires_grad_()
    soft = losses.soft_cross_entropy(logits, m.targets(y, c, smoothing).double(), reduction=reduction)
    mixed = losses.mixed_cross_entropy(logits, y, y[m.partner], m.lam, reduction=reduction, smoothing=smoothing)
    assert mixed.shape == soft.shape
    torch.testing.assert_close(mixed, soft, atol=1e-6, rtol=1e-6)
    (g_soft,) = torch.autograd.grad(soft.sum(), logits)
    (g_mixed,) = torch.autograd.grad(mixed.sum(), logits)
    torch.testing.assert_close(g_mixed, g_soft, atol=1e-6, rtol=1e-6)
    if not per_sample:  # the batch λ as a float and as a 0-dim tensor give the same loss
        lam = float(m.lam[0])
        for lam_arg in (lam, torch.tensor(lam)):
            other = losses.mixed_cross_entropy(logits, y, y[m.partner], lam_arg, reduction=reduction,
                                               smoothing=smoothing)
            torch.testing.assert_close(other, mixed, atol=1e-6, rtol=1e-6)


def test_mixed_cross_entropy_extremes():
    """λ = 1 is plain CE on y, λ = 0 plain CE on y'."""
    logits = torch.randn(5, 4, dtype=torch.float64)
    y, yp = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([3, 3, 1, 0, 2])
    torch.testing.assert_close(losses.mixed_cross_entropy(logits, y, yp, 1.0), F.cross_entropy(logits, y))
    torch.testing.assert_close(losses.mixed_cross_entropy(logits, y, yp, 0.0), F.cross_entropy(logits, yp))
    lam = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    ce_a = F.cross_entropy(logits, y, reduction="none")
    ce_b = F.cross_entropy(logits, yp, reduction="none")
    torch.testing.assert_close(losses.mixed_cross_entropy(logits, y, yp, lam, reduction="none"),
                               lam * ce_a + (1 - lam) * ce_b)


def test_mixed_cross_entropy_bad_arguments():
    logits = torch.randn(3, 4)
    y = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"\by\b must lie in \[0, num_classes\) = \[0, 4\)"):
        losses.mixed_cross_entropy(logits, torch.tensor([0, 1, 4]), y, 0.5)
    with pytest.raises(ValueError, match=r"y_partner must lie in \[0, num_classes\)"):
        losses.mixed_cross_entropy(logits, y, torch.tensor([0, -1, 2]), 0.5)
    with pytest.raises(ValueError, match=r"\by\b has batch size 2 but logits have 3"):
        losses.mixed_cross_entropy(logits, torch.tensor([0, 1]), y, 0.5)
    with pytest.raises(ValueError, match=r"y_partner has batch size 4"):
        losses.mixed_cross_entropy(logits, y, torch.tensor([0, 1, 2, 3]), 0.5)
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1\]"):
        losses.mixed_cross_entropy(logits, y, y, 1.5)
    with pytest.raises(TypeError, match="lam"):
        losses.mixed_cross_entropy(logits, y, y, "0.5")
    with pytest.raises(ValueError, match=r"lam must be a float or have shape \(3,\)"):
        losses.mixed_cross_entropy(logits, y, y, torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="smoothing"):
        losses.mixed_cross_entropy(logits, y, y, 0.5, smoothing=1.0)
    with pytest.raises(ValueError, match="reduction"):
        losses.mixed_cross_entropy(logits, y, y, 0.5, reduction="batchmean")
    with pytest.raises(TypeError, match=r"\by\b must hold integer"):
        losses.mixed_cross_entropy(logits, y.float(), y, 0.5)
    with pytest.raises(TypeError, match="logits must be a floating-point"):
        losses.mixed_cross_entropy(logits.long(), y, y, 0.5)


def test_mixed_cross_entropy_rejects_bad_lam():
    logits = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="lam"):
        losses.mixed_cross_entropy(logits, y, y.flip(0), torch.tensor([0.5, 1.5, 0.2, 0.1]))
    with pytest.raises(TypeError, match="lam"):
        losses.mixed_cross_entropy(logits, y, y.flip(0), torch.tensor([0, 1, 1, 0]))
    with pytest.raises(ValueError, match="lam"):
        losses.mixed_cross_entropy(logits, y, y.flip(0), torch.rand(3))


def test_losses_reject_targets_on_another_device():
    logits = torch.randn(4, 3)
    target = torch.full((4, 3), 1 / 3, device="meta")
    with pytest.raises(ValueError, match="target"):
        losses.soft_cross_entropy(logits, target)
