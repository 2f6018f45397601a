"""fit / repeat / the method registry, models, plotting, runtime and notebook helpers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

import mixbook
from mixbook.training import data, models, train
from mixbook.chapters import notebook, plotting
from mixbook.core import registry
from mixbook.core.runtime import resolve_device, setup
from mixbook.methods import erm


@pytest.fixture(scope="module")
def moons():
    return data.two_moons(n_train=128, n_test=64, seed=0)


def _fit(moons, method, seed=0, epochs=3):
    torch.manual_seed(seed)
    model = models.MLP(2, 2, (16,))
    hist = train.fit(model, moons, method, epochs=epochs, batch_size=32, lr=1e-2, seed=seed,
                     device="cpu", progress=False)
    return model, hist


@pytest.mark.parametrize("method", ["erm", "mixup"])
def test_fit_is_deterministic_for_a_seed(moons, method):
    m1, h1 = _fit(moons, method)
    m2, h2 = _fit(moons, method)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    assert [e["train_loss"] for e in h1.epochs] == [e["train_loss"] for e in h2.epochs]
    _, h3 = _fit(moons, method, seed=1)
    assert h3.final["train_loss"] != h1.final["train_loss"]


class _Recorder:
    """A method that records its batches and, optionally, draws from the mixing generator."""

    def __init__(self, draws: int):
        self.draws, self.batches = draws, []

    def loss(self, model, x, y, num_classes, generator):
        self.batches.append((x.clone(), y.clone()))
        if self.draws:
            torch.rand(self.draws, generator=generator)
        return torch.nn.functional.cross_entropy(model(x), y)


def test_every_method_sees_the_same_batches_for_a_seed(moons):
    """The data order (and augmentation) stream does not depend on the method's mixing draws."""
    seen = []
    for draws in (0, 1, 7):
        rec = _Recorder(draws)
        _fit(moons, rec, epochs=3)
        seen.append(rec.batches)
    assert len(seen[0]) == 3 * 4
    for other in seen[1:]:
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(seen[0], other))
    rec = _Recorder(0)
    _fit(moons, rec, seed=1, epochs=1)
    assert not torch.equal(rec.batches[0][1], seen[0][0][1])  # another seed, another order


def test_generators_are_independent_and_validated():
    d1, m1 = train.generators(5)
    d2, m2 = train.generators(5)
    assert torch.equal(torch.rand(8, generator=d1), torch.rand(8, generator=d2))
    assert torch.equal(torch.rand(8, generator=m1), torch.rand(8, generator=m2))
    d, m = train.generators(5)
    assert not torch.equal(torch.rand(8, generator=d), torch.rand(8, generator=m))
    assert not torch.equal(torch.rand(8, generator=train.generators(6)[0]), torch.rand(8, generator=train.generators(5)[0]))
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        train.generators(-1)
    for bad in (1.5, True, "3"):
        with pytest.raises(TypeError, match="seed must be an integer >= 0"):
            train.generators(bad)


def test_fit_history_and_learning(moons):
    _, hist = _fit(moons, "erm", epochs=30)
    assert [e["epoch"] for e in hist.epochs] == list(range(1, 31))
    assert {"train_loss", "seconds", "accuracy", "nll", "ece"} <= hist.final.keys()
    assert hist.epochs[-1]["train_loss"] < hist.epochs[0]["train_loss"]
    assert hist.final["accuracy"] > 0.8
    frame = hist.frame()
    assert len(frame) == 30 and set(frame.method) == {"erm()"}


def test_mixup_losses_soft_and_mixed_agree(moons):
    """The two loss forms of the mixup method give the same training run."""
    _, soft = _fit(moons, train.make_method("mixup", alpha=0.5, loss="soft"))
    _, mixed = _fit(moons, train.make_method("mixup", alpha=0.5, loss="mixed"))
    assert soft.final["train_loss"] == pytest.approx(mixed.final["train_loss"], rel=1e-4)


def test_repeat_and_summarize(moons):
    frame, trained = train.repeat(lambda: models.MLP(2, 2, (8,)), moons, {"ERM": "erm", "mix": "mixup"},
                                  seeds=[0, 1], return_models=True, epochs=2, batch_size=64,
                                  device="cpu", progress=False)
    assert list(frame.method) == ["ERM", "mix", "ERM", "mix"]
    assert set(trained) == {("ERM", 0), ("mix", 0), ("ERM", 1), ("mix", 1)}
    text = train.summarize(frame, ["accuracy", "ece"], as_text=True)
    assert list(text.index) == ["ERM", "mix"] and "±" in text.loc["ERM", "accuracy"]
    num = train.summarize(frame)
    assert num.loc["ERM", ("accuracy", "mean")] == pytest.approx(frame.query("method == 'ERM'").accuracy.mean())


def test_registry_and_bad_arguments(moons):
    with pytest.raises(ValueError, match="method"):
        train.make_method("no-such-method")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("erm")(erm.ERM)
    with pytest.raises(TypeError, match="data"):
        train.fit(models.MLP(2, 2), (moons.x_train, moons.y_train))
    with pytest.raises(ValueError, match="epochs"):
        train.fit(models.MLP(2, 2), moons, epochs=0, progress=False)
    with pytest.raises(ValueError, match="alpha"):
        train.make_method("mixup", alpha=0)


def test_models_shapes():
    assert models.MLP(64, 10)(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    cnn = models.SmallCNN(1, 10, 8)
    assert cnn(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    assert cnn.features(torch.randn(5, 1, 8, 8)).shape == (5, 16)
    assert models.SmallCNN(3, 100, 8)(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(ValueError, match="num_classes"):
        models.MLP(2, 0)


def test_plotting_draws(moons):
    import matplotlib.pyplot as plt

    model, _ = _fit(moons, "erm", epochs=1)
    ax = plotting.decision_boundary(model, moons.x_train, moons.y_train, resolution=20)
    assert ax.get_xlabel() and ax.get_ylabel()
    ax = plotting.beta_densities([0.5, 1.0])
    assert len(ax.get_lines()) == 2
    logits = train.predict(model, moons.x_test)
    ax = plotting.reliability_diagram(mixbook.training.metrics.reliability_bins(logits, moons.y_test), label="m")
    assert ax.get_xlabel() == "confidence"
    plt.close("all")
    grid = plotting.plane_grid(moons.x_train, resolution=7)
    assert grid.shape == (49, 2)
    assert torch.allclose(grid.min(0).values, moons.x_train.min(0).values - 0.5)
    assert torch.allclose(grid.max(0).values, moons.x_train.max(0).values + 0.5)
    assert grid[0, 1] == grid[6, 1] and grid[0, 0] == grid[7, 0]  # row-major: first coordinate varies fastest


def test_setup_and_devices():
    assert setup(3, "cpu", plots=False) == torch.device("cpu")
    a = torch.rand(3)
    setup(3, "cpu", plots=False)
    assert torch.equal(a, torch.rand(3))
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("not-a-device")
    with pytest.raises(TypeError, match="seed"):
        setup(1.5)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")


def test_check_parameters():
    ns = {"seed": 1, "alphas": [0.1, 1], "device": "cpu", "mixbook": mixbook, "_private": 3, "In": []}
    assert notebook.check_parameters(ns, seed=int, alphas=list[float], device=str) == \
        {"seed": 1, "alphas": [0.1, 1], "device": "cpu"}
    with pytest.raises(ValueError, match="epochz"):
        notebook.check_parameters({**ns, "epochz": 3}, seed=int, alphas=list[float], device=str)
    with pytest.raises(TypeError, match="'seed'"):
        notebook.check_parameters({**ns, "seed": True}, seed=int, alphas=list[float], device=str)
    with pytest.raises(TypeError, match="'alphas'"):
        notebook.check_parameters({**ns, "alphas": [0.1, "x"]}, seed=int, alphas=list[float], device=str)
    with pytest.raises(ValueError, match="lr"):
        notebook.check_parameters(ns, seed=int, alphas=list[float], device=str, lr=float)


@pytest.mark.parametrize("name,options", [("zeta", {"gamma": 2.8}), ("reformulation", {"alpha": 0.5})])
def test_other_registered_methods_train(moons, name, options):
    _, h1 = _fit(moons, train.make_method(name, **options), epochs=2)
    _, h2 = _fit(moons, train.make_method(name, **options), epochs=2)
    assert h1.final["train_loss"] == h2.final["train_loss"]
    assert torch.isfinite(torch.tensor(h1.final["train_loss"]))
    with pytest.raises(ValueError, match="gamma" if name == "zeta" else "alpha"):
        train.make_method(name, **{k: -1.0 for k in options})


def test_reformulated_pool_follows_dtype():
    method = train.make_method("reformulation", alpha=1.0, unlabelled=torch.randn(7, 2))
    model = torch.nn.Linear(2, 2).double()
    x, y = torch.randn(4, 2, dtype=torch.float64), torch.tensor([0, 1, 0, 1])
    loss = method.loss(model, x, y, 2, torch.Generator().manual_seed(0))
    assert loss.dtype == torch.float64


def test_multimix_method_trains(moons):
    _, h1 = _fit(moons, train.make_method("multimix", alpha=1.0, n=48), epochs=2)
    _, h2 = _fit(moons, train.make_method("multimix", alpha=1.0, n=48), epochs=2)
    assert h1.final["train_loss"] == h2.final["train_loss"]
    with pytest.raises(ValueError, match="n"):
        train.make_method("multimix", n=0)
