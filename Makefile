# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
QUANTIZE_ENV := .venvs/quantize
CORES ?= 2
PYTEST_ARGS ?=
# pip prints one warning per package for index folders that this machine's config names but that
# hold nothing; they are noise
QUIET_PIP := { grep -v 'is ignored: it is neither a file nor a directory' || true; }

.PHONY: demo test test-fast envs clean

$(VENV)/.installed: envs/core.txt pyproject.toml
	@echo ">> main environment ($(VENV)): envs/core.txt"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r envs/core.txt 2>&1 | $(QUIET_PIP)
	$(VENV)/bin/pip install -q --no-deps -e . 2>&1 | $(QUIET_PIP)
	touch $@

$(QUANTIZE_ENV)/.installed: envs/quantize.txt pyproject.toml
	@echo ">> quantize environment ($(QUANTIZE_ENV)): envs/quantize.txt"
	$(PYTHON) -m venv $(QUANTIZE_ENV)
	$(QUANTIZE_ENV)/bin/pip install -q -r envs/quantize.txt 2>&1 | $(QUIET_PIP)
	$(QUANTIZE_ENV)/bin/pip install -q --no-deps -e . 2>&1 | $(QUIET_PIP)
	touch $@

envs: $(VENV)/.installed $(QUANTIZE_ENV)/.installed

demo: envs
	$(VENV)/bin/snakemake --profile profiles/local --cores $(CORES)
	@echo ">> report: results/report/index.html   tables: results/tables/"

test: envs
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# skips the end-to-end workflow tests (minutes); CI runs everything
test-fast: envs
	$(VENV)/bin/python -m pytest -m "not workflow and not slurm and not vllm" $(PYTEST_ARGS)

clean:
	rm -rf results .snakemake
