"""mixbook.chapters.notebook: parameters checked for value, not only type, naming the parameter and the range."""

import pytest

from mixbook.chapters import notebook as nb


def _ns(**kw):
    return {"seed": 0, "epochs": 5, "alphas": [0.2, 1.0], "device": "cpu", "fraction": 0.2, "root": "", **kw}


SPEC = dict(seed=nb.at_least(int, 0), epochs=nb.at_least(int, 1), alphas=nb.positive(list[float]),
            device=nb.one_of("auto", "cpu", "cuda"), fraction=nb.between(float, 0, 1, open_low=True, open_high=True),
            root=nb.directory())


def test_accepts_good_values():
    assert nb.check_parameters(_ns(), **SPEC)["alphas"] == [0.2, 1.0]


@pytest.mark.parametrize("name, value, words", [
    ("epochs", -1, "'epochs' must be >= 1"),
    ("epochs", 0, ">= 1"),
    ("seed", -3, "'seed' must be >= 0"),
    ("alphas", [0.2, -10.0], "every value must be > 0"),
    ("alphas", [], "at least one value"),
    ("device", "tpu", "one of 'auto', 'cpu', 'cuda'"),
    ("fraction", 1.0, "> 0 and < 1"),
    ("fraction", 0.0, "> 0 and < 1"),
    ("root", "/nonexistent/cifar", "existing directory"),
])
def test_refuses_out_of_range_values_with_name_and_range(name, value, words):
    with pytest.raises(ValueError, match=name) as err:
        nb.check_parameters(_ns(**{name: value}), **SPEC)
    assert words in str(err.value)


def test_type_errors_still_come_first():
    with pytest.raises(TypeError, match="'epochs' must be of type int"):
        nb.check_parameters(_ns(epochs=2.5), **SPEC)


def test_existing_directory_accepted(tmp_path):
    assert nb.check_parameters(_ns(root=str(tmp_path)), **SPEC)["root"] == str(tmp_path)


def test_plain_types_still_work():
    assert nb.check_parameters({"seed": 1}, seed=int) == {"seed": 1}


def test_one_of_needs_choices():
    with pytest.raises(ValueError):
        nb.one_of()


def test_subset_of_checks_every_value():
    spec = dict(names=nb.subset_of("cifar10", "cifar100"))
    assert nb.check_parameters({"names": ["cifar10"]}, **spec) == {"names": ["cifar10"]}
    with pytest.raises(ValueError, match="'names'"):
        nb.check_parameters({"names": ["cifar10", "imagenet"]}, **spec)
    with pytest.raises(ValueError, match="at least one"):
        nb.check_parameters({"names": []}, **spec)
