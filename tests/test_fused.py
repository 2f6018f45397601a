"""The fused (torch.compile) pairwise mix against the eager kernels."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch

import mixbook
from mixbook.core import fused
from mixbook.methods import mixup


@pytest.fixture
def backend():
    before = fused.get_backend()
    yield fused.set_backend
    fused.set_backend(before)


def test_backend_setting_and_errors(backend):
    assert fused.get_backend() in fused.BACKENDS
    backend("eager")
    assert not fused.uses_compiled(torch.device("cpu"))
    backend("compiled")
    assert fused.uses_compiled(torch.device("cpu"))
    backend("auto")
    assert not fused.uses_compiled(torch.device("cpu"))  # the CPU stays eager under auto
    with pytest.raises(ValueError, match="backend must be one of"):
        backend("triton")


def test_eager_path_is_the_historical_two_kernels(backend):
    backend("eager")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 4, 4, generator=g)
    m = mixup.sample(x, alpha=0.4, per_sample=True, generator=g)
    lam = m.lam.view(-1, 1, 1, 1)
    assert torch.equal(m.apply(x), x.index_select(0, m.partner).lerp_(x, lam))


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_equals_eager_on_cpu(backend):
    """One compilation (dynamic shapes), then several batch sizes, dtypes and a partner batch."""
    g = torch.Generator().manual_seed(1)
    cases = []
    for b, dtype in [(32, torch.float32), (7, torch.float32), (64, torch.float64)]:
        x = torch.randn(b, 3, 8, 8, generator=g, dtype=dtype)
        cases.append((x, None, mixup.sample(x, alpha=1.0, per_sample=True, generator=g)))
    x = torch.randn(10, 5, generator=g)
    pool = torch.randn(30, 5, generator=g)
    cases.append((x, pool, mixbook.methods.reformulation.sample(x, alpha=1.0, partners=pool, generator=g)))
    for x, pool, m in cases:
        backend("eager")
        want = m.apply(x, pool)
        backend("compiled")
        got = m.apply(x, pool)
        assert got.dtype == x.dtype and got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=4 * torch.finfo(x.dtype).eps * float(x.abs().max()))
    # gradients flow through the compiled kernel like through the eager one
    x = torch.randn(8, 6, generator=g, requires_grad=True)
    m = mixup.sample(x.detach(), alpha=1.0, generator=g)
    m.apply(x).square().sum().backward()
    compiled_grad = x.grad.clone()
    x.grad = None
    backend("eager")
    m.apply(x).square().sum().backward()
    torch.testing.assert_close(compiled_grad, x.grad)


def test_auto_falls_back_to_eager_when_compiling_fails(backend, monkeypatch):
    """Under "auto", a compiler failure warns once and leaves the eager result; "compiled" raises."""
    def broken(signature):
        def kernel(*args):
            raise RuntimeError("no compiler for this device")
        return kernel

    monkeypatch.setattr(fused, "_compiled", broken)
    monkeypatch.setattr(fused, "_compile_failed", False)
    monkeypatch.setattr(fused, "_triton_available", lambda: True)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 5, generator=g)
    m = mixup.sample(x, alpha=1.0, per_sample=True, generator=g)
    backend("eager")
    want = m.apply(x)
    backend("compiled")
    with pytest.raises(RuntimeError, match="no compiler"):
        m.apply(x)
    backend("auto")
    monkeypatch.setattr(fused, "uses_compiled", lambda device, nbytes=None: not fused._compile_failed)
    monkeypatch.setattr(fused, "_cpu_like", lambda x: False)
    with pytest.warns(RuntimeWarning, match="eager kernels for the rest of this process"):
        got = m.apply(x)
    assert torch.equal(got, want)
    assert fused._compile_failed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning: the eager path is taken directly
        assert torch.equal(m.apply(x), want)


def test_no_recompile_limit_fallback_across_batch_sizes_dtypes_and_forms(backend, monkeypatch):
    """Every batch size of an epoch (the last batch is smaller), four dtypes, per-batch and
    per-example λ, partners from the batch or from a second batch, features, images and videos:
    no compiled function ever reaches Dynamo's recompile limit (under ``fullgraph=True`` that is
    an error, which ``"compiled"`` raises instead of falling back). Traced with Dynamo's
    ``eager`` backend: the guards, caches and limits are Dynamo's whatever compiles the graph."""
    import torch._dynamo

    monkeypatch.setattr(fused, "_COMPILE_BACKEND", "eager")
    monkeypatch.setattr(fused, "_COMPILED", {})
    torch._dynamo.reset()
    backend("compiled")
    g = torch.Generator().manual_seed(5)
    shapes = [(5,), (3, 4, 4), (2, 3, 2, 2)]
    seen = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
            for b in (1, 2, 3, 7, 32, 33, 100):
                for shape in shapes:
                    x = torch.randn(b, *shape, generator=g).to(dtype)
                    for per_sample in (False, True):
                        m = mixup.sample(x, alpha=1.0, per_sample=per_sample, generator=g)
                        got = m.apply(x)
                        backend("eager")
                        want = m.apply(x)
                        backend("compiled")
                        torch.testing.assert_close(got, want, rtol=0, atol=4 * torch.finfo(dtype).eps * 8)
                        seen += 1
                    pool = torch.randn(b + 3, *shape, generator=g).to(dtype)
                    m = mixbook.methods.reformulation.sample(x, alpha=1.0, partners=pool, generator=g)
                    torch.testing.assert_close(m.apply(x, pool), x.lerp(pool[m.partner], 1 - m.lam.to(dtype).view(-1, *[1] * len(shape))),
                                               rtol=0, atol=4 * torch.finfo(dtype).eps * 8)
    assert seen == 4 * 7 * 3 * 2
    # one compiled function per (dtype, aliased, one λ a batch), never more
    assert len(fused.compiled_signatures()) <= 4 * 2 * 2


def test_auto_uses_the_compiled_kernel_only_for_large_cuda_batches(backend, monkeypatch):
    backend("auto")
    monkeypatch.setattr(fused, "_triton_available", lambda: True)
    monkeypatch.setattr(fused, "_compile_failed", False)
    cuda = torch.device("cuda")
    assert not fused.uses_compiled(cuda, fused.AUTO_MIN_BYTES - 1)
    assert fused.uses_compiled(cuda, fused.AUTO_MIN_BYTES)
    assert fused.uses_compiled(cuda)
    assert not fused.uses_compiled(torch.device("cpu"), 10 * fused.AUTO_MIN_BYTES)
