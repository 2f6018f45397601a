"""Toy manifolds with an exact distance: where synthetic samples land, measured, not estimated.

Chapter 4 (realism: distances to the data manifold).

A nearest-neighbour distance to held-out data (:func:`mixbook.training.metrics.knn_distance`) is only a
proxy for "on the data manifold": it rewards any point that sits among many data points. On a
manifold known in closed form the distance itself can be computed. The ζ-mixup authors draw
their toy figures on two such sets, interleaving crescents (two moons) and a 1-D helix in 3-D;
this module samples both without noise and measures the exact Euclidean distance of any point
to them:

* :func:`moons` / :func:`moons_distance`: the two unit half-circles of scikit-learn's
  ``make_moons`` (outer: centre ``(0, 0)``, angles ``[0, π]``, label 0; inner: centre
  ``(1, 0.5)``, angles ``[π, 2π]``, label 1). The distance to an arc is ``|‖p − c‖ − 1|`` when
  the angle of ``p − c`` lies on the arc, else the distance to the nearer end point (closed form);
  the label of the nearer arc is the label of the manifold point nearest to ``p``.
* :func:`helix` / :func:`helix_distance`: ``h(t) = (r cos t, r sin t, c t)``, ``t ∈ [0, 2π·turns]``.
  The distance ``min_t ‖p − h(t)‖`` has no closed form; it is found to rounding error by a dense
  grid over ``t`` (finer than the helix's curvature radius) followed by Newton steps on
  ``d/dt ‖p − h(t)‖² = 0`` from the best grid point, clamped to the parameter range.

Everything is float64 torch on the points' device; sampling takes an optional generator.
"""

from __future__ import annotations

import math

import torch

from ..core import _checks, _random

__all__ = ["MOON_CENTRES", "moons", "moons_distance", "helix", "helix_distance"]

MOON_CENTRES = ((0.0, 0.0), (1.0, 0.5))
"""Centres of the outer (label 0) and inner (label 1) unit half-circles of ``make_moons``."""

_MOON_START = (0.0, math.pi)  # each arc spans [start, start + π]


def _points(name: str, x: object, dim: int) -> torch.Tensor:
    x = _checks.tensor(name, x)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor of points, got {x.dtype}")
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (num_points, {dim}), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one point")
    x = x.detach().to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite")
    return x


def moons(
    n: int,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points on the two noise-free moons, half on each (the inner gets the odd one).

    The angle is uniform on each arc. Returns ``x`` ``(n, 2)`` float64 and ``y`` ``(n,)`` int64
    (0: outer, 1: inner), outer points first.
    """
    n = _checks.positive_int("n", n)
    device = torch.device("cpu") if device is None else torch.empty(0, device=device).device
    _checks.generator(generator, device)
    n_outer = n // 2
    y = (torch.arange(n, device=device) >= n_outer).long()
    t = math.pi * _random.rand((n,), device=device, dtype=torch.float64, generator=generator)
    centre = torch.tensor(MOON_CENTRES, device=device, dtype=torch.float64)[y]
    start = torch.tensor(_MOON_START, device=device, dtype=torch.float64)[y]
    x = centre + torch.stack([torch.cos(start + t), torch.sin(start + t)], dim=1)
    return x, y


def _arc_distance(p: torch.Tensor, centre: tuple[float, float], start: float) -> torch.Tensor:
    c = torch.tensor(centre, device=p.device, dtype=torch.float64)
    v = p - c
    r = v.norm(dim=1)
    angle = torch.remainder(torch.atan2(v[:, 1], v[:, 0]) - start, 2 * math.pi)  # in [0, 2π)
    on_arc = angle <= math.pi
    ends = c + torch.tensor([[math.cos(start), math.sin(start)], [math.cos(start + math.pi), math.sin(start + math.pi)]],
                            device=p.device, dtype=torch.float64)
    to_end = torch.cdist(p, ends).min(dim=1).values
    return torch.where(on_arc, (r - 1.0).abs(), to_end)


def moons_distance(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact distance of each point to the union of the two moons, and the nearer moon's label.

    Args:
        points: ``(m, 2)`` floating tensor (any device).

    Returns:
        ``(distance, label)``: ``(m,)`` float64 distances and ``(m,)`` int64 labels of the
        nearer arc (0 on ties).
    """
    p = _points("points", points, 2)
    d = torch.stack([_arc_distance(p, c, s) for c, s in zip(MOON_CENTRES, _MOON_START)], dim=1)
    dist, label = d.min(dim=1)
    return dist, label


def _helix_args(radius: object, pitch: object, turns: object) -> tuple[float, float, float]:
    return (_checks.positive_float("radius", radius), _checks.positive_float("pitch", pitch),
            _checks.positive_float("turns", turns))


def helix(
    n: int,
    *,
    radius: float = 1.0,
    pitch: float = 0.2,
    turns: float = 3.0,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` points on the helix ``(r cos t, r sin t, c t)``, ``t`` uniform on ``[0, 2π·turns]``.

    Args:
        n: number of points.
        radius: ``r > 0``. pitch: ``c > 0`` (height gained per radian). turns: ``> 0``.

    Returns:
        ``(n, 3)`` float64 tensor.
    """
    n = _checks.positive_int("n", n)
    radius, pitch, turns = _helix_args(radius, pitch, turns)
    device = torch.device("cpu") if device is None else torch.empty(0, device=device).device
    _checks.generator(generator, device)
    t = 2 * math.pi * turns * _random.rand((n,), device=device, dtype=torch.float64, generator=generator)
    return torch.stack([radius * torch.cos(t), radius * torch.sin(t), pitch * t], dim=1)


def helix_distance(
    points: torch.Tensor,
    *,
    radius: float = 1.0,
    pitch: float = 0.2,
    turns: float = 3.0,
    grid_per_turn: int = 256,
    newton_steps: int = 8,
    chunk: int = 4096,
) -> torch.Tensor:
    """Distance of each point to the helix of :func:`helix` (same ``radius, pitch, turns``).

    ``min_t ‖p − h(t)‖`` over ``t ∈ [0, 2π·turns]``: the best of a grid of ``grid_per_turn``
    values a turn, then ``newton_steps`` Newton steps on the stationarity condition
    ``g(t) = r x sin t − r y cos t − c (z − c t) = 0`` (half the derivative of the squared
    distance), each clamped to the parameter range and kept only where it lowers the distance.
    With the default grid the step between grid points (``2π/256`` rad) is far below the
    spacing between turns, so the grid point lies in the basin of the global minimum.

    Returns:
        ``(m,)`` float64 distances on the points' device.
    """
    p = _points("points", points, 3)
    radius, pitch, turns = _helix_args(radius, pitch, turns)
    grid_per_turn = _checks.positive_int("grid_per_turn", grid_per_turn)
    newton_steps = _checks.positive_int("newton_steps", newton_steps) if newton_steps else 0
    chunk = _checks.positive_int("chunk", chunk)
    t_max = 2 * math.pi * turns
    grid = torch.linspace(0.0, t_max, max(2, math.ceil(grid_per_turn * turns) + 1), device=p.device,
                          dtype=torch.float64)
    curve = torch.stack([radius * torch.cos(grid), radius * torch.sin(grid), pitch * grid], dim=1)

    def sq(t: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return ((q[:, 0] - radius * torch.cos(t)) ** 2 + (q[:, 1] - radius * torch.sin(t)) ** 2
                + (q[:, 2] - pitch * t) ** 2)

    out = []
    for q in p.split(chunk):
        t = grid[torch.cdist(q, curve).argmin(dim=1)]
        best = sq(t, q)
        for _ in range(newton_steps):
            s, c = torch.sin(t), torch.cos(t)
            g = radius * q[:, 0] * s - radius * q[:, 1] * c - pitch * (q[:, 2] - pitch * t)
            dg = radius * q[:, 0] * c + radius * q[:, 1] * s + pitch ** 2
            step = torch.where(dg > 0, g / dg.clamp_min(1e-300), torch.zeros_like(g))
            t_new = (t - step).clamp(0.0, t_max)
            new = sq(t_new, q)
            better = new < best
            t, best = torch.where(better, t_new, t), torch.where(better, new, best)
        out.append(best.clamp_min(0).sqrt())
    return torch.cat(out)
