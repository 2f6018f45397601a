"""ζ-mixup on CUDA: weights built on the device, no host synchronisation, CPU agreement.

Every test here is marked ``gpu`` and skipped cleanly without CUDA. The CPU and CUDA random
streams differ, so a CUDA sample is checked for its structure (rows sum to 1, each a
permutation of the p-series, the dominant input on top) and, for uniformity, in distribution;
a given :class:`Mixing` moved with ``.to("cuda")`` must give the CPU's numbers.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from scipy import stats

from mixbook.methods import zeta
from mixbook.methods.zeta import ZetaMixup

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def cuda_gen(seed: int) -> torch.Generator:
    return torch.Generator(device="cuda").manual_seed(seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, b", [(64, 64), (17, 64), (200, 32), (5, 1)])
def test_cuda_weights(dtype, n, b):
    W = zeta.weights(b, gamma=2.8, n=n, device="cuda", dtype=dtype, generator=cuda_gen(n + b))
    assert W.device.type == "cuda" and W.dtype == dtype and W.shape == (n, b)
    tol = 1e-12 if dtype == torch.float64 else 4 * torch.finfo(dtype).eps
    torch.testing.assert_close(W.double().sum(1), torch.ones(n, dtype=torch.float64, device="cuda"), atol=tol, rtol=0)
    assert bool((W >= 0).all())
    series = zeta.pseries(b, 2.8, device="cuda", dtype=dtype)
    assert torch.equal(W.sort(1, descending=True).values, series.expand(n, b))
    assert torch.equal(W.argmax(1), torch.arange(n, device="cuda") % b)
    assert torch.equal(W, zeta.weights(b, gamma=2.8, n=n, device="cuda", dtype=dtype, generator=cuda_gen(n + b)))
    # The same p-series on both devices, up to the floating-point error of computing it. pseries
    # works in float64 (j^-gamma, a sum of b terms, a division) and rounds once to ``dtype``. CUDA's
    # double ``pow`` is accurate to 2 ulp (CUDA C Programming Guide, mathematical functions), the
    # CPU's to 1, and the two devices sum the b terms in different orders (a tree of about log2(b)
    # levels, each adding up to 1 ulp): float64 results may differ by ~10 ulp (H200: 4.8e-16
    # relative, 2.2 ulp). rtol = 1e-14 (45 ulp of float64) bounds that with margin; a float64
    # mismatch larger than this would be a bug, not rounding. The narrower dtypes are rounded from
    # float64 once, so at most a rounding flip separates them: 2 eps of the dtype.
    rtol = 1e-14 if dtype == torch.float64 else 2 * torch.finfo(dtype).eps
    torch.testing.assert_close(series.cpu(), zeta.pseries(b, 2.8, dtype=dtype), atol=0, rtol=rtol)
    # "cuda" without an index and dominant on "cuda:0" are the same device.
    dominant = torch.arange(n, device="cuda") % b
    assert torch.equal(zeta.weights(b, gamma=2.8, device="cuda", dominant=dominant, dtype=dtype).argmax(1), dominant)


def test_cuda_dominant_and_uniform_order():
    g = cuda_gen(1)
    dominant = torch.randint(0, 8, (300,), device="cuda", generator=g)
    W = zeta.weights(8, gamma=2.0, dominant=dominant, generator=g)
    assert W.device.type == "cuda" and torch.equal(W.argmax(1), dominant)
    reps = 6000
    W = zeta.weights(4, gamma=2.0, n=reps, dominant=torch.zeros(reps, dtype=torch.long, device="cuda"), generator=g)
    order = W.argsort(1, descending=True).cpu()
    counts = Counter(tuple(r) for r in order[:, 1:].tolist())
    assert len(counts) == math.factorial(3)
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3, counts


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("n", [None, 96])
def test_zeta_mixup_does_not_synchronise(dtype, n):
    g = cuda_gen(2)
    x = torch.rand(64, 3, 16, 16, device="cuda", generator=g).to(dtype)
    y = torch.randint(0, 10, (64,), device="cuda", generator=g)
    mix = ZetaMixup(gamma=2.8, num_classes=10, n=n, smoothing=0.1, generator=g)
    mix(x, y)  # warm-up outside the guarded region: lazy CUDA state, allocator, kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        x_mix, y_mix = mix(x, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    rows = 64 if n is None else n
    assert x_mix.shape == (rows, 3, 16, 16) and x_mix.device == x.device and x_mix.dtype == dtype
    assert y_mix.shape == (rows, 10) and y_mix.device == x.device
    torch.testing.assert_close(y_mix.sum(1), torch.ones(rows, device="cuda"))


def test_cpu_and_cuda_agree():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(32, 3, 8, 8, generator=g)
    y = torch.randint(0, 5, (32,), generator=g)
    for n in (None, 50):
        m = zeta.sample(x, y, gamma=2.8, n=n, generator=g)
        mc = m.to("cuda")
        assert mc.device.type == "cuda" and not mc.is_pairwise
        torch.testing.assert_close(mc.apply(x.cuda()).cpu(), m.apply(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mc.targets(y.cuda(), 5, 0.1).cpu(), m.targets(y, 5, 0.1))
        xd = x.double()
        md = zeta.sample(xd, n=n, generator=g)
        torch.testing.assert_close(md.to("cuda").apply(xd.cuda()).cpu(), md.apply(xd))


def test_cuda_sample_dtype_and_device():
    x = torch.randn(16, 4, device="cuda", dtype=torch.float64)
    m = zeta.sample(x, generator=cuda_gen(4))
    assert m.weights.device.type == "cuda" and m.weights.dtype == torch.float64
    with pytest.raises(ValueError, match="generator is on cpu but the batch is on cuda"):
        zeta.sample(x, generator=torch.Generator())
    with pytest.raises(ValueError, match="dominant is on cpu"):
        zeta.sample(x, dominant=torch.zeros(16, dtype=torch.long))
