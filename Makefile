# mixbook: `make book` builds the rendered book, `make test` runs the whole test suite.
# Both create .venv with pip on first use and install the pinned stack (-e .[book,test] under
# constraints.txt); a second run does not reinstall unless pyproject.toml or constraints.txt changed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mixbook-installed
PYTEST_ARGS ?=

.PHONY: install test test-fast book book-run notebooks gpu clean

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

## Build _build/html from the committed outputs (the ones `make test` re-executes and compares): no
## chapter is executed.
book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Book: $(CURDIR)/_build/html/index.html"

## Execute every chapter with its default parameters, then build _build/html from those outputs
## (jupyter-book's cache in _build/.jupyter_cache: a chapter whose code did not change is not re-run).
## The committed notebooks are not modified (`make notebooks` rewrites them in place).
book-run: $(STAMP)
	@mkdir -p _build
	$(BIN)/python -c "import yaml; c = yaml.safe_load(open('_config.yml')); c['execute']['execute_notebooks'] = 'cache'; yaml.safe_dump(c, open('_build/_config.run.yml', 'w'), allow_unicode=True)"
	$(BIN)/jupyter-book build . --config _build/_config.run.yml -W -n --keep-going
	@echo "Book (chapters executed): $(CURDIR)/_build/html/index.html"

## Re-execute the chapters in place (the committed outputs), with their default parameters.
notebooks: $(STAMP)
	cd book && for nb in [0-9][0-9]_*.ipynb verdicts.ipynb; do ../$(BIN)/jupyter execute --inplace "$$nb" || exit 1; done

## On a machine with a CUDA device: GPU tests, the bench at GPU sizes (fp32, bf16 eager; bf16 compiled at
## b = 1024) and chapters 1-5 on cuda, verdicts compared with the committed CPU run; results in
## book/results/. Every step has a time limit; the whole run fits 8 minutes on one H100/H200 and ends
## with a summary of every step (ok / FAILED / TIMED OUT / skipped, and why). It uses .venv when that
## can be built; where it cannot (a GPU machine without a package index, which often has CUDA torch and
## pytest installed; pip is told not to retry), or where the torch of .venv sees no CUDA device
## and that of $(PYTHON) does, it says so and runs .ci/gpu.py with $(PYTHON), its installed torch and
## mixbook from this checkout (PYTHONPATH); steps whose tools are missing there are skipped, saying so
## (the chapters need papermill, ipykernel, myst-nb). `make gpu GPU_PYTHON=python3` skips .venv;
## `make gpu GPU_ARGS=--dry-run` prints the plan and installs nothing; `GPU_ARGS="--commit SHA"` records
## the commit of a copy without .git.
GPU_ARGS ?=
GPU_PYTHON ?=
GPU_RUN = PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}"
gpu:
ifeq ($(strip $(GPU_PYTHON)),)
ifeq ($(filter --dry-run,$(GPU_ARGS)),)
	@PIP_RETRIES=0 PIP_TIMEOUT=15 $(MAKE) -s --no-print-directory install \
	  || echo "make gpu: could not build $(VENV) (no package index here?)"
endif
	@py=$(BIN)/python; \
	if ! $$py -c 'import torch' 2>/dev/null; then \
	  py=$(PYTHON); echo "make gpu: no usable $(VENV); running with $(PYTHON) ($$(command -v $(PYTHON))) and its installed torch, mixbook from $(CURDIR)"; \
	elif ! $$py -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null \
	     && $(PYTHON) -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then \
	  py=$(PYTHON); echo "make gpu: the torch of $(VENV) sees no CUDA device and that of $(PYTHON) does; running with $(PYTHON), mixbook from $(CURDIR)"; \
	fi; \
	$(GPU_RUN) $$py .ci/gpu.py $(GPU_ARGS)
else
	$(GPU_RUN) $(GPU_PYTHON) .ci/gpu.py $(GPU_ARGS)
endif

clean:
	rm -rf _build
