"""fit on a torch DataLoader: the same run as on a Split when the loader yields fit's own batches;
set_epoch for distributed samplers; clear errors."""

import pytest
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from mixbook.training import data, models, train


class _FitsOrder(Sampler):
    """Yields, each epoch, the permutation fit draws from its data stream for ``seed``."""

    def __init__(self, n, seed):
        self.n, self.gen = n, train.generators(seed, "cpu")[0]
        self.epochs = []

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.gen).tolist())

    def __len__(self):
        return self.n

    def set_epoch(self, epoch):
        self.epochs.append(epoch)


@pytest.mark.parametrize("method", ["erm", "mixup", "zeta"])
def test_a_loader_of_fits_batches_trains_the_same_network(method):
    split = data.two_moons(n_train=96, n_test=64, seed=0)
    kw = dict(epochs=2, seed=4, device="cpu", progress=False)
    torch.manual_seed(0)
    net_a = models.MLP(2, 2, (8,))
    a = train.fit(net_a, split, method, batch_size=16, **kw)
    sampler = _FitsOrder(96, seed=4)
    loader = DataLoader(TensorDataset(split.x_train, split.y_train), batch_size=16, sampler=sampler)
    torch.manual_seed(0)
    net_b = models.MLP(2, 2, (8,))
    b = train.fit(net_b, loader, method, num_classes=2, test=split, **kw)
    assert sampler.epochs == [0, 1]
    for ea, eb in zip(a.epochs, b.epochs):
        assert ea["train_loss"] == pytest.approx(eb["train_loss"], rel=1e-6)
        assert ea["accuracy"] == eb["accuracy"] and ea["nll"] == pytest.approx(eb["nll"], rel=1e-6)
    for pa, pb in zip(net_a.parameters(), net_b.parameters()):
        torch.testing.assert_close(pa, pb)


def test_without_test_only_the_training_loss_is_recorded():
    split = data.two_moons(n_train=32, n_test=8, seed=0)
    loader = DataLoader(TensorDataset(split.x_train, split.y_train), batch_size=8, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    hist = train.fit(models.MLP(2, 2, (8,)), loader, "mixup", num_classes=2, epochs=1, device="cpu", progress=False)
    assert set(hist.epochs[0]) == {"epoch", "train_loss", "seconds"}


def test_bad_loader_arguments():
    split = data.two_moons(n_train=32, n_test=8, seed=0)
    loader = DataLoader(TensorDataset(split.x_train, split.y_train), batch_size=8)
    net = models.MLP(2, 2, (8,))
    with pytest.raises(ValueError, match="num_classes is required"):
        train.fit(net, loader, "erm", epochs=1, device="cpu", progress=False)
    with pytest.raises(TypeError, match="test must be"):
        train.fit(net, loader, "erm", num_classes=2, test=(split.x_test, split.y_test), epochs=1, device="cpu",
                  progress=False)
    with pytest.raises(ValueError, match="for a DataLoader"):
        train.fit(net, split, "erm", num_classes=2, epochs=1, device="cpu", progress=False)
    with pytest.raises(TypeError, match="Split or a torch.utils.data.DataLoader"):
        train.fit(net, [(split.x_train, split.y_train)], "erm", epochs=1, device="cpu", progress=False)
    triples = DataLoader(TensorDataset(split.x_train, split.y_train, split.y_train), batch_size=8)
    with pytest.raises(TypeError, match=r"\(x, y\) pairs"):
        train.fit(net, triples, "erm", num_classes=2, epochs=1, device="cpu", progress=False)


def test_every_source_goes_through_the_one_epoch_loop(monkeypatch):
    """A Split and a DataLoader are batch sources of the same loop (train._epochs), called once a fit."""
    seen = []
    loop = train._epochs

    def spy(run, net, source, *args, **kwargs):
        seen.append((type(source).__name__, source.steps, source.examples))
        return loop(run, net, source, *args, **kwargs)

    monkeypatch.setattr(train, "_epochs", spy)
    split = data.two_moons(n_train=40, n_test=16, seed=0)
    kw = dict(epochs=2, seed=1, device="cpu", progress=False)
    hist = train.fit(models.MLP(2, 2, (4,)), split, "mixup", batch_size=16, **kw)
    loader = DataLoader(TensorDataset(split.x_train, split.y_train), batch_size=8)
    hist_l = train.fit(models.MLP(2, 2, (4,)), loader, "erm", num_classes=2, **kw)
    assert seen == [("_SplitBatches", 3, 40), ("_LoaderBatches", 5, None)]
    assert [e["epoch"] for e in hist.epochs] == [e["epoch"] for e in hist_l.epochs] == [1, 2]
    assert "accuracy" in hist.final and "accuracy" not in hist_l.final
