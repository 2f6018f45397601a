"""Chapter 3's flatness experiment: the expected-loss control, the Gaussian classes, the class spectra."""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _stats import cpu_gen
from mixbook.chapters import manifold_gradient as mg
from mixbook.chapters.manifold_gradient import _mixed_squared_loss
from mixbook.training import models
from mixbook.training.metrics import flatness


# ====================================================================== the control: the expected mixed loss
def _feature_head(seed: int = 0, d_in: int = 3, width: int = 5, k: int = 2):
    torch.manual_seed(seed)
    return (nn.Sequential(nn.Linear(d_in, width), nn.Tanh()).double(), nn.Linear(width, k).double())


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.0, 7.5])
def test_expected_mixed_loss_is_the_average_over_partners_and_lambda(alpha):
    """The mixed squared loss is quadratic in λ, so its average over λ ~ Beta(α, α) is its average over
    the two points ½ ± sd(λ) (same first two moments); with every partner j of every i (a uniformly random
    permutation gives each i a uniform partner), the average is exact: value and gradients."""
    feature, head = _feature_head()
    g = cpu_gen(1)
    b = 7
    x = torch.randn(b, 3, generator=g, dtype=torch.float64)
    y = torch.randn(b, 2, generator=g, dtype=torch.float64)
    sd = 0.5 / math.sqrt(2 * alpha + 1)
    params = list(feature.parameters()) + list(head.parameters())

    h = feature(x)
    total = 0.0
    for lam in (0.5 - sd, 0.5 + sd):
        i, j = (torch.tensor(v) for v in zip(*itertools.product(range(b), range(b))))
        lam_t = torch.full((b * b, 1), lam, dtype=torch.float64)
        total = total + 0.5 * _mixed_squared_loss(head, h[i], h[j], y[i], y[j], lam_t)
    exact_grads = torch.autograd.grad(total, params)

    expected = mg.expected_mixed_loss(head(feature(x)), y, alpha)
    grads = torch.autograd.grad(expected, params)
    torch.testing.assert_close(expected, total, rtol=1e-12, atol=1e-14)
    for a, e in zip(grads, exact_grads):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-13)


def test_expected_mixed_loss_is_rescaled_erm_plus_the_mean_residual_penalty():
    e_l2, e_l1l = mg.beta_moments(2.0)
    assert (e_l2, e_l1l) == pytest.approx((3 / 10, 2 / 10))
    out = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([[0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    # ERM's loss ½ mean‖r‖² = ½; the mean residual is (-½, -½), squared norm ½.
    assert float(mg.expected_mixed_loss(out, y, 2.0)) == pytest.approx(0.3 * 1.0 + 0.2 * 0.5)
    # Residuals that average to zero: exactly ERM's loss times (α+1)/(2α+1).
    out2 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    erm = 0.5 * (y - out2).pow(2).sum(1).mean()
    assert float(mg.expected_mixed_loss(out2, y, 2.0)) == pytest.approx(float(erm) * 3 / 5)


def test_expected_mixed_loss_bad_arguments():
    out = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="shape"):
        mg.expected_mixed_loss(out, torch.zeros(4, 2), 1.0)
    with pytest.raises(ValueError, match="shape"):
        mg.expected_mixed_loss(out[:, 0], torch.zeros(4), 1.0)
    with pytest.raises(ValueError, match="alpha"):
        mg.expected_mixed_loss(out, out, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        mg.beta_moments(-1.0)


# ====================================================================== the control arm in fit_decomposed
def _toy_classes(n: int = 64, seed: int = 0):
    split = mg.gaussian_classes(3, 2, n // 3, 10, 2.0, seed=seed)
    x, xt = split.x_train.double(), split.x_test.double()
    return x, F.one_hot(split.y_train, 3).double(), xt, F.one_hot(split.y_test, 3).double()


def test_expected_mode_sees_the_batches_of_manifold_mixup_step_for_step(monkeypatch):
    """The control draws (and discards) the same λ and partners as "all": identical batches, so against
    manifold mixup only the noise of the draws differs; ERM draws nothing and its batches differ."""
    x, y, xt, yt = _toy_classes()
    seen: dict[str, list[torch.Tensor]] = {}
    real = mg.mixup.sample

    def spy(mode):
        def sample(xb, *args, **kwargs):
            seen.setdefault(mode, []).append(xb.clone())
            return real(xb, *args, **kwargs)
        return sample

    for mode in ("all", "expected"):
        monkeypatch.setattr(mg.mixup, "sample", spy(mode))
        torch.manual_seed(0)
        model = models.MLP(2, 3, (8,)).double()
        mg.fit_decomposed(model.features, model.head, x, y, xt, yt, mode=mode, epochs=3, batch_size=16, seed=5,
                          probe_size=0)
    assert len(seen["all"]) == len(seen["expected"]) == 3 * 4
    assert all(torch.equal(a, b) for a, b in zip(seen["all"], seen["expected"]))


def test_expected_mode_trains_deterministically_and_differs_from_manifold_mixup():
    x, y, xt, yt = _toy_classes()
    runs = {}
    for mode in ("expected", "expected", "all"):
        torch.manual_seed(0)
        model = models.MLP(2, 3, (8,)).double()
        h = mg.fit_decomposed(model.features, model.head, x, y, xt, yt, mode=mode, epochs=4, batch_size=16, seed=2)
        runs.setdefault(mode, []).append(h)
    assert runs["expected"][0].equals(runs["expected"][1])
    assert not runs["expected"][0].train_loss.equals(runs["all"][0].train_loss)
    assert (runs["expected"][0].usual_norm > 0).all()


def test_probe_size_zero_skips_the_probe():
    x, y, xt, yt = _toy_classes()
    torch.manual_seed(0)
    model = models.MLP(2, 3, (8,)).double()
    h = mg.fit_decomposed(model.features, model.head, x, y, xt, yt, mode="erm", epochs=2, batch_size=16,
                          probe_size=0)
    assert h.usual_norm.isna().all() and h.cross_norm.isna().all() and h.test_accuracy.between(0, 1).all()
    with pytest.raises(ValueError, match="probe_size"):
        mg.fit_decomposed(model.features, model.head, x, y, xt, yt, mode="erm", epochs=1, probe_size=-1)


def test_repeat_decomposed_runs_the_control_paired():
    x, y, xt, yt = _toy_classes()
    hist, trained = mg.repeat_decomposed(functools.partial(models.MLP, 2, 3, (8,)), x, y, xt, yt, seeds=[0, 1],
                                         modes=["erm", "all", mg.EXPECTED], epochs=2, batch_size=16, probe_size=0)
    assert set(trained) == {(m, s) for m in ("erm", "all", "expected") for s in (0, 1)}
    assert set(hist["mode"]) == {"erm", "all", "expected"}
    assert mg.ALL_MODES == mg.MODES + ("expected",) and "expected" not in mg.MODES
    with pytest.raises(ValueError, match="modes must be one of"):
        mg.repeat_decomposed(functools.partial(models.MLP, 2, 3, (8,)), x, y, xt, yt, seeds=[0], modes=["expect"])


# ====================================================================== the data
def test_gaussian_classes_shapes_seeds_and_task():
    a = mg.gaussian_classes(4, 5, 300, 20, 1.5, seed=0, task_seed=3)
    assert a.x_train.shape == (1200, 5) and a.x_test.shape == (80, 5) and a.num_classes == 4
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert torch.bincount(a.y_train).tolist() == [300] * 4 and torch.bincount(a.y_test).tolist() == [20] * 4
    b = mg.gaussian_classes(4, 5, 300, 20, 1.5, seed=1, task_seed=3)
    c = mg.gaussian_classes(4, 5, 300, 20, 1.5, seed=0, task_seed=3)
    assert torch.equal(a.x_train, c.x_train) and not torch.equal(a.x_train, b.x_train)
    # the same task: the class means agree up to sampling error; each class is N(μ, I) (variance 1)
    for cls in range(4):
        ma, mb = a.x_train[a.y_train == cls].mean(0), b.x_train[b.y_train == cls].mean(0)
        assert float((ma - mb).abs().max()) < 0.4
        var = a.x_train[a.y_train == cls].var(0)
        assert float((var - 1).abs().max()) < 0.3
    other = mg.gaussian_classes(4, 5, 300, 20, 1.5, seed=0, task_seed=4)
    assert float((other.x_train[:300].mean(0) - a.x_train[:300].mean(0)).abs().max()) > 0.4


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(num_classes=1), ValueError, "num_classes"),
    (dict(dim=0), ValueError, "dim"),
    (dict(n_per_class=1), ValueError, "n_per_class"),
    (dict(n_test_per_class=0), ValueError, "n_test_per_class"),
    (dict(separation=0.0), ValueError, "separation"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(task_seed=1.5), TypeError, "task_seed"),
])
def test_gaussian_classes_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        mg.gaussian_classes(**kwargs)


# ====================================================================== spectra
def _flat_classes(n_per: int, d: int, ranks, scale: float = 1.0, seed: int = 0):
    """Class c: a random mean plus N(0, scale²) noise in a random rank-``ranks[c]`` subspace of R^d."""
    g = cpu_gen(seed)
    feats, labels = [], []
    for c, rank in enumerate(ranks):
        basis = torch.linalg.qr(torch.randn(d, rank, generator=g, dtype=torch.float64))[0]
        z = scale * torch.randn(n_per, rank, generator=g, dtype=torch.float64) @ basis.T
        feats.append(5 * torch.randn(d, generator=g, dtype=torch.float64) + z)
        labels.append(torch.full((n_per,), c))
    return torch.cat(feats), torch.cat(labels)


def test_class_spectra_are_the_class_standard_deviations_and_agree_with_flatness():
    x, y = _flat_classes(5000, 6, [1, 3, 6], scale=2.0)
    out = mg.class_spectra(x, y)
    sv = out["singular_values"]
    assert out["classes"].tolist() == [0, 1, 2] and out["n_per_class"].tolist() == [5000] * 3
    assert sv.shape == (3, 6) and sv.dtype == torch.float64 and bool((sv[:, :-1] >= sv[:, 1:]).all())
    # spread 2 along each of the class's directions, nothing elsewhere
    for c, rank in enumerate([1, 3, 6]):
        assert float((sv[c, :rank] - 2).abs().max()) < 0.15
        assert rank == 6 or float(sv[c, rank:].abs().max()) < 1e-8
    ref = flatness(x.float(), y)
    torch.testing.assert_close(out["effective_rank"], ref["effective_rank"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sv / sv.sum(1, keepdim=True), ref["singular_values"], rtol=1e-5, atol=1e-6)
    assert out["effective_rank"].tolist() == pytest.approx([1, 3, 6], abs=0.1)


def test_class_spectra_bad_arguments_and_small_classes():
    x, y = _flat_classes(4, 6, [2, 2])
    out = mg.class_spectra(x, y)   # n_c = 4 < d = 6: at most 3 non-zero values, zero-padded to d
    assert out["singular_values"].shape == (2, 6) and float(out["singular_values"][:, 3:].abs().max()) < 1e-10
    with pytest.raises(ValueError, match="at least two points"):
        mg.class_spectra(x[:5], y[:5])
    with pytest.raises(ValueError, match="shape"):
        mg.class_spectra(x[:, 0], y)
    with pytest.raises(ValueError, match="finite"):
        mg.class_spectra(torch.full_like(x, float("nan")), y)
    with pytest.raises(TypeError, match="integer"):
        mg.class_spectra(x, y.double())


def test_effective_rank():
    s = torch.tensor([[1.0, 1.0, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert mg.effective_rank(s).tolist() == pytest.approx([3.0, 1.0, 0.0])
    assert mg.effective_rank(s[None]).shape == (1, 3)
    with pytest.raises(ValueError, match=">= 0"):
        mg.effective_rank(-s)
    with pytest.raises(ValueError, match="floating"):
        mg.effective_rank(torch.ones(3, dtype=torch.long))


def test_hidden_features_are_the_outputs_of_each_non_linearity():
    torch.manual_seed(0)
    model = models.MLP(3, 2, (7, 5)).train()
    x = torch.randn(11, 3)
    out = mg.hidden_features(model, x)
    assert list(out) == ["features.2", "features.4"]
    torch.testing.assert_close(out["features.2"], model.features[:3](x))
    torch.testing.assert_close(out["features.4"], model.features(x))
    assert model.training and not out["features.4"].requires_grad
    with pytest.raises(TypeError, match="features"):
        mg.hidden_features(nn.Linear(3, 2), x)
    with pytest.raises(ValueError, match="no non-linearity"):
        mg.hidden_features(_linear_only(), x)


def _linear_only() -> nn.Module:
    m = nn.Module()
    m.features = nn.Sequential(nn.Flatten(), nn.Linear(3, 4))
    return m
