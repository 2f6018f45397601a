"""Input mixup: pairings, the MixUp transform, agreement with torchvision, bad input."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from torchvision.transforms import v2

from mixbook.methods import mixup
from mixbook.core.mixing import Mixing
from mixbook.methods.mixup import PAIRINGS, MixUp

SEEDS = st.integers(0, 2**31 - 1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class FixedLamMixUp(v2.MixUp):
    """torchvision's MixUp with λ given instead of drawn (make_params is where it draws)."""

    def __init__(self, lam: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fixed_lam = lam

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return dict(lam=self.fixed_lam)


# ---------------------------------------------------------------------- torchvision
@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 0.875, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_roll_mixing_equals_torchvision(lam, dtype):
    b, c = 6, 5
    g = _gen(0)
    x = torch.rand(b, 3, 4, 4, generator=g, dtype=dtype)
    y = torch.randint(0, c, (b,), generator=g)
    lam_t = torch.tensor(lam, dtype=torch.float32)
    m = Mixing.pairwise(mixup.pair(b, "roll"), lam_t.expand(b))
    x_tv, y_tv = FixedLamMixUp(float(lam_t), alpha=1.0, num_classes=c)(x.clone(), y.clone())
    torch.testing.assert_close(m.apply(x), x_tv)
    torch.testing.assert_close(m.targets(y, c), y_tv)
    # A different pairing is visibly different (the comparison can fail).
    if 0 < lam < 1:
        flipped = Mixing.pairwise(mixup.pair(b, "flip"), lam_t.expand(b))
        assert not torch.allclose(flipped.apply(x), x_tv)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixup_transform_equals_torchvision(alpha, seed):
    """MixUp(pairing="roll") end to end: read the λ it drew from a twin with the same seed."""
    b, c = 8, 10
    g = _gen(100 + seed)
    x = torch.rand(b, 3, 5, 5, generator=g)
    y = torch.randint(0, c, (b,), generator=g)
    ours = MixUp(alpha=alpha, num_classes=c, pairing="roll", generator=_gen(seed))
    twin = MixUp(alpha=alpha, num_classes=c, pairing="roll", generator=_gen(seed))
    x_mix, y_mix = ours(x, y)
    m = twin.sample(x, y)
    assert torch.equal(m.partner, mixup.pair(b, "roll"))
    lam = float(m.lam[0])
    assert bool((m.lam == m.lam[0]).all())
    x_tv, y_tv = FixedLamMixUp(lam, alpha=alpha, num_classes=c)(x.clone(), y.clone())
    torch.testing.assert_close(x_mix, x_tv)
    torch.testing.assert_close(y_mix, y_tv)


def test_per_sample_formula():
    b = 7
    g = _gen(5)
    x = torch.randn(b, 4, dtype=torch.float64, generator=g)
    y = torch.randint(0, 3, (b,), generator=g)
    m = mixup.sample(x, y, alpha=0.5, per_sample=True, pairing="random", generator=g)
    assert len(set(m.lam.tolist())) > 1
    lam = m.lam.double()[:, None]
    torch.testing.assert_close(m.apply(x), lam * x + (1 - lam) * x[m.partner])
    oh = F.one_hot(y, 3).float()
    lam32 = m.lam.float()[:, None]
    torch.testing.assert_close(m.targets(y, 3), lam32 * oh + (1 - lam32) * oh[m.partner])


# ---------------------------------------------------------------------- pairings
@given(b=st.integers(1, 40))
def test_deterministic_pairings(b):
    assert mixup.pair(b, "flip").tolist() == list(range(b - 1, -1, -1))
    assert mixup.pair(b, "roll").tolist() == [(k - 1) % b for k in range(b)]
    x = torch.arange(b, dtype=torch.float32)
    assert torch.equal(x[mixup.pair(b, "roll")], x.roll(1, 0))  # torchvision's pairing
    assert mixup.pair(b, "flip").dtype == torch.int64 == mixup.pair(b, "roll").dtype


@given(b=st.integers(1, 40), seed=SEEDS)
def test_random_pairing_is_a_permutation(b, seed):
    p = mixup.pair(b, "random", generator=_gen(seed))
    assert p.dtype == torch.int64 and p.shape == (b,)
    assert sorted(p.tolist()) == list(range(b))
    assert torch.equal(p, mixup.pair(b, "random", generator=_gen(seed)))


def test_random_pairing_is_uniform():
    g = _gen(11)
    counts = Counter(tuple(mixup.pair(3, "random", generator=g).tolist()) for _ in range(3000))
    assert len(counts) == 6
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3


LABELS = st.lists(st.integers(-2, 5), min_size=1, max_size=24)


def _same_ok(y: list[int], partner: list[int]) -> None:
    counts = Counter(y)
    for k, (lab, p) in enumerate(zip(y, partner)):
        if counts[lab] > 1:
            assert p != k and y[p] == lab, (k, y, partner)
        else:
            assert p == k, (k, y, partner)


def _cross_ok(y: list[int], partner: list[int]) -> None:
    counts = Counter(y)
    for k, (lab, p) in enumerate(zip(y, partner)):
        if counts[lab] < len(y):
            assert y[p] != lab, (k, y, partner)
        else:
            assert p == k, (k, y, partner)


@given(labels=LABELS, seed=SEEDS, dtype=st.sampled_from([torch.int64, torch.int32, torch.int16]))
def test_same_class_pairing(labels, seed, dtype):
    y = torch.tensor(labels, dtype=dtype)
    p = mixup.pair(len(labels), "same_class", y=y, generator=_gen(seed))
    assert p.dtype == torch.int64 and p.shape == (len(labels),)
    _same_ok(labels, p.tolist())
    assert torch.equal(p, mixup.pair(len(labels), "same_class", y=y, generator=_gen(seed)))


@given(labels=LABELS, seed=SEEDS, dtype=st.sampled_from([torch.int64, torch.int32, torch.int16]))
def test_cross_class_pairing(labels, seed, dtype):
    y = torch.tensor(labels, dtype=dtype)
    p = mixup.pair(len(labels), "cross_class", y=y, generator=_gen(seed))
    assert p.dtype == torch.int64 and p.shape == (len(labels),)
    _cross_ok(labels, p.tolist())
    assert torch.equal(p, mixup.pair(len(labels), "cross_class", y=y, generator=_gen(seed)))


@given(labels=st.lists(st.integers(0, 3), min_size=1, max_size=24), seed=SEEDS, per_sample=st.booleans())
def test_sample_uses_class_pairings(labels, seed, per_sample):
    y = torch.tensor(labels)
    x = torch.randn(len(labels), 2)
    _same_ok(labels, mixup.sample(x, y, pairing="same_class", per_sample=per_sample, generator=_gen(seed)).partner.tolist())
    _cross_ok(labels, mixup.sample(x, y, pairing="cross_class", per_sample=per_sample, generator=_gen(seed)).partner.tolist())


def test_class_partners_are_uniform():
    """Partners are drawn uniformly among the allowed examples."""
    y = torch.tensor([2, 0, 2, 1, 2, 0, 2])  # class 2 at 0, 2, 4, 6; class 1 alone at 3
    g = _gen(12)
    n = 3000
    same0, cross0, cross3, same3 = Counter(), Counter(), Counter(), Counter()
    for _ in range(n):
        s = mixup.pair(7, "same_class", y=y, generator=g).tolist()
        c = mixup.pair(7, "cross_class", y=y, generator=g).tolist()
        same0[s[0]] += 1
        same3[s[3]] += 1
        cross0[c[0]] += 1
        cross3[c[3]] += 1
    assert set(same0) == {2, 4, 6} and set(cross0) == {1, 3, 5} and set(same3) == {3}
    assert set(cross3) == {0, 1, 2, 4, 5, 6}
    for counts in (same0, cross0, cross3):
        assert stats.chisquare(list(counts.values())).pvalue > 1e-3, counts


# ---------------------------------------------------------------------- the transform
@pytest.mark.parametrize("pairing", PAIRINGS)
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_mixup_forward(pairing, per_sample, dtype):
    b, c, smoothing = 12, 4, 0.1
    g = _gen(21)
    x = torch.rand(b, 3, 4, 4, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, c, (b,), generator=g)
    x0, y0 = x.clone(), y.clone()
    mix = MixUp(alpha=0.4, num_classes=c, per_sample=per_sample, pairing=pairing, smoothing=smoothing,
                generator=_gen(3))
    x_mix, y_mix = mix(x, y)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert x_mix.dtype == dtype and x_mix.shape == x.shape
    assert y_mix.dtype == torch.float32 and y_mix.shape == (b, c)
    torch.testing.assert_close(y_mix.sum(1), torch.ones(b), atol=1e-6, rtol=0)
    assert float(y_mix.min()) >= smoothing / c - 1e-6
    m = MixUp(alpha=0.4, num_classes=c, per_sample=per_sample, pairing=pairing, generator=_gen(3)).sample(x, y)
    assert torch.equal(x_mix, m.apply(x))
    assert torch.equal(y_mix, m.targets(y, c, smoothing))


def test_mixup_seeds():
    x, y = torch.randn(16, 3), torch.randint(0, 5, (16,))
    a = MixUp(alpha=1.0, num_classes=5, generator=_gen(1))(x, y)
    b = MixUp(alpha=1.0, num_classes=5, generator=_gen(1))(x, y)
    c = MixUp(alpha=1.0, num_classes=5, generator=_gen(2))(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # Without a generator, the global RNG is used and torch.manual_seed reproduces it.
    torch.manual_seed(4)
    d = MixUp(alpha=1.0, num_classes=5)(x, y)
    torch.manual_seed(4)
    e = MixUp(alpha=1.0, num_classes=5)(x, y)
    assert torch.equal(d[0], e[0])


def test_mixup_repr_and_attributes():
    mix = MixUp(alpha=2, num_classes=3, pairing="flip", smoothing=0.1)
    assert mix.alpha == 2.0 and isinstance(mix.alpha, float)
    assert "alpha=2.0" in repr(mix) and "pairing='flip'" in repr(mix) and "num_classes=3" in repr(mix)


def test_small_alpha_sample_has_no_nan():
    x = torch.empty(50_000, 1)
    m = mixup.sample(x, alpha=0.01, per_sample=True, pairing="flip", generator=_gen(0))
    assert not bool(m.lam.isnan().any())
    assert bool(((m.lam >= 0) & (m.lam <= 1)).all())
    # Almost no mixing at α = 0.01: λ is within 1e-3 of 0 or 1 for most examples.
    near_edge = ((m.lam < 1e-3) | (m.lam > 1 - 1e-3)).double().mean()
    assert float(near_edge) > 0.9


# ---------------------------------------------------------------------- bad input
BAD_ALPHAS = [
    (0, ValueError), (0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
    (float("inf"), ValueError), (-float("inf"), ValueError),
    (True, TypeError), (False, TypeError), ("1.0", TypeError), (None, TypeError), (torch.tensor(1.0), TypeError),
]


@pytest.mark.parametrize("alpha, exc", BAD_ALPHAS)
def test_bad_alpha(alpha, exc):
    x = torch.zeros(4, 2)
    with pytest.raises(exc, match="alpha"):
        mixup.sample(x, alpha=alpha)
    with pytest.raises(exc, match="alpha"):
        MixUp(alpha=alpha, num_classes=3)


def test_sample_bad_arguments():
    x, y = torch.zeros(4, 2), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="pairing"):
        mixup.sample(x, y, pairing="shuffle")
    with pytest.raises(ValueError, match="pairing"):
        mixup.sample(x, y, pairing=None)
    for pairing in ("same_class", "cross_class"):
        with pytest.raises(TypeError, match=rf"pairing='{pairing}' needs the integer labels y"):
            mixup.sample(x, pairing=pairing)
    with pytest.raises(ValueError, match=r"\by\b.*batch size 4"):
        mixup.sample(x, torch.tensor([0, 1, 0]), pairing="same_class")
    with pytest.raises(ValueError, match=r"\by\b is on meta"):
        mixup.sample(x, torch.zeros(4, dtype=torch.long, device="meta"))
    with pytest.raises(TypeError, match=r"\by\b.*integer"):
        mixup.sample(x, torch.zeros(4), pairing="cross_class")
    with pytest.raises(TypeError, match="per_sample"):
        mixup.sample(x, per_sample=1)
    with pytest.raises(TypeError, match=r"\bx\b.*torch.Tensor"):
        mixup.sample([1.0, 2.0])
    with pytest.raises(ValueError, match=r"\bx\b.*non-empty"):
        mixup.sample(torch.zeros(0, 3))
    with pytest.raises(ValueError, match=r"\bx\b.*non-empty"):
        mixup.sample(torch.tensor(1.0))
    with pytest.raises(TypeError, match="generator"):
        mixup.sample(x, generator=0)


def test_generator_on_the_wrong_device():
    """A CPU generator for a batch elsewhere (the meta device stands in for an accelerator)."""
    x = torch.zeros(4, 2, device="meta")
    y = torch.zeros(4, dtype=torch.long, device="meta")
    with pytest.raises(ValueError, match="generator is on cpu but the batch is on meta"):
        mixup.sample(x, y, generator=torch.Generator())
    with pytest.raises(ValueError, match="generator is on cpu"):
        mixup.pair(4, "random", device="meta", generator=torch.Generator())
    with pytest.raises(ValueError, match="generator is on cpu"):
        MixUp(alpha=1.0, num_classes=3, generator=torch.Generator())(x, y)


def test_pair_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        mixup.pair(0)
    with pytest.raises(TypeError, match="batch_size"):
        mixup.pair(True)
    with pytest.raises(TypeError, match="batch_size"):
        mixup.pair(3.0)
    with pytest.raises(ValueError, match="pairing"):
        mixup.pair(3, "Random")
    with pytest.raises(TypeError, match=r"needs the integer labels y"):
        mixup.pair(3, "same_class")
    with pytest.raises(ValueError, match=r"\by\b has batch size 2 but batch_size=3"):
        mixup.pair(3, "cross_class", y=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\by\b.*1-D"):
        mixup.pair(3, "cross_class", y=torch.zeros(3, 1, dtype=torch.long))


def test_mixup_constructor_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        MixUp(num_classes=0)
    with pytest.raises(TypeError, match="num_classes"):
        MixUp(num_classes=10.0)
    with pytest.raises(TypeError, match="num_classes"):
        MixUp(num_classes=True)
    with pytest.raises(TypeError, match="per_sample"):
        MixUp(num_classes=3, per_sample="yes")
    with pytest.raises(ValueError, match="pairing"):
        MixUp(num_classes=3, pairing="nearest")
    with pytest.raises(ValueError, match="smoothing"):
        MixUp(num_classes=3, smoothing=1.0)
    with pytest.raises(ValueError, match="smoothing"):
        MixUp(num_classes=3, smoothing=-0.01)
    with pytest.raises(TypeError, match="generator"):
        MixUp(num_classes=3, generator=123)


@pytest.mark.parametrize("transform", ["MixUp", "ZetaMixup"])
def test_transform_forward_bad_batches(transform):
    """The shared MixingTransform.forward validates batches the same way for every transform."""
    from mixbook.methods.zeta import ZetaMixup

    mix = MixUp(alpha=1.0, num_classes=3) if transform == "MixUp" else ZetaMixup(num_classes=3)
    x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 1])
    for dtype in (torch.uint8, torch.int64):
        with pytest.raises(TypeError, match=r"\bx\b must be a floating-point tensor"):
            mix((x * 255).to(dtype), y)
    with pytest.raises(ValueError, match=r"\by\b must lie in \[0, num_classes\) = \[0, 3\)"):
        mix(x, torch.tensor([0, 1, 3, 1]))
    with pytest.raises(ValueError, match=r"\by\b must lie in \[0, num_classes\)"):
        mix(x, torch.tensor([0, -1, 2, 1]))
    with pytest.raises(TypeError, match=r"\by\b must hold integer class labels"):
        mix(x, torch.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"\by\b must have batch size 4"):
        mix(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\bx\b must have a non-empty batch"):
        mix(torch.zeros(0, 3, 2, 2), torch.zeros(0, dtype=torch.long))
    with pytest.raises(TypeError, match=r"\bx\b must be a torch.Tensor"):
        mix(x.numpy(), y)


def test_mixup_batch_of_one():
    x, y = torch.rand(1, 3, 2, 2), torch.tensor([1])
    for pairing in PAIRINGS:
        x_mix, y_mix = MixUp(alpha=0.3, num_classes=3, pairing=pairing, per_sample=True)(x, y)
        assert torch.equal(x_mix, x)
        assert torch.equal(y_mix, torch.tensor([[0.0, 1.0, 0.0]]))
