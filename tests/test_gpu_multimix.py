"""MultiMix on CUDA: weights built on the device, no host synchronisation, CPU agreement.

Every test here is marked ``gpu`` and skipped cleanly without CUDA. The CPU and CUDA random
streams differ, so a CUDA sample is checked for its structure and its Dirichlet moments; a
given set of weights moved to CUDA must give the CPU's numbers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _stats import assert_beta_moments, cuda_gen
from mixbook.methods import multimix
from mixbook.methods.multimix import MultiMix

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, n", [(128, 1000), (16, 5), (1, 7)])
def test_cuda_weights(dtype, b, n):
    W = multimix.weights(b, n=n, alpha=1.0, device="cuda", dtype=dtype, generator=cuda_gen(n + b))
    assert W.device.type == "cuda" and W.dtype == dtype and W.shape == (n, b)
    tol = 1e-12 if dtype == torch.float64 else 4 * torch.finfo(dtype).eps
    torch.testing.assert_close(W.double().sum(1), torch.ones(n, dtype=torch.float64, device="cuda"), atol=tol, rtol=0)
    assert bool((W >= 0).all())
    assert torch.equal(W, multimix.weights(b, n=n, alpha=1.0, device="cuda", dtype=dtype, generator=cuda_gen(n + b)))


@pytest.mark.parametrize("alpha", [0.3, 2.0])
def test_cuda_dirichlet_moments(alpha):
    b = 4
    W = multimix.weights(b, n=40000, alpha=alpha, device="cuda", dtype=torch.float64, generator=cuda_gen(5))
    for i in range(b):
        assert_beta_moments(W[:, i], alpha, (b - 1) * alpha)


def _guarded(fn):
    fn()  # warm-up outside the guarded region: lazy CUDA state, allocator, kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return out


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("n", [None, 1000])
def test_multimix_does_not_synchronise(dtype, n):
    g = cuda_gen(2)
    x = torch.rand(128, 3, 16, 16, device="cuda", generator=g).to(dtype)
    y = torch.randint(0, 10, (128,), device="cuda", generator=g)
    mix = MultiMix(alpha=1.0, num_classes=10, n=n, smoothing=0.1, generator=g)
    x_mix, y_mix = _guarded(lambda: mix(x, y))
    rows = 128 if n is None else n
    assert x_mix.shape == (rows, 3, 16, 16) and x_mix.device == x.device and x_mix.dtype == dtype
    assert y_mix.shape == (rows, 10) and y_mix.device == x.device
    torch.testing.assert_close(y_mix.sum(1), torch.ones(rows, device="cuda"))
    m = _guarded(lambda: multimix.sample(x, y, n=n, generator=g))
    assert m.weights.device == x.device and m.weights.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_dense_multimix_does_not_synchronise(dtype):
    g = cuda_gen(3)
    b, c, h, w, C, n = 32, 16, 4, 4, 10, 100
    feats = torch.randn(b, c, h, w, device="cuda", generator=g).to(dtype)
    head = torch.randn(C, c, device="cuda", generator=g)
    labels = torch.randint(0, C, (b,), device="cuda", generator=g)

    def step():
        att = multimix.cam_attention(feats, head, labels)
        Wd = multimix.dense_weights(multimix.weights(b, n=n, alpha=1.0, device="cuda", generator=g), att)
        y = F.one_hot(labels, C).float()
        return att, Wd, multimix.apply_dense(feats, Wd), multimix.dense_targets(y, Wd)

    att, Wd, out, t = _guarded(step)
    assert att.shape == (b, h * w) and Wd.shape == (h * w, n, b)
    assert out.shape == (n, c, h, w) and out.dtype == dtype and out.device.type == "cuda"
    torch.testing.assert_close(att.sum(1), torch.ones(b, device="cuda", dtype=att.dtype), atol=1e-2, rtol=0)
    torch.testing.assert_close(Wd.sum(-1), torch.ones(h * w, n, device="cuda"), atol=1e-5, rtol=0)
    torch.testing.assert_close(t.sum(1), torch.ones(n, device="cuda"), atol=1e-5, rtol=0)


def test_cpu_and_cuda_agree():
    g = torch.Generator().manual_seed(4)
    b, c, h, w, C, n = 12, 5, 3, 3, 4, 40
    feats = torch.randn(b, c, h, w, generator=g)
    head = torch.randn(C, c, generator=g)
    labels = torch.randint(0, C, (b,), generator=g)
    base = multimix.weights(b, n=n, alpha=1.0, generator=g)
    att = multimix.cam_attention(feats, head, labels)
    torch.testing.assert_close(multimix.cam_attention(feats.cuda(), head.cuda(), labels.cuda()).cpu(), att,
                               atol=1e-5, rtol=1e-5)
    Wd = multimix.dense_weights(base, att)
    Wd_cuda = multimix.dense_weights(base.cuda(), att.cuda())
    torch.testing.assert_close(Wd_cuda.cpu(), Wd, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(multimix.apply_dense(feats.cuda(), Wd.cuda()).cpu(), multimix.apply_dense(feats, Wd),
                               atol=1e-5, rtol=1e-5)
    y = F.one_hot(labels, C).float()
    torch.testing.assert_close(multimix.dense_targets(y.cuda(), Wd.cuda()).cpu(), multimix.dense_targets(y, Wd))
    fd, Wdd = feats.double(), Wd.double()
    torch.testing.assert_close(multimix.apply_dense(fd.cuda(), Wdd.cuda()).cpu(), multimix.apply_dense(fd, Wdd))
    with pytest.raises(ValueError, match="generator is on cpu but the batch is on cuda"):
        multimix.sample(feats.cuda(), generator=torch.Generator())
    with pytest.raises(ValueError, match="attention is on cpu"):
        multimix.dense_weights(base.cuda(), att)


@pytest.mark.parametrize("method_name, options", [
    ("multimix", {"n": 300}),
    ("dense_multimix", {"layer": "features.6", "n": 300}),
])
def test_cuda_training_step_has_no_host_sync(method_name, options):
    """One embedding-space MultiMix / dense MultiMix training step on CUDA, sync-free."""
    from mixbook.training import models, train

    torch.manual_seed(0)
    model = models.SmallCNN(1, 10, 8).cuda()
    x = torch.randn(64, 1, 8, 8, device="cuda")
    y = torch.randint(0, 10, (64,), device="cuda")
    method = train.make_method(method_name, **options)
    g = cuda_gen(0)
    method.loss(model, x, y, 10, g).backward()  # warm-up (lazy CUDA init may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = method.loss(model, x, y, 10, g)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss)


def test_cuda_random_crop_flip_is_sync_free_and_crops():
    from mixbook.training import data

    x = torch.randn(256, 3, 32, 32, device="cuda")
    data.random_crop_flip(x, cuda_gen(0))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = data.random_crop_flip(x, cuda_gen(1))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.shape == x.shape and out.device.type == "cuda"
    # a crop of a zero-padded image keeps a subset of its pixels
    assert bool((out.square().sum((1, 2, 3)) <= x.square().sum((1, 2, 3)) * (1 + 1e-5)).all())
    # without padding every image is itself or its mirror, and both occur
    flipped = data.random_crop_flip(x, cuda_gen(2), padding=0)
    same = (flipped == x).flatten(1).all(1)
    mirror = (flipped == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirror).all()) and bool(same.any()) and bool(mirror.any())
