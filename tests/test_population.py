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


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_a_weight_decay_per_method_equals_separate_runs_at_that_decay(optimizer):
    split = _split()
    methods = {"ERM": "erm", "ERM decayed": "erm", "mixup decayed": train.make_method("mixup", alpha=0.4)}
    decays = {"ERM decayed": 0.5, "mixup decayed": 0.05}
    model_fn = functools.partial(models.MLP, 64, 10, (32,))
    lr = 3e-3 if optimizer == "adamw" else 0.05
    kw = dict(epochs=3, batch_size=64, lr=lr, device="cpu", progress=False, optimizer=optimizer)
    pop = population.repeat(model_fn, split, methods, [0, 1], weight_decay=decays, **kw)
    for (label, method), wd in zip(methods.items(), (0.0, 0.5, 0.05)):
        sep = train.repeat(model_fn, split, {label: method}, [0, 1], weight_decay=wd, **kw)
        mine = pop[pop.method == label].reset_index(drop=True)
        assert (mine.train_loss - sep.train_loss).abs().max() < 1e-4
        assert (mine.val_nll - sep.val_nll).abs().max() < 1e-4
    # the decay did something: the decayed ERM differs from the plain one on the same seeds
    erm, dec = pop[pop.method == "ERM"].val_nll.to_numpy(), pop[pop.method == "ERM decayed"].val_nll.to_numpy()
    assert abs(erm - dec).max() > 1e-3


def test_bad_weight_decays_are_refused():
    split = _split()
    model_fn = functools.partial(models.MLP, 64, 10, (8,))
    for wd, word in [({"nope": 0.1}, "not in methods"), ({"ERM": -1.0}, "weight_decay\\['ERM'\\]"),
                     (float("inf"), "finite"), (float("nan"), "finite"), (True, "finite")]:
        with pytest.raises(ValueError, match=word):
            population.repeat(model_fn, split, {"ERM": "erm"}, [0], weight_decay=wd, epochs=1, device="cpu",
                              progress=False)
    with pytest.raises(ValueError, match="finite"):
        train.fit(model_fn(), split, "erm", weight_decay=float("inf"), epochs=1, device="cpu", progress=False)


def test_dropout_members_train_in_the_population_with_their_own_masks():
    split = _split()
    model_fn = functools.partial(models.MLP, 64, 10, (32, 32), dropout=0.5)
    kw = dict(epochs=2, batch_size=64, lr=3e-3, device="cpu", progress=False)
    torch.manual_seed(0)
    methods = {"ERM a": "erm", "ERM b": "erm", "mixup": train.make_method("mixup", alpha=0.4)}
    a = population.repeat(model_fn, split, methods, [0], **kw)
    # two members with the same seed, initialisation, batches and method differ only by their dropout masks
    erm = a.set_index("method").train_loss
    assert erm["ERM a"] != erm["ERM b"]
    assert a.accuracy.between(0, 1).all()
    # without dropout the same two members are the same run
    plain = population.repeat(functools.partial(models.MLP, 64, 10, (32, 32)), split, methods, [0], **kw)
    assert plain.set_index("method").train_loss["ERM a"] == plain.set_index("method").train_loss["ERM b"]


def test_keep_outputs_holds_the_best_validation_epoch_and_the_last():
    split = _split()
    model_fn = functools.partial(models.MLP, 64, 10, (32,))
    kw = dict(epochs=6, batch_size=64, lr=3e-3, device="cpu", progress=False, eval_every=2, keep_outputs=True)
    _, hist = population.repeat(model_fn, split, {"ERM": "erm"}, [0], histories=True, **kw)
    h = hist["ERM", 0]
    best = h.best()
    assert h.outputs["best"]["epoch"] == best["epoch"] and h.outputs["last"]["epoch"] == 6
    logits = torch.from_numpy(h.outputs["best"]["test_logits"])
    assert logits.shape == (split.x_test.shape[0], 10)
    acc = float((logits.argmax(1) == split.y_test).float().mean())
    assert acc == pytest.approx(best["accuracy"], abs=1e-6)
    val = torch.from_numpy(h.outputs["last"]["val_logits"])
    assert float((val.argmax(1) == split.y_val).float().mean()) == pytest.approx(h.final["val_accuracy"], abs=1e-6)
    # fit keeps the same outputs as its population member
    torch.manual_seed(0)
    hf = train.fit(model_fn(), split, "erm", seed=0, **{k: v for k, v in kw.items()})
    assert hf.outputs["best"]["epoch"] == best["epoch"]
    assert abs(hf.outputs["best"]["test_logits"] - h.outputs["best"]["test_logits"]).max() < 1e-3
    with pytest.raises(ValueError, match="validation"):
        population.repeat(model_fn, data.digits(), {"ERM": "erm"}, [0], **kw)


def test_history_best_picks_the_best_validation_epoch_with_ties_to_lower_nll_then_earlier():
    h = train.History("m", 0, [{"epoch": 1, "val_accuracy": 0.5, "val_nll": 1.0},
                               {"epoch": 2, "val_accuracy": 0.8, "val_nll": 0.9},
                               {"epoch": 3, "val_accuracy": 0.8, "val_nll": 0.7},
                               {"epoch": 4, "val_accuracy": 0.8, "val_nll": 0.7},
                               {"epoch": 5, "train_loss": 0.1}])
    assert h.best()["epoch"] == 3
    assert h.best("val_nll", higher_is_better=False)["epoch"] == 3
    assert h.best(tie_break=None)["epoch"] == 2
    with pytest.raises(ValueError, match="recorded"):
        h.best("nope")
