"""The reformulated mixup: sampler, kept-label weight, Monte Carlo objectives, training, splits.

* :func:`reformulation.sample` must give a valid pairwise mixing whether the partners come
  from the batch (``W`` is ``(b, b)``) or from a separate batch of any size ``m``
  (``W`` is ``(b, b + m)`` over ``cat([x, partners])``), with λ ~ Beta(α + 1, α).
* The identity behind the chapter: mixup's λ-mixed-label cross-entropy equals the
  reformulated objective (keep the first label, λ ~ Beta(α + 1, α)), exactly for a fixed
  pair (linearity in the target), in expectation by quadrature, and in Monte Carlo estimates
  of the loss and its gradient; the swapped Beta(α, α + 1) must be told apart.
* the ``"reformulation"`` training method and ``data.labelled_subset``, the semi-supervised pieces.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, special, stats
from torch import nn

from _stats import assert_beta_moments
from mixbook.training import data, models, train
from mixbook.core import losses
from mixbook.methods import reformulation
from mixbook.chapters import reformulation_checks
from mixbook.training.data import Split
from mixbook.core.mixing import Mixing

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
ALPHAS = st.one_of(st.sampled_from([0.05, 0.4, 1.0, 10.0]), st.floats(0.05, 10.0))
SEEDS = st.integers(0, 2**31 - 1)
FEATURES = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)
N = 200_000


# ---------------------------------------------------------------------- helpers
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_batch(seed: int, b: int, features: tuple[int, ...], dtype: torch.dtype, scale: float = 1.0,
               shift: float = 0.0) -> torch.Tensor:
    x = torch.randn(b, *features, generator=_gen(seed), dtype=torch.float64) * scale + shift
    return x.to(dtype)


assert_moments = assert_beta_moments


# ---------------------------------------------------------------------- sample: properties
@given(
    seed=SEEDS,
    b=st.integers(1, 16),
    m=st.one_of(st.none(), st.just(1), st.integers(1, 24)),
    features=FEATURES,
    dtype=st.sampled_from(DTYPES),
    scale=st.sampled_from([1e-3, 1.0, 100.0]),
    alpha=ALPHAS,
    per_sample=st.booleans(),
)
def test_sample_is_a_valid_mixing(seed, b, m, features, dtype, scale, alpha, per_sample):
    x = make_batch(seed, b, features, dtype, scale)
    # Partners far from x, so that using the wrong rows (or x instead of partners) shows.
    p = None if m is None else make_batch(seed + 5, m, features, dtype, scale, shift=3 * scale)
    x_before = x.clone()
    p_before = None if p is None else p.clone()

    mix = reformulation.sample(x, alpha=alpha, partners=p, per_sample=per_sample, generator=_gen(seed + 1))

    assert isinstance(mix, Mixing) and mix.is_pairwise
    assert mix.batch_size == mix.num_outputs == b and mix.partner_size == m
    assert mix.partner.dtype == torch.int64 and mix.partner.shape == (b,)
    assert int(mix.partner.min()) >= 0 and int(mix.partner.max()) < (b if m is None else m)
    if m is None:
        assert sorted(mix.partner.tolist()) == list(range(b)), "in-batch partners must be a permutation"
    assert mix.lam.shape == (b,) and mix.lam.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert bool(((mix.lam >= 0) & (mix.lam <= 1)).all())
    if not per_sample:
        assert bool((mix.lam == mix.lam[0]).all()), "per_sample=False must use one λ for the batch"

    # W: (b, b) or (b, b + m), non-negative rows summing to 1, λ_k on the diagonal unless self-paired.
    w = mix.dense(torch.float64)
    assert w.shape == (b, b + (m or 0))
    assert bool((w >= 0).all())
    torch.testing.assert_close(w.sum(1), torch.ones(b, dtype=torch.float64), atol=1e-12, rtol=0)
    k = torch.arange(b)
    lam64 = mix.lam.double()
    if m is None:
        self_pair = mix.partner == k
        torch.testing.assert_close(w[k, k], torch.where(self_pair, torch.ones_like(lam64), lam64))
    else:
        torch.testing.assert_close(w[k, k], lam64)
        torch.testing.assert_close(w[k, b + mix.partner], 1 - lam64)
        assert int((w[:, :b] > 0).sum(1).max()) <= 1, "a row mixes two labelled examples"

    # apply == W @ cat([x, partners]).flatten(1), dtype/device/shape kept, inputs untouched.
    out = mix.apply(x) if p is None else mix.apply(x, p)
    assert torch.equal(x, x_before), "apply modified x"
    if p is not None:
        assert torch.equal(p, p_before), "apply modified the partners"
    assert out.dtype == dtype and out.device == x.device and out.shape == x.shape
    assert out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    if p is not None:
        assert out.untyped_storage().data_ptr() != p.untyped_storage().data_ptr()
    pool = x.double() if p is None else torch.cat([x, p]).double()
    od = out.double()
    eps = torch.finfo(dtype).eps
    tol = (b + 4) * eps * float(pool.abs().max()) + 1e-300
    ref = (w @ pool.reshape(pool.shape[0], -1)).reshape(od.shape)
    err = float((od - ref).abs().max())
    assert err <= tol, f"apply differs from dense() @ cat([x, partners]) by {err} > {tol}"
    lo, hi = pool.amin(0), pool.amax(0)
    assert bool((od >= lo - tol).all()) and bool((od <= hi + tol).all()), "an output leaves the inputs' range"

    # Same generator seed: same mixing, same output.
    x2 = x.clone()
    p2 = None if p is None else p.clone()
    mix2 = reformulation.sample(x2, alpha=alpha, partners=p2, per_sample=per_sample, generator=_gen(seed + 1))
    assert torch.equal(mix.partner, mix2.partner) and torch.equal(mix.lam, mix2.lam)
    assert torch.equal(out, mix2.apply(x2) if p2 is None else mix2.apply(x2, p2))


def test_apply_with_partners_matches_the_formula():
    """out[k] = λ_k x_k + (1 − λ_k) p[partner_k], with p a separate batch of another size."""
    x = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]], dtype=torch.float64)
    p = torch.tensor([[100.0, -1.0], [200.0, -2.0]], dtype=torch.float64)
    mix = Mixing.pairwise(torch.tensor([1, 0, 1]), torch.tensor([0.25, 1.0, 0.0], dtype=torch.float64),
                          partner_size=2)
    expected = torch.tensor([[0.25 * 1 + 0.75 * 200, 0.25 * 10 + 0.75 * -2],
                             [2.0, 20.0],
                             [200.0, -2.0]], dtype=torch.float64)
    torch.testing.assert_close(mix.apply(x, p), expected, atol=1e-12, rtol=0)
    w = torch.tensor([[0.25, 0, 0, 0, 0.75],
                      [0, 1.0, 0, 0, 0],
                      [0, 0, 0, 0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(mix.dense(), w)
    # A partner index equal to k does not mean "itself" when the partners are a separate batch.
    mix0 = Mixing.pairwise(torch.tensor([0, 1, 0]), torch.full((3,), 0.5, dtype=torch.float64), partner_size=2)
    torch.testing.assert_close(mix0.apply(x, p)[1], (x[1] + p[1]) / 2)
    assert "partners=2" in repr(mix) and mix.to("cpu").partner_size == 2
    with pytest.raises(ValueError, match=r"partner must lie in \[0, 2\)"):
        Mixing.pairwise(torch.tensor([0, 2, 1]), torch.full((3,), 0.5), partner_size=2)


def test_apply_is_differentiable_in_x_and_partners():
    g = _gen(0)
    x = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    p = torch.randn(6, 3, dtype=torch.float64, generator=g, requires_grad=True)
    mix = reformulation.sample(x, alpha=0.7, partners=p, generator=g)
    up = torch.randn(4, 3, dtype=torch.float64, generator=g)
    gx, gp = torch.autograd.grad((mix.apply(x, p) * up).sum(), (x, p))
    full = mix.dense().T @ up
    torch.testing.assert_close(gx, full[:4])
    torch.testing.assert_close(gp, full[4:])


# ---------------------------------------------------------------------- sample: distributions
@pytest.mark.parametrize("alpha", [0.1, 0.4, 1.0, 4.0])
@pytest.mark.parametrize("separate", [False, True])
def test_lambda_is_beta_alpha_plus_one_alpha(alpha, separate):
    x = torch.empty(N, 1)
    p = torch.empty(7, 1) if separate else None
    mix = reformulation.sample(x, alpha=alpha, partners=p, per_sample=True, generator=_gen(int(alpha * 10) + separate))
    mean, se = assert_moments(mix.lam, alpha + 1, alpha)
    # ... and the test can tell the symmetric and the swapped Beta apart.
    assert abs(mean - 0.5) > 20 * se
    assert abs(mean - alpha / (2 * alpha + 1)) > 20 * se


def test_separate_partners_are_uniform_with_replacement():
    m = 5
    mix = reformulation.sample(torch.empty(50_000, 2), alpha=1.0, partners=torch.empty(m, 2), generator=_gen(1))
    counts = torch.bincount(mix.partner, minlength=m).numpy()
    assert counts.size == m
    assert stats.chisquare(counts).pvalue > 1e-4, counts
    # b < m: with replacement, and every index reachable.
    many = torch.cat([reformulation.sample(torch.empty(2, 1), alpha=1.0, partners=torch.empty(9, 1),
                                           generator=_gen(s)).partner for s in range(200)])
    assert set(many.tolist()) == set(range(9))


def test_in_batch_partners_are_a_uniform_permutation():
    b = 4
    firsts = [reformulation.sample(torch.empty(b), alpha=1.0, generator=_gen(s)).partner[0].item() for s in range(2000)]
    counts = np.bincount(firsts, minlength=b)
    assert stats.chisquare(counts).pvalue > 1e-4, counts


def test_per_sample_false_draws_one_beta_lambda_per_batch():
    alpha = 0.4
    lams = []
    for s in range(3000):
        mix = reformulation.sample(torch.empty(3, 2), alpha=alpha, per_sample=False, generator=_gen(s))
        assert bool((mix.lam == mix.lam[0]).all())
        lams.append(mix.lam[0])
    lam = torch.stack(lams).double().numpy()
    assert stats.kstest(lam, stats.beta(alpha + 1, alpha).cdf).pvalue > 1e-3
    assert stats.kstest(lam, stats.beta(alpha, alpha + 1).cdf).pvalue < 1e-6


# ---------------------------------------------------------------------- sample / apply: errors
@pytest.fixture
def separate() -> tuple[Mixing, torch.Tensor, torch.Tensor]:
    x = torch.randn(4, 3)
    p = torch.randn(6, 3)
    return reformulation.sample(x, alpha=1.0, partners=p, generator=_gen(0)), x, p


def test_targets_of_a_separate_partner_mixing_is_refused(separate):
    mix, _, _ = separate
    with pytest.raises(ValueError, match="partners"):
        mix.targets(torch.tensor([0, 1, 2, 0]), 3)
    with pytest.raises(ValueError, match="partners"):
        mix.targets(torch.full((4, 3), 1 / 3))
    # The in-batch mixing does have targets: W @ Y.
    x = torch.randn(4, 3)
    inb = reformulation.sample(x, alpha=1.0, generator=_gen(0))
    y = torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(inb.targets(y, 3), inb.dense() @ F.one_hot(y, 3).float())


def test_apply_partners_required_or_refused(separate):
    mix, x, p = separate
    with pytest.raises(ValueError, match=r"partners is required"):
        mix.apply(x)
    inb = reformulation.sample(x, alpha=1.0, generator=_gen(0))
    with pytest.raises(ValueError, match=r"partners was given"):
        inb.apply(x, p)
    with pytest.raises(ValueError, match=r"partners must have batch size 6"):
        mix.apply(x, p[:5])
    with pytest.raises(ValueError, match=r"partners must match x in dtype"):
        mix.apply(x, p.double())
    with pytest.raises(ValueError, match=r"partners must match x in .*trailing shape"):
        mix.apply(x, torch.randn(6, 2))
    with pytest.raises(TypeError, match=r"partners must be a floating-point"):
        mix.apply(x, torch.zeros(6, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"partners is on meta"):
        mix.apply(x, torch.zeros(6, 3, device="meta"))
    with pytest.raises(ValueError, match=r"\bx\b must have batch size 4"):
        mix.apply(torch.randn(5, 3), p)


@pytest.mark.parametrize("alpha, exc", [(0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
                                        (float("inf"), ValueError), (True, TypeError), ("1", TypeError),
                                        (None, TypeError)])
def test_sample_bad_alpha(alpha, exc):
    with pytest.raises(exc, match="alpha"):
        reformulation.sample(torch.zeros(3, 2), alpha=alpha)


def test_sample_bad_arguments():
    x = torch.zeros(3, 2)
    with pytest.raises(TypeError, match=r"\bx\b.*torch.Tensor"):
        reformulation.sample([[0.0, 0.0]] * 3)
    with pytest.raises(ValueError, match=r"\bx\b.*non-empty"):
        reformulation.sample(torch.zeros(0, 2))
    with pytest.raises(ValueError, match=r"\bx\b.*non-empty"):
        reformulation.sample(torch.tensor(1.0))
    with pytest.raises(TypeError, match="per_sample"):
        reformulation.sample(x, per_sample=1)
    with pytest.raises(TypeError, match="partners.*torch.Tensor"):
        reformulation.sample(x, partners=[[0.0, 0.0]])
    with pytest.raises(ValueError, match=r"partners.*non-empty"):
        reformulation.sample(x, partners=torch.zeros(0, 2))
    with pytest.raises(ValueError, match=r"partners.*non-empty"):
        reformulation.sample(x, partners=torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"partners must have x's trailing shape \(2,\)"):
        reformulation.sample(x, partners=torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"partners must have x's trailing shape"):
        reformulation.sample(x, partners=torch.zeros(5, 2, 1))
    with pytest.raises(ValueError, match=r"partners is on meta"):
        reformulation.sample(x, partners=torch.zeros(5, 2, device="meta"))
    with pytest.raises(TypeError, match="generator"):
        reformulation.sample(x, generator=0)


# ---------------------------------------------------------------------- mix
@pytest.mark.parametrize("m", [None, 1, 3, 17])
def test_mix_returns_mixed_inputs_and_the_same_labels(m):
    g = _gen(4)
    x = torch.randn(8, 3, 2, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    p = None if m is None else torch.randn(m, 3, 2, generator=g) + 10
    x0, y0 = x.clone(), y.clone()
    mixed, labels = reformulation.mix(x, y, alpha=0.5, partners=p, generator=_gen(9))
    assert labels is y and torch.equal(y, y0)
    assert torch.equal(x, x0)
    assert mixed.shape == x.shape and mixed.dtype == x.dtype
    expected = reformulation.sample(x, alpha=0.5, partners=p, generator=_gen(9)).apply(x, p)
    assert torch.equal(mixed, expected)
    assert not torch.equal(mixed, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [0.05, 1.0, 10.0])
def test_batch_of_one_in_batch_is_a_no_op(dtype, alpha):
    x = torch.randn(1, 3, 5, dtype=torch.float64).to(dtype)
    y = torch.tensor([2])
    mixed, labels = reformulation.mix(x, y, alpha=alpha, generator=_gen(3))
    assert torch.equal(mixed, x) and mixed.dtype == dtype and labels is y
    mix = reformulation.sample(x, alpha=alpha, generator=_gen(3))
    assert mix.partner.tolist() == [0]
    assert torch.equal(mix.dense(torch.float64), torch.ones(1, 1, dtype=torch.float64))


def test_mix_bad_input():
    x = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    for alpha, exc in [(0.0, ValueError), (-0.5, ValueError), (float("nan"), ValueError), (True, TypeError)]:
        with pytest.raises(exc, match="alpha"):
            reformulation.mix(x, y, alpha=alpha)
    for dtype in (torch.uint8, torch.int64, torch.bool):
        with pytest.raises(TypeError, match=r"\bx\b must be a floating-point"):
            reformulation.mix(torch.zeros(4, 3, dtype=dtype), y)
    with pytest.raises(ValueError, match=r"partners must have x's trailing shape"):
        reformulation.mix(x, y, partners=torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"partners.*non-empty"):
        reformulation.mix(x, y, partners=torch.randn(0, 3))
    with pytest.raises(ValueError, match=r"partners must match x in dtype"):
        reformulation.mix(x, y, partners=torch.randn(5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\by\b must have batch size 4"):
        reformulation.mix(x, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match=r"\by\b must hold integer"):
        reformulation.mix(x, torch.zeros(4))
    with pytest.raises(ValueError, match=r"\by\b must be 1-D"):
        reformulation.mix(x, torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\bx\b must have a non-empty batch"):
        reformulation.mix(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\by\b is on meta"):
        reformulation.mix(x, torch.zeros(4, dtype=torch.long, device="meta"))


# ---------------------------------------------------------------------- kept-label weight
@pytest.mark.parametrize("alpha", [0.1, 1.0, 2.0])
def test_kept_label_weight_is_beta_alpha_plus_one_alpha(alpha):
    w = reformulation_checks.kept_label_weight(alpha, N, generator=_gen(int(10 * alpha)))
    assert w.shape == (N,) and w.dtype == torch.float64 and w.device.type == "cpu"
    assert bool(((w >= 0) & (w <= 1)).all())
    right, wrong = stats.beta(alpha + 1, alpha), stats.beta(alpha, alpha + 1)

    mean = float(w.mean())
    se = math.sqrt(right.var() / N)
    assert abs(mean - right.mean()) < 4 * se, (mean, right.mean(), se)
    assert abs(mean - wrong.mean()) > 20 * se

    tail = float((w > 0.9).double().mean())
    p = right.sf(0.9)
    se_tail = math.sqrt(p * (1 - p) / N)
    assert abs(tail - p) < 4 * se_tail, (tail, p, se_tail)
    assert abs(tail - wrong.sf(0.9)) > 20 * se_tail


def test_kept_label_weight_seed_dtype_and_errors():
    a = reformulation_checks.kept_label_weight(0.5, 100, generator=_gen(1))
    assert torch.equal(a, reformulation_checks.kept_label_weight(0.5, 100, generator=_gen(1)))
    assert not torch.equal(a, reformulation_checks.kept_label_weight(0.5, 100, generator=_gen(2)))
    assert reformulation_checks.kept_label_weight(0.5, 10, dtype=torch.float32).dtype == torch.float32
    for alpha, exc in [(0.0, ValueError), (float("nan"), ValueError), (True, TypeError)]:
        with pytest.raises(exc, match="alpha"):
            reformulation_checks.kept_label_weight(alpha, 10)
    for n, exc in [(0, ValueError), (2.5, TypeError), (True, TypeError)]:
        with pytest.raises(exc, match=r"\bn\b"):
            reformulation_checks.kept_label_weight(1.0, n)


# ---------------------------------------------------------------------- the exact identity
@pytest.mark.parametrize("lam", [0.0, 0.13, 0.5, 0.77, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixed_label_ce_is_the_lambda_weighted_ce(lam, seed):
    """CE(f(x̃), λ e_y1 + (1−λ) e_y2) = λ CE(f(x̃), y1) + (1−λ) CE(f(x̃), y2) (linear in the target)."""
    g = _gen(seed)
    c = 5
    model = nn.Linear(6, c).double()
    with torch.no_grad():
        model.weight.copy_(3 * torch.randn(c, 6, generator=g, dtype=torch.float64))
        model.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64))
    x1, x2 = torch.randn(2, 1, 6, generator=g, dtype=torch.float64)
    y1, y2 = torch.tensor([seed % c]), torch.tensor([(seed + 2) % c])
    with torch.no_grad():
        logits = model(lam * x1 + (1 - lam) * x2)
    target = lam * F.one_hot(y1, c).double() + (1 - lam) * F.one_hot(y2, c).double()

    lhs = F.cross_entropy(logits, target)
    rhs = lam * F.cross_entropy(logits, y1) + (1 - lam) * F.cross_entropy(logits, y2)
    assert abs(float(lhs - rhs)) <= 1e-12
    assert abs(float(losses.soft_cross_entropy(logits, target) - rhs)) <= 1e-12
    assert abs(float(losses.mixed_cross_entropy(logits, y1, y2, lam) - rhs)) <= 1e-12
    if lam not in (0.5,):
        swapped = (1 - lam) * F.cross_entropy(logits, y1) + lam * F.cross_entropy(logits, y2)
        assert abs(float(lhs - swapped)) > 1e-6, "the check cannot tell λ from 1 − λ"


@pytest.mark.parametrize("alpha", [0.3, 1.0, 3.0])
def test_objectives_agree_in_expectation_by_quadrature(alpha):
    """Over all (i, j) pairs of a tiny batch, integrating λ exactly:
    E_{Beta(α,α)}[CE(f(x̃), λ y_i + (1−λ) y_j)] = E_{Beta(α+1,α)}[CE(f(x̃), y_i)] ≠ E_{Beta(α,α+1)}[...]."""
    g = _gen(7)
    c, b = 3, 3
    x = torch.randn(b, 2, generator=g, dtype=torch.float64) * 2
    y = torch.tensor([0, 1, 2])
    w = torch.randn(c, 2, generator=g, dtype=torch.float64) * 2
    bias = torch.randn(c, generator=g, dtype=torch.float64)

    def ce(lam: float, i: int, j: int, target: torch.Tensor) -> float:
        logp = ((lam * x[i] + (1 - lam) * x[j]) @ w.T + bias).log_softmax(0)
        return float(-(target * logp).sum())

    e = torch.eye(c, dtype=torch.float64)

    def expect(a: float, bb: float, soft: bool) -> float:
        # quad's algebraic weight λ^(a−1) (1−λ)^(b−1) takes the Beta density's endpoint singularities.
        total = 0.0
        for i in range(b):
            for j in range(b):
                def integrand(lam: float) -> float:
                    t = lam * e[y[i]] + (1 - lam) * e[y[j]] if soft else e[y[i]]
                    return ce(lam, i, j, t)
                val, _ = integrate.quad(integrand, 0, 1, weight="alg", wvar=(a - 1, bb - 1),
                                        epsabs=1e-13, epsrel=1e-12)
                total += val
        return total / b**2 / special.beta(a, bb)

    symmetric = expect(alpha, alpha, soft=True)
    reformulated = expect(alpha + 1, alpha, soft=False)
    wrong = expect(alpha, alpha + 1, soft=False)
    assert abs(symmetric - reformulated) < 1e-10 * max(1.0, abs(symmetric)), (symmetric, reformulated)
    assert abs(wrong - reformulated) > 0.05, (wrong, reformulated)


# ---------------------------------------------------------------------- Monte Carlo objectives
def _problem(seed: int = 0):
    """A fitted nearest-mean linear classifier on three Gaussian classes in 4-d (float64)."""
    g = _gen(seed)
    c = 3
    means = torch.randn(c, 4, generator=g, dtype=torch.float64) * 2
    y = torch.arange(60) % c
    x = means[y] + 0.5 * torch.randn(60, 4, generator=g, dtype=torch.float64)
    model = nn.Linear(4, c).double()
    with torch.no_grad():
        model.weight.copy_(means)
        model.bias.copy_(-(means**2).sum(1) / 2)
    return model, x, y, c


@pytest.mark.parametrize("alpha", [0.4, 1.0])
def test_monte_carlo_symmetric_and_reformulated_agree_wrong_order_does_not(alpha):
    model, x, y, c = _problem()
    est = {form: reformulation_checks.monte_carlo(model, x, y, c, alpha=alpha, form=form, n=4000,
                                           generator=_gen(100 + k))
           for k, form in enumerate(reformulation_checks.FORMS)}
    for e in est.values():
        assert e["loss"].shape == () and e["loss_se"].shape == ()
        assert e["grad"].shape == (15,) and e["grad_se"].shape == (15,)
        assert float(e["loss_se"]) > 0 and bool((e["grad_se"] > 0).all())

    same = reformulation_checks.agreement(est["symmetric"], est["reformulated"])
    assert set(same) == {"loss_z", "grad_z2", "grad_z_over_4", "cosine"}
    assert abs(same["loss_z"]) < 4, same
    # grad_z2 is the mean squared z over the 15 gradient coordinates, with standard errors estimated
    # from heavy-tailed per-draw gradients (λ near 0 or 1 at α = 0.4): over 26 seeds of this test it
    # ranged 0.07-4.2 (median 0.7); the wrong order, which the test must reject, gives > 10.
    assert same["grad_z2"] < 5, same
    assert same["cosine"] > 0.95, same
    assert same["grad_z_over_4"] == 0.0, same

    for other in ("reformulated", "symmetric"):
        diff = reformulation_checks.agreement(est["wrong_order"], est[other])
        assert abs(diff["loss_z"]) > 10 and diff["grad_z2"] > 10, diff
        assert diff["cosine"] < 0.9, diff


def _reference(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor):
    """Per-sample losses and per-sample flattened gradients, one autograd call per example."""
    params = list(model.parameters())
    losses_, grads = [], []
    for k in range(inputs.shape[0]):
        loss = -(target[k] * model(inputs[k:k + 1]).log_softmax(1)[0]).sum()
        gs = torch.autograd.grad(loss, params)
        losses_.append(loss.detach())
        grads.append(torch.cat([gk.reshape(-1) for gk in gs]))
    return torch.stack(losses_), torch.stack(grads)


@pytest.mark.parametrize("form", reformulation_checks.FORMS)
def test_monte_carlo_matches_autograd_on_the_same_draws(form):
    model, x, y, c = _problem(1)
    n, alpha = 300, 0.7
    out = reformulation_checks.monte_carlo(model, x, y, c, alpha=alpha, form=form, n=n, generator=_gen(5), chunk=n)
    inputs, target = reformulation_checks._form_batch(form, x, y, c, alpha, n, _gen(5))
    assert inputs.shape == (n, 4) and target.shape == (n, c)

    # The mean gradient is the autograd gradient of the mean loss over the same draws.
    mean_loss = -(target * model(inputs).log_softmax(1)).sum(1).mean()
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(mean_loss, list(model.parameters()))])
    torch.testing.assert_close(out["grad"], grad, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(out["loss"], mean_loss.detach(), atol=1e-12, rtol=1e-12)

    # Standard errors: sample std / sqrt(n) of the per-sample losses and gradients.
    per_loss, per_grad = _reference(model, inputs, target)
    torch.testing.assert_close(out["loss_se"], per_loss.std() / math.sqrt(n), atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(out["grad_se"], per_grad.std(0) / math.sqrt(n), atol=1e-12, rtol=1e-8)


def test_monte_carlo_accumulates_over_chunks():
    model, x, y, c = _problem(2)
    n, chunk, alpha = 300, 128, 0.5
    out = reformulation_checks.monte_carlo(model, x, y, c, alpha=alpha, form="reformulated", n=n,
                                    generator=_gen(8), chunk=chunk)
    g = _gen(8)
    parts = [reformulation_checks._form_batch("reformulated", x, y, c, alpha, k, g) for k in (128, 128, 44)]
    inputs = torch.cat([p[0] for p in parts])
    target = torch.cat([p[1] for p in parts])
    per_loss, per_grad = _reference(model, inputs, target)
    torch.testing.assert_close(out["loss"], per_loss.mean(), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out["loss_se"], per_loss.std() / math.sqrt(n), atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(out["grad"], per_grad.mean(0), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(out["grad_se"], per_grad.std(0) / math.sqrt(n), atol=1e-12, rtol=1e-8)

    no_grad = reformulation_checks.monte_carlo(model, x, y, c, alpha=alpha, form="reformulated", n=n,
                                        generator=_gen(8), chunk=chunk, gradients=False)
    assert set(no_grad) == {"loss", "loss_se"}
    assert torch.equal(no_grad["loss"], out["loss"]) and torch.equal(no_grad["loss_se"], out["loss_se"])


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_form_batch_draws_the_stated_objectives(alpha):
    """With x = identity and y = arange, inputs[k] = λ e_i + (1 − λ) e_j exposes λ and i, j."""
    b, n = 100, 20_000
    x = torch.eye(b, dtype=torch.float64)
    y = torch.arange(b)
    for form, (a, bb) in {"symmetric": (alpha, alpha), "reformulated": (alpha + 1, alpha),
                          "wrong_order": (alpha, alpha + 1)}.items():
        inputs, target = reformulation_checks._form_batch(form, x, y, b, alpha, n, _gen(11))
        assert torch.allclose(inputs.sum(1), torch.ones(n, dtype=torch.float64))
        assert torch.allclose(target.sum(1), torch.ones(n, dtype=torch.float64))
        if form == "symmetric":
            torch.testing.assert_close(target, inputs)  # λ y_i + (1−λ) y_j with y_k = e_k
            lam = inputs.max(1).values  # the larger weight: distributed as max(λ, 1 − λ)
            keep = (inputs > 0).sum(1) == 2
            ref = stats.beta(a, bb).rvs(size=100_000, random_state=0)
            assert stats.ks_2samp(lam[keep].numpy(), np.maximum(ref, 1 - ref)).pvalue > 1e-3
            continue
        assert bool(((target == 0) | (target == 1)).all()), "the kept label must be one-hot"
        i = target.argmax(1)
        lam = inputs.gather(1, i[:, None])[:, 0]
        distinct = (inputs > 0).sum(1) == 2  # i != j and 0 < λ < 1: λ identifiable
        assert float(distinct.double().mean()) > 0.98
        assert_moments(lam[distinct], a, bb)


def test_monte_carlo_and_agreement_bad_arguments():
    model, x, y, c = _problem()
    with pytest.raises(ValueError, match="form"):
        reformulation_checks.monte_carlo(model, x, y, c, alpha=1.0, form="mixup", n=10)
    with pytest.raises(ValueError, match=r"\bn\b"):
        reformulation_checks.monte_carlo(model, x, y, c, alpha=1.0, form="symmetric", n=0)
    with pytest.raises(ValueError, match="alpha"):
        reformulation_checks.monte_carlo(model, x, y, c, alpha=0.0, form="symmetric", n=10)
    a = reformulation_checks.monte_carlo(model, x, y, c, alpha=1.0, form="symmetric", n=50, generator=_gen(0),
                                  gradients=False)
    b = reformulation_checks.monte_carlo(model, x, y, c, alpha=1.0, form="symmetric", n=50, generator=_gen(1),
                                  gradients=False)
    assert set(reformulation_checks.agreement(a, b)) == {"loss_z"}


# ---------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def moons_semi():
    split = data.two_moons(n_train=160, n_test=64, seed=0)
    labelled, pool = data.labelled_subset(split, 0.25, seed=0)
    return labelled, pool


def _fit(split, method, seed=0, epochs=2):
    torch.manual_seed(seed)
    model = models.MLP(2, 2, (16,))
    hist = train.fit(model, split, method, epochs=epochs, batch_size=16, lr=1e-2, seed=seed,
                     device="cpu", progress=False)
    return model, hist


@pytest.mark.parametrize("with_pool", [False, True])
def test_reformulated_training_is_deterministic_and_leaves_the_pool_alone(moons_semi, with_pool):
    labelled, pool = moons_semi
    pool_before = pool.clone()
    opts = {"alpha": 0.4, "unlabelled": pool} if with_pool else {"alpha": 0.4}
    m1, h1 = _fit(labelled, train.make_method("reformulation", **opts))
    m2, h2 = _fit(labelled, train.make_method("reformulation", **opts))
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    assert [e["train_loss"] for e in h1.epochs] == [e["train_loss"] for e in h2.epochs]
    _, h3 = _fit(labelled, train.make_method("reformulation", **opts), seed=1)
    assert h3.final["train_loss"] != h1.final["train_loss"]
    assert torch.equal(pool, pool_before), "training modified the unlabelled pool"
    assert math.isfinite(h1.final["train_loss"]) and "accuracy" in h1.final


def test_reformulated_loss_is_ce_on_the_kept_labels(moons_semi):
    labelled, pool = moons_semi
    torch.manual_seed(0)
    model = models.MLP(2, 2, (8,))
    x, y = labelled.x_train[:12], labelled.y_train[:12]

    semi = train.make_method("reformulation", alpha=0.4, unlabelled=pool.double())  # converted to x's dtype
    got = semi.loss(model, x, y, 2, _gen(3))
    mix = reformulation.sample(x, alpha=0.4, partners=pool, generator=_gen(3))
    assert mix.partner_size == pool.shape[0]
    torch.testing.assert_close(got, F.cross_entropy(model(mix.apply(x, pool)), y))

    plain = train.make_method("reformulation", alpha=0.4)
    got = plain.loss(model, x, y, 2, _gen(3))
    mix = reformulation.sample(x, alpha=0.4, generator=_gen(3))
    assert mix.partner_size is None
    torch.testing.assert_close(got, F.cross_entropy(model(mix.apply(x)), y))

    assert repr(semi) == f"reformulation(alpha=0.4, unlabelled=<{pool.shape[0]} examples>)"
    assert repr(plain) == "reformulation(alpha=0.4, unlabelled=None)"


def test_reformulated_bad_options():
    with pytest.raises(TypeError, match="unlabelled"):
        train.make_method("reformulation", unlabelled=torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="unlabelled"):
        train.make_method("reformulation", unlabelled=[[0.0, 0.0]])
    with pytest.raises(ValueError, match="unlabelled"):
        train.make_method("reformulation", unlabelled=torch.zeros(0, 2))
    for alpha, exc in [(0.0, ValueError), (float("nan"), ValueError), (True, TypeError)]:
        with pytest.raises(exc, match="alpha"):
            train.make_method("reformulation", alpha=alpha)


# ---------------------------------------------------------------------- labelled_subset
def _indexed_split(counts: list[int], seed: int = 0) -> Split:
    """A split whose first input coordinate is the training example's index."""
    g = _gen(seed)
    y = torch.cat([torch.full((k,), c, dtype=torch.int64) for c, k in enumerate(counts)])
    y = y[torch.randperm(len(y), generator=g)]
    n = len(y)
    x = torch.stack([torch.arange(n, dtype=torch.float32), torch.randn(n, generator=g)], 1)
    return Split(x, y, torch.randn(6, 2, generator=g), torch.arange(6) % len(counts), len(counts), name="toy")


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.5, 0.9])
def test_labelled_subset_is_a_stratified_partition(fraction):
    split = _indexed_split([40, 40, 40, 40, 40])
    labelled, pool = data.labelled_subset(split, fraction, seed=3)
    n = split.x_train.shape[0]
    n_lab = labelled.x_train.shape[0]
    assert n_lab == round(fraction * n)
    assert n_lab + pool.shape[0] == n
    assert pool.dtype == split.x_train.dtype and pool.shape[1:] == split.x_train.shape[1:]

    kept = labelled.x_train[:, 0].long()
    rest = pool[:, 0].long()
    assert sorted(kept.tolist() + rest.tolist()) == list(range(n)), "not a partition of the training set"
    assert torch.equal(labelled.y_train, split.y_train[kept]), "labels travel with their inputs"
    assert torch.equal(labelled.x_train, split.x_train[kept]) and torch.equal(pool, split.x_train[rest])
    counts = torch.bincount(labelled.y_train, minlength=5)
    assert int(counts.min()) >= 1 and int(counts.max() - counts.min()) <= 1, counts
    assert labelled.x_test is split.x_test and labelled.y_test is split.y_test
    assert labelled.num_classes == split.num_classes


def test_labelled_subset_keeps_every_class_of_an_imbalanced_set():
    split = _indexed_split([96, 2, 2])
    for seed in range(5):
        labelled, pool = data.labelled_subset(split, 0.03, seed=seed)
        assert set(labelled.y_train.tolist()) == {0, 1, 2}
        assert labelled.x_train.shape[0] + pool.shape[0] == 100
        kept = labelled.x_train[:, 0].long()
        assert sorted(kept.tolist() + pool[:, 0].long().tolist()) == list(range(100))


def test_labelled_subset_is_fixed_for_a_seed():
    split = data.two_moons(n_train=200, n_test=20, seed=1)
    a, pa = data.labelled_subset(split, 0.2, seed=4)
    b, pb = data.labelled_subset(split, 0.2, seed=4)
    c, _ = data.labelled_subset(split, 0.2, seed=5)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train) and torch.equal(pa, pb)
    assert not torch.equal(a.x_train, c.x_train)
    assert set(a.y_train.tolist()) == {0, 1}
    assert a.x_train.shape[0] == 40 and pa.shape[0] == 160


@pytest.mark.parametrize("fraction, exc", [(0.0, ValueError), (1.0, ValueError), (-0.1, ValueError),
                                           (1.5, ValueError), (float("nan"), ValueError), (0.99, ValueError),
                                           (True, TypeError), ("0.1", TypeError), (None, TypeError)])
def test_labelled_subset_bad_fraction(fraction, exc):
    split = _indexed_split([50, 50, 50])
    with pytest.raises(exc, match="fraction"):
        data.labelled_subset(split, fraction)


def test_labelled_subset_bad_split_and_seed():
    with pytest.raises(TypeError, match="split"):
        data.labelled_subset((torch.zeros(4, 2), torch.zeros(4)), 0.5)
    split = _indexed_split([10, 10])
    with pytest.raises(ValueError, match="seed"):
        data.labelled_subset(split, 0.5, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        data.labelled_subset(split, 0.5, seed=1.0)


def test_monte_carlo_needs_two_draws():
    model = torch.nn.Linear(3, 2).double()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 1])
    with pytest.raises(ValueError, match="n must be >= 2"):
        reformulation_checks.monte_carlo(model, x, y, 2, alpha=1.0, form="symmetric", n=1)
