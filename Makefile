# Two commands on a fresh machine: `make demo` and `make test`.
# The virtualenv is created on first use; stamps keep later runs from reinstalling anything.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned here (not in the package) because this exact version is the CPU build on local disk;
# a looser spec would pull several GB of CUDA build.
TORCH := torch==2.13.0
DEMO_OUT ?= demo-out

.PHONY: demo test test-fast bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[embedded]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[embedded,embeddings,test]'
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	HF_HUB_OFFLINE=1 $(BIN)/condor run -o $(DEMO_OUT) --quiet-progress-free 2>/dev/null || true

test: $(VENV)/.test-installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -ra

test-fast: $(VENV)/.test-installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

bench: $(VENV)/.test-installed
	$(BIN)/python bench/bench_openai.py
	$(BIN)/python bench/bench_memory.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
