# mixbook: `make book` builds the rendered book, `make test` runs the whole test suite.
# Both create .venv with pip on first use and install the pinned stack (-e .[book,test] under
# constraints.txt); a second run does not reinstall unless pyproject.toml or constraints.txt changed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mixbook-installed
PYTEST_ARGS ?=

.PHONY: install test test-fast book notebooks gpu clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -c constraints.txt -e '.[book,test]'
	@touch $(STAMP)

## The whole suite: unit, property, GPU (skipped without CUDA), notebooks and the book build, in two
## pytest-xdist workers (the chapters' re-executions are long and independent; the tests that read
## the built book share one worker, so it is built once). `make test XDIST=0` runs it in one process.
XDIST ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest $(if $(filter 0,$(XDIST)),,-n $(XDIST) --dist loadgroup) $(PYTEST_ARGS)

## Everything but the notebook tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not notebook" $(PYTEST_ARGS)

## Execute every chapter with its default parameters and build _build/html.
book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Book: $(CURDIR)/_build/html/index.html"

## Re-execute the chapters in place (the committed outputs), with their default parameters.
notebooks: $(STAMP)
	cd book && for nb in [0-9][0-9]_*.ipynb verdicts.ipynb; do ../$(BIN)/jupyter execute --inplace "$$nb" || exit 1; done

## On a machine with a CUDA device: GPU tests, the bench at GPU sizes (fp32, bf16) and chapters 1-5 on
## cuda, verdicts compared with the committed CPU run; results in book/results/. `make gpu GPU_ARGS=--dry-run`
## prints the plan.
GPU_ARGS ?=
gpu: $(STAMP)
	$(BIN)/python .ci/gpu.py $(GPU_ARGS)

clean:
	rm -rf _build
