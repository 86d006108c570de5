"""Generation engines: one call per cell generates every prompt x sample with the model loaded once.

An engine takes the cell's requests and returns one row per request with the columns of
``results/generations/...`` (see ``GENERATION_COLUMNS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import pandas as pd

GENERATION_COLUMNS = ["prompt_id", "sample", "seed", "temperature", "engine", "response",
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
    batch_size: int = 16
    device: str = "auto"
    system_prompt: str | None = None
    dtype: str | None = None  # None: the engine's choice for the device
    kv: Mapping[str, Any] | None = None


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


def make_engine(name: str, checkpoint: str, options: Mapping[str, Any] | None = None) -> Engine:
    """``options``: the engine's own entry of the model's config (``vllm:``)."""
    if name == "hf":
        from .hf import HFEngine

        return HFEngine(checkpoint)
    if name == "vllm":
        from .vllm import VLLMEngine

        return VLLMEngine(checkpoint, options)
    raise EngineUnavailable(f"engine {name!r} is not available; known engines: hf, vllm")
