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


# ---------------------------------------------------------------------- the CUDA path, counted without a GPU
E = torch.randn(32, 512)

CUDA_BOUNDS = {  # call -> (inputs, the most ATen operators its CUDA path may dispatch)
    # a key draw, a sort, one uniform (Beta(1, 1)) and a view
    "mixup.sample": (lambda x, y: mixbook.methods.mixup.sample(x), (X, Y), 4),
    # mixup at alpha < 1: the Gamma draws with the small-alpha boost
    "mixup.sample(alpha=0.4)": (lambda x, y: mixbook.methods.mixup.sample(x, alpha=0.4), (X, Y), 11),
    # Beta(2, 1) = U^(1/2): a uniform and a power
    "reformulation.sample": (lambda x, y: mixbook.methods.reformulation.sample(x), (X, Y), 5),
    # one-hot (fill, scatter), gather, lerp, views: after the sample
    "Mixing.targets": (lambda x, y: mixbook.methods.mixup.sample(x).targets(y, 10), (X, Y), 10),
    "MixUp": (lambda x, y: mixbook.MixUp(alpha=1.0, num_classes=10)(x, y), (X, Y), 13),
    # keys, the dominant key, one sort, one scatter of a cached p-series, one matmul
    "zeta.sample+apply": (lambda x, y: mixbook.methods.zeta.sample(x).apply(x), (X, Y), 11),
    # one exponential draw an entry, its row sum, one matmul
    "multimix.sample+apply (n=1000)": (lambda e, y: mixbook.methods.multimix.sample(e, n=1000).apply(e), (E, Y), 9),
}


@pytest.mark.parametrize("name", sorted(CUDA_BOUNDS))
def test_cuda_path_operators_are_bounded(name):
    """Each operator of a call on CUDA is at least one kernel launch (~5-8 µs of host time on the
    H200 of chapter 7): the count on fake CUDA tensors is the per-call cost a CPU can measure."""
    fn, inputs, bound = CUDA_BOUNDS[name]
    counts = bench.cuda_path_ops(fn, *inputs)
    total = sum(counts.values())
    assert 0 < total <= bound, f"{name}: {total} operators on the CUDA path (bound {bound}): {counts}"
    assert "randperm" not in counts and "_local_scalar_dense" not in counts, counts   # no randperm, no host read


def test_cuda_path_counter_sees_the_cuda_branch():
    """The fake inputs are CUDA tensors: the pairing is the sorted keys, not the CPU's randperm."""
    on_cpu = bench.dispatched_ops(lambda: mixbook.methods.mixup.sample(X))
    on_cuda = bench.cuda_path_ops(lambda x: mixbook.methods.mixup.sample(x), X)
    assert "randperm" in on_cpu and "randperm" not in on_cuda and "sort" in on_cuda
