"""Figures the chapters share: Beta densities, decision boundaries, reliability diagrams.

Chapters 1 and 2.

Each function draws on a given matplotlib ``Axes`` (a new one if ``ax`` is None) and returns
it; one idea a figure, axes labelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from matplotlib.axes import Axes
from scipy import stats
from torch import nn

__all__ = ["beta_densities", "plane_grid", "decision_boundary", "reliability_diagram", "vicinity"]


def _axes(ax: Axes | None) -> Axes:
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax


def beta_densities(alphas: Iterable[float], ax: Axes | None = None, *, ymax: float = 4.0) -> Axes:
    """Densities of Beta(α, α) on (0, 1), one curve per α."""
    ax = _axes(ax)
    lam = np.linspace(1e-3, 1 - 1e-3, 999)
    for a in alphas:
        ax.plot(lam, stats.beta(a, a).pdf(lam), label=f"α = {a:g}")
    ax.set(xlabel="λ", ylabel="density", ylim=(0, ymax), title="Beta(α, α)")
    ax.legend()
    return ax


def plane_grid(x: torch.Tensor, resolution: int = 200, margin: float = 0.5) -> torch.Tensor:
    """A ``(resolution², 2)`` grid of points covering the bounding box of ``x`` ``(n, 2)`` plus ``margin``.

    Row-major: reshape a per-point quantity to ``(resolution, resolution)`` to draw it, with
    the first coordinate varying along the columns. Same dtype and device as ``x``.
    """
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (n, 2), got {tuple(x.shape)}")
    lo = x.min(0).values - margin
    hi = x.max(0).values + margin
    t = torch.linspace(0, 1, resolution, dtype=x.dtype, device=x.device)
    g1, g0 = torch.meshgrid(lo[1] + t * (hi[1] - lo[1]), lo[0] + t * (hi[0] - lo[0]), indexing="ij")
    return torch.stack([g0.reshape(-1), g1.reshape(-1)], dim=1)


@torch.no_grad()
def decision_boundary(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ax: Axes | None = None,
    *,
    resolution: int = 200,
    margin: float = 0.5,
    title: str | None = None,
) -> Axes:
    """Filled contours of ``p(class 1 | x)`` of a two-class model over the plane, with the data.

    Args:
        model: maps ``(n, 2)`` to ``(n, 2)`` logits.
        x: ``(n, 2)`` points; y: ``(n,)`` labels in {0, 1}.
    """
    ax = _axes(ax)
    dev = next(model.parameters()).device
    x_np, y_np = x.detach().cpu().numpy(), y.detach().cpu().numpy()
    grid = plane_grid(x.detach().float().to(dev), resolution, margin)
    g0, g1 = (grid[:, i].reshape(resolution, resolution).cpu().numpy() for i in (0, 1))
    was_training = model.training
    model.eval()
    p = torch.softmax(model(grid), 1)[:, 1].reshape(resolution, resolution).cpu().numpy()
    model.train(was_training)
    cs = ax.contourf(g0, g1, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.8)
    ax.contour(g0, g1, p, levels=[0.5], colors="k", linewidths=1)
    ax.scatter(x_np[:, 0], x_np[:, 1], c=y_np, cmap="RdBu_r", vmin=-0.5, vmax=1.5, s=12,
               edgecolors="white", linewidths=0.5)
    ax.set(xlabel="$x_1$", ylabel="$x_2$", title=title)
    ax.figure.colorbar(cs, ax=ax, label="p(class 1)")
    return ax


def reliability_diagram(bins: Mapping[str, torch.Tensor], ax: Axes | None = None, *,
                        label: str | None = None, **plot_kwargs) -> Axes:
    """Accuracy against mean confidence per bin (from :func:`mixbook.training.metrics.reliability_bins`).

    Empty bins are skipped; the diagonal is perfect calibration.
    """
    ax = _axes(ax)
    conf = bins["confidence"].detach().cpu().numpy()
    acc = bins["accuracy"].detach().cpu().numpy()
    keep = bins["count"].detach().cpu().numpy() > 0
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.plot(conf[keep], acc[keep], marker="o", label=label, **plot_kwargs)
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title="Reliability")
    if label is not None:
        ax.legend()
    return ax


def vicinity(
    mixed: torch.Tensor,
    labels: torch.Tensor,
    ax: Axes | None = None,
    *,
    data: torch.Tensor | None = None,
    anchors: torch.Tensor | None = None,
    anchor_labels: torch.Tensor | None = None,
    title: str | None = None,
) -> Axes:
    """Scatter of synthetic 2-D points ``(n, 2)`` coloured by their (kept) label ``(n,)``.

    ``data`` (small dark dots, drawn on top) shows the original points; ``anchors`` (large, outlined) the labelled
    points whose vicinity is drawn.
    """
    ax = _axes(ax)
    colors = np.array(["#2166ac", "#b2182b"])
    m, lab = mixed.detach().cpu().numpy(), labels.detach().cpu().numpy()
    ax.scatter(m[:, 0], m[:, 1], c=colors[lab % 2], s=3, alpha=0.3, linewidths=0)
    if data is not None:
        d = data.detach().cpu().numpy()
        ax.scatter(d[:, 0], d[:, 1], c="0.25", s=1.5, alpha=0.6, linewidths=0, label="data")
    if anchors is not None:
        a = anchors.detach().cpu().numpy()
        al = anchor_labels.detach().cpu().numpy() if anchor_labels is not None else np.zeros(len(a), int)
        ax.scatter(a[:, 0], a[:, 1], c=colors[al % 2], s=120, marker="*", edgecolors="k", linewidths=1)
    ax.set(xlabel="$x_1$", ylabel="$x_2$", title=title)
    ax.set_aspect("equal", adjustable="box")
    return ax
