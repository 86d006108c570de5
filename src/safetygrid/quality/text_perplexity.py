"""Quality of a (model, precision, kv): perplexity on a fixed text, measured with the engine that
serves the cell where that engine is llama.cpp (the precision's model.gguf and llama.cpp's own KV
cache, f16 or q8_0/q4_0), with transformers otherwise (the checkpoint's safetensors; a kv entry with
``bits`` is transformers' QuantizedCache). Both read the same token ids (the checkpoint's tokenizer).

The text is decoded in chunks of ``chunk`` tokens that share one cache, so later tokens attend to
earlier ones through the KV cache exactly as in generation. PPL = exp(token-weighted mean NLL) over
every predicted token.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, QuantizedCache

from ..engines.hf import kv_cache_options, resolve_device
from ..engines import EngineUnavailable
from ..engines.llama_cpp import available_cpus, kv_cache_types, load_llama


def make_cache(model: Any, kv: Mapping[str, Any]) -> Any:
    options = kv_cache_options(kv)  # also checks that the backend is installed
    if not options:
        return DynamicCache(config=model.config)
    c = options["cache_config"]
    return QuantizedCache(c["backend"], model.config, nbits=c["nbits"], q_group_size=c["q_group_size"],
                          residual_length=c["residual_length"])


def _nll_transformers(checkpoint: str | Path, ids: list[int], kv: Mapping[str, Any], dtype: str | None,
                      device: str, chunk: int) -> float:
    device = resolve_device(device)
    torch_dtype = getattr(torch, dtype or ("float32" if device == "cpu" else "bfloat16"))
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch_dtype).to(device).eval()
    tokens = torch.tensor([ids], device=device)
    cache = make_cache(model, kv)
    total_nll = 0.0
    previous_last_logits = None
    with torch.inference_mode():
        for start in range(0, tokens.shape[1], chunk):
            piece = tokens[:, start:start + chunk]
            logits = model(input_ids=piece, past_key_values=cache, use_cache=True).logits.float()
            # the first token of this chunk is predicted by the last position of the previous chunk
            if previous_last_logits is not None:
                logits_all = torch.cat([previous_last_logits, logits[:, :-1]], dim=1)
                targets = piece
            else:
                logits_all, targets = logits[:, :-1], piece[:, 1:]
            nll = torch.nn.functional.cross_entropy(logits_all.reshape(-1, logits_all.shape[-1]),
                                                    targets.reshape(-1), reduction="sum")
            total_nll += float(nll)
            previous_last_logits = logits[:, -1:]
    return total_nll


def _nll_llama_cpp(checkpoint: str | Path, ids: list[int], kv: Mapping[str, Any], device: str, chunk: int) -> float:
    """llama.cpp decodes the text in batches of ``chunk`` tokens into its (quantized) cache and keeps
    the logits of every position."""
    import numpy as np
    from scipy.special import log_softmax

    llm = load_llama(checkpoint, n_ctx=len(ids), n_batch=chunk, n_ubatch=chunk, logits_all=True,
                     n_threads=available_cpus(), n_gpu_layers=-1 if resolve_device(device).startswith("cuda") else 0,
                     **kv_cache_types(kv))
    try:
        llm.eval(ids)
        logp = log_softmax(np.asarray(llm.scores[:len(ids) - 1], dtype=np.float64), axis=-1)
    finally:
        llm.close()  # not left to Llama.__del__ at interpreter exit (see engines/llama_cpp.py)
    return float(-logp[np.arange(len(ids) - 1), ids[1:]].sum())


def perplexity(checkpoint: str | Path, text: str, *, kv: Mapping[str, Any] | None = None, dtype: str | None = None,
               device: str = "auto", chunk: int = 32, max_tokens: int = 1024, engine: str = "hf") -> dict[str, Any]:
    """``engine``: the engine that serves the cell; llama_cpp measures through llama.cpp, every
    other engine through transformers."""
    started = time.time()
    kv = dict(kv or {})
    ids = AutoTokenizer.from_pretrained(checkpoint)(text, add_special_tokens=False)["input_ids"][:max_tokens]
    if len(ids) < 2:
        raise ValueError("the quality text has fewer than 2 tokens")

    def missing(reason: str) -> dict[str, Any]:
        return {"perplexity": math.nan, "mean_nll": math.nan, "n_tokens": 0, "chunk": chunk, "kv": kv,
                "engine": None, "seconds": round(time.time() - started, 1), "reason": reason}

    if engine == "llama_cpp":
        try:
            measured_with, total_nll = "llama_cpp", _nll_llama_cpp(checkpoint, ids, kv, device, chunk)
        except EngineUnavailable as exc:  # no .gguf, or llama_cpp not installed here
            return missing(str(exc))
    elif "dtype" in kv:
        # vLLM's fp8 cache has no transformers equivalent, and a full-precision cache must not be
        # measured under this kv's name
        return missing(f"transformers has no {kv['dtype']} KV cache, and perplexity through engine {engine} "
                       "is not built")
    else:
        measured_with, total_nll = "transformers", _nll_transformers(checkpoint, ids, kv, dtype, device, chunk)
    mean_nll = total_nll / (len(ids) - 1)
    return {"perplexity": math.exp(mean_nll), "mean_nll": mean_nll, "n_tokens": len(ids) - 1, "chunk": chunk,
            "kv": kv, "engine": measured_with, "seconds": round(time.time() - started, 1)}
