"""mixbook.training.metrics.nearest_label: the 1-NN label used to judge synthetic labels."""

from __future__ import annotations

import pytest
import torch

from mixbook.training import metrics


def test_nearest_label_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(200, 5, generator=g)
    lab = torch.randint(0, 7, (200,), generator=g)
    pts = torch.randn(300, 5, generator=g)
    got = metrics.nearest_label(pts, ref, lab)
    want = lab[torch.cdist(pts.double(), ref.double()).argmin(1)]
    assert got.dtype == torch.int64 and torch.equal(got, want)


def test_reference_points_get_their_own_label():
    ref = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    lab = torch.tensor([2, 0, 1])
    assert metrics.nearest_label(ref, ref, lab).tolist() == [2, 0, 1]
    assert metrics.nearest_label(torch.tensor([[6.0, 0.0], [0.0, 4.0]]), ref, lab).tolist() == [0, 2]


def test_nearest_label_rejects_bad_input():
    ref, lab = torch.zeros(3, 2), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="dimension"):
        metrics.nearest_label(torch.zeros(2, 3), ref, lab)
    with pytest.raises(ValueError, match="reference_labels"):
        metrics.nearest_label(torch.zeros(2, 2), ref, lab[:2])
    with pytest.raises(TypeError, match="reference_labels"):
        metrics.nearest_label(torch.zeros(2, 2), ref, lab.float())
