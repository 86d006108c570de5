"""The llama.cpp engine (llama-cpp-python) for GGUF precisions: the model loaded once, every prompt x
sample of a cell generated one after another with the GGUF's own chat template.

Each request sets its own seed (METRICS.md's seed(p, s), folded to llama.cpp's 32-bit seed), so a
sample is reproducible and paired across cells; at T = 0 llama.cpp's sampler is greedy. Sampling is
plain temperature (+ top_p): llama.cpp's default top_k/min_p filters are switched off so that the
engine samples the same distribution as the other engines. Consecutive samples of a prompt reuse its
evaluated prefix (llama-cpp-python keeps the last prompt's KV cache). The cell's kv entry maps to
llama.cpp's K/V cache types (``{dtype: q8_0}``, ``{dtype: q4_0}``, ``{dtype: f16}``).
"""

from __future__ import annotations

import atexit
import logging
import os
import time
import weakref
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..logs import progress
from . import GENERATION_COLUMNS, LLAMA_CPP_KV_DTYPES, EngineUnavailable, Request, Settings
from .numerics import Numerics, generation_table

log = logging.getLogger(__name__)

# kv dtype -> ggml type id (ggml.h: GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q8_0 = 8)
LLAMA_CPP_KV_TYPES = dict(zip(LLAMA_CPP_KV_DTYPES, (1, 8, 2)))
LLAMA_DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp reads this seed as "pick one at random"


def kv_cache_types(kv: Mapping[str, Any]) -> dict[str, Any]:
    """``Llama`` keyword arguments for a kv entry: {} for full precision (llama.cpp's f16 cache)."""
    if not kv:
        return {}
    if set(kv) == {"dtype"} and kv["dtype"] in LLAMA_CPP_KV_TYPES:
        ggml_type = LLAMA_CPP_KV_TYPES[str(kv["dtype"])]
        # a quantized V cache needs flash attention in llama.cpp
        return {"type_k": ggml_type, "type_v": ggml_type, "flash_attn": True}
    raise EngineUnavailable(f"llama.cpp has no KV-cache setting for {dict(kv)}; it takes {{dtype: q8_0}}, "
                            "{dtype: q4_0} or {dtype: f16}")


def llama_seed(seed: int) -> int:
    """A 64-bit seed(p, s) folded into llama.cpp's uint32 seed, never its 'random' sentinel."""
    return int(seed) % LLAMA_DEFAULT_SEED


# ggml keeps activations in float32 (a quantized tensor's product quantizes them per block on the fly)
LLAMA_CPP_DTYPE = "float32"


def ggml_kernel(version: str, system_info: str) -> str:
    """llama.cpp's kernels as its build reports them: each backend with the features it was built
    with, e.g. "llama.cpp 0.3.36 CPU: SSE3 AVX AVX2 F16C FMA" (from ``llama_print_system_info``:
    "CPU : SSE3 = 1 | AVX512 = 0 | ...")."""
    parts: list[str] = []
    for field in system_info.split("|"):
        if ":" in field:
            backend, field = field.split(":", 1)
            parts.append(f"{backend.strip()}:")
        name, _, value = field.partition("=")
        if value.strip() == "1":
            parts.append(name.strip())
    return " ".join([f"llama.cpp {version}", *parts]).strip()


def available_cpus() -> int:
    """The CPUs this process may run on (a SLURM job's allocation, not the node's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def gguf_file(checkpoint: str | Path) -> Path:
    path = Path(checkpoint)
    if path.is_file():
        return path
    found = sorted(path.glob("*.gguf"))
    if not found:
        raise EngineUnavailable(
            f"{checkpoint} holds no .gguf file: engine llama_cpp serves GGUF precisions made with llama.cpp "
            "installed in the quantize environment (make envs-llamacpp); serve this precision with engine: hf")
    return found[0]


def load_llama(checkpoint: str | Path, **params: Any) -> Any:
    """llama-cpp-python's ``Llama`` on the checkpoint's .gguf file; EngineUnavailable, naming the
    fix, where there is no .gguf or no llama_cpp."""
    path = gguf_file(checkpoint)
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise EngineUnavailable(
            f"engine 'llama_cpp' is not installed in this environment ({exc}); run `make envs-llamacpp` "
            "(builds llama-cpp-python once and caches the wheel) or serve this precision with engine: hf") from None
    llm = Llama(model_path=str(path), seed=0, verbose=False, **params)
    # a model nobody closed (a workflow script's judge lives until the interpreter exits) is freed by
    # an exit hook, while llama_cpp's module globals still exist: Llama.__del__ at interpreter
    # teardown finds them gone and prints "Exception ignored in: Llama.__del__ ... TypeError:
    # 'NoneType' object is not callable" into the job's log. close() twice is harmless.
    atexit.register(_close_if_alive, weakref.ref(llm))
    return llm


def _close_if_alive(model: "weakref.ref[Any]") -> None:
    llm = model()
    if llm is not None:
        llm.close()


class LlamaCppEngine:
    name = "llama_cpp"

    def __init__(self, checkpoint: str, options: Mapping[str, Any] | None = None) -> None:
        self.checkpoint = checkpoint
        self.options = dict(options or {})

    def _llm(self, settings: Settings) -> Any:
        return load_llama(self.checkpoint, n_ctx=int(self.options.get("n_ctx", 2048)),
                          n_batch=int(self.options.get("n_batch", 512)),
                          n_threads=int(self.options.get("n_threads", 0)) or available_cpus(),
                          n_gpu_layers=int(self.options.get("n_gpu_layers", -1 if settings.device.startswith("cuda") else 0)),
                          chat_format="chat_template.default", **kv_cache_types(settings.kv or {}))

    def generate(self, requests: Sequence[Request], settings: Settings) -> pd.DataFrame:
        kv_cache_types(settings.kv or {})  # refuse an unsupported kv before the model load
        started = time.time()
        llm = self._llm(settings)
        try:
            if "tokenizer.chat_template" not in llm.metadata:
                raise EngineUnavailable(f"{gguf_file(self.checkpoint)} has no tokenizer.chat_template; llama_cpp "
                                        "cannot render the prompts as the model was trained to read them")
            log.info("llama.cpp loaded %s in %.1f s", gguf_file(self.checkpoint), time.time() - started)
            return self._generate_all(llm, requests, settings)
        finally:
            # freed here, not by Llama.__del__ at interpreter exit, when llama_cpp's module
            # globals may already be gone ("Exception ignored in: Llama.__del__" in the job's log)
            llm.close()

    def _generate_all(self, llm: Any, requests: Sequence[Request], settings: Settings) -> pd.DataFrame:
        """Every request through the loaded model, one after another."""
        n_ctx = llm.n_ctx()
        rows = []
        generating, n_tokens = time.time(), 0
        step = max(1, len(requests) // 10)
        bar = progress(len(requests), "generate")
        for i, r in enumerate(requests, start=1):
            messages = ([{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else [])
            messages.append({"role": "user", "content": r.text})
            try:
                out = llm.create_chat_completion(
                    messages=messages, temperature=settings.temperature, top_p=settings.top_p, top_k=0,
                    min_p=0.0, typical_p=1.0, repeat_penalty=1.0, seed=llama_seed(r.seed),
                    max_tokens=settings.max_new_tokens)
            except ValueError as exc:
                if "context window" in str(exc) or "exceed" in str(exc):
                    raise EngineUnavailable(f"prompt {r.prompt_id} with max_new_tokens={settings.max_new_tokens} does "
                                            f"not fit n_ctx={n_ctx}; raise the model's llama_cpp.n_ctx: {exc}") from exc
                raise
            usage, choice = out["usage"], out["choices"][0]
            n_tokens += usage["completion_tokens"]
            rows.append({"prompt_id": r.prompt_id, "sample": r.sample, "seed": r.seed,
                         "temperature": settings.temperature, "engine": self.name,
                         "response": (choice["message"]["content"] or "").strip(),
                         "n_prompt_tokens": usage["prompt_tokens"], "n_tokens": usage["completion_tokens"],
                         "finish_reason": "length" if choice["finish_reason"] == "length" else "stop"})
            bar.update(1)
            if i % step == 0 or i == len(requests):
                elapsed = time.time() - generating
                log.info("%d/%d responses, %.1f generated tokens/s", i, len(requests), n_tokens / max(elapsed, 1e-9))
        bar.close()
        import llama_cpp

        info = llama_cpp.llama_print_system_info()
        kernel = ggml_kernel(llama_cpp.__version__, info.decode() if isinstance(info, bytes) else str(info))
        return generation_table(rows, GENERATION_COLUMNS, Numerics(LLAMA_CPP_DTYPE, kernel))
