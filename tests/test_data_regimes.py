"""Tests of the seeded regimes of mixbook.training.data: training subsets, label noise, validation splits."""

from __future__ import annotations

import pytest
import torch

from mixbook.training import data, train
from mixbook.training.data import Split


def _toy(n: int = 200, c: int = 4, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    return Split(torch.randn(n, 3, generator=g), y, torch.randn(40, 3, generator=g), torch.arange(40) % c,
                 num_classes=c, name="toy")


# ---------------------------------------------------------------------- training_subset
@pytest.mark.parametrize("fraction", [0.05, 0.15, 0.5, 0.9])
def test_training_subset_is_stratified_and_of_the_asked_size(fraction):
    split = data.digits()
    sub = data.training_subset(split, fraction, seed=3)
    n = split.y_train.shape[0]
    assert abs(sub.y_train.shape[0] - round(fraction * n)) <= split.num_classes
    # every class in proportion (within one example of the stratified share)
    full, part = split.y_train.bincount(), sub.y_train.bincount(minlength=10)
    assert (part - fraction * full).abs().max() <= 1.0 + 1e-9
    # the rows are rows of the training set, with their own labels, none twice
    rows = {tuple(r.tolist()): int(l) for r, l in zip(split.x_train.flatten(1), split.y_train)}
    seen = [tuple(r.tolist()) for r in sub.x_train.flatten(1)]
    assert len(set(seen)) == len(seen)
    assert all(rows[r] == int(l) for r, l in zip(seen, sub.y_train))
    assert torch.equal(sub.x_test, split.x_test) and torch.equal(sub.y_test, split.y_test)
    assert "of train" in sub.name


def test_training_subset_is_seeded():
    split = data.digits()
    a, b, c = (data.training_subset(split, 0.2, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)


def test_training_subset_keeps_every_class_of_an_imbalanced_set():
    y = torch.cat([torch.zeros(97, dtype=torch.int64), torch.ones(3, dtype=torch.int64)])
    split = Split(torch.randn(100, 2), y, torch.randn(5, 2), torch.zeros(5, dtype=torch.int64), num_classes=2)
    for seed in range(10):
        assert set(data.training_subset(split, 0.05, seed=seed).y_train.tolist()) == {0, 1}


def test_training_subset_does_not_modify_its_input():
    split = _toy()
    before = split.x_train.clone(), split.y_train.clone()
    data.training_subset(split, 0.3)
    assert torch.equal(split.x_train, before[0]) and torch.equal(split.y_train, before[1])


# ---------------------------------------------------------------------- with_label_noise
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.8])
def test_label_noise_changes_exactly_the_rate_and_records_which(rate):
    split = data.digits()
    noisy = data.with_label_noise(split, rate, seed=5)
    n = split.y_train.shape[0]
    assert noisy.noisy.dtype == torch.bool and int(noisy.noisy.sum()) == round(rate * n)
    assert torch.equal(noisy.y_train_clean, split.y_train)
    assert torch.equal(noisy.y_train != split.y_train, noisy.noisy)      # changed means different
    assert torch.equal(noisy.y_train[~noisy.noisy], split.y_train[~noisy.noisy])
    assert torch.equal(noisy.x_train, split.x_train) and torch.equal(noisy.y_test, split.y_test)
    assert split.y_train_clean is None and split.noisy is None               # the input is untouched


def test_label_noise_is_uniform_over_the_other_classes():
    # 40 000 labels of class 0 in 5 classes, all changed: each other class gets a quarter
    n = 40_000
    split = Split(torch.zeros(n, 1), torch.zeros(n, dtype=torch.int64), torch.zeros(1, 1),
                  torch.zeros(1, dtype=torch.int64), num_classes=5)
    noisy = data.with_label_noise(split, 0.999, seed=0)
    counts = noisy.y_train[noisy.noisy].bincount(minlength=5).double()
    assert counts[0] == 0
    share = counts[1:] / counts.sum()
    se = (0.25 * 0.75 / counts.sum()).sqrt()
    assert ((share - 0.25).abs() < 4 * se).all()


def test_label_noise_picks_the_changed_examples_uniformly():
    split = _toy(n=400, c=4)
    hits = torch.zeros(400)
    for seed in range(200):
        hits += data.with_label_noise(split, 0.25, seed=seed).noisy.double()
    # every example is changed with probability 0.25: 50 of 200 on average, sd about 6.1
    assert abs(hits.mean() - 50) < 1e-9 and hits.min() > 20 and hits.max() < 80


def test_label_noise_is_seeded_and_refuses_to_stack():
    split = _toy()
    a, b, c = (data.with_label_noise(split, 0.3, seed=s) for s in (7, 7, 8))
    assert torch.equal(a.y_train, b.y_train) and not torch.equal(a.y_train, c.y_train)
    with pytest.raises(ValueError, match="already has label noise"):
        data.with_label_noise(a, 0.1)


@pytest.mark.parametrize("rate,exc", [(1.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
                                      ("0.2", TypeError), (True, TypeError)])
def test_label_noise_bad_rate(rate, exc):
    with pytest.raises(exc, match="rate"):
        data.with_label_noise(_toy(), rate)


# ---------------------------------------------------------------------- validation_split
def test_validation_split_is_a_stratified_partition_of_train():
    split = data.digits()
    s = data.validation_split(split, 0.2, seed=1)
    n = split.y_train.shape[0]
    assert s.x_val.shape[0] + s.x_train.shape[0] == n
    assert abs(s.x_val.shape[0] - round(0.2 * n)) <= split.num_classes
    assert (s.y_val.bincount(minlength=10) - 0.2 * split.y_train.bincount()).abs().max() <= 1.0 + 1e-9
    all_rows = torch.cat([s.x_train, s.x_val]).flatten(1)
    assert torch.unique(all_rows, dim=0).shape[0] == torch.unique(split.x_train.flatten(1), dim=0).shape[0]
    assert torch.equal(torch.cat([s.y_train, s.y_val]).sort().values, split.y_train.sort().values)
    assert torch.equal(s.x_test, split.x_test)
    with pytest.raises(ValueError, match="already has a validation part"):
        data.validation_split(s, 0.2)


def test_noise_then_validation_keeps_the_record_aligned():
    noisy = data.with_label_noise(data.digits(), 0.4, seed=0)
    s = data.validation_split(noisy, 0.25, seed=2)
    assert s.y_train_clean.shape == s.y_train.shape
    # the kept examples' clean labels are their original labels: recover them by row
    orig = {tuple(r.tolist()): int(l) for r, l in zip(noisy.x_train.flatten(1), noisy.y_train_clean)}
    assert all(orig[tuple(r.tolist())] == int(l) for r, l in zip(s.x_train.flatten(1), s.y_train_clean))
    assert abs(s.noisy.double().mean() - 0.4) < 0.05
    # the validation labels are as noisy as the training ones
    clean_val = torch.tensor([orig[tuple(r.tolist())] for r in s.x_val.flatten(1)])
    assert abs((clean_val != s.y_val).double().mean() - 0.4) < 0.08


def test_regimes_compose_and_move_devices():
    s = data.training_subset(data.validation_split(data.with_label_noise(_toy(), 0.2), 0.2), 0.5)
    assert s.x_val is not None and s.y_train_clean is not None
    t = s.to("cpu")
    assert t.x_val is not s.x_val or t.x_val.device.type == "cpu"
    assert "noisy_labels" in repr(s) and "val=" in repr(s)


@pytest.mark.parametrize("fn", [data.training_subset, data.validation_split])
@pytest.mark.parametrize("fraction,exc", [(0.0, ValueError), (1.0, ValueError), (0.999, ValueError),
                                          ("0.5", TypeError)])
def test_fractions_are_checked(fn, fraction, exc):
    with pytest.raises(exc, match="fraction"):
        fn(_toy(), fraction)


@pytest.mark.parametrize("fn", [data.training_subset, data.with_label_noise, data.validation_split])
def test_regimes_refuse_a_non_split(fn):
    with pytest.raises(TypeError, match="split"):
        fn("digits", 0.2)


def test_split_checks_the_new_fields():
    s = _toy()
    with pytest.raises(ValueError, match="x_val and y_val"):
        Split(s.x_train, s.y_train, s.x_test, s.y_test, 4, x_val=s.x_test)
    with pytest.raises(ValueError, match="x_train and x_val"):
        Split(s.x_train, s.y_train, s.x_test, s.y_test, 4, x_val=torch.zeros(3, 5), y_val=torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="y_train_clean"):
        Split(s.x_train, s.y_train, s.x_test, s.y_test, 4, y_train_clean=s.y_train[:3])


# ---------------------------------------------------------------------- fit reads the regimes
def test_fit_reports_validation_and_memorisation_metrics():
    split = data.validation_split(data.with_label_noise(_toy(n=240), 0.5, seed=1), 0.25)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
    hist = train.fit(model, split, "erm", epochs=150, batch_size=32, lr=1e-2, progress=False, eval_every=50)
    final = hist.final
    for key in ("val_accuracy", "val_nll", "val_ece", "noisy_fitted", "noisy_clean"):
        assert key in final and 0 <= final[key] <= (1 if key != "val_nll" else float("inf"))
    # random inputs and labels: ERM memorises, so it fits most corrupted labels by the end
    assert final["noisy_fitted"] > 0.5 and hist.epochs[49]["noisy_fitted"] < final["noisy_fitted"]
    # recomputed from the model
    with torch.no_grad():
        pred = model(split.x_train).argmax(1)
    noisy = split.noisy
    assert final["noisy_fitted"] == pytest.approx(float((pred[noisy] == split.y_train[noisy]).double().mean()))
    assert final["noisy_clean"] == pytest.approx(float((pred[noisy] == split.y_train_clean[noisy]).double().mean()))


def test_fit_without_regimes_reports_neither():
    split = _toy()
    torch.manual_seed(0)
    hist = train.fit(torch.nn.Linear(3, 4), split, "erm", epochs=2, progress=False)
    assert not any(k.startswith(("val_", "noisy_")) for k in hist.final)
