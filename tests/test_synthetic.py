"""mixbook.chapters.synthetic: synthetic sets drawn with any sampler."""

from __future__ import annotations

import functools

import pytest
import torch

from mixbook.methods import mixup, zeta
from mixbook.chapters import synthetic
from mixbook.core.mixing import Mixing


@pytest.fixture()
def labelled():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g)
    y = torch.arange(40) % 4
    return x, y


@pytest.mark.parametrize("name", ["mixup", "zeta"])
def test_synthetic_set_shapes_labels_and_determinism(labelled, name):
    x, y = labelled
    sampler = {"mixup": functools.partial(mixup.sample, alpha=1.0),
               "zeta": functools.partial(zeta.sample, gamma=2.8)}[name]     # a partial of a sample is a sampler
    s1 = synthetic.synthetic_set(x, y, 4, sampler, size=25, batch_size=8, generator=torch.Generator().manual_seed(1))
    s2 = synthetic.synthetic_set(x, y, 4, sampler, size=25, batch_size=8, generator=torch.Generator().manual_seed(1))
    assert s1.x.shape == (25, 3) and s1.soft.shape == (25, 4) and s1.dominant_label.shape == (25,)
    assert torch.equal(s1.x, s2.x) and torch.equal(s1.soft, s2.soft)
    assert torch.allclose(s1.soft.sum(1), torch.ones(25))
    assert (s1.x.min(0).values >= x.min(0).values - 1e-5).all() and (s1.x.max(0).values <= x.max(0).values + 1e-5).all()
    # with γ above the threshold (and any mixup pair), the argmax of the soft label is the dominant label
    assert s1.argmax_is_dominant().all()
    h = s1.label_entropy()
    assert h.shape == (25,) and (h >= 0).all() and (h <= torch.log(torch.tensor(4.0)) + 1e-6).all()


def test_label_entropy_and_dominance_known_values():
    s = synthetic.SyntheticSet(x=torch.zeros(2, 1), soft=torch.tensor([[0.5, 0.5], [1.0, 0.0]]),
                               dominant_label=torch.tensor([1, 1]))
    assert torch.allclose(s.label_entropy(), torch.tensor([0.6931472, 0.0]))
    assert s.argmax_is_dominant().tolist() == [False, False]


def test_identity_sampler_reproduces_the_data(labelled):
    """A sampler that mixes nothing returns data points with their one-hot labels."""
    x, y = labelled
    ident = lambda xb, yb, *, generator: Mixing.pairwise(torch.arange(xb.shape[0]), torch.ones(xb.shape[0]))
    s = synthetic.synthetic_set(x, y, 4, ident, size=10, batch_size=5, generator=torch.Generator().manual_seed(0))
    rows = (s.x[:, None, :] == x[None]).all(-1)
    assert rows.any(1).all()
    assert torch.equal(s.soft.argmax(1), y[rows.float().argmax(1)])


def test_bad_arguments(labelled):
    x, y = labelled
    sampler = mixup.sample
    with pytest.raises(ValueError, match="batch_size"):
        synthetic.synthetic_set(x, y, 4, sampler, size=5, batch_size=41)
    with pytest.raises(ValueError, match="size"):
        synthetic.synthetic_set(x, y, 4, sampler, size=0)
    with pytest.raises(ValueError, match="y"):
        synthetic.synthetic_set(x, y[:-1], 4, sampler, size=5)
    with pytest.raises(ValueError, match="num_classes"):
        synthetic.synthetic_set(x, y, 3, sampler, size=5)
    with pytest.raises(TypeError, match="must return a mixbook.core.mixing.Mixing"):
        synthetic.synthetic_set(x, y, 4, lambda xb, yb, *, generator: xb, size=5)


def test_dominant_weight_and_parent_distance(labelled):
    """The recorded top weight is the mixing's largest weight, and the distance is to that example."""
    x, y = labelled
    s = synthetic.synthetic_set(x, y, 4, functools.partial(zeta.sample, gamma=2.8), size=16, batch_size=8,
                                generator=torch.Generator().manual_seed(2))
    top = zeta.pseries(8, 2.8)[0]
    assert s.dominant_weight.shape == (16,) and torch.allclose(s.dominant_weight, top.expand(16))
    # each output's nearest-in-weight parent is a data point at exactly the recorded distance
    d = (s.x[:, None, :] - x[None]).norm(dim=-1)                  # (16, 40)
    assert (d - s.parent_distance[:, None]).abs().min(1).values.max() < 1e-5
    # mixup: distance to the dominant parent is min(λ, 1 − λ) · ‖x_i − x_j‖, so at most half a pair's distance
    sm = synthetic.synthetic_set(x, y, 4, functools.partial(mixup.sample, alpha=1.0, per_sample=True), size=64,
                                 batch_size=8, generator=torch.Generator().manual_seed(3))
    assert ((sm.dominant_weight >= 0.5 - 1e-6) & (sm.dominant_weight <= 1 + 1e-6)).all()
    assert (sm.parent_distance <= torch.cdist(x, x).max() / 2 + 1e-5).all()
    # the identity mixing copies its parent: distance 0, weight 1
    ident = lambda xb, yb, *, generator: Mixing.pairwise(torch.arange(xb.shape[0]), torch.ones(xb.shape[0]))
    si = synthetic.synthetic_set(x, y, 4, ident, size=10, batch_size=5, generator=torch.Generator().manual_seed(0))
    assert torch.all(si.parent_distance == 0) and torch.all(si.dominant_weight == 1)


def test_constructed_set_leaves_the_new_fields_empty():
    s = synthetic.SyntheticSet(x=torch.zeros(1, 1), soft=torch.ones(1, 1), dominant_label=torch.zeros(1, dtype=torch.long))
    assert s.dominant_weight is None and s.parent_distance is None
