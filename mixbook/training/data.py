"""Data sets as in-memory tensors.

Every loader returns a :class:`Split`: train and test inputs and labels as tensors (inputs
``float32``, labels ``int64``), standardised with statistics of the *training* inputs only.
Nothing here downloads anything:

* :func:`two_moons` and :func:`digits` come from scikit-learn (generated / bundled);
* :func:`mnist1d` is generated offline by the ``mnist1d`` package from its built-in templates
  (never its downloader), and cached as ``.npz``;
* :func:`cifar` and :func:`cifar_raw` read CIFAR-10/100 from a local directory in the
  "python version" format of https://www.cs.toronto.edu/~kriz/cifar.html (the same files
  torchvision uses), without torchvision's download or checksum logic.

The sets are small enough to live on the GPU whole: ``split.to("cuda")`` and index batches
from there, which is faster than a ``DataLoader`` for these sizes.
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..core import _checks

__all__ = ["Split", "two_moons", "digits", "mnist1d", "cifar", "cifar_raw", "labelled_subset", "training_subset",
           "with_label_noise", "validation_split", "random_crop_flip"]


# ---------------------------------------------------------------------- the Split value
@dataclass(frozen=True, eq=False)
class Split:
    """A train/test split held as tensors.

    Attributes:
        x_train: ``(n_train, *input_shape)`` float32 inputs.
        y_train: ``(n_train,)`` int64 labels in ``[0, num_classes)``.
        x_test: ``(n_test, *input_shape)`` float32 inputs.
        y_test: ``(n_test,)`` int64 labels in ``[0, num_classes)``.
        num_classes: ``C``.
        name: short name of the data set (``"two_moons"``, ``"digits"``, ``"cifar10"``, ...).
        class_names: one name a class when known, else empty.
        x_val, y_val: an optional validation part carved from the training data
            (:func:`validation_split`), for choosing hyper-parameters without the test set.
        y_train_clean: the training labels before :func:`with_label_noise` changed some of
            them (``None`` for a clean split); :attr:`noisy` marks the changed ones.

    Only shapes and dtypes are checked at construction (free, no synchronisation).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    name: str = "custom"
    class_names: tuple[str, ...] = field(default=())
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    y_train_clean: torch.Tensor | None = None

    def __post_init__(self) -> None:
        _checks.num_classes(self.num_classes)
        if (self.x_val is None) != (self.y_val is None):
            raise ValueError("x_val and y_val must be given together (or neither)")
        parts = ("train", "test") if self.x_val is None else ("train", "test", "val")
        for part in parts:
            x = _checks.tensor(f"x_{part}", getattr(self, f"x_{part}"))
            y = _checks.labels(f"y_{part}", getattr(self, f"y_{part}"))
            if not x.is_floating_point():
                raise TypeError(f"x_{part} must be a floating-point tensor, got {x.dtype}")
            if y.dtype != torch.int64:
                raise TypeError(f"y_{part} must be int64, got {y.dtype}")
            _checks.same_batch(f"y_{part}", y, x.shape[0] if x.ndim else -1)
            if x.device != y.device:
                raise ValueError(f"x_{part} is on {x.device} but y_{part} on {y.device}")
        for part in parts[1:]:
            x = getattr(self, f"x_{part}")
            if self.x_train.shape[1:] != x.shape[1:]:
                raise ValueError(
                    f"x_train and x_{part} must share the input shape, got {tuple(self.x_train.shape[1:])} "
                    f"and {tuple(x.shape[1:])}"
                )
            if self.x_train.device != x.device:
                raise ValueError(f"x_train is on {self.x_train.device} but x_{part} on {x.device}")
        if self.y_train_clean is not None:
            clean = _checks.labels("y_train_clean", self.y_train_clean)
            if clean.dtype != torch.int64 or clean.shape != self.y_train.shape or clean.device != self.y_train.device:
                raise ValueError(
                    f"y_train_clean must be an int64 tensor like y_train {tuple(self.y_train.shape)} on "
                    f"{self.y_train.device}, got {clean.dtype} {tuple(clean.shape)} on {clean.device}"
                )
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names must have num_classes={self.num_classes} entries, got {len(self.class_names)}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(2,)`` or ``(3, 32, 32)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    @property
    def noisy(self) -> torch.Tensor | None:
        """``(n_train,)`` bool: which training labels :func:`with_label_noise` changed (``None`` if clean)."""
        return None if self.y_train_clean is None else self.y_train != self.y_train_clean

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Split":
        """The same split with every tensor moved to ``device`` (a new :class:`Split`)."""
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return replace(self, **{k: move(getattr(self, k)) for k in _TENSORS})

    def __repr__(self) -> str:
        val = "" if self.x_val is None else f", val={tuple(self.x_val.shape)}"
        noise = "" if self.y_train_clean is None else f", noisy_labels={int(self.noisy.sum())}"
        return (
            f"Split({self.name!r}, train={tuple(self.x_train.shape)}{val}, test={tuple(self.x_test.shape)}, "
            f"num_classes={self.num_classes}{noise}, device={self.device})"
        )


_TENSORS = ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val", "y_train_clean")


# ---------------------------------------------------------------------- argument checks
def _seed(name: str, value: object) -> int:
    return _checks.seed(name, value, upper=2**32)


def _open_unit_interval(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number in (0, 1), got {type(value).__name__}")
    value = float(value)
    if not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value}")
    return value


def _standardise(train: np.ndarray, test: np.ndarray, axis: int | tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    """``(x - mean) / std`` with mean and (population) std of ``train`` over ``axis``."""
    mean = train.mean(axis=axis, keepdims=True, dtype=np.float64)
    std = train.std(axis=axis, keepdims=True, dtype=np.float64)
    return (train - mean) / std, (test - mean) / std


# ---------------------------------------------------------------------- two moons
def two_moons(n_train: int = 1000, n_test: int = 1000, noise: float = 0.2, seed: int = 0) -> Split:
    """Two interleaving half-circles (scikit-learn ``make_moons``), standardised.

    Train and test are drawn one after the other from one ``numpy.random.RandomState(seed)``,
    so they are independent, and each is split evenly between the two moons (the inner moon,
    label 1, gets the extra point when the size is odd). Both are standardised per feature with the
    mean and population standard deviation of the training set.

    Args:
        n_train: training points, ``>= 2`` (the standard deviation needs two).
        n_test: test points, ``>= 1``.
        noise: standard deviation of the Gaussian noise added to the points, ``>= 0``.
        seed: ``int`` in ``[0, 2**32)``; the same seed gives the same split.

    Returns:
        :class:`Split` with ``x`` of shape ``(n, 2)`` float32, ``y`` of shape ``(n,)`` int64
        in ``{0, 1}``, ``num_classes=2``.
    """
    from sklearn.datasets import make_moons

    n_train = _checks.positive_int("n_train", n_train)
    if n_train < 2:
        raise ValueError(f"n_train must be an int >= 2 (the standardisation needs two points), got {n_train}")
    n_test = _checks.positive_int("n_test", n_test)
    noise = _checks.non_negative_float("noise", noise)
    seed = _seed("seed", seed)

    rng = np.random.RandomState(seed)
    x_tr, y_tr = make_moons(n_samples=n_train, noise=noise, random_state=rng)
    x_te, y_te = make_moons(n_samples=n_test, noise=noise, random_state=rng)
    x_tr, x_te = _standardise(x_tr, x_te, axis=0)
    return Split(
        x_train=torch.as_tensor(x_tr, dtype=torch.float32),
        y_train=torch.as_tensor(y_tr, dtype=torch.int64),
        x_test=torch.as_tensor(x_te, dtype=torch.float32),
        y_test=torch.as_tensor(y_te, dtype=torch.int64),
        num_classes=2,
        name="two_moons",
        class_names=("outer", "inner"),
    )


# ---------------------------------------------------------------------- digits
def digits(test_size: float = 0.25, split_seed: int = 0) -> Split:
    """The 8×8 handwritten digits bundled with scikit-learn (``load_digits``, 1797 images).

    The split is fixed by ``split_seed`` and stratified by class
    (``train_test_split(..., test_size=test_size, random_state=split_seed, stratify=y)``).
    Pixels (0..16) are standardised with the *scalar* mean and population standard deviation
    of all training pixels: a per-pixel standard deviation would be 0 at the always-blank
    corners.

    Args:
        test_size: fraction of the images in the test set, in ``(0, 1)``; both sides must
            keep at least one image a class (10 images).
        split_seed: ``int`` in ``[0, 2**32)`` fixing the split.

    Returns:
        :class:`Split` with ``x`` of shape ``(n, 1, 8, 8)`` float32, ``y`` of shape ``(n,)``
        int64 in ``[0, 10)``, ``num_classes=10``; ``n_test = ceil(test_size * 1797)``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    test_size = _open_unit_interval("test_size", test_size)
    split_seed = _seed("split_seed", split_seed)

    bunch = load_digits()
    x = bunch.data.reshape(-1, 1, 8, 8)
    y = bunch.target
    n, c = len(y), 10
    n_test = math.ceil(test_size * n)
    if n_test < c or n - n_test < c:
        raise ValueError(
            f"test_size={test_size} gives {n_test} test and {n - n_test} training images of {n}; "
            f"a stratified split needs at least {c} on each side"
        )
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=split_seed, stratify=y)
    x_tr, x_te = _standardise(x_tr, x_te, axis=None)
    return Split(
        x_train=torch.as_tensor(x_tr, dtype=torch.float32),
        y_train=torch.as_tensor(y_tr, dtype=torch.int64),
        x_test=torch.as_tensor(x_te, dtype=torch.float32),
        y_test=torch.as_tensor(y_te, dtype=torch.int64),
        num_classes=c,
        name="digits",
        class_names=tuple(str(k) for k in range(c)),
    )


# ---------------------------------------------------------------------- MNIST-1D
_MNIST1D_FIELDS = ("num_samples", "train_split", "padding", "scale_coeff", "max_translation", "corr_noise_scale",
                   "iid_noise_scale", "shear_scale", "shuffle_seq", "final_seq_length", "seed")
_MNIST1D_TEMPLATE_LEN = 12           # the length of mnist1d's built-in digit templates (its ``template_len``)
_MNIST1D_CACHE_FORMAT = 1            # bump when the cached arrays' layout changes
_MNIST1D_EXTRA = "pip install 'mixbook[chapters]'"


def _mnist1d_version() -> str:
    """The installed ``mnist1d`` version, without importing it (``import mnist1d`` loads matplotlib)."""
    from importlib import metadata

    try:
        return metadata.version("mnist1d")
    except metadata.PackageNotFoundError:
        raise ImportError(
            "mixbook.training.data.mnist1d generates MNIST-1D with the 'mnist1d' package, which is not "
            f"installed; it comes with the chapters extra: {_MNIST1D_EXTRA}"
        ) from None


def _mnist1d_args(num_samples: object, seed: object, extra: dict[str, object]) -> dict[str, object]:
    """The checked generator arguments, every field of ``_MNIST1D_FIELDS`` (defaults: mnist1d's standard set)."""
    unknown = sorted(set(extra) - set(_MNIST1D_FIELDS))
    if unknown:
        raise TypeError(
            f"mnist1d got unexpected dataset argument(s) {unknown}; accepted: {', '.join(_MNIST1D_FIELDS)} "
            f"(template_len is fixed at {_MNIST1D_TEMPLATE_LEN} by the built-in templates; url is never used)"
        )
    a: dict[str, object] = {
        "train_split": 0.8, "padding": (36, 60), "scale_coeff": 0.4, "max_translation": 48,
        "corr_noise_scale": 0.25, "iid_noise_scale": 2e-2, "shear_scale": 0.75, "shuffle_seq": False,
        "final_seq_length": 40, **extra,
    }
    n = _checks.positive_int("num_samples", num_samples)
    if n < 20 or n % 10:
        raise ValueError(f"num_samples must be a multiple of 10 (one tenth a digit) and >= 20, got {n}")
    a["num_samples"] = n
    a["seed"] = _seed("seed", seed)
    a["train_split"] = _open_unit_interval("train_split", a["train_split"])
    n_train = int(n * a["train_split"])
    if n_train < 2 or n - n_train < 1:
        raise ValueError(
            f"train_split={a['train_split']} gives {n_train} training and {n - n_train} test examples of "
            f"num_samples={n}; need >= 2 and >= 1"
        )
    pad = a["padding"]
    if not (isinstance(pad, (tuple, list)) and len(pad) == 2):
        raise TypeError(f"padding must be a pair (low, high) of ints with 0 <= low <= high, got {pad!r}")
    low, high = (_checks.non_negative_int("padding", v) for v in pad)
    if low > high:
        raise ValueError(f"padding must be a pair (low, high) of ints with 0 <= low <= high, got {tuple(pad)}")
    a["padding"] = [low, high]
    longest = _MNIST1D_TEMPLATE_LEN + high            # the dilated signal's length before the shift
    shift = a["max_translation"]
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)):
        raise TypeError(f"max_translation must be an int in [1, {longest}] (12 + padding[1]), got {type(shift).__name__}")
    a["max_translation"] = int(shift)
    if not 1 <= a["max_translation"] <= longest:
        raise ValueError(f"max_translation must be an int in [1, {longest}] (12 + padding[1]), got {a['max_translation']}")
    scale = _checks.non_negative_float("scale_coeff", a["scale_coeff"])
    if scale >= 2:
        raise ValueError(f"scale_coeff must be in [0, 2) (the scale factor 1 + scale_coeff·(u − ½) must stay > 0), got {scale}")
    a["scale_coeff"] = scale
    for name in ("corr_noise_scale", "iid_noise_scale", "shear_scale"):
        a[name] = _checks.non_negative_float(name, a[name])
    a["shuffle_seq"] = _checks.boolean("shuffle_seq", a["shuffle_seq"])
    a["final_seq_length"] = _checks.positive_int("final_seq_length", a["final_seq_length"])
    if a["final_seq_length"] < 2:
        raise ValueError(f"final_seq_length must be an int >= 2, got {a['final_seq_length']}")
    return {k: a[k] for k in _MNIST1D_FIELDS}


def _mnist1d_cache_dir(cache_dir: object) -> Path | None:
    if cache_dir is False:
        return None
    if cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "mixbook" / "mnist1d"
    if isinstance(cache_dir, bool) or not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a str, an os.PathLike, None (the default cache) or False (no cache), "
                        f"got {type(cache_dir).__name__} {cache_dir!r}")
    return Path(cache_dir).expanduser()


_MNIST1D_KEYS = ("x", "y", "x_test", "y_test")


def _mnist1d_generate(args: dict[str, object]) -> dict[str, np.ndarray]:
    """``mnist1d.data.make_dataset(args)``, leaving Python's and NumPy's global random states as they were."""
    import random
    from types import SimpleNamespace

    try:
        from mnist1d.data import make_dataset
    except ImportError as err:
        raise ImportError(f"could not import the 'mnist1d' package ({err}); it comes with the chapters extra: "
                          f"{_MNIST1D_EXTRA}") from err
    py_state, np_state = random.getstate(), np.random.get_state()
    try:                                                 # make_dataset seeds both global generators
        ns = SimpleNamespace(template_len=_MNIST1D_TEMPLATE_LEN, **{**args, "padding": list(args["padding"])})
        out = make_dataset(ns)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {k: np.asarray(out[k]) for k in _MNIST1D_KEYS}


def _mnist1d_read(path: Path, args: dict[str, object]) -> dict[str, np.ndarray] | None:
    """The cached arrays, or ``None`` (with a warning) when the file is unreadable or is not for ``args``."""
    import warnings

    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in _MNIST1D_KEYS}
            stored = str(f["args"])
    except (OSError, KeyError, ValueError) as err:
        warnings.warn(f"ignoring the unreadable MNIST-1D cache file {path} ({err}); regenerating it", stacklevel=3)
        return None
    if stored != _json(args):
        warnings.warn(f"ignoring the MNIST-1D cache file {path}: it holds another set ({stored}); regenerating it",
                      stacklevel=3)
        return None
    return arrays


def _mnist1d_write(path: Path, arrays: dict[str, np.ndarray], args: dict[str, object], version: str) -> None:
    """Write the cache atomically (a temporary file in the same folder, then ``os.replace``); warn if impossible."""
    import tempfile
    import warnings

    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp", delete=False) as fh:
            tmp = fh.name
            np.savez(fh, **arrays, args=np.asarray(_json(args)), mnist1d_version=np.asarray(version))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        warnings.warn(f"could not write the MNIST-1D cache {path} ({err}); the set was generated and is returned "
                      "uncached (pass cache_dir=False to skip caching)", stacklevel=3)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _json(args: dict[str, object]) -> str:
    import json

    return json.dumps(args, sort_keys=True, separators=(",", ":"))


def mnist1d(cache_dir: str | os.PathLike | None | bool = None, *, num_samples: int = 5000, seed: int = 42,
            standardise: bool = True, **dataset_args: object) -> Split:
    """MNIST-1D (Greydanus & Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024), generated offline.

    The set is built by the ``mnist1d`` package (``mnist1d.data.make_dataset``) from its ten
    built-in 12-point digit templates: each example is a template padded, dilated, scaled,
    shifted, given correlated and i.i.d. noise, sheared and resampled to ``final_seq_length``
    points; the examples are shuffled and split (the first ``train_split`` part is the training
    set). With the defaults it is the standard set of the paper — 4000 training and 1000 test
    signals of length 40, the arrays of the published ``mnist1d_data.pkl`` to within 1e-15
    (checked against github.com/greydanus/mnist1d at 7878d96) — before the standardisation below.
    ``mnist1d.data.get_dataset`` (which downloads) is never called; nothing touches the network.

    ``make_dataset`` seeds Python's and NumPy's *global* generators; they are saved before and
    restored after, so calling this leaves ``random`` and ``numpy.random`` as they were.
    ``import mnist1d`` loads matplotlib; it happens here, on first generation, not on import.

    **Cache.** The raw arrays are stored in ``<cache_dir>/mnist1d-<hash>.npz``, the hash taken over
    the generator arguments and the ``mnist1d`` version; a later call with the same arguments
    reads the file instead of regenerating (about 4 s for the standard set on one CPU core). The
    file is written atomically (a temporary file in the same folder, then ``os.replace``), so
    concurrent callers never see a partial file; a file that cannot be read, or holds other
    arguments, is regenerated with a warning; a folder that cannot be written gives a warning and
    an uncached result.

    **Standardisation.** As for every loader here, the inputs are standardised with the statistics of
    the *training* inputs only — the scalar mean and population standard deviation of all training
    values (as :func:`digits`; the signals share one scale across positions). ``make_dataset``
    already scales the whole set (train and test together) to mean 0 and standard deviation 1, so
    the change is small (on the standard set: mean −3.2e-4, std 0.998 before); pass
    ``standardise=False`` for the published arrays as they are (float32).

    Args:
        cache_dir: folder of the cache; ``None`` (default): ``$XDG_CACHE_HOME/mixbook/mnist1d``, or
            ``~/.cache/mixbook/mnist1d`` when ``XDG_CACHE_HOME`` is unset; ``False``: no cache
            (generate every time, write nothing).
        num_samples: examples in all, a multiple of 10 and ``>= 20`` (5000: the standard set);
            ``num_samples // 10`` per digit before the shuffle.
        seed: the generator's seed, ``int`` in ``[0, 2**32)`` (42: the standard set).
        standardise: standardise with the training statistics (default), or keep ``make_dataset``'s scale.
        **dataset_args: other fields of ``mnist1d.data.get_dataset_args()`` (defaults in brackets):
            ``train_split`` in ``(0, 1)`` [0.8]; ``padding`` a pair ``(low, high)`` of ints,
            ``0 <= low <= high`` [(36, 60)]; ``max_translation`` int in ``[1, 12 + high]`` [48];
            ``scale_coeff`` in ``[0, 2)`` [0.4]; ``corr_noise_scale`` ``>= 0`` [0.25];
            ``iid_noise_scale`` ``>= 0`` [0.02]; ``shear_scale`` ``>= 0`` [0.75]; ``shuffle_seq`` bool
            [False] (one fixed permutation of the positions, the paper's "shuffled" set);
            ``final_seq_length`` int ``>= 2`` [40]. ``template_len`` (fixed by the templates) and
            ``url`` are refused.

    Returns:
        :class:`Split` named ``"mnist1d"`` (``"mnist1d[shuffled]"`` with ``shuffle_seq``; with any
        other non-default argument ``"mnist1d[custom]"``): ``x`` of shape ``(n, final_seq_length)``
        float32, ``y`` of shape ``(n,)`` int64 in ``[0, 10)``, ``num_classes=10``, class names
        ``"0"``…``"9"``; ``n_train = int(num_samples · train_split)``. Carve a validation part with
        :func:`validation_split`.

    Raises:
        ImportError: ``mnist1d`` is not installed (it comes with ``pip install 'mixbook[chapters]'``).
        TypeError, ValueError: an argument of the wrong kind or outside the range above.
    """
    import hashlib

    args = _mnist1d_args(num_samples, seed, dict(dataset_args))
    standardise = _checks.boolean("standardise", standardise)
    folder = _mnist1d_cache_dir(cache_dir)
    version = _mnist1d_version()
    path = None
    if folder is not None:
        key = hashlib.sha256(f"{_MNIST1D_CACHE_FORMAT}|{version}|{_json(args)}".encode()).hexdigest()[:20]
        path = folder / f"mnist1d-{key}.npz"
    arrays = _mnist1d_read(path, args) if path is not None and path.is_file() else None
    if arrays is None:
        arrays = _mnist1d_generate(args)
        if path is not None:
            _mnist1d_write(path, arrays, args, version)
    x_tr, x_te = arrays["x"].astype(np.float64), arrays["x_test"].astype(np.float64)
    if standardise:
        x_tr, x_te = _standardise(x_tr, x_te, axis=None)
    defaults = _mnist1d_args(5000, 42, {})
    custom = {k for k in _MNIST1D_FIELDS if args[k] != defaults[k]}
    name = "mnist1d" if not custom else "mnist1d[shuffled]" if custom == {"shuffle_seq"} else "mnist1d[custom]"
    return Split(
        x_train=torch.as_tensor(x_tr, dtype=torch.float32),
        y_train=torch.as_tensor(arrays["y"], dtype=torch.int64),
        x_test=torch.as_tensor(x_te, dtype=torch.float32),
        y_test=torch.as_tensor(arrays["y_test"], dtype=torch.int64),
        num_classes=10,
        name=name,
        class_names=tuple(str(k) for k in range(10)),
    )


# ---------------------------------------------------------------------- CIFAR
_CIFAR = {
    # name: (directory, train files, test file, meta file, label key, names key, classes)
    "cifar10": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        b"labels",
        b"label_names",
        10,
    ),
    "cifar100": ("cifar-100-python", ("train",), "test", "meta", b"fine_labels", b"fine_label_names", 100),
}
_CIFAR_NAMES = tuple(_CIFAR)
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _cifar_dir(root: object, name: str) -> Path:
    """The directory holding the batch files (``root/<dir>`` or ``root`` itself)."""
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a str or os.PathLike, got {type(root).__name__}")
    subdir, train_files, test_file, meta_file, *_ = _CIFAR[name]
    expected = (*train_files, test_file, meta_file)
    root = Path(root).expanduser().absolute()
    nested = root / subdir
    # root/<subdir> when it exists; root itself when it already holds the batch files.
    if nested.is_dir() or not any((root / f).is_file() for f in expected):
        folder = nested
    else:
        folder = root
    missing = [f for f in expected if not (folder / f).is_file()]
    if missing:
        what = f"directory {folder} does not exist" if not folder.is_dir() else f"{folder} lacks {', '.join(missing)}"
        raise FileNotFoundError(
            f"{name} not found: {what}. Expected the files {', '.join(expected)} in {folder} "
            f"(or directly in root={root}). mixbook never downloads data: download the "
            f"'python version' of {name.upper().replace('CIFAR', 'CIFAR-')} from {_CIFAR_URL}, unpack "
            f"it and pass the parent directory of {subdir} as root."
        )
    return folder


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        obj = pickle.load(fh, encoding="bytes")
    if not isinstance(obj, dict):
        raise ValueError(f"{path} is not a CIFAR batch (expected a pickled dict, got {type(obj).__name__})")
    # The official files were written by Python 2 (byte-string keys); accept str keys too.
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def _read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    if b"data" not in d or label_key not in d:
        raise ValueError(f"{path} is not a CIFAR batch: it lacks the keys {b'data'!r} and/or {label_key!r}")
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: data must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: {len(labels)} labels for {data.shape[0]} images")
    return data, labels


def cifar_raw(root: str | os.PathLike, name: str = "cifar10", train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10/100 images as stored: ``uint8`` pixels and ``int64`` labels.

    Reads the pickled batches of the "python version" (the format torchvision uses) from a
    local directory. Each row of a batch's ``data`` holds 1024 red, then 1024 green, then
    1024 blue values, each a row-major 32×32 plane; they are returned in CHW order. Use this
    to keep the data as ``uint8`` on the GPU (4× smaller) and augment / normalise there.

    Args:
        root: the directory that contains ``cifar-10-batches-py`` (``cifar-100-python``), or
            that directory itself. It must hold every file of the data set (train, test, meta).
        name: ``"cifar10"`` or ``"cifar100"`` (fine labels).
        train: the 50000 training images if true, else the 10000 test images.

    Returns:
        ``x``: ``(N, 3, 32, 32)`` uint8; ``y``: ``(N,)`` int64 in ``[0, num_classes)``.

    Raises:
        FileNotFoundError: the directory or one of its files is missing (nothing is downloaded).

    Only load files you trust: like torchvision, this unpickles them.
    """
    name = _checks.choice("name", name, _CIFAR_NAMES)
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool, got {type(train).__name__}")
    folder = _cifar_dir(root, name)
    _, train_files, test_file, _, label_key, _, num_classes = _CIFAR[name]
    parts = [_read_batch(folder / f, label_key) for f in (train_files if train else (test_file,))]
    data = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{folder}: labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    x = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32))
    return x, torch.from_numpy(labels)


def cifar(root: str | os.PathLike, name: str = "cifar10") -> Split:
    """CIFAR-10 or CIFAR-100 from a local directory, normalised per channel.

    Pixels are scaled to ``[0, 1]`` and normalised with the per-channel mean and population
    standard deviation of the *training* images (computed from the data, not hard-coded;
    for CIFAR-10 about mean (0.491, 0.482, 0.447), std (0.247, 0.243, 0.262)). See
    :func:`cifar_raw` for the accepted ``root`` forms and the file format.

    Args:
        root: directory containing ``cifar-10-batches-py`` / ``cifar-100-python``, or that
            directory itself.
        name: ``"cifar10"`` or ``"cifar100"`` (the 100 fine labels).

    Returns:
        :class:`Split` with ``x`` of shape ``(n, 3, 32, 32)`` float32 (50000 train, 10000
        test), ``y`` of shape ``(n,)`` int64, ``num_classes`` 10 or 100, and the class names
        from the meta file.

    Raises:
        FileNotFoundError: the directory or one of its files is missing; mixbook never
            downloads (get the python version from https://www.cs.toronto.edu/~kriz/cifar.html).
        ValueError: ``name`` is not ``"cifar10"`` or ``"cifar100"``.
    """
    name = _checks.choice("name", name, _CIFAR_NAMES)
    folder = _cifar_dir(root, name)
    *_, meta_file, _, names_key, num_classes = _CIFAR[name]
    x_tr, y_tr = cifar_raw(folder, name, train=True)
    x_te, y_te = cifar_raw(folder, name, train=False)

    xs = []
    mean = std = None
    for raw in (x_tr, x_te):
        x = raw.to(torch.float32).div_(255)
        if mean is None:
            var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0, keepdim=True)
            std = var.sqrt_()
        xs.append(x.sub_(mean).div_(std))

    meta = _unpickle(folder / meta_file)
    names = meta.get(names_key, ())
    class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    if len(class_names) != num_classes:
        class_names = ()
    return Split(
        x_train=xs[0],
        y_train=y_tr,
        x_test=xs[1],
        y_test=y_te,
        num_classes=num_classes,
        name=name,
        class_names=class_names,
    )


# ---------------------------------------------------------------------- regimes: subsets, noise, validation
def _check_split(split: object) -> Split:
    if not isinstance(split, Split):
        raise TypeError(f"split must be a mixbook.training.data.Split, got {type(split).__name__}")
    return split


def _stratified(y: np.ndarray, n_keep: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices ``(keep, rest)`` of a class-stratified draw of ``n_keep`` of ``len(y)`` labels.

    Allocation follows scikit-learn's ``train_test_split(stratify=y)`` (proportional, seeded);
    a class the proportional allocation would leave out of ``keep`` gets one example moved in,
    so every class present in ``y`` is in ``keep`` (``keep`` may then exceed ``n_keep``).
    """
    from sklearn.model_selection import train_test_split

    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        raise ValueError(
            f"split: every class of y_train needs at least 2 examples for a stratified split, "
            f"class {int(classes[counts.argmin()])} has {int(counts.min())}"
        )
    idx = np.arange(len(y))
    keep, rest = train_test_split(idx, train_size=n_keep, random_state=seed, stratify=y)
    missing = np.setdiff1d(classes, y[keep])
    if missing.size:
        rng = np.random.default_rng(seed)
        moved = np.array([rng.choice(rest[y[rest] == c]) for c in missing])
        keep, rest = np.concatenate([keep, moved]), np.setdiff1d(rest, moved)
    return np.sort(keep), np.sort(rest)


def _n_keep(name: str, fraction: float, n: int, n_classes: int, what: str) -> int:
    n_keep = max(n_classes, round(fraction * n))
    if n_keep >= n or n - n_keep < n_classes:
        raise ValueError(
            f"{name}={fraction} keeps {n_keep} of {n} training examples for {what}, leaving fewer than the "
            f"{n_classes} classes a stratified split needs on the other side; use a smaller {name}"
        )
    return n_keep


def _take_train(split: Split, idx: torch.Tensor, name: str) -> Split:
    clean = None if split.y_train_clean is None else split.y_train_clean[idx]
    return replace(split, x_train=split.x_train[idx], y_train=split.y_train[idx], y_train_clean=clean, name=name)


def labelled_subset(split: Split, fraction: float, seed: int = 0) -> tuple[Split, torch.Tensor]:
    """Keep the labels of a stratified ``fraction`` of the training set; the rest become unlabelled.

    Args:
        split: a :class:`Split`.
        fraction: share of training examples that keep their label, in ``(0, 1)``; at least
            one example per class is kept (a rare class that the proportional allocation
            would miss gets one, so the labelled set may exceed ``round(fraction * n)``).
        seed: seed of the stratified draw.

    Returns:
        ``(labelled, unlabelled_x)``: a :class:`Split` with the labelled training examples and
        the same test set, and the ``(n_unlabelled, *input_shape)`` inputs of the others.
    """
    split = _check_split(split)
    fraction = _open_unit_interval("fraction", fraction)
    seed = _seed("seed", seed)
    n = split.x_train.shape[0]
    y = split.y_train.cpu().numpy()
    n_keep = _n_keep("fraction", fraction, n, len(np.unique(y)), "their labels")
    keep, rest = _stratified(y, n_keep, seed)
    keep_t = torch.as_tensor(keep, device=split.device)
    rest_t = torch.as_tensor(rest, device=split.device)
    return _take_train(split, keep_t, f"{split.name}[{fraction:g} labelled]"), split.x_train[rest_t]


def training_subset(split: Split, fraction: float, seed: int = 0) -> Split:
    """The small-data regime: a class-stratified ``fraction`` of the training set, test set unchanged.

    The validation part (if any) is kept as it is; carve it first (:func:`validation_split`)
    to select hyper-parameters on data the subset did not see, or after, for a validation set
    as small as the training data.

    Args:
        split: a :class:`Split`.
        fraction: share of training examples kept, in ``(0, 1)``; every class keeps at least one.
        seed: ``int`` in ``[0, 2**32)``; the same seed keeps the same examples.

    Returns:
        A :class:`Split` named ``"<name>[<fraction> of train]"`` (label noise, if any, is kept
        with the examples).
    """
    split = _check_split(split)
    fraction = _open_unit_interval("fraction", fraction)
    seed = _seed("seed", seed)
    y = split.y_train.cpu().numpy()
    keep, _ = _stratified(y, _n_keep("fraction", fraction, len(y), len(np.unique(y)), "the subset"), seed)
    return _take_train(split, torch.as_tensor(keep, device=split.device), f"{split.name}[{fraction:g} of train]")


def with_label_noise(split: Split, rate: float, seed: int = 0) -> Split:
    """Symmetric label noise: ``round(rate · n)`` training labels changed to a different, uniform class.

    The examples to corrupt are a uniform random subset of exactly ``round(rate · n_train)``
    training examples; each gets a label drawn uniformly from the ``C − 1`` *other* classes, so
    ``rate`` is the fraction of labels that are wrong. (The convention of Zhang et al. 2017,
    followed by the mixup paper's memorisation experiment, redraws a label uniformly from all
    ``C`` classes, which changes a fraction ``rate · (C − 1) / C`` in expectation.) The original
    labels are kept in ``y_train_clean`` and :attr:`Split.noisy` marks the changed ones. Test and
    validation labels are untouched; apply the noise *before* :func:`validation_split` for a
    validation part as noisy as the training data.

    Args:
        split: a clean :class:`Split` (``y_train_clean is None``) with ``num_classes ≥ 2``.
        rate: fraction of training labels to change, in ``[0, 1)``.
        seed: ``int`` in ``[0, 2**32)``; the same seed changes the same labels the same way.

    Returns:
        A :class:`Split` named ``"<name>[<rate> noisy]"``.
    """
    split = _check_split(split)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"rate must be a real number in [0, 1), got {type(rate).__name__}")
    rate = float(rate)
    if not 0 <= rate < 1:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    seed = _seed("seed", seed)
    if split.y_train_clean is not None:
        raise ValueError("split already has label noise (y_train_clean is set); add noise to the clean split once")
    if split.num_classes < 2:
        raise ValueError(f"label noise needs num_classes >= 2, got {split.num_classes}")
    y = split.y_train.cpu().numpy()
    rng = np.random.default_rng(seed)
    changed = rng.choice(len(y), size=round(rate * len(y)), replace=False)
    shift = rng.integers(1, split.num_classes, size=changed.size)      # 1..C-1: never the same class
    noisy = y.copy()
    noisy[changed] = (y[changed] + shift) % split.num_classes
    return replace(split, y_train=torch.as_tensor(noisy, device=split.device), y_train_clean=split.y_train,
                   name=f"{split.name}[{rate:g} noisy]")


def validation_split(split: Split, fraction: float = 0.2, seed: int = 0) -> Split:
    """Carve a class-stratified validation part out of the training set.

    Hyper-parameters are chosen on ``x_val``/``y_val``; the test set stays untouched until the
    choice is made. The validation labels are the training labels as they are (noisy, if
    :func:`with_label_noise` was applied first).

    Args:
        split: a :class:`Split` without a validation part.
        fraction: share of the training examples moved to validation, in ``(0, 1)``; every class
            gets at least one on each side.
        seed: ``int`` in ``[0, 2**32)``.

    Returns:
        A :class:`Split` whose training part is the rest, named ``"<name>[val <fraction>]"``.
    """
    split = _check_split(split)
    fraction = _open_unit_interval("fraction", fraction)
    seed = _seed("seed", seed)
    if split.x_val is not None:
        raise ValueError("split already has a validation part (x_val is set)")
    y = split.y_train.cpu().numpy()
    val, train = _stratified(y, _n_keep("fraction", fraction, len(y), len(np.unique(y)), "validation"), seed)
    val_t = torch.as_tensor(val, device=split.device)
    out = _take_train(split, torch.as_tensor(train, device=split.device), f"{split.name}[val {fraction:g}]")
    return replace(out, x_val=split.x_train[val_t], y_val=split.y_train[val_t])


def random_crop_flip(x: torch.Tensor, generator: torch.Generator | None = None, *, padding: int = 4,
                     flip: bool = True) -> torch.Tensor:
    """The standard CIFAR augmentation on a batch, on its device: random crop after zero padding,
    and a random horizontal flip, independently per image.

    Vectorised (one pad, one gather; no loop over the batch, no host read), so it can run inside
    :func:`mixbook.training.train.fit` as ``augment=random_crop_flip``.

    Args:
        x: ``(b, C, H, W)`` floating images (for standardised images zero padding is the mean).
        generator: optional ``torch.Generator`` on ``x``'s device.
        padding: pixels of zero padding on each side before cropping back to ``H × W``; ≥ 0.
        flip: also flip each image left-right with probability ½.

    Returns:
        A new ``(b, C, H, W)`` tensor; ``x`` is not modified.
    """
    x = _checks.batch("x", x)
    if x.ndim != 4:
        raise ValueError(f"x must be a (b, C, H, W) batch of images, got shape {tuple(x.shape)}")
    if isinstance(padding, bool) or not isinstance(padding, int):
        raise TypeError(f"padding must be an int >= 0, got {type(padding).__name__} {padding!r}")
    if padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding}")
    flip = _checks.boolean("flip", flip)
    _checks.generator(generator, x.device)
    b, _, h, w = x.shape
    p = padding
    padded = torch.nn.functional.pad(x, (p, p, p, p)) if p else x
    dy = torch.randint(0, 2 * p + 1, (b, 1), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * p + 1, (b, 1), device=x.device, generator=generator)
    cols = torch.arange(w, device=x.device)
    if flip:
        flipped = torch.rand(b, 1, device=x.device, generator=generator) < 0.5
        cols = torch.where(flipped, cols.flip(0), cols)       # (b, W)
    rows = (dy + torch.arange(h, device=x.device))            # (b, H)
    cols = dx + cols                                          # (b, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]
