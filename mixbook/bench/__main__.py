"""``python -m mixbook.bench``: the whole comparison (see :func:`mixbook.bench.harness.main`)."""

from .harness import main

main()
