"""What the decoding-attention tests feed an attention function: a module carrying the two attributes
transformers' attention functions read, and one decoding step's random query, keys and values."""

from __future__ import annotations

import torch


class AttentionHeads(torch.nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True


def decoding_step(rows: int, kv_heads: int, groups: int, length: int, dim: int,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(query, key, value): one query position for each of kv_heads * groups heads, ``length`` cached
    positions for each of kv_heads heads."""
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(rows, kv_heads * groups, 1, dim, generator=generator)
    key = torch.randn(rows, kv_heads, length, dim, generator=generator)
    value = torch.randn(rows, kv_heads, length, dim, generator=generator)
    return query, key, value
