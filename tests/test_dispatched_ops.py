"""Per-call cost, counted: the ATen operators one mixing call dispatches (bench.dispatched_ops).

The bounds are today's counts (CPU, with a generator, integer labels) plus a small margin: a
change that adds operators to a hot path fails here and has to say why. On a GPU every operator
is at least one kernel launch.
"""

import pytest
import torch

import mixbook
from mixbook import bench

X = torch.randn(32, 3, 32, 32)
Y = torch.randint(0, 10, (32,))

BOUNDS = {  # transform -> the most operators one call may dispatch
    "MixUp": (lambda g: mixbook.MixUp(alpha=0.4, num_classes=10, generator=g), 26),
    "ZetaMixup": (lambda g: mixbook.ZetaMixup(gamma=2.8, num_classes=10, generator=g), 31),
    "MultiMix": (lambda g: mixbook.MultiMix(alpha=1.0, num_classes=10, generator=g), 23),
}


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_operators_per_call_are_bounded(name):
    make, bound = BOUNDS[name]
    t = make(torch.Generator().manual_seed(0))
    t(X, Y)  # warm-up: lazy initialisation does not count
    counts = bench.dispatched_ops(lambda: t(X, Y))
    total = sum(counts.values())
    assert 0 < total <= bound, f"{name}: {total} operators per call (bound {bound}): {counts}"


def test_counter_sees_every_operator():
    a = torch.ones(3)
    counts = bench.dispatched_ops(lambda: (a + 1).mul_(2).sum())
    assert counts == {"add": 1, "mul_": 1, "sum": 1}


@pytest.mark.parametrize("a, b, bound", [(1.0, 1.0, 5), (0.4, 0.4, 9), (1.4, 0.4, 12)])
def test_one_beta_draw_is_a_handful_of_operators(a, b, bound):
    """One λ a batch (mixup: Beta(α, α); the reformulation: Beta(α + 1, α)) is the hot path of
    small batches: a fill, the Gamma draw, a log, the softmax and a view, plus four for a boost."""
    g = torch.Generator().manual_seed(0)
    counts = bench.dispatched_ops(lambda: mixbook.core.distributions.beta(a, b, (1,), generator=g))
    assert sum(counts.values()) <= bound, counts
