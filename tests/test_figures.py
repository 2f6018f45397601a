"""Every figure of the book is readable at the width a reader sees it (issue: readable figures).

Two halves: the rules of :mod:`mixbook.chapters.figures` on figures made here (each rule fails a
figure that breaks it), and every figure glued in the committed chapters: it carries a record of its
measurements (glued beside it by ``figures.glue``), the record describes the very image that is
glued (its pixel size and DPI), and the record breaks no rule.
"""

from __future__ import annotations

import ast
import base64
import json
import struct
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import mixbook  # noqa: E402
from mixbook.chapters import figures  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
PNG = "application/papermill.record/image/png"
TEXT = "application/papermill.record/text/plain"


@pytest.fixture(autouse=True)
def _style():
    with matplotlib.rc_context():
        mixbook.setup(0, "cpu")
        yield
    plt.close("all")


def _fine():
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([1, 2, 3], [2, 1, 3], label="ERM")
    ax.plot([1, 2, 3], [1, 2, 2], label="mixup")
    ax.set(xlabel="epoch", ylabel="test accuracy", title="accuracy along training")
    ax.legend()
    return fig


def test_a_readable_figure_passes():
    record = figures.measure(_fine())
    assert figures.problems(record) == [], record
    assert record["scale"] == 1.0 and record["width_px"] <= figures.COLUMN_PX
    assert record["smallest_pt"] >= figures.MIN_PT


@pytest.mark.parametrize("defect, expected", [
    ("small text", "pt at the rendered width"),
    ("too wide", "pt at the rendered width"),
    ("big legend", "legend of 12 entries"),
    ("identifier", "identifiers where words belong"),
    ("no tick labels", "ticks without labels"),
    ("no axis label", "axes without a label"),
])
def test_each_rule_fails_a_figure_that_breaks_it(defect, expected):
    if defect == "too wide":  # the same fonts on a figure the column shrinks to a third
        fig, axes = plt.subplots(1, 4, figsize=(24, 4))
        for ax in axes:
            ax.plot([0, 1], [0, 1])
            ax.set(xlabel="epoch", ylabel="accuracy")
    else:
        fig = _fine()
        ax = fig.axes[0]
        if defect == "small text":
            ax.set_title("accuracy along training", fontsize=6)
        elif defect == "big legend":
            for k in range(10):
                ax.plot([1, 3], [k, k], label=f"arm {k}")
            ax.legend()
        elif defect == "identifier":
            ax.set_ylabel("test_mse")
        elif defect == "no tick labels":
            ax.set_xticklabels([])
        elif defect == "no axis label":
            ax.set_xlabel("")
    record = figures.measure(fig)
    found = figures.problems(record)
    assert any(expected in p for p in found), (defect, found)
    with pytest.raises(ValueError, match="not readable in the book"):
        figures.glue("fig_defect", fig)


def test_tex_and_facets_are_not_defects():
    """``$w_i$`` is math, not an identifier; a grid whose outer axes carry the labels is labelled."""
    fig, axes = plt.subplots(2, 2, figsize=(8, 6), sharex=True, sharey=True)
    for ax in axes.flat:
        ax.plot([1, 2], [1, 2])
    for ax in axes[1]:
        ax.set_xlabel("rank $s_i$")
    for ax in axes[:, 0]:
        ax.set_ylabel("weight $w_i$")
    assert figures.problems(figures.measure(fig)) == []


def test_image_panels_need_no_ticks():
    fig, (a, b) = plt.subplots(1, 2, figsize=(7, 3))
    a.imshow([[0, 1], [1, 0]], cmap="gray")
    a.set(xticks=[], yticks=[], title="a batch")
    b.plot([0, 1], [0, 1])
    b.set(xlabel="λ", ylabel="density")
    assert figures.problems(figures.measure(fig)) == []


def test_glue_checks_its_arguments():
    with pytest.raises(TypeError, match="matplotlib Figure"):
        figures.glue("fig_x", object())
    with pytest.raises(ValueError, match="name must be"):
        figures.glue("not a name", _fine())


# --- the committed chapters -------------------------------------------------------------------


def _png_info(data: bytes) -> tuple[int, int, float | None]:
    width, height = struct.unpack(">II", data[16:24])
    dpi, pos = None, 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"pHYs":
            ppu, _, unit = struct.unpack(">IIB", data[pos + 8:pos + 17])
            dpi = ppu * 0.0254 if unit == 1 else None
        pos += 12 + length
    return width, height, dpi


def _glued_figures():
    for path in sorted(BOOK.glob("*.ipynb")):
        glued, records = {}, {}
        for cell in json.loads(path.read_text())["cells"]:
            for out in cell.get("outputs", []):
                name = out.get("metadata", {}).get("scrapbook", {}).get("name")
                data = out.get("data", {})
                if name and PNG in data:
                    glued[name] = base64.b64decode(data[PNG])
                elif name and name.endswith(figures.RECORD_SUFFIX) and TEXT in data:
                    text = "".join(data[TEXT])
                    records[name[: -len(figures.RECORD_SUFFIX)]] = json.loads(ast.literal_eval(text))
        for name, png in glued.items():
            yield pytest.param(path.name, name, png, records.get(name), id=f"{path.stem}:{name}")


FIGURES = list(_glued_figures())


def test_the_book_has_its_figures():
    assert len(FIGURES) >= 25, len(FIGURES)


@pytest.mark.parametrize("chapter, name, png, record", FIGURES)
def test_every_figure_of_the_book_is_readable(chapter, name, png, record):
    assert record is not None, (f"{chapter}: figure {name!r} is glued without its record: glue it with "
                                f"mixbook.chapters.figures.glue, which measures it")
    width, height, dpi = _png_info(png)
    assert (record["width_px"], record["height_px"]) == (width, height), (
        f"{chapter}: the record of {name!r} describes a {record['width_px']}×{record['height_px']} image, the glued "
        f"one is {width}×{height} (re-execute the chapter)")
    assert dpi is not None and abs(dpi - record["dpi"]) < 0.5, (dpi, record["dpi"])
    assert figures.problems(record) == [], f"{chapter}: {name}"
