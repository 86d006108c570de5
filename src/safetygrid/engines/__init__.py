"""Generation engines: one call per cell generates every prompt x sample with the model loaded once.

An engine takes the cell's requests and returns one row per request with the columns of
``results/generations/...`` (see ``GENERATION_COLUMNS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import pandas as pd

from .batching import PADDING_TOLERANCE

# dtype, kernel: what decides the row's numerics besides its checkpoint (engines/numerics.py)
GENERATION_COLUMNS = ["prompt_id", "sample", "seed", "temperature", "engine", "dtype", "kernel", "response",
                      "n_prompt_tokens", "n_tokens", "finish_reason"]


@dataclass(frozen=True)
class Request:
    prompt_id: str
    sample: int
    seed: int
    text: str


@dataclass(frozen=True)
class Settings:
    temperature: float
    max_new_tokens: int
    top_p: float = 1.0
    # transformers' repetition penalty (1.0: off): a token already in the prompt or the answer has its
    # logit divided by this when positive and multiplied when negative, before temperature and top_p
    repetition_penalty: float = 1.0
    # rows per batch at most; "auto": no row bound on CUDA (the token budget sizes batches), 64 on a
    # CPU; None: auto on CUDA, a fixed batch on a CPU
    batch_size: int | str | None = None
    # hf engine: padded tokens per batch, rows x (longest prompt + max_new_tokens); "auto": from the
    # device's free memory on CUDA, CPU_TOKEN_BUDGET on a CPU; None: no budget (rows alone bound a batch)
    token_budget: int | str | None = "auto"
    # hf engine: a batch's padding at most this share of its real tokens; None: any share
    padding_tolerance: float | None = PADDING_TOLERANCE
    # hf engine: "padding" closes a batch at padding_tolerance; "cost" (a CPU's eager path only) cuts
    # batches where batching.CpuCosts models the least total cost. Not the default: its batches pad
    # some rows differently, and at T = 1.0 that flips 2 of the demo's 105 labelled responses
    # (benchmarks/RESULTS.md)
    planner: str = "padding"
    # hf engine on a CPU's eager path: each prompt prefilled once for its samples, the tokens unchanged
    share_prompts: bool = True
    batch_divisor: int = 1  # a retried job's batch (rows and token budget) is the resolved one divided by this
    compile: bool = False  # hf engine on CUDA: a static KV cache and a compiled forward pass
    # hf engine: a static KV cache, each decoding step a CUDA graph replay on CUDA; None: on CUDA only
    cuda_graphs: bool | None = None
    device: str = "auto"
    system_prompt: str | None = None
    dtype: str | None = None  # None: the engine's choice for the device
    kv: Mapping[str, Any] | None = None


# kv entries each engine can honour ({} is full precision everywhere)
VLLM_KV_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")
LLAMA_CPP_KV_DTYPES = ("f16", "q8_0", "q4_0")
ENGINES = ("hf", "vllm", "llama_cpp")  # the names of ENGINE_REGISTRY, for the schema and messages


def kv_unsupported_reason(engine: str, kv: Mapping[str, Any]) -> str | None:
    """Why ``engine`` cannot run a cell with this kv entry, or None when it can. Such a cell is
    recorded as unsupported rather than silently run with a full-precision cache."""
    if not kv:
        return None
    if engine == "hf" and "bits" in kv:
        return None
    if engine == "vllm" and kv.get("dtype") in VLLM_KV_DTYPES:
        return None
    if engine == "llama_cpp" and kv.get("dtype") in LLAMA_CPP_KV_DTYPES:
        return None
    takes = {"hf": "{bits: 2|4} (transformers' quantized cache)", "vllm": "{dtype: fp8}",
             "llama_cpp": "{dtype: q8_0|q4_0|f16}"}.get(engine, "nothing")
    return f"engine {engine} has no KV-cache setting for {dict(kv)}; it takes {takes}"


def cell_engine(model: Mapping[str, Any], precision: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    """The engine that serves a (model, precision): the precision's own ``engine``, else llama.cpp
    for a GGUF precision whose checkpoint holds a .gguf file, else the model's ``engine``."""
    if precision.get("engine"):
        return str(precision["engine"])
    if precision.get("method") == "gguf" and (status.get("details") or {}).get("gguf_file"):
        return "llama_cpp"
    return str(model.get("engine", "hf"))


def cell_unsupported_reason(engine: str, kv: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
    if engine == "llama_cpp" and not (status.get("details") or {}).get("gguf_file"):
        return ("engine llama_cpp needs a .gguf checkpoint, and this precision has none (llama.cpp was not "
                "installed where it was quantized: make envs-llamacpp)")
    return kv_unsupported_reason(engine, kv)


def chat_token_ids(tokenizer: Any, text: str, system_prompt: str | None) -> list[int]:
    """The prompt as the checkpoint's chat template renders a user turn (after an optional system
    turn), with the assistant turn opened: every engine feeds these same ids."""
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
    messages.append({"role": "user", "content": text})
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]


class Engine(Protocol):
    name: str

    def generate(self, requests: Sequence[Request], settings: Settings) -> pd.DataFrame: ...


class EngineUnavailable(RuntimeError):
    """The engine, or an option it was asked for, is not available in this environment."""


class OutOfMemory(RuntimeError):
    """Even a batch of one did not fit; the job fails and Snakemake may retry it."""


# set by the workflow from the config's gpu_jobs_per_card, read by each job's engine and judges: model
# jobs that share one card plan their "auto" batches in an equal part of its memory (they start
# together and would each see the whole card free)
JOBS_PER_CARD_VARIABLE = "SAFETYGRID_GPU_JOBS_PER_CARD"


# adding an engine: one module with a class taking (checkpoint, options), and one line here
ENGINE_REGISTRY = {"hf": ".hf:HFEngine", "vllm": ".vllm:VLLMEngine", "llama_cpp": ".llama_cpp:LlamaCppEngine"}


def make_engine(name: str, checkpoint: str, options: Mapping[str, Any] | None = None) -> Engine:
    """``options``: the engine's own entry of the model's config (``vllm:``, ``llama_cpp:``)."""
    from ..registry import UnknownName, resolve

    try:
        engine_class = resolve(ENGINE_REGISTRY, name, "engine", __name__)
    except UnknownName as exc:
        raise EngineUnavailable(str(exc)) from None
    return engine_class(checkpoint, options)
