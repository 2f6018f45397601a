"""Manifold mixup on CUDA: no host synchronisation in a step, CPU agreement.

Every test here is marked ``gpu`` and skipped cleanly without CUDA. The layer choice is made
on the host, so it is the same on both devices for a seed; λ and the partners come from the
device's generator, whose stream differs from the CPU's, so a given :class:`Mixing` moved with
``.to("cuda")`` is compared instead.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _stats import cuda_gen
from mixbook.core import losses
from mixbook.methods import mixup
from mixbook.training import models, train
from mixbook.methods.manifold import ManifoldMixup
from mixbook.chapters.manifold_gradient import decomposed_loss, gradient_terms
from mixbook.training.metrics import flatness

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

LAYERS = ["input", "features.2", "features.3", "features"]


def _mlp(seed: int = 0, dtype=torch.float32) -> models.MLP:
    torch.manual_seed(seed)
    return models.MLP(4, 5, (16, 16)).to(dtype)


@pytest.mark.parametrize("per_sample", [False, True])
def test_manifold_step_does_not_synchronise(per_sample):
    model = _mlp().cuda()
    g = cuda_gen(0)
    x = torch.randn(64, 4, device="cuda", generator=g)
    y = torch.randint(0, 5, (64,), device="cuda", generator=g)
    mm = ManifoldMixup(model, LAYERS, per_sample=per_sample, generator=g, seed=1)
    m = mixup.sample(x, y, generator=g)
    for layer in LAYERS:  # warm-up outside the guarded region: lazy CUDA state, kernels
        losses.mixed_cross_entropy(mm.mix_at(x, m, layer), y, y[m.partner], m.lam)
    torch.cuda.synchronize()
    seen = []
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(8):
            logits, m = mm(x, y)
            loss = losses.mixed_cross_entropy(logits, y, y[m.partner], m.lam)
            seen.append(mm.last_layer)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert logits.shape == (64, 5) and logits.device.type == "cuda" and torch.isfinite(loss)
    assert len(set(seen)) >= 2
    assert all(len(mod._forward_hooks) == 0 for mod in model.modules())


def test_method_step_does_not_synchronise():
    model = _mlp(1).cuda()
    g = cuda_gen(1)
    x = torch.randn(32, 4, device="cuda", generator=g)
    y = torch.randint(0, 5, (32,), device="cuda", generator=g)
    method = train.make_method("manifold_mixup", layers=LAYERS)
    for _ in range(8):  # warm-up, every layer almost surely
        method.loss(model, x, y, 5, g)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = method.loss(model, x, y, 5, g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert loss.device.type == "cuda" and loss.ndim == 0


def test_layer_sequence_is_the_same_on_cpu_and_cuda():
    cpu, gpu = _mlp(2), _mlp(2).cuda()
    x = torch.randn(8, 4)
    a = ManifoldMixup(cpu, LAYERS, seed=5, generator=torch.Generator().manual_seed(0))
    b = ManifoldMixup(gpu, LAYERS, seed=5, generator=cuda_gen(0))
    seq_a = [a(x) and a.last_layer for _ in range(40)]
    seq_b = [b(x.cuda()) and b.last_layer for _ in range(40)]
    assert seq_a == seq_b


@pytest.mark.parametrize("layer", LAYERS)
def test_mix_at_agrees_with_cpu(layer):
    cpu = _mlp(3, torch.float64)
    gpu = _mlp(3, torch.float64).cuda()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 4, dtype=torch.float64, generator=g)
    y = torch.randint(0, 5, (16,), generator=g)
    m = mixup.sample(x, y, alpha=2.0, per_sample=True, generator=g)
    out_cpu = ManifoldMixup(cpu, [layer]).mix_at(x, m, layer)
    out_gpu = ManifoldMixup(gpu, [layer]).mix_at(x.cuda(), m.to("cuda"), layer)
    assert out_gpu.device.type == "cuda"
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, atol=1e-12, rtol=1e-12)


def _f_and_g(device):
    torch.manual_seed(4)
    feature = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh()).double().to(device)
    head = nn.Linear(6, 2).double().to(device)
    return feature, head


@pytest.mark.parametrize("b", [None, 5])
@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_gradient_terms_agree_with_cpu(b, lam):
    g = torch.Generator().manual_seed(5)
    shape, yshape = ((3,), (2,)) if b is None else ((b, 3), (b, 2))
    args = [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(2)]
    args += [torch.randn(yshape, generator=g, dtype=torch.float64) for _ in range(2)]
    cpu = gradient_terms(*_f_and_g("cpu"), *args, lam)
    gpu = gradient_terms(*_f_and_g("cuda"), *[a.cuda() for a in args], lam)
    assert set(cpu) == set(gpu)
    for name in cpu:
        assert gpu[name].device.type == "cuda"
        torch.testing.assert_close(gpu[name].cpu(), cpu[name], atol=1e-12, rtol=1e-10)
    total = gpu["usual_1"] + gpu["usual_2"] + gpu["cross_1"] + gpu["cross_2"]
    assert float((total - gpu["total"]).norm() / gpu["total"].norm()) < 1e-10


@pytest.mark.parametrize("keep", ["all", "usual", "cross"])
def test_decomposed_loss_agrees_with_cpu(keep):
    g = torch.Generator().manual_seed(6)
    args = [torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(2)]
    args += [torch.randn(4, 2, generator=g, dtype=torch.float64) for _ in range(2)]
    lam = torch.rand(4, generator=g, dtype=torch.float64)
    grads = {}
    for device in ("cpu", "cuda"):
        feature, head = _f_and_g(device)
        loss = decomposed_loss(feature, head, *[a.to(device) for a in args], lam.to(device), keep=keep)
        params = [*feature.parameters(), *head.parameters()]
        grads[device] = torch.cat([p.reshape(-1) for p in torch.autograd.grad(loss, params)])
    torch.testing.assert_close(grads["cuda"].cpu(), grads["cpu"], atol=1e-12, rtol=1e-10)


def test_flatness_agrees_with_cpu():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(600, 5, generator=g)
    y = torch.randint(0, 3, (600,), generator=g)
    cpu, gpu = flatness(x, y), flatness(x.cuda(), y.cuda())
    assert gpu["singular_values"].device.type == "cuda"
    torch.testing.assert_close(gpu["singular_values"].cpu(), cpu["singular_values"])
    assert gpu["mean_effective_rank"] == pytest.approx(cpu["mean_effective_rank"], rel=1e-9)
