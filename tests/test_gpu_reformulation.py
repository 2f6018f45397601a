"""CUDA: the reformulated mixup on the device (in-batch and separate partner batches).

Marked ``gpu`` and skipped cleanly without CUDA. CPU and CUDA random streams differ, so
sampling is compared in distribution; a given :class:`Mixing` moved with ``.to("cuda")``
must give the CPU's numbers. A mixing step (sample + apply, with or without partners) must
not synchronise with the host, and ``apply`` must allocate nothing batch-sized but its output.
"""

from __future__ import annotations


import pytest
import torch
from scipy import stats
from torch import nn

from mixbook import bench
from mixbook.training import data, models, train
from mixbook.methods import reformulation
from mixbook.chapters import reformulation_checks

from _stats import assert_beta_moments, cpu_gen, cuda_gen

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

N = 200_000
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


# ---------------------------------------------------------------------- CPU == CUDA
@pytest.mark.parametrize("m", [None, 1, 5, 40])
@pytest.mark.parametrize("per_sample", [False, True])
def test_cpu_and_cuda_agree(m, per_sample):
    g = cpu_gen(0)
    x = torch.randn(16, 3, 4, 4, generator=g)
    p = None if m is None else torch.randn(m, 3, 4, 4, generator=g)
    mix = reformulation.sample(x, alpha=0.4, partners=p, per_sample=per_sample, generator=g)
    mc = mix.to("cuda")
    assert mc.device.type == "cuda" and mc.is_pairwise and mc.partner_size == m
    out = mc.apply(x.cuda()) if p is None else mc.apply(x.cuda(), p.cuda())
    assert out.device.type == "cuda" and out.dtype == torch.float32
    torch.testing.assert_close(out.cpu(), mix.apply(x, p))
    torch.testing.assert_close(mc.dense().cpu(), mix.dense())


# ---------------------------------------------------------------------- no host sync
@pytest.mark.parametrize("m", [None, 7, 300])
@pytest.mark.parametrize("per_sample", [False, True])
def test_mixing_step_does_not_synchronise(m, per_sample):
    gen = cuda_gen(0)
    x = torch.randn(64, 3, 16, 16, device="cuda", generator=gen)
    y = torch.randint(0, 10, (64,), device="cuda", generator=gen)
    p = None if m is None else torch.randn(m, 3, 16, 16, device="cuda", generator=gen)

    def step():
        mix = reformulation.sample(x, alpha=0.4, partners=p, per_sample=per_sample, generator=gen)
        return mix.apply(x, p), reformulation.mix(x, y, alpha=0.4, partners=p, generator=gen)

    step()  # warm-up outside the guarded region: lazy CUDA state, allocator, kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, (mixed, labels) = step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert out.shape == x.shape and out.device == x.device and out.dtype == x.dtype
    assert mixed.shape == x.shape and labels is y


def test_reformulated_loss_does_not_synchronise():
    gen = cuda_gen(1)
    x = torch.randn(32, 2, device="cuda", generator=gen)
    y = torch.randint(0, 2, (32,), device="cuda", generator=gen)
    pool = torch.randn(100, 2, generator=cpu_gen(1))  # on the CPU: moved once, before the guard
    before = pool.clone()
    model = models.MLP(2, 2, (8,)).cuda()
    method = train.make_method("reformulation", alpha=0.5, unlabelled=pool)
    method.loss(model, x, y, 2, gen)  # warm-up, moves the pool
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = method.loss(model, x, y, 2, gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert loss.device.type == "cuda" and loss.ndim == 0
    # the method keeps the user's pool as ``partners`` (SamplerMethod) and draws from a copy on the
    # batch's device: the pool itself stays on the CPU, unchanged
    assert method.partners.device.type == "cpu", "the user's pool was moved in place"
    assert torch.equal(method.partners, before) and torch.equal(pool, before)


# ---------------------------------------------------------------------- sampling on CUDA
@pytest.mark.parametrize("alpha", [0.1, 0.4, 1.0, 4.0])
@pytest.mark.parametrize("separate", [False, True])
def test_cuda_lambda_is_beta_alpha_plus_one_alpha(alpha, separate):
    x = torch.empty(N, 1, device="cuda")
    p = torch.empty(7, 1, device="cuda") if separate else None
    mix = reformulation.sample(x, alpha=alpha, partners=p, per_sample=True, generator=cuda_gen(int(alpha * 10)))
    assert mix.lam.device.type == "cuda" and mix.partner.device.type == "cuda"
    assert_beta_moments(mix.lam, alpha + 1, alpha)


def test_cuda_partners_uniform_and_in_batch_permutation():
    m = 5
    mix = reformulation.sample(torch.empty(50_000, 2, device="cuda"), alpha=1.0,
                               partners=torch.empty(m, 2, device="cuda"), generator=cuda_gen(2))
    counts = torch.bincount(mix.partner, minlength=m).cpu().numpy()
    assert counts.size == m and stats.chisquare(counts).pvalue > 1e-4, counts
    inb = reformulation.sample(torch.empty(1000, device="cuda"), alpha=1.0, generator=cuda_gen(3))
    assert sorted(inb.partner.tolist()) == list(range(1000))


def test_cuda_kept_label_weight():
    alpha = 1.0
    w = reformulation_checks.kept_label_weight(alpha, N, generator=cuda_gen(4))
    assert w.device.type == "cuda" and w.dtype == torch.float64 and w.shape == (N,)
    assert_beta_moments(w, alpha + 1, alpha)


def test_cuda_seeds():
    x = torch.empty(128, 2, device="cuda")
    p = torch.empty(9, 2, device="cuda")
    for partners in (None, p):
        a = reformulation.sample(x, alpha=0.4, partners=partners, generator=cuda_gen(6))
        b = reformulation.sample(x, alpha=0.4, partners=partners, generator=cuda_gen(6))
        assert torch.equal(a.partner, b.partner) and torch.equal(a.lam, b.lam)


# ---------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [None, 3, 24])
def test_cuda_dtype_preserved(dtype, m):
    gen = cuda_gen(9)
    b = 16
    x = torch.randn(b, 3, 4, 4, device="cuda", generator=gen).to(dtype)
    p = None if m is None else (torch.randn(m, 3, 4, 4, device="cuda", generator=gen) + 2).to(dtype)
    x0 = x.clone()
    p0 = None if p is None else p.clone()
    mix = reformulation.sample(x, alpha=1.0, partners=p, per_sample=True, generator=gen)
    out = mix.apply(x, p)
    assert torch.equal(x, x0) and (p is None or torch.equal(p, p0))
    assert out.dtype == dtype and out.device == x.device and out.shape == x.shape
    pool = x.double() if p is None else torch.cat([x, p]).double()
    w = mix.dense(torch.float64)
    assert w.shape == (b, b + (m or 0))
    ref = (w @ pool.flatten(1)).reshape(out.shape)
    tol = (b + 4) * torch.finfo(dtype).eps * float(pool.abs().max())
    assert float((out.double() - ref).abs().max()) <= tol


# ---------------------------------------------------------------------- memory
@pytest.mark.parametrize("m", [None, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_apply_allocates_only_its_output(m, dtype):
    b = 256
    x = torch.randn(b, 3, 64, 64, device="cuda", generator=cuda_gen(10)).to(dtype)
    p = None if m is None else torch.randn(m, 3, 64, 64, device="cuda", generator=cuda_gen(11)).to(dtype)
    mix = reformulation.sample(x, alpha=1.0, partners=p, generator=cuda_gen(12))
    warm = mix.apply(x, p)
    del warm
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = mix.apply(x, p)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    out_bytes = out.numel() * out.element_size()
    assert extra <= out_bytes + (1 << 20), f"apply used {extra} bytes at peak for a {out_bytes}-byte output"


# ---------------------------------------------------------------------- devices
def test_wrong_devices():
    x = torch.zeros(4, 2, device="cuda")
    with pytest.raises(ValueError, match=r"partners is on cpu"):
        reformulation.sample(x, partners=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="generator is on cpu"):
        reformulation.sample(x, generator=cpu_gen(0))
    with pytest.raises(ValueError, match=r"\by\b is on cpu"):
        reformulation.mix(x, torch.zeros(4, dtype=torch.long))
    mix = reformulation.sample(x, partners=torch.zeros(3, 2, device="cuda"))
    with pytest.raises(ValueError, match=r"partners is on cpu"):
        mix.apply(x, torch.zeros(3, 2))


# ---------------------------------------------------------------------- Monte Carlo, training, bench
def test_cuda_monte_carlo_forms():
    g = cpu_gen(0)
    c = 3
    means = torch.randn(c, 4, generator=g, dtype=torch.float64) * 2
    y = torch.arange(60) % c
    x = means[y] + 0.5 * torch.randn(60, 4, generator=g, dtype=torch.float64)
    model = nn.Linear(4, c).double()
    with torch.no_grad():
        model.weight.copy_(means)
        model.bias.copy_(-(means**2).sum(1) / 2)
    model, x, y = model.cuda(), x.cuda(), y.cuda()
    # The CUDA stream cannot be pinned to a CPU-checked seed, so the thresholds are loose: over
    # 120 independent CPU seed pairs of this problem (n = 4000) the agreeing forms gave
    # |loss_z| <= 3.6 and grad_z2 <= 3.3, the wrong order |loss_z| >= 27 and grad_z2 >= 75.
    est = {form: reformulation_checks.monte_carlo(model, x, y, c, alpha=1.0, form=form, n=16_000,
                                           generator=cuda_gen(20 + k))
           for k, form in enumerate(reformulation_checks.FORMS)}
    assert est["reformulated"]["grad"].device.type == "cuda"
    same = reformulation_checks.agreement(est["symmetric"], est["reformulated"])
    assert abs(same["loss_z"]) < 5 and same["grad_z2"] < 6 and same["cosine"] > 0.95, same
    diff = reformulation_checks.agreement(est["wrong_order"], est["reformulated"])
    assert abs(diff["loss_z"]) > 10 and diff["grad_z2"] > 20, diff

    # Same draws: the mean gradient is autograd's gradient of the mean loss.
    out = reformulation_checks.monte_carlo(model, x, y, c, alpha=0.7, form="reformulated", n=256, generator=cuda_gen(5),
                                    chunk=256)
    inputs, target = reformulation_checks._form_batch("reformulated", x, y, c, 0.7, 256, cuda_gen(5))
    mean_loss = -(target * model(inputs).log_softmax(1)).sum(1).mean()
    grad = torch.cat([gk.reshape(-1) for gk in torch.autograd.grad(mean_loss, list(model.parameters()))])
    torch.testing.assert_close(out["grad"], grad, atol=1e-10, rtol=1e-10)


def test_cuda_semi_supervised_fit():
    split = data.two_moons(n_train=160, n_test=64, seed=0)
    labelled, pool = data.labelled_subset(split, 0.25, seed=0)
    pool_before = pool.clone()

    def run():
        torch.manual_seed(0)
        model = models.MLP(2, 2, (16,))
        hist = train.fit(model, labelled, train.make_method("reformulation", alpha=0.4, unlabelled=pool),
                         epochs=2, batch_size=16, lr=1e-2, seed=0, device="cuda", progress=False)
        return model, hist

    m1, h1 = run()
    m2, h2 = run()
    assert next(m1.parameters()).device.type == "cuda"
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    assert [e["train_loss"] for e in h1.epochs] == [e["train_loss"] for e in h2.epochs]
    assert pool.device.type == "cpu" and torch.equal(pool, pool_before)


def test_cuda_time_ops():
    x = torch.randn(256, 3, 32, 32, device="cuda")
    p = torch.randn(64, 3, 32, 32, device="cuda")
    frame = bench.time_ops({
        "in_batch": lambda: reformulation.sample(x, alpha=1.0).apply(x),
        "partners": lambda: reformulation.sample(x, alpha=1.0, partners=p).apply(x, p),
        "copy": lambda: x.clone(),
    }, repeats=3, number=2, device="cuda", baseline="copy")
    assert frame.loc["copy", "ratio_to_copy"] == 1.0
    assert bool((frame["median_s"] > 0).all())
