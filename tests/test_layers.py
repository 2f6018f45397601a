"""The floors of the package, read from its import graph, and what ``import mixbook`` loads.

mixbook is built in floors: ``core`` (0) < ``methods`` (1) < ``training`` (2) < ``chapters`` (3) <
``bench`` (4). A module may import its own floor and the floors below it, never one above (a
function-level import counts: a lazy upward import is still an upward dependency), and the
module graph has no cycle. ``mixbook/__init__.py`` is the public face and imports the floors it
shows. The graph is read with ``ast``; nothing is imported to build it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mixbook"
FLOORS = {"core": 0, "methods": 1, "training": 2, "chapters": 3, "bench": 4}
HEAVY = ("matplotlib", "seaborn", "scipy", "sklearn", "pandas")


def _modules(root: Path = ROOT) -> dict[str, Path]:
    mods = {}
    for f in (root / "mixbook").rglob("*.py"):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: modules of mixbook it imports}`` (module-level and function-level imports) for the
    package under ``root``."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # a name that is a submodule is an edge to it; any other name is read from the package
                candidates = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            for c in candidates:
                while c and c not in mods:
                    c = c.rsplit(".", 1)[0] if "." in c else ""
                if c and c != name:
                    graph[name].add(c)
    return graph


FACE = 2.5
"""``mixbook/__init__.py`` shows core, methods and training: the chapters and the bench may import it."""


def floor(module: str) -> float | None:
    parts = module.split(".")
    if parts == ["mixbook"]:
        return FACE
    return FLOORS.get(parts[1]) if len(parts) > 1 else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for a, targets in graph.items():
        fa = floor(a)
        if fa == FACE:
            continue
        for b in targets:
            fb = floor(b)
            if fb is None or fb > fa:
                bad.append(f"{a} -> {b}")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_lives_on_a_floor():
    loose = [m for m in _modules() if floor(m) is None]
    assert loose == [], f"modules outside the floors {sorted(FLOORS)}: {loose}"


def test_no_upward_import_and_no_cycle():
    graph = import_graph()
    assert sum(map(len, graph.values())) > 50      # the graph was read (the package imports itself a lot)
    assert upward_imports(graph) == []
    assert cycles(graph) == []


def test_the_reader_sees_an_upward_import_and_a_cycle():
    graph = {"mixbook.core.a": {"mixbook.training.b"}, "mixbook.training.b": {"mixbook.core.a"},
             "mixbook.methods.c": {"mixbook.core.a"}}
    assert upward_imports(graph) == ["mixbook.core.a -> mixbook.training.b"]
    assert upward_imports({"mixbook.training.d": {"mixbook"}, "mixbook.bench.e": {"mixbook"}}) == \
        ["mixbook.training.d -> mixbook"]
    assert cycles(graph) == [["mixbook.core.a", "mixbook.training.b"]]


def test_method_modules_import_only_the_core():
    graph = import_graph()
    for module, targets in graph.items():
        if floor(module) == FLOORS["methods"] and module != "mixbook.methods":
            assert {floor(t) for t in targets} <= {FLOORS["core"], FLOORS["methods"]}, module


def test_import_mixbook_is_light():
    """``import mixbook`` loads the face: no plotting, pandas, SciPy, scikit-learn or chapter module."""
    code = ("import sys, mixbook; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{HEAVY!r} or m.startswith(('mixbook.chapters', 'mixbook.bench')))))")
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == [], f"import mixbook loaded {run.stdout.split()}"
    assert "import time:" in run.stderr and "mixbook.core.mixing" in run.stderr   # -X importtime's table
    # what the face promises is there, and the book's floor loads on first use
    check = subprocess.run([sys.executable, "-c", "import mixbook; mixbook.MixUp; mixbook.fit; "
                            "print(mixbook.chapters.stats.__name__)"], capture_output=True, text=True, cwd=ROOT,
                           timeout=300)
    assert check.stdout.strip() == "mixbook.chapters.stats", check.stderr[-2000:]


@pytest.mark.parametrize("floor_name", sorted(FLOORS))
def test_every_floor_has_a_docstring_naming_its_job(floor_name):
    doc = ast.get_docstring(ast.parse((PACKAGE / floor_name / "__init__.py").read_text()))
    assert doc and len(doc.split()) > 15


def test_setup_names_the_extra_when_plotting_is_missing():
    """An importer without the [chapters] extra: setup(plots=False) works, setup() says what to install."""
    code = ("import sys; sys.modules['seaborn'] = None\n"
            "import mixbook\n"
            "print(mixbook.setup(0, 'cpu', plots=False))\n"
            "try:\n    mixbook.setup(0, 'cpu')\nexcept ImportError as e:\n    print('ImportError', e)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert lines[0] == "cpu" and lines[1].startswith("ImportError") and "mixbook[chapters]" in lines[1]


def test_every_chapter_module_names_its_chapter():
    for path in sorted((PACKAGE / "chapters").glob("[a-z]*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert re.search(r"\b(Chapters? \d|chapter \d|Every chapter)", doc), f"{path.name}: which chapter uses it?"
