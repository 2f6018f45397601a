"""What only the book uses: each module names the chapter it serves. Nothing here is imported by
``import mixbook``; import a module when a chapter needs it (``from mixbook.chapters import stats``).

Chapter 2: :mod:`~mixbook.chapters.reformulation_checks`. Chapter 3:
:mod:`~mixbook.chapters.manifold_gradient`. Chapter 4: :mod:`~mixbook.chapters.toy_manifolds`,
:mod:`~mixbook.chapters.synthetic`. Chapter 6: :mod:`~mixbook.chapters.cifar_grid`, :mod:`~mixbook.chapters.tuning`, :mod:`~mixbook.chapters.shrinkage`, :mod:`~mixbook.chapters.mnist1d`. Chapter 7:
:mod:`~mixbook.chapters.gpu_record`. Chapter 8:
:mod:`~mixbook.chapters.attacks`, :mod:`~mixbook.chapters.bayes`, :mod:`~mixbook.chapters.gan`,
:mod:`~mixbook.chapters.regression`. Every chapter: :mod:`~mixbook.chapters.results`,
:mod:`~mixbook.chapters.stats`, :mod:`~mixbook.chapters.plotting`, :mod:`~mixbook.chapters.figures`,
:mod:`~mixbook.chapters.notebook`. The verdicts page: :mod:`~mixbook.chapters.verdicts`.
"""



__all__ = list(_MODULES := ("attacks", "bayes", "cifar_grid", "figures", "gan", "gpu_record", "manifold_gradient", "mnist1d", "notebook", "plotting",
            "reformulation_checks", "regression", "results", "stats", "shrinkage", "synthetic", "toy_manifolds", "tuning", "verdicts"))


def __getattr__(name: str):
    # ``mixbook.chapters.stats`` imports the module on first use (a chapter writes the attribute path).
    if name in _MODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
