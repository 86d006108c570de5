"""The static decoder's grouped-query attention computes what transformers' SDPA path computes."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from attention_inputs import AttentionHeads, decoding_step

from safetygrid.engines.grouped_attention import NAME, grouped_decoding, grouped_sdpa_attention
from safetygrid.engines.static_decode import StaticDecoder


@pytest.mark.parametrize("groups", [1, 4])
def test_one_query_position_matches_transformers_sdpa_under_a_padding_mask(groups: int) -> None:
    rows, kv_heads, length, dim = 3, 2, 11, 8
    query, key, value = decoding_step(rows, kv_heads, groups, length, dim)
    mask = torch.ones(rows, 1, 1, length, dtype=torch.bool)
    mask[0, ..., :4] = False  # a left-padded row
    mask[2, ..., -3:] = False  # unwritten static-cache slots
    ours, _ = grouped_sdpa_attention(AttentionHeads(groups), query, key, value, mask, scaling=dim ** -0.5)
    theirs, _ = sdpa_attention_forward(AttentionHeads(groups), query, key, value, mask, scaling=dim ** -0.5)
    assert ours.shape == theirs.shape == (rows, 1, kv_heads * groups, dim)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    # a wrong head order (e.g. kv head h read by query heads h, h + kv_heads, ...) would not pass
    if groups > 1:
        shuffled = query.reshape(rows, groups, kv_heads, 1, dim).transpose(1, 2).reshape_as(query)
        wrong, _ = grouped_sdpa_attention(AttentionHeads(groups), shuffled, key, value, mask, scaling=dim ** -0.5)
        assert not torch.allclose(wrong, theirs)


def test_the_static_decoder_gives_the_same_tokens_with_and_without_it(tiny_checkpoint) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32).eval()
    assert model.config.num_attention_heads > model.config.num_key_value_heads  # grouped: the case it changes
    ids = torch.randint(10, 40, (4, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0
    ids[1, :5] = 0
    seeds = [11, 12, 13, 14]
    for temperature in (0.0, 0.8):
        grouped, expanded = (StaticDecoder(model, 12, [], temperature=temperature, seeds=seeds, use_graph=False,
                                           grouped_attention=on).decode(ids, mask) for on in (True, False))
        assert torch.equal(grouped, expanded)
        assert model.config._attn_implementation == "sdpa"
    with grouped_decoding(model):
        assert model.config._attn_implementation == NAME


def test_the_models_attention_is_restored_when_decoding_fails(tiny_checkpoint) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32).eval()
    with pytest.raises(RuntimeError):
        with grouped_decoding(model):
            raise RuntimeError("a failed step")
    assert model.config._attn_implementation == "sdpa"
