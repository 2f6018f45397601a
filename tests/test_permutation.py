"""The random permutation of a batch (mixup's and the reformulation's pairing): ``torch.randperm``
on the CPU, the argsort of random 62-bit keys on every other device (CUDA).

The keys path is taken on the CPU here through a test switch, so its distribution is checked
without a GPU; the CUDA path's operator list is checked on fake CUDA tensors.
"""

import math
from collections import Counter

import pytest
import torch
from scipy import stats

from mixbook.core import _random
from mixbook.methods import mixup
from mixbook.bench import cuda_path_ops


@pytest.fixture
def keys_on_cpu(monkeypatch):
    monkeypatch.setattr(_random, "_DEVICE_PATHS_ON_CPU", True)


def test_the_cpu_stream_is_torch_randperm():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(_random.randperm(37, device=torch.device("cpu"), generator=g1),
                       torch.randperm(37, generator=g2))
    assert not _random.sorts_keys("cpu") and _random.sorts_keys("cuda") and _random.sorts_keys("meta")


@pytest.mark.parametrize("n", [1, 2, 3, 31, 32, 1000, 5000])
def test_sorted_keys_give_a_permutation(keys_on_cpu, n):
    g = torch.Generator().manual_seed(n)
    p = _random.randperm(n, device=torch.device("cpu"), generator=g)
    assert p.dtype == torch.int64 and p.shape == (n,)
    assert torch.equal(p.sort().values, torch.arange(n))
    # reproducible from the generator, and the stream advances
    g2 = torch.Generator().manual_seed(n)
    assert torch.equal(p, _random.randperm(n, device=torch.device("cpu"), generator=g2))


def test_sorted_keys_are_uniform_over_all_permutations(keys_on_cpu):
    """All 24 orders of 4 elements, 24 000 draws: chi-square against the uniform law."""
    g = torch.Generator().manual_seed(0)
    counts = Counter(tuple(mixup.pair(4, "random", generator=g).tolist()) for _ in range(24_000))
    assert len(counts) == math.factorial(4)
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3


def test_sorted_keys_positions_are_uniform(keys_on_cpu):
    """Where element 0 lands in a batch of 32, over 32 000 draws (a check at a training batch size)."""
    g = torch.Generator().manual_seed(1)
    draws = torch.stack([_random.randperm(32, device=torch.device("cpu"), generator=g) for _ in range(32_000)])
    where = (draws == 0).int().argmax(1)
    counts = torch.bincount(where, minlength=32).tolist()
    assert stats.chisquare(counts).pvalue > 1e-3


def test_tie_bound_is_negligible():
    """The total-variation distance to the uniform law is at most P(any tie) <= n(n-1)/2 * 2^-62."""
    n = 4096
    assert n * (n - 1) / 2 * 2.0 ** -_random.KEY_BITS < 1e-11


def test_the_cuda_path_never_calls_randperm():
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    for fn in (lambda x, y: mixup.sample(x), lambda x, y: mixup.MixUp(alpha=1.0, num_classes=10)(x, y)):
        ops = cuda_path_ops(fn, x, y)
        assert "randperm" not in ops and ("argsort" in ops or "sort" in ops), ops
