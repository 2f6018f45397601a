"""Figures as the book shows them: measured for readability at the width a reader sees them.

Every chapter. A chapter draws a matplotlib figure and glues it with :func:`glue` instead of
``myst_nb.glue``; besides the figure, :func:`glue` records what the figure looks like on the page
(a JSON text under the key ``<name>__figure``):

- its size in pixels as glued (rendered as IPython's inline backend renders it: ``fig.dpi``,
  ``bbox_inches="tight"``) and the scale at which the book shows it: the image is shown at its
  pixel size, or shrunk to the text column (:data:`COLUMN_PX` CSS pixels at a 1400 px window);
- the smallest text on it, in points at that scale (a point is 96/72 CSS pixels);
- the largest legend (entries);
- axis labels, titles and legend texts written as identifiers (``test_mse``) instead of words;
- axes whose ticks carry no label anywhere in their row or column (points that cannot be
  identified), and axes with tick labels but no axis label anywhere in their row or column.

:func:`problems` turns a record into the list of rules it breaks (text ≥ :data:`MIN_PT` pt, legends
≤ :data:`MAX_LEGEND` entries, words not identifiers, labelled and identifiable axes);
``tests/test_figures.py`` applies it to every figure of the committed chapters, and checks that
each record matches the image it describes, so a figure that regresses fails the suite.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

__all__ = ["COLUMN_PX", "MIN_PT", "MAX_LEGEND", "RECORD_SUFFIX", "measure", "problems", "glue", "column_inches"]

#: Width of the book's text column, in CSS pixels, at a 1400 px window (sphinx-book-theme).
COLUMN_PX = 784
#: Smallest text allowed on a figure, in points at the width the reader sees it.
MIN_PT = 9.0
#: Most entries a legend may have (more: facets or direct labels).
MAX_LEGEND = 8
#: A figure glued as ``name`` has its record glued as ``name + RECORD_SUFFIX``.
RECORD_SUFFIX = "__figure"

_CSS_PX_PER_PT = 96 / 72
_IDENTIFIER = re.compile(r"\b[A-Za-z]+(?:_[A-Za-z0-9]+)+\b")


def column_inches(dpi: float | None = None) -> float:
    """The widest figure, in inches, that the book shows unshrunk at ``dpi`` (default: the style's
    ``figure.dpi``, set by :func:`mixbook.setup`)."""
    if dpi is None:
        import matplotlib as mpl

        dpi = mpl.rcParams["figure.dpi"]
    return COLUMN_PX / dpi


def _words(text: str) -> str:
    return re.sub(r"\$[^$]*\$", "", text)  # TeX (``$w_i$``) is math, not an identifier


def _png(fig) -> tuple[bytes, float]:
    buf = io.BytesIO()
    dpi = float(fig.dpi)
    fig.canvas.print_figure(buf, format="png", dpi=dpi, bbox_inches="tight",
                            facecolor=fig.get_facecolor(), edgecolor=fig.get_edgecolor())
    return buf.getvalue(), dpi


def _png_size(data: bytes) -> tuple[int, int]:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG image")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _shared_groups(axes: list, which: str) -> list[list]:
    seen, groups = set(), []
    for ax in axes:
        if id(ax) in seen:
            continue
        grouper = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
        group = [a for a in grouper.get_siblings(ax) if a in axes]
        # a grid's row (for y) or column (for x) counts as one axis too: facets label the outer ones
        spec = ax.get_subplotspec() if hasattr(ax, "get_subplotspec") else None
        if spec is not None:
            line = spec.colspan if which == "x" else spec.rowspan
            for other in axes:
                o = other.get_subplotspec() if hasattr(other, "get_subplotspec") else None
                if o is not None and o.get_gridspec() is spec.get_gridspec():
                    if (o.colspan if which == "x" else o.rowspan) == line and other not in group:
                        group.append(other)
        seen.update(id(a) for a in group)
        groups.append(group)
    return groups


def measure(fig) -> dict[str, Any]:
    """What ``fig`` looks like on the page: a JSON-able record (see the module docstring).

    Draws the figure once (as the inline backend does) to size it and lay out its text.
    """
    from matplotlib.text import Text

    data, dpi = _png(fig)
    width, height = _png_size(data)
    scale = min(1.0, COLUMN_PX / width)
    renderer = fig.canvas.get_renderer()

    sizes, identifiers = [], []
    for t in fig.findobj(Text):
        s = t.get_text()
        if not t.get_visible() or not s.strip() or t.get_alpha() == 0:
            continue
        bbox = t.get_window_extent(renderer)
        if bbox.width <= 0 or bbox.height <= 0:
            continue
        sizes.append((float(t.get_fontsize()), s.strip()[:40]))
        if _IDENTIFIER.search(_words(s)):
            identifiers.append(s.strip()[:60])

    legends = [leg for ax in fig.axes if (leg := ax.get_legend()) is not None] + list(fig.legends)
    legend_entries = max((len([t for t in leg.get_texts() if t.get_text().strip()]) for leg in legends), default=0)

    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison and ax.get_label() != "<colorbar>"]
    unidentified, unlabelled = [], []
    for which in ("x", "y"):
        for group in _shared_groups(axes, which):
            axis = [a.xaxis if which == "x" else a.yaxis for a in group]
            ticked = [ax for ax in axis if len(ax.get_majorticklocs()) > 0 and ax.get_visible()]
            if not ticked:
                continue  # an image panel: no ticks at all
            labels = [t.get_text().strip() for ax in ticked for t in ax.get_ticklabels(which="both") if t.get_visible()]
            title = group[0].get_title() or group[0].get_title("left") or "?"
            if not any(labels):
                unidentified.append(f"{which} axis of '{title}'")
            elif not any(ax.get_label_text().strip() for ax in axis):
                unlabelled.append(f"{which} axis of '{title}'")

    smallest = min(sizes, default=(float("inf"), ""))
    return {
        "width_px": width, "height_px": height, "dpi": dpi, "scale": round(scale, 4),
        "smallest_pt": round(smallest[0] * dpi / 72 * scale / _CSS_PX_PER_PT, 2) if sizes else None,
        "smallest_text": smallest[1],
        "legend_entries": legend_entries,
        "identifiers": identifiers,
        "unidentified_axes": unidentified,
        "unlabelled_axes": unlabelled,
    }


def problems(record: dict[str, Any]) -> list[str]:
    """The rules ``record`` (from :func:`measure`) breaks; empty when the figure is readable."""
    out = []
    if record["smallest_pt"] is not None and record["smallest_pt"] < MIN_PT:
        out.append(f"text of {record['smallest_pt']:.1f} pt at the rendered width (at least {MIN_PT:g} pt; "
                   f"smallest: {record['smallest_text']!r}; figure {record['width_px']} px wide, shown at "
                   f"{record['scale']:.0%})")
    if record["legend_entries"] > MAX_LEGEND:
        out.append(f"a legend of {record['legend_entries']} entries (at most {MAX_LEGEND}: facets or direct labels)")
    if record["identifiers"]:
        out.append(f"identifiers where words belong: {record['identifiers'][:4]}")
    if record["unidentified_axes"]:
        out.append(f"ticks without labels (points that cannot be identified): {record['unidentified_axes'][:4]}")
    if record["unlabelled_axes"]:
        out.append(f"axes without a label: {record['unlabelled_axes'][:4]}")
    return out


def glue(name: str, fig, *, close: bool = True) -> None:
    """Glue ``fig`` under ``name`` (for ``{glue:figure}``) and its :func:`measure` record under
    ``name + RECORD_SUFFIX``; close the figure (``close=True``). Returns nothing, so that a cell
    ending with it shows no output (:func:`measure` gives the record).

    Raises ``ValueError`` naming the broken rules when the figure is not readable at the book's
    width (:func:`problems`), before anything is glued.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be an identifier-like str, got {name!r}")
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    record = measure(fig)
    broken = problems(record)
    if broken:
        raise ValueError(f"figure {name!r} is not readable in the book: " + "; ".join(broken))
    from myst_nb import glue as _glue

    _glue(name, fig, display=False)
    _glue(name + RECORD_SUFFIX, json.dumps(record, ensure_ascii=False), display=False)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
