"""CUDA: CPU agreement, no host synchronisation in a mixing step, Beta on the device, dtypes.

Every test here is marked ``gpu`` and skipped cleanly without CUDA. The CPU and CUDA random
streams differ, so sampling is compared in distribution (moments within 4 standard errors),
while a given :class:`Mixing` moved with ``.to("cuda")`` must give the CPU's numbers.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from mixbook.core import _checks, losses
from mixbook.methods import mixup
from mixbook.core import distributions as D
from mixbook.core.mixing import Mixing
from mixbook.methods.mixup import PAIRINGS, MixUp

from _stats import assert_beta_moments, cpu_gen, cuda_gen

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

N = 200_000
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


# ---------------------------------------------------------------------- CPU == CUDA
@pytest.mark.parametrize("pairing", PAIRINGS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_cpu_and_cuda_agree_pairwise(pairing, per_sample):
    g = cpu_gen(0)
    x = torch.randn(32, 3, 8, 8, generator=g)
    y = torch.randint(0, 5, (32,), generator=g)
    m = mixup.sample(x, y, alpha=0.4, per_sample=per_sample, pairing=pairing, generator=g)
    mc = m.to("cuda")
    assert mc.device.type == "cuda" and mc.is_pairwise
    out = mc.apply(x.cuda())
    assert out.device.type == "cuda" and out.dtype == torch.float32
    torch.testing.assert_close(out.cpu(), m.apply(x))
    t = mc.targets(y.cuda(), 5, 0.1)
    assert t.device.type == "cuda"
    torch.testing.assert_close(t.cpu(), m.targets(y, 5, 0.1))
    torch.testing.assert_close(mc.dense().cpu(), m.dense())


def test_cpu_and_cuda_agree_dense():
    g = cpu_gen(1)
    w = torch.softmax(2 * torch.randn(40, 32, generator=g, dtype=torch.float64), 1)
    m = Mixing.from_dense(w)
    mc = m.to("cuda")
    assert mc.device.type == "cuda" and not mc.is_pairwise and mc.num_outputs == 40
    x = torch.randn(32, 3, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(mc.apply(x.cuda()).cpu(), m.apply(x))
    x32 = x.float()
    torch.testing.assert_close(mc.apply(x32.cuda()).cpu(), m.apply(x32), atol=1e-4, rtol=1e-4)
    y = torch.randint(0, 7, (32,), generator=g)
    torch.testing.assert_close(mc.targets(y.cuda(), 7).cpu(), m.targets(y, 7), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------- no host sync
def _batch(seed: int = 0, b: int = 64, c: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    gen = cuda_gen(seed)
    x = torch.randn(b, 3, 16, 16, device="cuda", generator=gen)
    y = torch.randint(0, c, (b,), device="cuda", generator=gen)
    return x, y, gen


@pytest.mark.parametrize("pairing", PAIRINGS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_mixing_step_does_not_synchronise(pairing, per_sample):
    x, y, gen = _batch()
    mix = MixUp(alpha=0.4, num_classes=10, per_sample=per_sample, pairing=pairing, smoothing=0.1, generator=gen)
    mix(x, y)  # warm-up outside the guarded region: lazy CUDA state, allocator, kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        x_mix, y_mix = mix(x, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert x_mix.shape == x.shape and x_mix.device == x.device and x_mix.dtype == x.dtype
    assert y_mix.shape == (64, 10) and y_mix.device == x.device
    torch.testing.assert_close(y_mix.sum(1), torch.ones(64, device="cuda"))


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_losses_do_not_synchronise(pairing):
    x, y, gen = _batch(1)
    m = mixup.sample(x, y, alpha=1.0, per_sample=True, pairing=pairing, generator=gen)
    logits = torch.randn(64, 10, device="cuda", generator=gen)
    soft = m.targets(y, 10)
    losses.soft_cross_entropy(logits, soft)  # warm-up
    losses.mixed_cross_entropy(logits, y, y[m.partner], m.lam, smoothing=0.1)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        a = losses.soft_cross_entropy(logits, m.targets(y, 10, 0.1))
        b = losses.mixed_cross_entropy(logits, y, y[m.partner], m.lam, smoothing=0.1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_value_checks_always_on_cuda():
    """On CUDA values are not checked by default; "always" checks them (with a sync)."""
    m = Mixing.pairwise(torch.tensor([1, 0], device="cuda"), torch.tensor([0.3, 0.7], device="cuda"))
    with _checks.value_checks("always"):
        with pytest.raises(ValueError, match=r"\by\b must lie in \[0, num_classes\)"):
            m.targets(torch.tensor([0, 5], device="cuda"), 3)
        with pytest.raises(ValueError, match=r"\by\b rows must sum to 1"):
            m.targets(torch.full((2, 3), 0.5, device="cuda"))
        with pytest.raises(ValueError, match="weights.*non-negative"):
            Mixing.from_dense(torch.tensor([[1.5, -0.5]], device="cuda"))


# ---------------------------------------------------------------------- sampling on CUDA
@pytest.mark.parametrize("alpha", [0.1, 0.4, 1.0, 4.0])
def test_cuda_lambda_is_beta(alpha):
    x = torch.empty(N, 1, device="cuda")
    m = mixup.sample(x, alpha=alpha, per_sample=True, pairing="flip", generator=cuda_gen(int(alpha * 10)))
    assert m.lam.device.type == "cuda" and m.partner.device.type == "cuda"
    assert_beta_moments(m.lam, alpha, alpha)


@pytest.mark.parametrize("a, b", [(1.4, 0.4), (2.0, 5.0)])
def test_cuda_asymmetric_beta(a, b):
    s = D.beta(a, b, (N,), device="cuda", generator=cuda_gen(2))
    assert s.device.type == "cuda"
    assert_beta_moments(s, a, b)
    ks = D.beta(a, b, (50_000,), device="cuda", dtype=torch.float64, generator=cuda_gen(3))
    assert stats.kstest(ks.cpu().numpy(), stats.beta(a, b).cdf).pvalue > 1e-3


def test_cuda_dirichlet():
    alpha, k = 0.5, 4
    s = D.dirichlet(alpha, (N // k, k), device="cuda", generator=cuda_gen(4))
    assert s.device.type == "cuda" and bool((s >= 0).all())
    torch.testing.assert_close(s.sum(-1), torch.ones(N // k, device="cuda"), atol=1e-5, rtol=0)
    for j in range(k):
        assert_beta_moments(s[:, j], alpha, (k - 1) * alpha)


def test_cuda_small_alpha():
    s = D.beta(0.01, 0.01, (N,), device="cuda", generator=cuda_gen(5))
    assert not bool(s.isnan().any()) and bool(((s >= 0) & (s <= 1)).all())
    assert abs(float((s < 0.5).double().mean()) - 0.5) < 4 * math.sqrt(0.25 / N)


def test_cuda_seeds():
    x = torch.empty(128, 2, device="cuda")
    y = torch.randint(0, 3, (128,), device="cuda", generator=cuda_gen(0))
    for pairing in PAIRINGS:
        a = mixup.sample(x, y, alpha=0.4, per_sample=True, pairing=pairing, generator=cuda_gen(6))
        b = mixup.sample(x, y, alpha=0.4, per_sample=True, pairing=pairing, generator=cuda_gen(6))
        assert torch.equal(a.partner, b.partner) and torch.equal(a.lam, b.lam)


@pytest.mark.parametrize("pairing", ["random", "same_class", "cross_class"])
def test_cuda_pairings(pairing):
    y = torch.randint(0, 6, (256,), device="cuda", generator=cuda_gen(7))
    p = mixup.pair(256, pairing, y=y, device="cuda", generator=cuda_gen(8))
    assert p.device.type == "cuda" and p.dtype == torch.int64
    yl, pl = y.tolist(), p.tolist()
    if pairing == "random":
        assert sorted(pl) == list(range(256))
    elif pairing == "same_class":
        assert all(k != q and yl[q] == yl[k] for k, q in enumerate(pl))  # every class has > 1 member here
    else:
        assert all(yl[q] != yl[k] for k, q in enumerate(pl))


# ---------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pairing", PAIRINGS)
def test_cuda_dtype_preserved(dtype, pairing):
    gen = cuda_gen(9)
    b = 16
    x = torch.randn(b, 3, 4, 4, device="cuda", generator=gen).to(dtype)
    y = torch.randint(0, 4, (b,), device="cuda", generator=gen)
    before = x.clone()
    m = mixup.sample(x, y, alpha=1.0, per_sample=True, pairing=pairing, generator=gen)
    out = m.apply(x)
    assert torch.equal(x, before)
    assert out.dtype == dtype and out.device == x.device and out.shape == x.shape
    ref = (m.dense(torch.float64) @ x.double().flatten(1)).reshape(out.shape)
    tol = (b + 4) * torch.finfo(dtype).eps * float(x.double().abs().max())
    assert float((out.double() - ref).abs().max()) <= tol
    t = m.targets(y, 4)
    assert t.dtype == torch.float32 and t.device == x.device

    w = torch.softmax(torch.randn(b + 3, b, device="cuda", generator=gen, dtype=torch.float64), 1)
    d = Mixing.from_dense(w)
    out_d = d.apply(x)
    assert out_d.dtype == dtype and out_d.device == x.device and out_d.shape == (b + 3, *x.shape[1:])
    ref_d = (w @ x.double().flatten(1)).reshape(out_d.shape)
    assert float((out_d.double() - ref_d).abs().max()) <= tol


# ---------------------------------------------------------------------- devices
def test_wrong_devices():
    x = torch.zeros(4, 2, device="cuda")
    with pytest.raises(ValueError, match="generator is on cpu"):
        mixup.sample(x, generator=torch.Generator())
    with pytest.raises(ValueError, match="generator is on cuda"):
        mixup.sample(x.cpu(), generator=cuda_gen(0))
    with pytest.raises(ValueError, match="generator is on cuda"):
        D.beta(1.0, 1.0, (3,), generator=cuda_gen(0))
    with pytest.raises(ValueError, match=r"\by\b is on cpu"):
        mixup.sample(x, torch.zeros(4, dtype=torch.long))
    m = mixup.sample(x.cpu(), alpha=1.0)
    with pytest.raises(ValueError, match=r"\bx\b is on cuda"):
        m.apply(x)
    with pytest.raises(ValueError, match="lam is on"):
        Mixing.pairwise(torch.tensor([1, 0], device="cuda"), torch.tensor([0.5, 0.5]))


# ---------------------------------------------------------------------- memory
@pytest.mark.parametrize("form", ["pairwise", "dense"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_apply_allocates_only_its_output(form, dtype):
    """No hidden batch-sized copies (``x[perm]``, ``roll``, an upcast x) besides the output."""
    b = 256
    x = torch.randn(b, 3, 64, 64, device="cuda", generator=cuda_gen(10)).to(dtype)
    if form == "pairwise":
        m = mixup.sample(x, alpha=1.0, per_sample=True, generator=cuda_gen(11))
    else:
        m = Mixing.from_dense(torch.softmax(torch.randn(b, b, device="cuda", generator=cuda_gen(12)), 1))
    del_me = m.apply(x)  # warm-up: cuBLAS workspace and kernels are allocated once, outside the measure
    del del_me
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = m.apply(x)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    out_bytes = out.numel() * out.element_size()
    slack = 1 << 20  # λ in x's dtype, the (n, b) weights in x's dtype, allocator rounding
    assert extra <= out_bytes + slack, f"apply used {extra} bytes at peak for a {out_bytes}-byte output"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_fused_pairwise_equals_eager_and_is_sync_free(dtype):
    """On CUDA the default ("auto") pairwise mix is the compiled Triton kernel when Triton is
    installed; it must equal the eager kernels and launch without a host synchronisation."""
    from mixbook.core import fused
    from mixbook.methods import mixup

    before = fused.get_backend()
    try:
        x = torch.randn(256, 3, 32, 32, device="cuda", dtype=dtype)
        g = torch.Generator(device="cuda").manual_seed(0)
        m = mixup.sample(x, alpha=1.0, per_sample=True, generator=g)
        fused.set_backend("eager")
        want = m.apply(x)
        fused.set_backend("compiled")
        m.apply(x)  # compile outside the sync check
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            got = m.apply(x)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=2 * torch.finfo(dtype).eps * 8)
    finally:
        fused.set_backend(before)
