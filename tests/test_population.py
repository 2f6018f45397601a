"""Tests of mixbook.training.population: a vectorised population trains every member as its separate run would."""

from __future__ import annotations

import functools

import pytest
import torch

from mixbook.training import data, models, population, train
from mixbook.chapters import gan

MLP_LAYERS = ["input", "features.2", "features.4"]


def _split():
    return data.validation_split(data.with_label_noise(data.digits(), 0.2, seed=0), 0.2, seed=0)


def _methods(pool=None):
    m = {
        "ERM": "erm",
        "mixup": train.make_method("mixup", alpha=0.4),
        "mixup per sample, soft": train.make_method("mixup", alpha=1.0, per_sample=True, loss="soft"),
        "reformulation": train.make_method("reformulation", alpha=1.0),
        "zeta": train.make_method("zeta", gamma=2.8),
        "multimix": train.make_method("multimix", alpha=1.0, n=96),
        "multimix at the input, no clean": train.make_method("multimix", alpha=0.5, n=80, layer="input", clean=False),
        "manifold": train.make_method("manifold_mixup", layers=MLP_LAYERS, alpha=2.0),
        "cutmix": train.make_method("cutmix", alpha=1.0),
    }
    if pool is not None:
        m["semi-supervised"] = train.make_method("reformulation", alpha=0.5, unlabelled=pool)
    return m


def _compare(a, b, cols, atol):
    assert list(a.method) == list(b.method) and list(a.seed) == list(b.seed)
    for c in cols:
        diff = (a[c] - b[c]).abs().max()
        assert diff <= atol, f"{c}: population and separate runs differ by {diff}"


def test_population_equals_separate_runs_for_every_prepared_method():
    split = _split()
    _, pool = data.labelled_subset(split, 0.5, seed=0)
    methods = _methods(pool[:50])
    model_fn = functools.partial(models.MLP, 64, 10, (32, 32))
    kw = dict(epochs=2, batch_size=64, lr=3e-3, device="cpu", progress=False)
    pop, hist = population.repeat(model_fn, split, methods, [0, 3], histories=True, **kw)
    sep = train.repeat(model_fn, split, methods, [0, 3], eval_every=2, **kw)
    # the same draws and the same arithmetic up to the order of summation in batched matmuls
    _compare(pop, sep, ["train_loss", "nll", "val_nll"], atol=1e-4)
    _compare(pop, sep, ["accuracy", "val_accuracy", "noisy_fitted", "noisy_clean"], atol=2.5e-3)
    assert set(hist) == {(m, s) for m in methods for s in (0, 3)}
    assert all(len(h.epochs) == 2 for h in hist.values())


def test_population_trains_the_members_models_and_keeps_their_initialisation_paired():
    split = _split()
    built = []

    def model_fn():
        m = models.MLP(64, 10, (16,))
        built.append(torch.nn.utils.parameters_to_vector(m.parameters()).detach().clone())
        return m

    population.repeat(model_fn, split, {"ERM": "erm", "mixup": "mixup"}, [5, 6], epochs=1, device="cpu",
                      progress=False)
    assert torch.equal(built[0], built[1]) and torch.equal(built[2], built[3])
    assert not torch.equal(built[0], built[2])


def test_learning_curves_are_recorded_at_every_evaluation():
    split = _split()
    _, hist = population.repeat(functools.partial(models.MLP, 64, 10, (16,)), split, {"ERM": "erm"}, [0],
                                epochs=4, eval_every=2, device="cpu", progress=False, histories=True)
    epochs = hist["ERM", 0].epochs
    assert [("nll" in e) for e in epochs] == [False, True, False, True]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]


def test_methods_without_prepare_and_models_with_buffers_train_one_by_one():
    split = data.digits()
    cnn = functools.partial(models.SmallCNN, 1, 10, 4)
    dense = train.make_method("dense_multimix", layer="features.6", n=32)
    assert not population.supports(dense, cnn())
    bn = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.BatchNorm1d(16),  # noqa: E731
                                     torch.nn.ReLU(), torch.nn.Linear(16, 10))
    assert not population.supports(train.make_method("mixup"), bn())
    kw = dict(epochs=1, batch_size=128, lr=3e-3, device="cpu", progress=False)
    pop = population.repeat(cnn, split, {"dense": dense, "ERM": "erm"}, [0], **kw)
    sep = train.repeat(cnn, split, {"dense": dense, "ERM": "erm"}, [0], eval_every=1, **kw)
    _compare(pop, sep, ["train_loss", "accuracy"], atol=1e-4)
    pop = population.repeat(bn, split, {"mixup": "mixup"}, [0, 1], **kw)
    sep = train.repeat(bn, split, {"mixup": "mixup"}, [0, 1], eval_every=1, **kw)
    _compare(pop, sep, ["train_loss", "accuracy"], atol=0)


def test_bad_arguments():
    split = _split()
    mlp = functools.partial(models.MLP, 64, 10, (8,))
    with pytest.raises(TypeError, match="data"):
        population.repeat(mlp, "digits", {"ERM": "erm"}, [0])
    with pytest.raises(TypeError, match="methods"):
        population.repeat(mlp, split, {}, [0])
    with pytest.raises(ValueError, match="seeds"):
        population.repeat(mlp, split, {"ERM": "erm"}, [])
    with pytest.raises(ValueError, match="seed"):
        population.repeat(mlp, split, {"ERM": "erm"}, [-1])
    with pytest.raises(ValueError, match="method must be one of"):
        population.repeat(mlp, split, {"x": "nope"}, [0])
    with pytest.raises(ValueError, match="epochs"):
        population.repeat(mlp, split, {"ERM": "erm"}, [0], epochs=0)
    with pytest.raises(ValueError, match="workers"):
        population.run_all({}, workers=0)
    with pytest.raises(TypeError, match="zero-argument callable"):
        population.run_all({"a": 3})
    with pytest.raises(TypeError, match="cannot be sent to a worker"):
        population.run_all({"a": dict(model_fn=lambda: mlp(), data=split, methods={"ERM": "erm"}, seeds=[0]),
                            "b": dict(model_fn=mlp, data=split, methods={"ERM": "erm"}, seeds=[0])}, workers=2)


def test_run_all_in_two_processes_equals_one():
    split = _split()
    mlp = functools.partial(models.MLP, 64, 10, (16,))
    jobs = {name: dict(model_fn=mlp, data=sub, methods={"ERM": "erm", "mixup": train.make_method("mixup", alpha=0.2)},
                       seeds=[0, 1], epochs=2, device="cpu", progress=False)
            for name, sub in (("all", split), ("small", data.training_subset(split, 0.3)))}
    jobs["gan"] = functools.partial(gan.train, "mixup", seeds=[0], steps=5, n_samples=20)  # a callable job
    one = population.run_all(jobs, workers=1)
    two = population.run_all(jobs, workers=2)
    assert list(two) == ["all", "small", "gan"]
    for key in ("all", "small"):
        _compare(one[key], two[key], ["train_loss", "accuracy", "val_accuracy"], atol=1e-5)
    torch.testing.assert_close(one["gan"][0].samples, two["gan"][0].samples)


def test_return_models_gives_the_trained_networks():
    split = _split()
    mlp = functools.partial(models.MLP, 64, 10, (16,))
    frame, hist, nets = population.repeat(mlp, split, {"ERM": "erm", "mixup": "mixup"}, [0, 1], epochs=2,
                                          device="cpu", progress=False, histories=True, return_models=True)
    assert set(nets) == set(hist) == {("ERM", 0), ("mixup", 0), ("ERM", 1), ("mixup", 1)}
    for (label, s), net in nets.items():
        acc = frame[(frame.method == label) & (frame.seed == s)].accuracy.item()
        pred = train.predict(net, split.x_test).argmax(1)
        assert (pred == split.y_test).double().mean().item() == pytest.approx(acc, abs=1e-6)
