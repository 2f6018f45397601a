"""Tests of mixbook.training.data: two moons, digits, and the CIFAR reader on tiny hand-written files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _cifar import _dump, _write_cifar10, _write_cifar100

from mixbook.training.data import Split, cifar, cifar_raw, digits, two_moons


# ---------------------------------------------------------------------- two moons
def test_moons_shapes_and_dtypes():
    s = two_moons(n_train=101, n_test=37, seed=3)
    assert isinstance(s, Split) and s.name == "two_moons" and s.num_classes == 2
    assert s.x_train.shape == (101, 2) and s.x_test.shape == (37, 2)
    assert s.y_train.shape == (101,) and s.y_test.shape == (37,)
    assert s.x_train.dtype == s.x_test.dtype == torch.float32
    assert s.y_train.dtype == s.y_test.dtype == torch.int64
    assert set(s.y_train.tolist()) == {0, 1} and set(s.y_test.tolist()) <= {0, 1}
    assert s.y_train.bincount().tolist() == [50, 51]  # make_moons splits evenly, odd one inner
    assert s.input_shape == (2,)


def test_moons_standardised_with_train_statistics():
    s = two_moons(n_train=500, n_test=500, noise=0.1, seed=1)
    assert torch.allclose(s.x_train.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(s.x_train.std(0, correction=0), torch.ones(2), atol=1e-5)
    # the test set uses the train statistics, so it is only approximately standardised
    assert torch.allclose(s.x_test.mean(0), torch.zeros(2), atol=0.15)
    assert not torch.allclose(s.x_test.mean(0), torch.zeros(2), atol=1e-5)


def test_moons_deterministic_and_seeded():
    a, b, c = two_moons(seed=7), two_moons(seed=7), two_moons(seed=8)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert not torch.allclose(a.x_train, a.x_test[: len(a.x_train)])  # train and test differ


def test_moons_noise_zero_lies_on_the_moons():
    s = two_moons(n_train=40, n_test=10, noise=0.0)
    assert torch.isfinite(s.x_train).all()


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        ({"n_train": 0}, ValueError, "n_train"),
        ({"n_train": 1}, ValueError, "n_train"),
        ({"n_train": 10.0}, TypeError, "n_train"),
        ({"n_test": 0}, ValueError, "n_test"),
        ({"noise": -0.1}, ValueError, "noise"),
        ({"noise": float("nan")}, ValueError, "noise"),
        ({"noise": "0.1"}, TypeError, "noise"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_moons_bad_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=f"^{name} "):
        two_moons(**kwargs)


# ---------------------------------------------------------------------- Split
def test_split_to_and_repr():
    s = two_moons(n_train=20, n_test=10)
    t = s.to("cpu")
    assert isinstance(t, Split) and t is not s and t.name == s.name and t.num_classes == 2
    assert torch.equal(t.x_train, s.x_train)
    assert "two_moons" in repr(s) and "(20, 2)" in repr(s)
    with pytest.raises(AttributeError):
        s.num_classes = 3  # frozen


def test_split_checks_shapes_and_dtypes():
    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64)
    Split(x, y, x, y, num_classes=2)  # name defaults to "custom"
    with pytest.raises(ValueError, match="y_train"):
        Split(x, y[:3], x, y, num_classes=2)
    with pytest.raises(TypeError, match="y_test"):
        Split(x, y, x, y.int(), num_classes=2)
    with pytest.raises(TypeError, match="x_train"):
        Split(x.long(), y, x, y, num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        Split(x, y, x, y, num_classes=0)
    with pytest.raises(ValueError, match="input shape"):
        Split(x, y, torch.zeros(4, 3), y, num_classes=2)


# ---------------------------------------------------------------------- digits
@pytest.fixture(scope="module")
def digit_split() -> Split:
    return digits()


def test_digits_shapes(digit_split):
    s = digit_split
    assert s.name == "digits" and s.num_classes == 10
    assert len(s.x_train) + len(s.x_test) == 1797
    assert len(s.x_test) == 450  # ceil(0.25 * 1797)
    assert s.x_train.shape[1:] == s.x_test.shape[1:] == (1, 8, 8)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    for y in (s.y_train, s.y_test):
        assert y.min() >= 0 and y.max() < 10


def test_digits_split_fixed_and_stratified(digit_split):
    again = digits()
    assert torch.equal(digit_split.x_train, again.x_train) and torch.equal(digit_split.y_test, again.y_test)
    other = digits(split_seed=1)
    assert not torch.equal(digit_split.y_test, other.y_test)
    counts = digit_split.y_test.bincount(minlength=10)
    assert (counts > 0).all()
    total = counts + digit_split.y_train.bincount(minlength=10)
    # stratified: each class's share of the test set matches its share overall (±1 image)
    assert ((counts.double() - 0.25 * total.double()).abs() <= 1).all()


def test_digits_standardised(digit_split):
    x = digit_split.x_train
    assert abs(x.mean().item()) < 1e-5 and abs(x.std(correction=0).item() - 1) < 1e-5
    # a scalar standardisation keeps blank pixels equal to one value (the corners)
    assert digit_split.x_train[:, 0, 0, 0].unique().numel() <= 2


def test_digits_test_size():
    s = digits(test_size=0.5)
    assert len(s.x_test) == 899


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        ({"test_size": 0}, ValueError, "test_size"),
        ({"test_size": 1}, ValueError, "test_size"),
        ({"test_size": 1.5}, ValueError, "test_size"),
        ({"test_size": 0.001}, ValueError, "test_size"),
        ({"test_size": "a"}, TypeError, "test_size"),
        ({"split_seed": -3}, ValueError, "split_seed"),
    ],
)
def test_digits_bad_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        digits(**kwargs)


# ---------------------------------------------------------------------- CIFAR (tiny files)
def test_cifar_raw_reads_chw_exactly(tmp_path):
    ref = _write_cifar10(tmp_path)
    x, y = cifar_raw(tmp_path, "cifar10", train=True)
    assert x.dtype == torch.uint8 and x.shape == (30, 3, 32, 32)
    assert y.dtype == torch.int64 and y.tolist() == ref["y_train"].tolist()
    rows = ref["x_train"]
    # row layout: 1024 red, 1024 green, 1024 blue values, each plane row-major 32x32
    for i, c, h, w in [(0, 0, 0, 0), (5, 1, 1, 2), (29, 2, 31, 31), (13, 0, 7, 30), (6, 2, 0, 31)]:
        assert x[i, c, h, w].item() == rows[i, c * 1024 + h * 32 + w]
    assert np.array_equal(x.numpy(), rows.reshape(30, 3, 32, 32))
    # the red plane of image 0 is the first 1024 values
    assert np.array_equal(x[0, 0].flatten().numpy(), rows[0, :1024])
    xt, yt = cifar_raw(tmp_path, "cifar10", train=False)
    assert np.array_equal(xt.numpy(), ref["x_test"].reshape(4, 3, 32, 32))
    assert yt.tolist() == [3, 1, 4, 1]


def test_cifar10_normalised(tmp_path):
    ref = _write_cifar10(tmp_path)
    s = cifar(tmp_path)
    assert s.name == "cifar10" and s.num_classes == 10
    assert s.class_names[0] == "airplane" and len(s.class_names) == 10
    assert s.x_train.shape == (30, 3, 32, 32) and s.x_test.shape == (4, 3, 32, 32)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    assert torch.allclose(s.x_train.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(s.x_train.std((0, 2, 3), correction=0), torch.ones(3), atol=1e-5)
    # per-channel statistics of the training pixels, applied to the test pixels
    raw = ref["x_train"].reshape(30, 3, 32, 32) / 255.0
    mean = raw.mean(axis=(0, 2, 3), keepdims=True)
    std = raw.std(axis=(0, 2, 3), keepdims=True)
    expected = (ref["x_test"].reshape(4, 3, 32, 32) / 255.0 - mean) / std
    assert np.allclose(s.x_test.numpy(), expected, atol=1e-5)
    assert s.y_test.tolist() == [3, 1, 4, 1]


def test_cifar_root_forms(tmp_path):
    _write_cifar10(tmp_path)
    a = cifar(tmp_path)
    b = cifar(str(tmp_path / "cifar-10-batches-py"))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    xr, _ = cifar_raw(str(tmp_path), train=False)
    assert xr.shape == (4, 3, 32, 32)


def test_cifar100(tmp_path):
    ref = _write_cifar100(tmp_path)
    s = cifar(tmp_path, name="cifar100")
    assert s.name == "cifar100" and s.num_classes == 100 and s.class_names[99] == "fine99"
    assert s.y_train.tolist() == ref["y_train"].tolist() and s.y_test.tolist() == [7, 99, 0]
    x, _ = cifar_raw(tmp_path / "cifar-100-python", "cifar100", train=False)
    assert np.array_equal(x.numpy(), ref["x_test"].reshape(3, 3, 32, 32))
    assert torch.allclose(s.x_train.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)


def test_cifar_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        cifar(tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg
    assert "data_batch_1" in msg and "test_batch" in msg and "batches.meta" in msg
    assert "never downloads" in msg and "cifar.html" in msg
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        cifar_raw(tmp_path, "cifar100", train=True)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        cifar(tmp_path / "does-not-exist")


def test_cifar_missing_file(tmp_path):
    _write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        with pytest.raises(FileNotFoundError, match="lacks data_batch_4") as info:
            cifar(root)
        assert str(tmp_path / "cifar-10-batches-py") in str(info.value)


def test_cifar_bad_arguments(tmp_path):
    _write_cifar10(tmp_path)
    with pytest.raises(ValueError, match="name must be one of .*cifar10.*cifar100"):
        cifar(tmp_path, name="cifar11")
    with pytest.raises(ValueError, match="^name "):
        cifar_raw(tmp_path, name="CIFAR10")
    with pytest.raises(TypeError, match="^train "):
        cifar_raw(tmp_path, train=1)
    with pytest.raises(TypeError, match="^root "):
        cifar(None)


def test_cifar_corrupt_batch(tmp_path):
    _write_cifar10(tmp_path)
    _dump(tmp_path / "cifar-10-batches-py" / "test_batch", {b"labels": [0], b"data": np.zeros((1, 10), np.uint8)})
    with pytest.raises(ValueError, match="test_batch"):
        cifar_raw(tmp_path, train=False)
