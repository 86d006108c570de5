"""Quality of a (model, precision, kv): perplexity on a fixed text.

The text is read in chunks of ``chunk`` tokens that share one cache, so later tokens attend to
earlier ones through the KV cache exactly as in generation; with a quantized kv entry that cache is
transformers' QuantizedCache. PPL = exp(token-weighted mean NLL) over every predicted token.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, QuantizedCache

from .engines.hf import kv_cache_options, resolve_device


def make_cache(model: Any, kv: Mapping[str, Any]) -> Any:
    options = kv_cache_options(kv)  # also checks that the backend is installed
    if not options:
        return DynamicCache(config=model.config)
    c = options["cache_config"]
    return QuantizedCache(c["backend"], model.config, nbits=c["nbits"], q_group_size=c["q_group_size"],
                          residual_length=c["residual_length"])


def perplexity(checkpoint: str | Path, text: str, *, kv: Mapping[str, Any] | None = None, dtype: str | None = None,
               device: str = "auto", chunk: int = 32, max_tokens: int = 1024) -> dict[str, Any]:
    started = time.time()
    if kv and "dtype" in kv:
        # vLLM's fp8 and llama.cpp's q8_0/q4_0 caches have no transformers equivalent: say so in the
        # result instead of measuring a full-precision cache under this kv's name
        return {"perplexity": math.nan, "mean_nll": math.nan, "n_tokens": 0, "chunk": chunk, "kv": dict(kv),
                "seconds": 0.0, "reason": f"transformers has no {kv['dtype']} KV cache; perplexity is measured "
                                          "with transformers only"}
    device = resolve_device(device)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    torch_dtype = getattr(torch, dtype or ("float32" if device == "cpu" else "bfloat16"))
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch_dtype).to(device).eval()
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :max_tokens].to(device)
    if ids.shape[1] < 2:
        raise ValueError("the quality text has fewer than 2 tokens")
    cache = make_cache(model, kv or {})
    total_nll, n_predicted = 0.0, 0
    previous_last_logits = None
    with torch.inference_mode():
        for start in range(0, ids.shape[1], chunk):
            piece = ids[:, start:start + chunk]
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
            n_predicted += int(targets.numel())
            previous_last_logits = logits[:, -1:]
    mean_nll = total_nll / n_predicted
    return {"perplexity": math.exp(mean_nll), "mean_nll": mean_nll, "n_tokens": n_predicted, "chunk": chunk,
            "kv": dict(kv or {}), "seconds": round(time.time() - started, 1)}
