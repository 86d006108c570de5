"""Decoding-step attention for grouped-query models without copying the key/value cache.

transformers' SDPA path expands each key/value head to its query heads (``repeat_kv``) whenever an
attention mask is given, which the static decoder always gives: every decoding step of Llama-3-8B
at batch 128 then writes and reads four copies of the whole cache in every layer, more bytes than
the weights themselves. A decoding step has one query position, so the query heads that share a
key/value head can stand in as that head's query positions instead: (rows, kv heads, group, dim)
against the unexpanded (rows, kv heads, length, dim) cache, under the same mask broadcast over the
group. Each (row, head) computes the same dot products, softmax and weighted sum as before, from the
same tensors; only the copy is gone. Steps with more than one query position (the prefill) are
passed to transformers' SDPA function unchanged.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "safetygrid_grouped_sdpa"


def grouped_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                           **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query (rows, q heads, q len, dim), key and value
    (rows, kv heads, kv len, dim); returns (rows, q len, q heads, dim)."""
    groups = getattr(module, "num_key_value_groups", 1)
    rows, q_heads, q_len, dim = query.shape
    if groups == 1 or q_len != 1 or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    kv_heads = key.shape[1]
    # query heads h*groups ... h*groups+groups-1 read key/value head h (repeat_kv's order)
    folded = query.reshape(rows, kv_heads, groups, dim)
    out = torch.nn.functional.scaled_dot_product_attention(folded, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling, is_causal=False)
    return out.reshape(rows, q_heads, 1, dim).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, grouped_sdpa_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)


def folds_groups(model: Any) -> bool:
    """Whether the model runs transformers' SDPA over grouped key/value heads (the case this helps)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads, kv_heads = getattr(config, "num_attention_heads", None), getattr(config, "num_key_value_heads", None)
    return model.config._attn_implementation == "sdpa" and bool(heads and kv_heads and heads > kv_heads)


@contextmanager
def grouped_decoding(model: Any, enabled: bool = True) -> Iterator[None]:
    """Run the model with :func:`grouped_sdpa_attention` inside the block, its own attention after."""
    if not enabled or not folds_groups(model):
        yield
        return
    model.set_attn_implementation(NAME)
    try:
        yield
    finally:
        model.set_attn_implementation("sdpa")
