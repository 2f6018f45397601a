"""MNIST-1D: the offline loader (mixbook.training.data.mnist1d), the reference models
(models.MNIST1DConv, MLP's dropout) and chapter 6's baseline reproduction (mixbook.chapters.mnist1d)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import random
import socket
import sys
import warnings

import numpy as np
import pytest
import torch

from mixbook.training import data, models

mnist1d_pkg = pytest.importorskip("mnist1d.data", reason="mnist1d comes with the [chapters] extra")

SMALL = {"num_samples": 100}      # 10 a digit: generated in ~0.1 s


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These models are tiny: one intra-op thread is faster, and two contend on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mnist1d-cache")


@pytest.fixture(scope="module")
def standard(cache):
    return data.mnist1d(cache)


@pytest.fixture(scope="module")
def raw(cache, standard):
    return data.mnist1d(cache, standardise=False)          # a cache hit: same arrays, not standardised


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt fails the test: mnist1d's downloader, requests and raw sockets."""
    import requests

    def refuse(*args, **kwargs):
        raise AssertionError("MNIST-1D loading must not touch the network or mnist1d.data.get_dataset")

    monkeypatch.setattr(mnist1d_pkg, "get_dataset", refuse)
    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ---------------------------------------------------------------------- the loader
def test_standard_set_shapes_dtypes_classes(standard):
    s = standard
    assert s.name == "mnist1d" and s.num_classes == 10 and s.class_names == tuple("0123456789")
    assert s.x_train.shape == (4000, 40) and s.x_test.shape == (1000, 40)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64 and s.y_test.dtype == torch.int64
    assert torch.equal(torch.unique(s.y_train), torch.arange(10)) and torch.equal(torch.unique(s.y_test), torch.arange(10))
    assert torch.bincount(s.y_train).min() >= 350            # 500 a digit before the shuffle and split
    # standardised with the training statistics (scalar mean, population std), not the test set's
    assert abs(float(s.x_train.double().mean())) < 1e-6 and abs(float(s.x_train.double().std(unbiased=False)) - 1) < 1e-6
    assert abs(float(s.x_test.double().mean())) > 1e-4


def test_standard_set_is_the_published_one(raw):
    """Fingerprints of mnist1d_data.pkl (github.com/greydanus/mnist1d, the file get_dataset downloads):
    offline generation gives the same labels exactly and the same signals to float32 rounding."""
    y, y_test = raw.y_train.numpy(), raw.y_test.numpy()
    assert y[:20].tolist() == [2, 6, 4, 5, 6, 6, 6, 0, 3, 1, 6, 9, 4, 3, 4, 5, 1, 9, 0, 3]
    assert hashlib.sha256(y.astype("<i8").tobytes()).hexdigest().startswith("d97dc7aecec8ad6b")
    assert hashlib.sha256(y_test.astype("<i8").tobytes()).hexdigest().startswith("8de99be3ff9dab15")
    first = [-0.332006, -0.47191, -0.778697, -1.009741, -0.882353, 0.103935, 1.643284, 1.652507, 0.683078,
             -0.342638, -1.521431, -1.103984, -0.017094, 1.014668, 0.623586, -0.023914, 0.254108, 0.867393,
             0.93541, 1.035874, 1.593488, 1.236842, 0.410198, -0.219793, 0.098056, 0.530164, 0.520278, 0.189981,
             0.070437, 0.324331, 0.268608, -0.579077, -1.093486, -0.86458, -0.11353, 0.019501, -0.328214,
             -0.71673, -0.961958, -0.890166]
    np.testing.assert_allclose(raw.x_train[0].numpy(), first, atol=2e-6)
    np.testing.assert_allclose(raw.x_train.double().abs().sum().item(), 118338.29510719894, rtol=1e-6)
    np.testing.assert_allclose(raw.x_test.double().abs().sum().item(), 29977.877540866408, rtol=1e-6)


def test_standardised_is_an_affine_map_of_the_raw_arrays(standard, raw):
    x = raw.x_train.double()
    mean, std = x.mean(), x.std(unbiased=False)
    assert abs(float(mean)) < 1e-3 and abs(float(std) - 1) < 5e-3    # make_dataset scaled all 5000 already
    # (torch.testing.assert_close imports torch.distributed.tensor on first use: seconds; a plain bound here)
    assert float((standard.x_test.double() - (raw.x_test.double() - mean) / std).abs().max()) < 1e-5
    assert torch.equal(standard.y_train, raw.y_train) and torch.equal(standard.y_test, raw.y_test)


def test_cache_round_trip_reads_the_file_and_does_not_regenerate(cache, standard, monkeypatch):
    files = list(cache.glob("mnist1d-*.npz"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))       # atomic write: no temporary left
    with np.load(files[0]) as f:
        assert f["x"].shape == (4000, 40) and f["x"].dtype == np.float64
        assert str(f["mnist1d_version"]) == importlib.metadata.version("mnist1d")
    monkeypatch.setattr(mnist1d_pkg, "make_dataset", lambda *a, **k: pytest.fail("the cache was not used"))
    again = data.mnist1d(cache)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(again, name), getattr(standard, name))


def test_cache_key_follows_the_arguments(tmp_path):
    a = data.mnist1d(tmp_path, **SMALL)
    b = data.mnist1d(tmp_path, **SMALL, seed=1)
    c = data.mnist1d(tmp_path, **SMALL, shuffle_seq=True)
    assert len(list(tmp_path.glob("mnist1d-*.npz"))) == 3
    assert not torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert a.name == b.name == c.name == "mnist1d[custom]"


def test_default_cache_dir_respects_xdg_and_false_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data.mnist1d(False, **SMALL)
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()
    data.mnist1d(**SMALL)
    assert len(list((tmp_path / "xdg" / "mixbook" / "mnist1d").glob("mnist1d-*.npz"))) == 1
    monkeypatch.delenv("XDG_CACHE_HOME")
    data.mnist1d(None, **SMALL)
    assert len(list((tmp_path / "home" / ".cache" / "mixbook" / "mnist1d").glob("mnist1d-*.npz"))) == 1


def test_a_damaged_cache_file_is_regenerated_with_a_warning(tmp_path):
    first = data.mnist1d(tmp_path, **SMALL)
    (path,) = tmp_path.glob("mnist1d-*.npz")
    path.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable MNIST-1D cache"):
        again = data.mnist1d(tmp_path, **SMALL)
    assert torch.equal(again.x_train, first.x_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.mnist1d(tmp_path, **SMALL)                          # rewritten: read quietly


def test_a_cache_file_of_other_arguments_is_not_used(tmp_path):
    zero = data.mnist1d(tmp_path, **SMALL, seed=0)
    (first,) = tmp_path.glob("mnist1d-*.npz")
    one = data.mnist1d(tmp_path, **SMALL, seed=1)
    (second,) = set(tmp_path.glob("mnist1d-*.npz")) - {first}
    second.write_bytes(first.read_bytes())                      # seed 0's arrays under seed 1's name
    with pytest.warns(UserWarning, match="holds another set"):
        again = data.mnist1d(tmp_path, **SMALL, seed=1)
    assert torch.equal(again.x_train, one.x_train) and not torch.equal(again.x_train, zero.x_train)


def test_generation_is_deterministic_and_seeded(no_network):
    a, b = data.mnist1d(False, **SMALL), data.mnist1d(False, **SMALL)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (80, 40) and a.x_test.shape == (20, 40) and a.name == "mnist1d[custom]"
    assert not torch.equal(data.mnist1d(False, **SMALL, seed=7).x_train, a.x_train)
    short = data.mnist1d(False, **SMALL, final_seq_length=24, train_split=0.5, padding=(10, 40))
    assert short.x_train.shape == (50, 24) and short.x_test.shape == (50, 24)


def test_global_random_states_are_left_as_they_were(no_network):
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    torch_state = torch.get_rng_state()
    data.mnist1d(False, **SMALL)                                 # make_dataset reseeds both to 42 inside
    assert (random.random(), np.random.rand()) == expected
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_no_download_and_no_network(no_network, tmp_path):
    s = data.mnist1d(tmp_path, **SMALL)
    assert s.x_train.shape[1] == 40


@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_samples": 25}, ValueError, "num_samples must be a multiple of 10"),
    ({"num_samples": 10}, ValueError, "num_samples"),
    ({"num_samples": 100.0}, TypeError, "num_samples"),
    ({"seed": -1}, ValueError, r"seed must be an integer in \[0, 4294967296\)"),
    ({"seed": 1.5}, TypeError, "seed"),
    ({"train_split": 1.0}, ValueError, r"train_split must be in \(0, 1\)"),
    ({"train_split": 0.01}, ValueError, "train_split"),
    ({"padding": (5, 2)}, ValueError, "padding must be a pair"),
    ({"padding": 5}, TypeError, "padding must be a pair"),
    ({"max_translation": 0}, ValueError, r"max_translation must be an int in \[1, 72\]"),
    ({"max_translation": 73}, ValueError, "max_translation"),
    ({"scale_coeff": 2.0}, ValueError, r"scale_coeff must be in \[0, 2\)"),
    ({"iid_noise_scale": -0.1}, ValueError, "iid_noise_scale"),
    ({"corr_noise_scale": float("nan")}, ValueError, "corr_noise_scale"),
    ({"shuffle_seq": 1}, TypeError, "shuffle_seq must be a bool"),
    ({"final_seq_length": 1}, ValueError, "final_seq_length must be an int >= 2"),
    ({"template_len": 20}, TypeError, "template_len is fixed"),
    ({"url": "http://example.com"}, TypeError, "url is never used"),
    ({"standardise": "yes"}, TypeError, "standardise"),
])
def test_bad_arguments_name_the_argument_and_range(kwargs, error, match):
    with pytest.raises(error, match=match):
        data.mnist1d(False, **{**SMALL, **kwargs})


def test_bad_cache_dir():
    with pytest.raises(TypeError, match="cache_dir must be a str, an os.PathLike, None"):
        data.mnist1d(True, **SMALL)


def test_missing_package_names_the_extra(monkeypatch):
    real = importlib.metadata.version

    def version(name):
        if name == "mnist1d":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(ImportError, match=r"pip install 'mixbook\[chapters\]'"):
        data.mnist1d(False, **SMALL)
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)        # installed but not importable
    with pytest.raises(ImportError, match=r"mixbook\[chapters\]"):
        data.mnist1d(False, **SMALL)


def test_the_loader_imports_mnist1d_lazily():
    """``import mnist1d`` loads matplotlib: only inside the loader's helpers, never at module level."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(data))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top for a in n.names] + [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not any(name.split(".")[0] in ("mnist1d", "matplotlib", "requests") for name in names)
    lazy = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("mnist1d")]
    assert [n.module for n in lazy] == ["mnist1d.data"]


# ---------------------------------------------------------------------- models
def test_mnist1d_conv_is_the_reference_cnn():
    torch.manual_seed(0)
    net = models.MNIST1DConv()
    assert sum(p.numel() for p in net.parameters()) == 5210                  # ConvBase's count
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (1, 25, (5,), (2,), (1,)), (25, 25, (3,), (2,), (1,)), (25, 25, (3,), (2,), (1,))]
    assert (net.head.in_features, net.head.out_features) == (125, 10)
    x = torch.randn(6, 40)
    out = net(x)
    assert out.shape == (6, 10)
    assert torch.equal(net(x[:, None, :]), out)
    shapes = {}
    hooks = [net.get_submodule(p).register_forward_hook(lambda m, i, o, p=p: shapes.__setitem__(p, tuple(o.shape)))
             for p in ("features.1", "features.3", "features.5", "features")]
    net(x)
    for h in hooks:
        h.remove()
    assert shapes == {"features.1": (6, 25, 19), "features.3": (6, 25, 10), "features.5": (6, 25, 5),
                      "features": (6, 125)}            # the paths manifold mixup names (get_submodule)
    assert models.MNIST1DConv(num_classes=3, channels=4, length=24)(torch.randn(2, 24)).shape == (2, 3)


@pytest.mark.parametrize("shape", [(4, 41), (4, 2, 40), (40,), (4, 1, 1, 40)])
def test_mnist1d_conv_refuses_other_shapes(shape):
    with pytest.raises(ValueError, match=r"x must have shape \(b, 40\) or \(b, 1, 40\)"):
        models.MNIST1DConv()(torch.randn(*shape))


@pytest.mark.parametrize("kwargs, error", [({"channels": 0}, ValueError), ({"length": 2}, ValueError),
                                           ({"num_classes": 0}, ValueError), ({"channels": 2.0}, TypeError)])
def test_mnist1d_conv_bad_arguments(kwargs, error):
    with pytest.raises(error):
        models.MNIST1DConv(**kwargs)


def test_mlp_without_dropout_is_the_model_it_was():
    """dropout=0 builds the same modules, parameter names and initial values as before the option."""
    for hidden in [(), (16,), (100, 100)]:
        torch.manual_seed(3)
        old = models.MLP(40, 10, hidden)
        torch.manual_seed(3)
        new = models.MLP(40, 10, hidden, dropout=0.0)
        assert [type(m) for m in new.features] == [type(m) for m in old.features]
        assert list(new.state_dict()) == list(old.state_dict())
        assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), old.state_dict().values()))
        assert len(old.features) == 1 + 2 * len(hidden)
        assert not any(isinstance(m, torch.nn.Dropout) for m in new.modules())
    assert [type(m).__name__ for m in models.MLP(40, 10, (100, 100)).features] == [
        "Flatten", "Linear", "ReLU", "Linear", "ReLU"]
    logistic = models.MLP(40, 10, ())
    assert sum(p.numel() for p in logistic.parameters()) == 410 and logistic(torch.randn(3, 40)).shape == (3, 10)


def test_mlp_dropout_layers_and_behaviour():
    torch.manual_seed(0)
    net = models.MLP(40, 10, (32, 32), dropout=0.5)
    assert [type(m).__name__ for m in net.features] == [
        "Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout"]
    assert net.features[3].p == 0.5 and net.features[6].p == 0.5
    torch.manual_seed(0)
    plain = models.MLP(40, 10, (32, 32))
    assert [n for n, _ in net.named_parameters()] == ["features.1.weight", "features.1.bias", "features.4.weight",
                                                      "features.4.bias", "head.weight", "head.bias"]
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), plain.parameters()))   # same init draws
    x = torch.randn(64, 40)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


@pytest.mark.parametrize("p, error", [(-0.1, ValueError), (1.0, ValueError), (float("nan"), ValueError),
                                      (True, TypeError), ("0.5", TypeError), (None, TypeError)])
def test_mlp_dropout_is_checked(p, error):
    with pytest.raises(error, match="dropout"):
        models.MLP(40, 10, (8,), dropout=p)


# ---------------------------------------------------------------------- chapter 6's baselines
def test_reproduce_baselines_smoke(standard):
    """The plumbing on a 200-signal set (2 steps a model); learning is checked on the standard set below."""
    from mixbook.chapters import mnist1d as chapter

    small = data.mnist1d(False, num_samples=200)
    frame = chapter.reproduce_baselines([0, 1], steps=2, device="cpu", split=small)
    assert list(frame["model"]) == ["logistic regression"] * 2 + ["MLP"] * 2 + ["CNN"] * 2
    assert list(frame["seed"]) == [0, 1] * 3
    assert (frame["steps"] == 2).all() and (frame["epochs"] == 1).all() and (frame["seconds"] > 0).all()
    assert (frame["cpu_seconds"] > 0).all() and torch.get_num_threads() == 1      # restored to the fixture's
    assert frame["published"].tolist() == [0.32] * 2 + [0.68] * 2 + [0.94] * 2
    assert frame["accuracy"].between(0, 1).all() and frame["nll"].notna().all()
    assert frame.loc[0, "accuracy"] != frame.loc[1, "accuracy"] or frame.loc[0, "nll"] != frame.loc[1, "nll"]
    check = chapter.baseline_check(frame, tolerance=0.5)
    assert list(check.index) == ["logistic regression", "MLP", "CNN"] and (check["seeds"] == 2).all()
    assert check["within"].dtype == bool
    assert list(chapter.reproduce_baselines([3], steps=2, device="cpu", split=small, names=["CNN"])["model"]) == ["CNN"]


def test_the_reference_cnn_learns_mnist1d_in_one_epoch(standard):
    from mixbook.training import train

    torch.manual_seed(0)
    net = models.MNIST1DConv()
    hist = train.fit(net, standard, "erm", epochs=1, batch_size=100, lr=1e-2, device="cpu", progress=False)
    assert hist.final["accuracy"] > 0.25          # chance is 0.1; 0.29-0.35 after these 40 steps (seeds 0-2)


def test_baseline_check_compares_with_the_published_table():
    import pandas as pd

    from mixbook.chapters import mnist1d as chapter

    frame = pd.DataFrame({"model": ["CNN", "CNN", "MLP", "MLP"], "accuracy": [0.93, 0.91, 0.60, 0.62]})
    check = chapter.baseline_check(frame, tolerance=0.03)
    assert check.loc["CNN", "mean"] == pytest.approx(0.92) and check.loc["CNN", "published"] == 0.94
    assert check.loc["CNN", "difference"] == pytest.approx(-0.02)
    assert bool(check.loc["CNN", "within"]) and not bool(check.loc["MLP", "within"])
    with pytest.raises(ValueError, match=r"tolerance must be in \[0, 1\)"):
        chapter.baseline_check(frame, tolerance=1.5)
    with pytest.raises(ValueError, match="without a published accuracy"):
        chapter.baseline_check(pd.DataFrame({"model": ["ResNet"], "accuracy": [0.5]}))
    assert chapter.PUBLISHED == {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.94, "GRU": 0.91}


@pytest.mark.parametrize("kwargs, error, match", [
    ({"seeds": []}, ValueError, "seeds must hold at least one seed"),
    ({"seeds": [-1]}, ValueError, "seeds"),
    ({"steps": 0}, ValueError, "steps must be an int >= 1"),
    ({"lr": 0.0}, ValueError, "lr"),
    ({"workers": 0}, ValueError, "workers"),
    ({"names": ["GRU"]}, ValueError, "names must be distinct entries"),
    ({"split": "mnist1d"}, TypeError, "split must be a mixbook.training.data.Split"),
])
def test_reproduce_baselines_checks_its_arguments(standard, kwargs, error, match):
    from mixbook.chapters import mnist1d as chapter

    args = {"seeds": [0], "split": standard, **kwargs}
    with pytest.raises(error, match=match):
        chapter.reproduce_baselines(args.pop("seeds"), steps=args.pop("steps", 40), **args)
