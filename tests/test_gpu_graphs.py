"""A mixing step captured in a CUDA graph: no host synchronisation, no CPU-side randomness, and the
transform's generator registered with the graph, so every replay draws afresh (gpu-marked; skips
without CUDA)."""

from __future__ import annotations

import pytest
import torch

import mixbook

pytestmark = pytest.mark.gpu

TRANSFORMS = {
    "MixUp": lambda: mixbook.MixUp(alpha=0.4, num_classes=10),
    "MixUp per sample": lambda: mixbook.MixUp(alpha=0.4, num_classes=10, per_sample=True),
    "ZetaMixup": lambda: mixbook.ZetaMixup(gamma=2.8, num_classes=10),
    "MultiMix": lambda: mixbook.MultiMix(alpha=1.0, num_classes=10, n=128),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_a_mixing_call_is_capturable_and_replays_fresh_draws(name):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(64, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (64,), device=dev)
    t = TRANSFORMS[name]()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):                     # warm-up outside the capture (lazy initialisation)
        for _ in range(3):
            t(x, y, generator=gen)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    graph.register_generator_state(gen)
    with torch.cuda.graph(graph):
        x_mix, y_soft = t(x, y, generator=gen)
    graph.replay()
    first = (x_mix.clone(), y_soft.clone())
    graph.replay()
    torch.cuda.synchronize()
    assert not torch.equal(first[0], x_mix), "a replay must draw new weights"
    for targets in (first[1], y_soft):
        torch.testing.assert_close(targets.sum(1), torch.ones(targets.shape[0], device=dev))
        assert bool((targets >= 0).all())
