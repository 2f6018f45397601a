"""The project's promises about itself: pins, commands, README example, public API."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(requirements: list[str]) -> dict[str, str]:
    """``{name: specifier}`` for requirements that pin a version (``==``, ``>=``, ``<``…)."""
    out = {}
    for req in requirements:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*((?:[<>=!~]=?[^,;\s]+\s*,?\s*)+)", req)
        if m:
            out[m.group(1).lower()] = re.sub(r"\s+", "", m.group(2))
    return out


def _constraints() -> dict[str, str]:
    lines = [l.split("#")[0].strip() for l in (ROOT / "constraints.txt").read_text().splitlines()]
    return _pins([l for l in lines if l])


def test_importers_get_ranges_and_the_book_gets_exact_pins():
    """pyproject.toml declares ranges (no exact pin, no plotting/pandas/SciPy/scikit-learn in the core
    dependencies); constraints.txt pins the book's stack, each pin inside pyproject's range."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {Requirement(r).name.lower(): Requirement(r) for r in project["dependencies"]}
    assert set(core) == {"torch", "torchvision", "numpy", "tqdm"}
    assert all("==" not in str(r.specifier) for r in core.values()), core
    assert {"matplotlib", "seaborn", "scipy", "scikit-learn", "pandas"} <= {
        Requirement(r).name.lower() for r in project["optional-dependencies"]["chapters"]}
    declared = {**{Requirement(r).name.lower(): Requirement(r) for extra in project["optional-dependencies"].values()
                   for r in extra if not r.startswith("mixbook")}, **core}
    pins = _constraints()
    assert pins["torch"] == "==2.14.1" and pins["torchvision"] == "==0.29.1"
    assert pins["jupyter-book"] == ">=1.0.4.post1,<2"
    assert set(pins) <= set(declared), f"constraints.txt pins undeclared packages: {set(pins) - set(declared)}"
    for name, spec in pins.items():
        if spec.startswith("=="):
            assert declared[name].specifier.contains(Version(spec[2:])), f"{name}{spec} outside pyproject's {declared[name]}"
    assert set(declared) <= set(pins), f"not pinned for the book: {set(declared) - set(pins)}"


def test_environment_yml_installs_with_the_constraints():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_reqs = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-c constraints.txt" in pip_reqs and "-e .[book,test]" in pip_reqs
    assert _pins([r for r in pip_reqs if not r.startswith("-")]) == {}, "pins belong in constraints.txt"
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])
    assert re.search(r"pip install .*-c constraints\.txt -e '\.\[book,test\]'", (ROOT / "Makefile").read_text())


def test_ci_runs_make_test():
    assert re.search(r"^\s*make test\s*$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_make_book_builds_from_the_committed_outputs_and_book_run_executes():
    """`make book` executes no chapter (the committed outputs are what the suite verifies); `make
    book-run` builds with jupyter-book's cache of executed chapters, from a config written to _build/."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    book = subprocess.run(["make", "--no-print-directory", "-n", "book"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "jupyter-book build" in book and "--config" not in book
    run = subprocess.run(["make", "--no-print-directory", "-n", "book-run"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "'cache'" in run and "--config _build/_config.run.yml" in run
    recipe = next(l for l in run.splitlines() if "yaml.safe_load" in l)
    recipe = recipe.split(" -c ", 1)[1].strip().strip('"').replace("_build/_config.run.yml", "/dev/null")
    subprocess.run([sys.executable, "-c", recipe], cwd=ROOT, check=True)   # the config-writing step runs


def test_make_install_is_idempotent():
    """Once installed, `make -n install` plans no pip install (the stamp is newer than pyproject)."""
    stamp = ROOT / ".venv" / ".mixbook-installed"
    if not stamp.exists():
        pytest.skip("run through `make test`: the .venv stamp does not exist yet")
    plan = subprocess.run(["make", "-n", "install"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "pip install" not in plan, plan


def test_readme_example_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(b for b in blocks if "import mixbook" in b)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["loss"].ndim == 0 and namespace["loss"].requires_grad
    assert namespace["m"].dense().shape == (64, 64)


def test_public_names():
    import mixbook

    for name in mixbook.__all__:
        assert hasattr(mixbook, name), name
    assert set(mixbook.core.registry.names()) >= {"erm", "mixup", "cutmix", "dense_multimix"}


def test_readme_population_example_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(b for b in blocks if "population.repeat" in b)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    runs = namespace["runs"]
    assert len(runs) == 20 and set(runs.method) == {"ERM", "mixup"}
    table = namespace["stats"].compare(runs, {"accuracy": True})
    assert table.loc["mixup", "seeds"] == 10


def test_every_public_module_declares_all_and_is_reachable():
    """Every non-private module of every floor defines ``__all__`` (a list whose names exist), its
    floor lists it in its own ``__all__``, and ``import mixbook`` reaches it as
    ``mixbook.<floor>.<module>`` (the chapters and the bench on first use)."""
    import importlib

    import mixbook

    modules = sorted(p.relative_to(ROOT / "mixbook").with_suffix("").parts
                     for p in (ROOT / "mixbook").glob("*/*.py") if not p.stem.startswith("_"))
    assert len(modules) >= 35
    for floor, name in modules:
        module = importlib.import_module(f"mixbook.{floor}.{name}")
        assert isinstance(getattr(module, "__all__", None), list), f"mixbook.{floor}.{name} has no __all__"
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing, f"mixbook.{floor}.{name}.__all__ names missing attributes: {missing}"
        package = getattr(mixbook, floor)
        assert getattr(package, name) is module, f"import mixbook does not reach mixbook.{floor}.{name}"
        assert name in package.__all__ or floor == "bench", f"mixbook.{floor}.__all__ lacks {name}"
        assert floor in mixbook.__all__
    assert mixbook.ManifoldMixup is mixbook.methods.manifold.ManifoldMixup
