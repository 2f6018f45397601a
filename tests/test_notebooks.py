"""The chapters: structure, smoke runs with papermill, nbval over the committed outputs, book build.

Marked ``notebook``: ``make test-fast`` (pytest -m "not notebook") skips them.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
GLUE_REF = re.compile(r"\{glue(?::\w+)?\}`([A-Za-z0-9_]+)")

pytestmark = pytest.mark.notebook


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _parameters(path: Path) -> dict[str, object]:
    """The literal values of the cell tagged ``parameters``."""
    cells = [c for c in _cells(path) if c["cell_type"] == "code" and "parameters" in c["metadata"].get("tags", [])]
    assert len(cells) == 1, f"{path.name}: expected exactly one cell tagged 'parameters', found {len(cells)}"
    values = {}
    for node in ast.parse(_source(cells[0])).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), \
            f"{path.name}: the parameters cell may only hold `name = literal` lines, got {ast.unparse(node)!r}"
        values[node.targets[0].id] = ast.literal_eval(node.value)  # raises on a non-literal
    return values


def _toc_files() -> set[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = {toc["root"]}

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.add(e["file"])
            walk(e.get("sections"))
            for part in e.get("parts", []) if isinstance(e, dict) else []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


def test_there_are_chapters():
    assert CHAPTERS, "no chapter notebooks found in book/"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_structure(path: Path):
    assert f"book/{path.stem}" in _toc_files(), f"{path.name} is not listed in _toc.yml"
    params = _parameters(path)
    assert {"device", "seed"} <= set(params), f"{path.name}: parameters must include device and seed"
    code = [c for c in _cells(path) if c["cell_type"] == "code"]
    assert "import mixbook" in _source(code[0]) and "mixbook.setup(" in _source(code[0]), \
        "the first code cell imports mixbook and calls mixbook.setup"
    assert "parameters" in code[1]["metadata"].get("tags", []), "the second code cell is the parameters cell"
    assert "check_parameters(" in _source(code[2]), "the third code cell checks the parameters"
    assert any("# NBVAL_CHECK_OUTPUT" in _source(c) for c in code), "no check cell marked # NBVAL_CHECK_OUTPUT"
    assert all(c.get("execution_count") is not None for c in code if _source(c).strip()), \
        f"{path.name} must be committed with the outputs of a full run"
    for c in code:
        if "# NBVAL_CHECK_OUTPUT" in _source(c):
            text = "".join("".join(o.get("text", "")) for o in c.get("outputs", []))
            assert re.search(r": (True|False)$", text, re.M), f"check cell prints no True/False verdict:\n{_source(c)}"
    for profile in ("smoke", "full"):
        f = BOOK / "params" / path.stem / f"{profile}.yaml"
        assert f.exists(), f"missing {f.relative_to(ROOT)}"
        unknown = set(yaml.safe_load(f.read_text()) or {}) - set(params)
        assert not unknown, f"{f.relative_to(ROOT)} sets unknown parameters {sorted(unknown)}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_unknown_parameter_fails_early(path: Path, tmp_path: Path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="unknown parameter"):
        pm.execute_notebook(str(path), str(tmp_path / "out.ipynb"), parameters={"no_such_parameter": 1},
                            cwd=str(BOOK), kernel_name="python3", progress_bar=False)


BAD_VALUES = [  # (chapter, parameter, value): refused by the parameter check, before any work
    ("01_vicinal_risk", "lambda_samples", -10),
    ("02_reformulation", "semi_fractions", [0.05, 1.5]),
    ("03_manifold_mixup", "digits_epochs", -1),
    ("04_zeta_mixup", "noise_rate", 1.0),
    ("05_multimix", "n_seeds", 0),
    ("05_multimix", "multimix_alphas", [1.0, -2.0]),
    ("06_comparison", "cifar_root", "/nonexistent/cifar"),
    ("06_comparison", "val_fraction", 1.0),
    ("07_performance", "bench_batches", []),
    ("08_beyond_accuracy", "eps_grid", [0.0, -0.1]),
]


@pytest.mark.parametrize("stem, name, value", BAD_VALUES, ids=lambda v: str(v))
def test_out_of_range_parameter_fails_at_the_check_cell(stem: str, name: str, value, tmp_path: Path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match=f"parameter '{name}'") as err:
        pm.execute_notebook(str(BOOK / f"{stem}.ipynb"), str(tmp_path / "out.ipynb"), parameters={name: value},
                            cwd=str(BOOK), kernel_name="python3", progress_bar=False)
    assert err.value.cell_index <= 4, f"{stem}: {name}={value!r} was refused only in cell {err.value.cell_index}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_papermill_smoke(path: Path, tmp_path: Path):
    """Run the chapter with its smoke parameters; every value the prose refers to is glued."""
    import papermill as pm

    params = yaml.safe_load((BOOK / "params" / path.stem / "smoke.yaml").read_text())
    out = tmp_path / path.name
    pm.execute_notebook(str(path), str(out), parameters=params, cwd=str(BOOK), kernel_name="python3",
                        progress_bar=False)
    cells = _cells(out)
    referenced = {k for c in cells if c["cell_type"] == "markdown" for k in GLUE_REF.findall(_source(c))}
    glued = {
        o["metadata"]["scrapbook"]["name"]
        for c in cells if c["cell_type"] == "code"
        for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})
    }
    assert referenced, f"{path.name} glues no result into its prose"
    assert referenced <= glued, f"referenced but not glued: {sorted(referenced - glued)}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_nbval(path: Path):
    """Re-execute with default parameters; nbval compares the check cells' outputs."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", str(path)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


@pytest.mark.xdist_group("book")  # the worker that runs tests/test_browser.py: one build
def test_book_builds_from_committed_outputs(built_book):
    """jupyter-book build with execution off, warnings as errors, nitpicky (the session's
    ``built_book`` fixture, shared with tests/test_browser.py)."""
    assert built_book.returncode == 0, built_book.log
    html = built_book.html
    assert (html / "book" / "intro.html").exists() or (html / "index.html").exists()
    for path in CHAPTERS:
        page = html / "book" / f"{path.stem}.html"
        assert page.exists(), f"{page} was not built"
        assert "{glue" not in page.read_text(), f"{page.name} shows an unresolved glue role"


def test_comparison_full_scale_path_on_tiny_cifar(tmp_path: Path):
    """Chapter 6's CIFAR branch (what full.yaml runs on a GPU), end to end on tiny files the
    test writes: every method trains the CIFAR ResNet-18, the results file carries its
    provenance, and the notebook reads it back into the comparison table."""
    import papermill as pm

    from _cifar import _write_cifar10

    _write_cifar10(tmp_path / "data")
    params = yaml.safe_load((BOOK / "params" / "06_comparison" / "smoke.yaml").read_text())
    params.update(cifar_root=str(tmp_path / "data"), cifar_names=["cifar10"], cifar_epochs=1, cifar_batch=16,
                  results_dir=str(tmp_path / "results"))
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(BOOK / "06_comparison.ipynb"), str(out), parameters=params, cwd=str(BOOK),
                        kernel_name="python3", progress_bar=False)
    parts = sorted((tmp_path / "results").glob("06_comparison_cifar10_*_seeds0.json"))   # one file a (method, seed)
    records = [json.loads(p.read_text()) for p in parts]
    assert len(records) == 8 and not list((tmp_path / "results" / "checkpoints").iterdir())
    for record in records:
        assert {"device", "date_utc", "git_commit", "torch"} <= record["provenance"].keys()
        assert record["parameters"]["cifar_epochs"] == 1 and record["parameters"]["world_size"] == 1
    methods = {r["method"] for record in records for r in record["rows"]}
    assert {"ERM", "mixup", "MultiMix", "Dense MultiMix", "CutMix"} <= methods
    text = out.read_text()
    assert "Recorded runs: " in text and "mixbook (recorded, see provenance)" in text


@pytest.mark.notebook
def test_the_verdicts_page_is_in_step_with_the_chapters(tmp_path):
    """book/verdicts.ipynb reads every chapter's glued verdicts; re-executed now with papermill (its
    parameters cell), it glues the table its committed outputs hold and its check cell prints the
    committed verdicts (so a re-run chapter cannot leave the summary behind)."""
    import nbformat
    import papermill as pm

    path = BOOK / "verdicts.ipynb"

    def table(nb):
        return next("".join(o["data"]["application/papermill.record/text/markdown"])
                    for c in nb.cells for o in c.get("outputs", [])
                    if o.get("metadata", {}).get("scrapbook", {}).get("name") == "verdict_table")

    def checks(nb):
        return ["".join(o.get("text", "")) for c in nb.cells if c.cell_type == "code"
                and c.source.startswith("# NBVAL_CHECK_OUTPUT") for o in c.get("outputs", [])]

    committed = nbformat.read(path, as_version=4)
    out = tmp_path / "verdicts.ipynb"
    pm.execute_notebook(str(path), str(out), parameters={"chapters_dir": str(BOOK)}, cwd=str(BOOK),
                        kernel_name="python3", progress_bar=False)
    fresh = nbformat.read(out, as_version=4)
    assert table(fresh) == table(committed), "re-execute book/verdicts.ipynb (make notebooks) and commit it"
    assert checks(fresh) == checks(committed) and checks(fresh)
    assert table(fresh).count("\n| <a href=") >= 20
