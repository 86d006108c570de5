"""A static-decoder batch of mixed prompt lengths: prefilled in segments, each segment attending over
its own cache columns, every row gets the tokens one padded prefill over the whole batch gives it."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from attention_inputs import AttentionHeads, decoding_step

from safetygrid.engines import grouped_attention
from safetygrid.engines.grouped_attention import grouped_sdpa_attention
from safetygrid.engines import static_decode
from safetygrid.engines.static_decode import SEGMENT_SLACK_TOKENS, StaticDecoder, prefill_segments


def test_segments_keep_similar_lengths_together() -> None:
    assert prefill_segments([500, 480, 40, 36, 30], 0.25) == [range(0, 2), range(2, 5)]
    # a small gap in tokens stays together whatever its ratio
    assert prefill_segments([4, 4 + SEGMENT_SLACK_TOKENS], 0.25) == [range(0, 2)]
    # order matters: rows are consecutive runs, as the engine sorts them longest first
    assert prefill_segments([500, 40, 480], 0.25) == [range(0, 1), range(1, 2), range(2, 3)]
    assert prefill_segments([500, 40], None) == [range(0, 2)]
    assert prefill_segments([], 0.25) == [range(0, 0)]


def test_a_wide_spread_of_lengths_gets_at_most_the_segment_cap(monkeypatch) -> None:
    monkeypatch.setattr(static_decode, "MAX_PREFILL_SEGMENTS", 2)
    # four runs by ratio; merging 100 into 150 pads 50 x 2 rows, the least of the three merges,
    # then 400 into 1000 pads 600, less than the 1 000 of 400 over the four short rows
    lengths = [1000, 400, 150, 150, 100, 100]
    assert prefill_segments(lengths, 0.25) == [range(0, 2), range(2, 6)]
    monkeypatch.setattr(static_decode, "MAX_PREFILL_SEGMENTS", 1)
    assert prefill_segments(lengths, 0.25) == [range(0, 6)]


@pytest.mark.parametrize("groups", [1, 4])
def test_segments_attend_over_their_own_columns_as_over_all(groups: int, monkeypatch) -> None:
    rows, kv_heads, length, dim = 5, 2, 16, 8
    query, key, value = decoding_step(rows, kv_heads, groups, length, dim)
    mask = torch.ones(rows, 1, 1, length, dtype=torch.bool)
    mask[2:, ..., :9] = False  # the short rows' prompts start at column 9
    mask[3, ..., 9] = False  # one of them padded within its segment
    mask[..., -2:] = False  # unwritten slots
    theirs, _ = sdpa_attention_forward(AttentionHeads(groups), query, key, value, mask, scaling=dim ** -0.5)
    monkeypatch.setattr(grouped_attention, "_spans", ((0, 2, 0), (2, 5, 9)))
    ours, _ = grouped_sdpa_attention(AttentionHeads(groups), query, key, value, mask, scaling=dim ** -0.5)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    # a span that started too late (cutting a row's real keys) would not pass
    monkeypatch.setattr(grouped_attention, "_spans", ((0, 2, 3), (2, 5, 9)))
    wrong, _ = grouped_sdpa_attention(AttentionHeads(groups), query, key, value, mask, scaling=dim ** -0.5)
    assert not torch.allclose(wrong, theirs)


def _mixed_batch(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded random prompts of these lengths."""
    width = max(lengths)
    ids = torch.randint(10, 40, (len(lengths), width), generator=torch.Generator().manual_seed(3))
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, width - n:] = 1
        ids[row, :width - n] = 0
    return ids, mask


@pytest.mark.parametrize("temperature, top_p", [(0.0, 1.0), (0.9, 1.0), (1.0, 0.8)])
def test_a_segmented_prefill_gives_each_row_the_tokens_of_one_padded_prefill(tiny_checkpoint, temperature, top_p,
                                                                            monkeypatch) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32).eval()
    ids, mask = _mixed_batch([80, 75, 9, 7, 7])
    seeds = [11, 12, 13, 14, 15]
    spans = []
    original = StaticDecoder._prefill_segments
    monkeypatch.setattr(StaticDecoder, "_prefill_segments",
                        lambda self, *args: spans.append(args[-1]) or original(self, *args))

    def decode(tolerance: float | None) -> torch.Tensor:
        return StaticDecoder(model, 12, [], temperature=temperature, top_p=top_p, seeds=seeds, use_graph=False,
                             segment_tolerance=tolerance).decode(ids, mask)

    whole = decode(None)
    assert spans == []
    segmented = decode(0.25)
    assert spans == [[(0, 2, 0), (2, 5, 80 - 9)]]
    assert torch.equal(segmented, whole)
    assert model.config._attn_implementation == "sdpa" and grouped_attention._spans == ()
    # and each row decoded alone (its own prefill, no padding) gives its tokens too
    for row in (0, 3):
        alone = StaticDecoder(model, 12, [], temperature=temperature, top_p=top_p, seeds=[seeds[row]],
                              use_graph=False).decode(ids[row:row + 1, mask[row] == 1], mask[row:row + 1, mask[row] == 1])
        assert torch.equal(alone[0], segmented[row])


def test_cuda_static_decoder_batches_drop_only_the_padding_bound() -> None:
    from safetygrid.engines.batching import BatchLimits
    from safetygrid.engines.hf import decoder_batch_limits

    limits = BatchLimits(rows=64, tokens=9000, padding=0.25)
    assert decoder_batch_limits(limits, True, "cuda:0") == BatchLimits(rows=64, tokens=9000, padding=None)
    assert decoder_batch_limits(limits, True, "cpu") == limits  # the CPU plan is the batching module's
    assert decoder_batch_limits(limits, False, "cuda") == limits  # generate's dynamic cache pads each batch
