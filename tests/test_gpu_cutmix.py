"""CUDA checks for mixbook.methods.cutmix and the issue-16 conventions: no host synchronisation, and the
same BoxMixing applied on CPU and CUDA gives the same batch. Marked ``gpu``; skipped without CUDA.
(CPU and CUDA generators give different streams, so draws are compared through one mixing moved
between devices, not through one seed.)"""

from __future__ import annotations

import pytest
import torch

import mixbook
from mixbook.methods import cutmix

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

TRANSFORMS = {
    "CutMix": dict(cls=mixbook.CutMix, kw={}),
    "CutMix(elem, prob=0.5)": dict(cls=mixbook.CutMix, kw={"mode": "elem", "prob": 0.5}),
    "MixUpCutMix": dict(cls=mixbook.MixUpCutMix, kw={}),
    "MixUpCutMix(pair, prob=0.8)": dict(cls=mixbook.MixUpCutMix, kw={"mode": "pair", "prob": 0.8}),
    "MixUpCutMix(elem)": dict(cls=mixbook.MixUpCutMix, kw={"mode": "elem"}),
}


@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("labels", ["int", "soft", "channels_last"])
def test_no_host_synchronisation(name, labels):
    gen = torch.Generator("cuda").manual_seed(0)
    spec = TRANSFORMS[name]
    t = spec["cls"](num_classes=10, generator=gen, **spec["kw"])
    x = torch.rand(64, 3, 32, 32, device="cuda", generator=gen)
    y = torch.randint(0, 10, (64,), device="cuda", generator=gen)
    if labels == "soft":
        y = torch.softmax(torch.randn(64, 10, device="cuda", generator=gen), 1)
    if labels == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    t(x, y)                                        # warm-up outside the guarded region
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, targets = t(x, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert out.device == x.device and out.dtype == x.dtype and targets.shape == (64, 10)
    if labels == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_same_mixing_on_cpu_and_cuda(dtype):
    x = torch.rand(16, 3, 20, 20).to(dtype)
    y = torch.randint(0, 10, (16,))
    m = cutmix.sample_switch(x, y, mode="elem", prob=0.8, generator=torch.Generator().manual_seed(0))
    gpu = m.to("cuda")
    torch.testing.assert_close(gpu.apply(x.cuda()).cpu(), m.apply(x))
    torch.testing.assert_close(gpu.targets(y.cuda(), 10).cpu(), m.targets(y, 10))


def test_collate_on_uint8_then_device():
    samples = [(torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8), i % 4) for i in range(8)]
    x, t = mixbook.MixCollate(mixbook.MixUpCutMix(num_classes=4, generator=torch.Generator().manual_seed(0)))(samples)
    assert x.dtype == torch.uint8
    assert (x.cuda().float() / 255).max() <= 1
