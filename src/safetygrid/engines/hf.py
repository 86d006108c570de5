"""transformers engine: batched generation on CPU or CUDA with a seed per (prompt, sample)."""

from __future__ import annotations

import importlib
import logging
import os
import time
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, GenerationConfig, LogitsProcessorList

from ..cpu_numerics import warn_if_unpinned
from ..logs import progress
from .batching import BatchLimits, next_batch, padded_tokens, plan_by_cost
from .sampling import RepetitionPenalty, SeededSampler
from .static_decode import StaticDecoder, static_decode_unsupported
from .numerics import Numerics, dtype_name, generation_table, torch_kernel
from . import GENERATION_COLUMNS, JOBS_PER_CARD_VARIABLE, EngineUnavailable, OutOfMemory, Request, Settings, chat_token_ids

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineUnavailable(f"device {device!r} was asked for but torch sees no CUDA device")
    return device


# "auto" rows on a CPU: big enough to keep the matmuls efficient, small enough to stay in cache-friendly sizes
CPU_AUTO_BATCH = 64
# an absent batch_size on a CPU (on CUDA it means "auto"): the batch the CPU grids were measured with
CPU_DEFAULT_BATCH = 16
# token_budget "auto" on a CPU: padded tokens per batch (rows x (longest prompt + new tokens)); a CPU
# has memory to spare for a small model, the budget is there to keep the prefill from paying for
# padding (benchmarks/RESULTS.md, "Token-budget batching")
CPU_TOKEN_BUDGET = 16384
# the share of the device's free memory an "auto" budget plans to fill (the rest: allocator slack,
# what the estimate below leaves out)
AUTO_MEMORY_SHARE = 0.6


def auto_memory_share() -> float:
    """The share of a card's free memory one job's "auto" budget plans to fill."""
    raw = os.environ.get(JOBS_PER_CARD_VARIABLE, "1")
    try:
        jobs = int(raw)
    except ValueError:
        raise ValueError(f"{JOBS_PER_CARD_VARIABLE}={raw!r}: a whole number of jobs is needed") from None
    if jobs < 1:
        raise ValueError(f"{JOBS_PER_CARD_VARIABLE}={raw!r}: at least one job a card")
    return AUTO_MEMORY_SHARE / jobs


def bytes_per_token(model: Any) -> int:
    """KV-cache bytes one token holds in ``model`` (keys and values of every layer)."""
    config = _text_config(model)
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = torch.finfo(model.dtype).bits // 8
    return 2 * config.num_hidden_layers * heads * head_dim * element


def _text_config(model: Any) -> Any:
    return model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config


def device_batch_default(batch_size: int | str | None, device: str, cpu_default: int) -> int | str:
    """An absent batch size (None) follows the device the job runs on: "auto" on CUDA, where a
    small fixed batch leaves most of the card idle, and ``cpu_default`` on a CPU. The config cannot
    decide it: a grid is planned on one machine and its jobs may run on another."""
    if batch_size is not None:
        return batch_size
    return "auto" if device.startswith("cuda") else cpu_default


def row_limit(batch_size: int | str | None, device: str, cpu_default: int, cpu_auto: int) -> int | None:
    """The most rows one batch holds: ``batch_size`` itself; for "auto" (and an absent one on CUDA)
    no row bound on CUDA, where the token budget sizes batches from free memory, and ``cpu_auto`` on a
    CPU; an absent one on a CPU: ``cpu_default``."""
    batch_size = device_batch_default(batch_size, device, cpu_default)
    if batch_size != "auto":
        return int(batch_size)
    return None if device.startswith("cuda") else cpu_auto


def resolve_token_budget(token_budget: int | str | None, device: str, bytes_per_padded_token: Callable[[], float]) -> int | None:
    """Padded tokens one batch may hold: ``token_budget`` itself; None: no budget (rows alone
    bound a batch); "auto": ``CPU_TOKEN_BUDGET`` on a CPU, on CUDA as many tokens of
    ``bytes_per_padded_token()`` as ``auto_memory_share()`` of the free memory holds. An
    out-of-memory error still halves it, so an optimistic estimate costs a retry, not the job."""
    if token_budget is None:
        return None
    if token_budget != "auto":
        return int(token_budget)
    if not device.startswith("cuda"):
        return CPU_TOKEN_BUDGET
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return max(1, int(free * auto_memory_share() // bytes_per_padded_token()))


def generation_limits(settings: Settings, model: Any, device: str) -> BatchLimits:
    """The bounds of each generate batch. A padded token holds its KV cache and, during the prefill,
    its activations through the widest layer; each row also holds the sampler's float32
    probabilities and float64 CDF over the vocabulary, charged to the ``max_new_tokens + 1`` tokens
    a row holds at least."""
    config, element = _text_config(model), torch.finfo(model.dtype).bits // 8
    widest = max(config.hidden_size, getattr(config, "intermediate_size", 0))
    tokens = resolve_token_budget(settings.token_budget, device, lambda: (
        bytes_per_token(model) + 4 * widest * element + 20 * config.vocab_size / (settings.max_new_tokens + 1)))
    limits = BatchLimits(rows=row_limit(settings.batch_size, device, CPU_DEFAULT_BATCH, CPU_AUTO_BATCH),
                         tokens=tokens, padding=settings.padding_tolerance)
    return limits.divided(settings.batch_divisor)


def forward_limits(batch_size: int | str | None, token_budget: int | str | None, model: Any, device: str,
                   cpu_default: int = 8) -> BatchLimits:
    """The bounds of a judge's batch for one forward pass over whole sequences: each token holds its
    activations through the widest layer and its keys and values at once."""
    config, element = _text_config(model), torch.finfo(model.dtype).bits // 8
    widest = 8 * config.hidden_size + 3 * getattr(config, "intermediate_size", 4 * config.hidden_size)
    tokens = resolve_token_budget(token_budget, device, lambda: bytes_per_token(model) + widest * element)
    return BatchLimits(rows=row_limit(batch_size, device, cpu_default, cpu_default), tokens=tokens)


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


def use_static_decoder(requested: bool | None, device: str, model: Any, quantized_cache: bool, compile: bool) -> bool:
    """Whether batches decode with :class:`StaticDecoder`: when asked (``generation.cuda_graphs``),
    or, when the config is silent, on CUDA, where an eager step is bound by kernel launches. A
    quantized KV cache is dynamic and ``compile`` makes its own static cache: both keep their path.
    A model the static decoder cannot serve fails when it was asked for and is decoded eagerly when
    it was not."""
    if not (device.startswith("cuda") if requested is None else requested):
        return False
    if compile or quantized_cache:
        if requested:
            log.warning("cuda_graphs ignored: %s", "compile: true" if compile else "a quantized KV cache")
        return False
    reason = static_decode_unsupported(model)
    if reason is None:
        return True
    if requested:
        raise EngineUnavailable(f"generation.cuda_graphs: true, but {reason}; set cuda_graphs: false")
    log.info("decoding with a dynamic cache: %s", reason)
    return False


def decoder_batch_limits(limits: BatchLimits, static_decoder: bool, device: str) -> BatchLimits:
    """On CUDA the static decoder prefills a batch's prompt lengths in segments and attends each
    over its own cache columns (static_decode.py), so its batches drop the padding bound: long and
    short prompts then share each decoding step's read of the weights (issue 28's mixed-length
    workload ran as two batches, each reading them). Rows and the token budget still bound memory."""
    if static_decoder and device.startswith("cuda"):
        return replace(limits, padding=None)
    return limits


class HFEngine:
    name = "hf"

    def __init__(self, checkpoint: str, options: Mapping[str, Any] | None = None) -> None:
        self.checkpoint = checkpoint  # the hf engine takes no options of its own: generation: holds them

    def _load(self, settings: Settings) -> tuple[Any, Any, str]:
        device = resolve_device(settings.device)
        if device == "cpu":
            warn_if_unpinned("the hf engine")
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
        # longest first: similar lengths are neighbours, so batches cut from this order carry
        # little padding, and out-of-memory shows up in the first batch
        order = sorted(range(len(requests)),
                       key=lambda i: (-len(encoded[requests[i].prompt_id]), requests[i].prompt_id, requests[i].sample))
        lengths = [len(encoded[requests[i].prompt_id]) for i in order]
        rows: list[dict[str, Any]] = [{} for _ in requests]
        started, done_tokens, done, n_batches, n_padded = time.time(), 0, 0, 0, 0
        limits = generation_limits(settings, model, device)
        log.info("batches of at most %s rows, %s padded tokens, padding %s of real tokens (batch_size %s, "
                 "token_budget %s)", limits.rows or "any number of", limits.tokens or "any number of",
                 "any share" if limits.padding is None else f"{limits.padding:.0%}",
                 "absent: the device's default" if settings.batch_size is None else settings.batch_size,
                 settings.token_budget)
        if settings.compile and device.startswith("cuda") and not cache:
            # transformers compiles the forward pass when the cache is static: fewer kernel launches per
            # step, which is what bounds a small model's decoding on a GPU
            cache = {"cache_implementation": "static"}
        graphs = use_static_decoder(settings.cuda_graphs, device, model, bool(cache), settings.compile)
        limits = decoder_batch_limits(limits, graphs, device)
        decoder = (lambda batch: StaticDecoder(model, settings.max_new_tokens, sorted(eos_ids),
                                               temperature=settings.temperature, top_p=settings.top_p,
                                               repetition_penalty=settings.repetition_penalty,
                                               seeds=[r.seed for r in batch],
                                               segment_tolerance=settings.padding_tolerance)) if graphs else None
        config = GenerationConfig(max_new_tokens=settings.max_new_tokens, do_sample=False,
                                  eos_token_id=sorted(eos_ids) or None, pad_token_id=tokenizer.pad_token_id, **cache)
        # on a CPU's eager path (dynamic cache, generate): each prompt prefilled once for its samples,
        # and on request batches cut by modelled cost
        eager_cpu = device == "cpu" and not graphs and not cache
        share, by_cost = eager_cpu and settings.share_prompts, eager_cpu and settings.planner == "cost"
        if by_cost:
            log.info("batches cut by modelled cost on the CPU (the padding tolerance unused)")
        row_prompts = [requests[i].prompt_id for i in order]
        planned: list[int] = []  # sizes of the batches still to run, from the last plan
        bar = progress(len(order), "generate")
        while done < len(order):
            if not by_cost:
                size = next_batch(lengths, done, settings.max_new_tokens, limits)
            else:
                if not planned:
                    planned = [len(b) for b in plan_by_cost(lengths[done:], row_prompts[done:],
                                                            settings.max_new_tokens, limits)]
                size = planned[0]
            idx = order[done:done + size]
            batch = [requests[i] for i in idx]
            padded = padded_tokens(lengths[done:done + size], settings.max_new_tokens)
            try:
                new = self._generate_batch(model, tokenizer, device, config, batch, encoded, settings,
                                           decoder(batch) if decoder else None, share_prompts=share)
            except torch.OutOfMemoryError as exc:
                # the longest prompts come first, so limits that fit here fit for the rest too
                if size == 1:
                    raise OutOfMemory(f"one sequence of {lengths[done]} prompt tokens + "
                                      f"{settings.max_new_tokens} new tokens does not fit on {device}") from exc
                limits, planned = limits.halved_below(size, padded), []
                log.warning("out of memory on %s at %d rows, %d padded tokens: now at most %d rows, %d tokens",
                            device, size, padded, limits.rows, limits.tokens)
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
                continue
            n_batches, n_padded, planned = n_batches + 1, n_padded + padded, planned[1:]
            stops = [next((j for j, t in enumerate(tokens) if t in eos_ids), None) for tokens in new]
            kept = [tokens if stop is None else tokens[:stop + 1] for tokens, stop in zip(new, stops)]
            # one call for the batch: the tokenizer decodes the rows in parallel
            texts = tokenizer.batch_decode(kept, skip_special_tokens=True)
            for i, r, tokens, stop, text in zip(idx, batch, kept, stops, texts):
                done_tokens += len(tokens)
                rows[i] = {
                    "prompt_id": r.prompt_id, "sample": r.sample, "seed": r.seed,
                    "temperature": settings.temperature, "engine": self.name,
                    "response": text.strip(),
                    "n_prompt_tokens": len(encoded[r.prompt_id]), "n_tokens": len(tokens),
                    "finish_reason": "stop" if stop is not None else "length",
                }
            done += len(idx)
            bar.update(len(idx))
            elapsed = time.time() - started
            log.info("%d/%d responses, %.1f generated tokens/s", done, len(order), done_tokens / max(elapsed, 1e-9))
        bar.close()
        real = sum(lengths) + len(lengths) * settings.max_new_tokens
        log.info("%d batches, %d padded tokens for %d prompt + new tokens (%.0f%% padding)", n_batches, n_padded,
                 real, 100 * (n_padded - real) / max(n_padded, 1))
        return generation_table(rows, GENERATION_COLUMNS, Numerics(dtype_name(model.dtype), torch_kernel(device)))

    @staticmethod
    def _generate_batch(model: Any, tokenizer: Any, device: str, config: GenerationConfig, batch: Sequence[Request],
                        encoded: Mapping[str, list[int]], settings: Settings,
                        decoder: StaticDecoder | None = None, share_prompts: bool = False) -> list[list[int]]:
        """The new tokens of each request of one padded batch. ``share_prompts``: a prompt that
        several rows share is prefilled once (:func:`prefill_once_per_prompt`)."""
        inputs = tokenizer.pad({"input_ids": [encoded[r.prompt_id] for r in batch]},
                               return_tensors="pt", padding=True).to(device)
        if decoder is not None:
            return decoder.decode(inputs["input_ids"], inputs["attention_mask"]).cpu().tolist()
        processors = LogitsProcessorList()
        # a processor of ours rather than the generation config's: it skips the padding, and it
        # penalizes the first token of a shared prefill (below) as every later one
        if settings.repetition_penalty != 1.0:
            processors.append(RepetitionPenalty(settings.repetition_penalty, inputs["attention_mask"]))
        if settings.temperature > 0:
            processors.append(SeededSampler([r.seed for r in batch], settings.temperature, settings.top_p))
        with torch.inference_mode():
            shared = (prefill_once_per_prompt(model, inputs["input_ids"], inputs["attention_mask"],
                                              [r.prompt_id for r in batch]) if share_prompts else None)
            if shared is None:
                out = model.generate(**inputs, generation_config=config, logits_processor=processors)
                return out[:, inputs["input_ids"].shape[1]:].cpu().tolist()
            # the first token as generate's greedy step takes it from the prefill's logits (the seeded
            # sampler's step 0), then generate goes on from the cached prompt and that token
            logits, cache = shared
            first = processors(inputs["input_ids"], logits).argmax(dim=-1, keepdim=True)
            if settings.max_new_tokens == 1:
                return first.cpu().tolist()
            ids = torch.cat([inputs["input_ids"], first], dim=1)
            mask = torch.cat([inputs["attention_mask"], torch.ones_like(first)], dim=1)
            rest = GenerationConfig(**{**config.to_diff_dict(), "max_new_tokens": settings.max_new_tokens - 1})
            out = model.generate(input_ids=ids, attention_mask=mask, past_key_values=cache, generation_config=rest,
                                 logits_processor=processors)
        return out[:, inputs["input_ids"].shape[1]:].cpu().tolist()


def prefill_once_per_prompt(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                            prompts: Sequence[str]) -> tuple[torch.Tensor, DynamicCache] | None:
    """Each distinct prompt of a left-padded batch prefilled once, as ``generate`` prefills it (the
    same padding, positions and mask, the last position's logits only), its last-token logits
    (float32) and KV cache copied to every row that shares it; None when no two rows share a prompt.
    The rows' computation is the one ``generate`` does for each of them, so the k samples of a prompt
    cost one prefill and get the tokens they got before (float32 on a CPU: tested)."""
    first = {pid: row for row, pid in reversed(list(enumerate(prompts)))}  # each prompt's first row
    if len(first) == len(prompts):
        return None
    unique = sorted(first.values())
    slot = {pid: unique.index(row) for pid, row in first.items()}
    rows = torch.tensor([slot[pid] for pid in prompts], device=input_ids.device)
    ids, mask = input_ids[unique], attention_mask[unique]
    # generate's positions for a left-padded prompt: they count real tokens, padding sits at 0
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
                logits_to_keep=1)
    cache.reorder_cache(rows)
    return out.logits[:, -1].to(dtype=torch.float32).index_select(0, rows), cache
