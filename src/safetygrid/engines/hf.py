"""transformers engine: batched generation on CPU or CUDA with a seed per (prompt, sample)."""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LogitsProcessor, LogitsProcessorList

from . import GENERATION_COLUMNS, EngineUnavailable, OutOfMemory, Request, Settings, chat_token_ids

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineUnavailable(f"device {device!r} was asked for but torch sees no CUDA device")
    return device


KV_BACKEND_MODULES = {"quanto": "optimum.quanto", "hqq": "hqq"}


def kv_cache_options(kv: Mapping[str, Any]) -> dict[str, Any]:
    """GenerationConfig options for a kv entry: {} for full precision, else transformers'
    QuantizedCache (KIVI-style: the newest ``residual_length`` tokens stay at full precision)."""
    if "dtype" in kv:
        raise EngineUnavailable(f"kv cache {dict(kv)} is vLLM's kv_cache_dtype; the hf engine has no fp8 cache. "
                                "Serve this model with engine: vllm, or use {bits: 4} / {bits: 2} here")
    if not kv.get("bits"):
        return {}
    backend = kv.get("backend", "quanto")
    try:
        importlib.import_module(KV_BACKEND_MODULES[backend])
    except ImportError as exc:
        raise EngineUnavailable(
            f"kv cache {dict(kv)} needs the {backend!r} backend, which is not installed in this environment "
            f"({exc}); install {'optimum-quanto' if backend == 'quanto' else 'hqq'} or drop this kv entry") from exc
    return {"cache_implementation": "quantized",
            "cache_config": {"backend": backend, "nbits": int(kv["bits"]),
                             "q_group_size": int(kv.get("group_size", 64)),
                             "residual_length": int(kv.get("residual_length", 128))}}


class SeededSampler(LogitsProcessor):
    """Draws each row's next token from its own generator, so a (prompt, sample) pair gets the same
    tokens whatever batch it lands in, and the draw is reproducible from its seed.

    It returns logits that are -inf everywhere but the drawn token; ``generate`` then runs greedy.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        self.generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float().cpu() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            # keep the smallest prefix whose mass reaches top_p (always at least the top token)
            drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= self.top_p
            sorted_probs[drop] = 0.0
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        # inverse-CDF draw: one uniform per row from that row's generator (torch.multinomial per row
        # costs milliseconds on a 50k vocabulary; this is one vectorised cumsum + search)
        uniforms = torch.cat([torch.rand(1, 1, generator=g, dtype=torch.float64) for g in self.generators])
        cdf = probs.double().cumsum(dim=-1)
        cdf = cdf / cdf[:, -1:]
        picks = torch.searchsorted(cdf, uniforms).clamp(max=probs.shape[-1] - 1).to(scores.device)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(-1, picks, 0.0)


class HFEngine:
    name = "hf"

    def __init__(self, checkpoint: str) -> None:
        self.checkpoint = checkpoint

    def _load(self, settings: Settings) -> tuple[Any, Any, str]:
        device = resolve_device(settings.device)
        dtype = settings.dtype or ("float32" if device == "cpu" else "bfloat16")
        tokenizer = AutoTokenizer.from_pretrained(self.checkpoint, padding_side="left")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(self.checkpoint, dtype=getattr(torch, dtype))
        model.to(device).eval()
        return model, tokenizer, device

    def generate(self, requests: Sequence[Request], settings: Settings) -> pd.DataFrame:
        cache = kv_cache_options(settings.kv or {})
        model, tokenizer, device = self._load(settings)
        eos = model.generation_config.eos_token_id
        eos_ids = set([eos] if isinstance(eos, int) else (eos or []))
        prompts = {r.prompt_id: r.text for r in requests}
        encoded = {pid: chat_token_ids(tokenizer, text, settings.system_prompt) for pid, text in prompts.items()}
        # longest first: similar lengths share a batch, so little padding, and OOM shows up early
        order = sorted(range(len(requests)),
                       key=lambda i: (-len(encoded[requests[i].prompt_id]), requests[i].prompt_id, requests[i].sample))
        rows: list[dict[str, Any]] = [{} for _ in requests]
        started, done_tokens, done = time.time(), 0, 0
        batch_size = settings.batch_size
        config = GenerationConfig(max_new_tokens=settings.max_new_tokens, do_sample=False,
                                  eos_token_id=sorted(eos_ids), pad_token_id=tokenizer.pad_token_id, **cache)
        while done < len(order):
            idx = order[done:done + batch_size]
            batch = [requests[i] for i in idx]
            try:
                new = self._generate_batch(model, tokenizer, device, config, batch, encoded, settings)
            except torch.OutOfMemoryError as exc:
                # the longest prompts come first, so a batch that fits here fits for the rest too
                if batch_size == 1:
                    raise OutOfMemory(f"one sequence of {len(encoded[batch[0].prompt_id])} prompt tokens + "
                                      f"{settings.max_new_tokens} new tokens does not fit on {device}") from exc
                batch_size = max(1, batch_size // 2)
                log.warning("out of memory on %s: batch size now %d", device, batch_size)
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
                continue
            for i, r, tokens in zip(idx, batch, new):
                stop = next((j for j, t in enumerate(tokens) if t in eos_ids), None)
                kept = tokens if stop is None else tokens[:stop + 1]
                done_tokens += len(kept)
                rows[i] = {
                    "prompt_id": r.prompt_id, "sample": r.sample, "seed": r.seed,
                    "temperature": settings.temperature, "engine": self.name,
                    "response": tokenizer.decode(kept, skip_special_tokens=True).strip(),
                    "n_prompt_tokens": len(encoded[r.prompt_id]), "n_tokens": len(kept),
                    "finish_reason": "stop" if stop is not None else "length",
                }
            done += len(idx)
            elapsed = time.time() - started
            log.info("%d/%d responses, %.1f generated tokens/s", done, len(order), done_tokens / max(elapsed, 1e-9))
        return pd.DataFrame(rows, columns=GENERATION_COLUMNS)

    @staticmethod
    def _generate_batch(model: Any, tokenizer: Any, device: str, config: GenerationConfig, batch: Sequence[Request],
                        encoded: Mapping[str, list[int]], settings: Settings) -> list[list[int]]:
        """The new tokens of each request of one padded batch."""
        inputs = tokenizer.pad({"input_ids": [encoded[r.prompt_id] for r in batch]},
                               return_tensors="pt", padding=True).to(device)
        processors = LogitsProcessorList()
        if settings.temperature > 0:
            processors.append(SeededSampler([r.seed for r in batch], settings.temperature, settings.top_p))
        with torch.inference_mode():
            out = model.generate(**inputs, generation_config=config, logits_processor=processors)
        return out[:, inputs["input_ids"].shape[1]:].cpu().tolist()
