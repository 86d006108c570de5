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

A batch whose rows were prefilled in segments of similar prompt lengths (static_decode.py) also
passes each segment's rows and the first cache column any of them uses: a decoding step then
attends each segment over its own columns only. Every column left out is masked for those rows, so
the result is the same softmax over the same keys; what is saved is reading the long rows' columns
for the short rows, which would otherwise cost as much as the long rows' own keys and values.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "safetygrid_grouped_sdpa"

# (first row, end row, first cache column) of each segment of the batch being decoded; one span
# over everything when no decoder has set them (grouped_decoding sets and clears them)
_spans: tuple[tuple[int, int, int], ...] = ()


def grouped_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                           **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query (rows, q heads, q len, dim), key and value
    (rows, kv heads, kv len, dim); returns (rows, q len, q heads, dim)."""
    if query.shape[2] != 1 or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    spans = _spans or ((0, query.shape[0], 0),)
    outs = [_one_query_position(module, query[start:end], key[start:end, :, column:], value[start:end, :, column:],
                                None if attention_mask is None else attention_mask[start:end, ..., column:],
                                dropout, scaling, **kwargs)
            for start, end, column in spans]
    return (outs[0] if len(outs) == 1 else torch.cat(outs)), None


def _one_query_position(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, dropout: float, scaling: float | None,
                        **kwargs: Any) -> torch.Tensor:
    groups = getattr(module, "num_key_value_groups", 1)
    if groups == 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)[0]
    rows, q_heads, _, dim = query.shape
    kv_heads = key.shape[1]
    # query heads h*groups ... h*groups+groups-1 read key/value head h (repeat_kv's order)
    folded = query.reshape(rows, kv_heads, groups, dim)
    out = torch.nn.functional.scaled_dot_product_attention(folded, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling, is_causal=False)
    return out.reshape(rows, q_heads, 1, dim).transpose(1, 2).contiguous()


AttentionInterface.register(NAME, grouped_sdpa_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)


def folds_groups(model: Any) -> bool:
    """Whether the model runs transformers' SDPA over grouped key/value heads (the case this helps)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads, kv_heads = getattr(config, "num_attention_heads", None), getattr(config, "num_key_value_heads", None)
    return model.config._attn_implementation == "sdpa" and bool(heads and kv_heads and heads > kv_heads)


def splits_rows(model: Any) -> bool:
    """Whether :func:`grouped_decoding` can attend row segments over their own cache columns."""
    return model.config._attn_implementation in ("sdpa", NAME)


@contextmanager
def grouped_decoding(model: Any, enabled: bool = True,
                     spans: Sequence[tuple[int, int, int]] = ()) -> Iterator[None]:
    """Run the model with :func:`grouped_sdpa_attention` inside the block, its own attention after.
    ``spans``: (first row, end row, first cache column) of each row segment (see the module's text);
    more than one installs it for models without grouped heads too."""
    global _spans
    if not enabled or not (folds_groups(model) or (len(spans) > 1 and splits_rows(model))):
        yield
        return
    model.set_attn_implementation(NAME)
    _spans = tuple(spans) if len(spans) > 1 else ()
    try:
        yield
    finally:
        _spans = ()
        model.set_attn_implementation("sdpa")
