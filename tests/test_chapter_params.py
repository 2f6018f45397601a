"""Every chapter's default, smoke and full parameters pass its own parameter check (types and ranges).

The check cell is run on its own (its import line and its ``check_parameters`` call), with the
parameters cell's defaults overridden by each YAML file, so a ``full.yaml`` that the range checks
would refuse fails here, on a CPU, not at the start of a GPU run.
"""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))


def _code(path):
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def _check_call(source: str) -> str:
    """The check cell's imports and its ``params = ...check_parameters(...)`` statement."""
    imports = [l for l in source.splitlines() if l.startswith(("from mixbook", "import "))]
    m = re.search(r"params = mixbook\.chapters\.notebook\.check_parameters\(.*?\n\)", source, re.S)
    assert m, "the check cell calls mixbook.chapters.notebook.check_parameters"
    return "\n".join(["import mixbook", *imports, m.group(0)])


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
@pytest.mark.parametrize("which", ["defaults", "smoke", "full"])
def test_parameters_pass_their_check(path, which):
    code = _code(path)
    ns: dict = {}
    exec(code[1], ns)                      # the parameters cell: literals only
    if which != "defaults":
        overrides = yaml.safe_load((BOOK / "params" / path.stem / f"{which}.yaml").read_text()) or {}
        ns.update(overrides)
        if "cifar_root" in overrides and overrides["cifar_root"]:
            pytest.skip("full.yaml points at a CIFAR folder of the machine it runs on")
    ns.pop("__builtins__", None)
    exec(_check_call(code[2]), {"__builtins__": __builtins__, "ns": ns} | {"globals": lambda: ns})


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_numeric_parameter_has_a_range(path):
    """Numbers are checked for value, not just type (strings and bools may stay plain types)."""
    call = _check_call(_code(path)[2])
    plain = re.findall(r"(\w+)=(int|float|list\[int\]|list\[float\])\b[,)]", call)
    assert not plain, f"{path.stem}: parameters checked for type only: {plain}"
