"""The project's promises about itself: pins, commands, README example, public API."""

from __future__ import annotations

import re
import subprocess
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


def test_environment_yml_pins_agree_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    py_pins = _pins(project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_reqs = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    env_pins = _pins([r for r in pip_reqs if not r.startswith("-e")])
    assert env_pins, "environment.yml pins nothing"
    for name, spec in env_pins.items():
        assert py_pins.get(name) == spec, f"{name}: environment.yml says {spec}, pyproject.toml {py_pins.get(name)}"
    for required in ("torch", "torchvision", "jupyter-book"):
        assert required in env_pins and required in py_pins
    assert py_pins["torch"] == "==2.14.1" and py_pins["torchvision"] == "==0.29.1"
    assert py_pins["jupyter-book"] == ">=1.0.4.post1,<2"
    assert any(r.startswith("-e .[book,test]") for r in pip_reqs)
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_ci_runs_make_test():
    assert re.search(r"^\s*make test\s*$", (ROOT / ".ci" / "run").read_text(), re.M)


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
    """Every non-private module of the package defines ``__all__``, its names exist, and
    ``import mixbook`` reaches it as an attribute (``bench`` on first use)."""
    import importlib

    import mixbook

    modules = sorted(p.stem for p in (ROOT / "mixbook").glob("*.py") if not p.stem.startswith("_"))
    assert len(modules) >= 20
    for name in modules:
        module = importlib.import_module(f"mixbook.{name}")
        assert isinstance(getattr(module, "__all__", None), list), f"mixbook.{name} has no __all__"
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing, f"mixbook.{name}.__all__ names missing attributes: {missing}"
        assert getattr(mixbook, name) is module, f"import mixbook does not reach mixbook.{name}"
        assert name in mixbook.__all__, name
    assert mixbook.ManifoldMixup is mixbook.methods.manifold.ManifoldMixup
