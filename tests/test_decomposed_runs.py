"""manifold_gradient.repeat_decomposed (paired seeds across the gradient modes), population.run_all(fn=), MLP activations."""

import functools

import pytest
import torch
from torch import nn

from mixbook.chapters import manifold_gradient
from mixbook.training import models, population


def _task(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64) * 4 - 2
    y = torch.sin(2 * x[:, :1]) * torch.cos(x[:, 1:])
    return dict(x=x[: n // 2], y=y[: n // 2], x_test=x[n // 2:], y_test=y[n // 2:])


MODEL = functools.partial(models.MLP, 2, 1, (8, 8), activation="tanh")
FIT = dict(alpha=2.0, epochs=2, batch_size=8, lr=1e-2, probe_size=8)


def test_repeat_decomposed_equals_separate_fits_and_pairs_initial_weights():
    d = _task()
    hist, trained = manifold_gradient.repeat_decomposed(MODEL, **d, seeds=[3, 4], modes=["all", "cross"], **FIT)
    assert set(trained) == {("all", 3), ("cross", 3), ("all", 4), ("cross", 4)}
    assert len(hist) == 4 * FIT["epochs"] and set(hist.columns) >= {"mode", "seed", "test_mse", "cross_norm"}
    for seed in (3, 4):
        torch.manual_seed(seed)
        m = MODEL().double()
        init = [p.detach().clone() for p in m.parameters()]
        ref = manifold_gradient.fit_decomposed(m.features, m.head, **d, mode="cross", seed=seed, **FIT)
        got = hist[(hist["mode"] == "cross") & (hist.seed == seed)].reset_index(drop=True)
        assert torch.allclose(torch.tensor(got.test_mse.to_numpy()), torch.tensor(ref.test_mse.to_numpy()), atol=1e-12)
        for p, q in zip(trained["cross", seed].parameters(), m.parameters()):
            assert torch.equal(p, q)
        # the two modes of a seed start from the same weights: rebuild and compare with the first layer's init
        torch.manual_seed(seed)
        assert torch.equal(next(MODEL().double().parameters()), init[0])
    # different seeds give different initialisations and results
    assert not hist[hist.seed == 3].test_mse.equals(hist[hist.seed == 4].test_mse)


@pytest.mark.parametrize("bad, err", [
    (dict(seeds=[]), ValueError), (dict(seeds=[-1]), ValueError), (dict(seeds="01"), ValueError),
    (dict(seeds=[0], modes=["nope"]), ValueError), (dict(seeds=[0], modes="all"), ValueError),
    (dict(seeds=[0], momentum=0.9), TypeError),
])
def test_repeat_decomposed_refuses_bad_arguments(bad, err):
    with pytest.raises(err):
        manifold_gradient.repeat_decomposed(MODEL, **_task(), **{**FIT, **bad})


def test_repeat_decomposed_needs_features_and_linear_head():
    with pytest.raises(TypeError, match="features"):
        manifold_gradient.repeat_decomposed(lambda: nn.Linear(2, 1), **_task(), seeds=[0], **FIT)


def test_run_all_with_fn_in_workers_equals_in_process():
    d = _task()
    jobs = {s: dict(model_fn=MODEL, **d, seeds=[s], modes=["erm", "usual"], **FIT) for s in (0, 1)}
    here = population.run_all(jobs, workers=1, fn=manifold_gradient.repeat_decomposed)
    there = population.run_all(jobs, workers=2, fn=manifold_gradient.repeat_decomposed)
    for s in jobs:
        assert here[s][0].equals(there[s][0])


def test_run_all_refuses_a_non_callable_or_unpicklable_fn():
    jobs = {0: dict(), 1: dict()}
    with pytest.raises(TypeError, match="fn"):
        population.run_all(jobs, workers=1, fn=3)
    with pytest.raises(TypeError, match="cannot be sent"):
        population.run_all(jobs, workers=2, fn=lambda: None)


@pytest.mark.parametrize("activation, kind", [("relu", nn.ReLU), ("tanh", nn.Tanh), ("gelu", nn.GELU)])
def test_mlp_activation(activation, kind):
    m = models.MLP(4, 1, (5, 6), activation=activation)
    assert [type(l) for l in m.features] == [nn.Flatten, nn.Linear, kind, nn.Linear, kind]
    assert m(torch.randn(3, 4)).shape == (3, 1)


def test_mlp_refuses_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        models.MLP(4, 2, activation="sigmoid")


def test_mlp_head_bias_option():
    assert models.MLP(4, 3, (5,), head_bias=False).head.bias is None
    assert models.MLP(4, 3, (5,)).head.bias is not None
    with pytest.raises(TypeError, match="head_bias"):
        models.MLP(4, 3, (5,), head_bias=1)


def _ce_setup(seed=0):
    torch.manual_seed(seed)
    feat = nn.Sequential(nn.Linear(5, 7), nn.Tanh()).double()
    head = nn.Linear(7, 4).double()
    x1, x2 = torch.randn(2, 6, 5, dtype=torch.float64)
    y1 = torch.nn.functional.one_hot(torch.arange(6) % 4, 4).double()
    y2 = torch.nn.functional.one_hot((torch.arange(6) + 1) % 4, 4).double()
    return feat, head, x1, x2, y1, y2


def test_gradient_terms_cross_entropy_total_is_autograd_and_exact_at_the_ends():
    feat, head, x1, x2, y1, y2 = _ce_setup()
    lam = torch.full((6,), 0.3, dtype=torch.float64)
    t = manifold_gradient.gradient_terms(feat, head, x1, x2, y1, y2, lam, loss="cross_entropy")
    # total: autograd of the soft cross-entropy at the mixed features, computed independently
    params = list(feat.parameters())
    h = 0.3 * feat(x1) + 0.7 * feat(x2)
    ce = -((0.3 * y1 + 0.7 * y2) * torch.log_softmax(head(h), 1)).sum(1).mean()
    ref = torch.cat([g.reshape(-1) for g in torch.autograd.grad(ce, params)])
    assert torch.allclose(t["total"], ref, atol=1e-12)
    # inside the segment the four-term sum is only first order: it differs from the gradient
    assert (t["usual"] + t["cross"] - t["total"]).norm() > 1e-6 * t["total"].norm()
    # at λ = 1 the mixed point is x1 itself: the sum is exact and the cross terms vanish
    one = manifold_gradient.gradient_terms(feat, head, x1, x2, y1, y2, torch.ones(6, dtype=torch.float64), loss="cross_entropy")
    assert torch.allclose(one["usual"] + one["cross"], one["total"], atol=1e-12)
    assert one["cross"].abs().max() == 0


def test_gradient_terms_refuses_unknown_loss():
    feat, head, x1, x2, y1, y2 = _ce_setup()
    with pytest.raises(ValueError, match="loss"):
        manifold_gradient.gradient_terms(feat, head, x1, x2, y1, y2, 0.5, loss="hinge")
