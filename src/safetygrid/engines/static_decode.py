"""Decoding one padded batch with a static KV cache, each step replayed from a captured CUDA graph.

An eager decoding step of a transformers model is thousands of kernel launches issued from Python;
on an H100 a 135M model's step spends most of its time launching (measured: 34 ms per step for a
batch of 512, of which the GPU is busy about 10), and even an 8B model's is launch-bound at batch
128. A CUDA graph replays the whole step with one launch. Capturing needs fixed shapes and
addresses: transformers' ``StaticCache`` holds the keys and values in preallocated tensors and
writes at a device-side counter, the attention mask is a preallocated 4D tensor (transformers uses
a 4D mask as given) and every per-step input is updated in place, inside the graph.

Unlike ``generation.compile`` nothing is compiled: the graph records the same eager kernels, so a
capture costs one step's time per batch shape, not minutes. The attention reads the whole static
cache under a mask rather than a growing one, so results can differ from the dynamic-cache path by
rounding, as they do between two batch sizes on a GPU. On a CPU the same steps run eagerly, which is
how the tests check this code path against ``generate`` with a static cache.

A batch may mix prompt lengths (the engine no longer splits a CUDA batch by padding, issue 28): its
rows are prefilled in segments of similar lengths, each padded only to its own longest prompt, and
their keys and values are copied right-aligned into the one static cache, where the decoding steps
of all rows share one read of the weights and each segment attends over its own columns only
(grouped_attention.py). Every row then gets what a prefill of its own would give it: its padding is
masked either way and its positions are its own.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from transformers import DynamicCache, StaticCache

from .batching import PADDING_TOLERANCE
from .grouped_attention import grouped_decoding, splits_rows
from .sampling import draw, penalize_repeats, seen_tokens

# how often (in steps) the host asks whether every row has ended: each ask is a device sync
STOP_CHECK_EVERY = 16
# prompts this many tokens apart share a prefill segment whatever their ratio: a few dozen padded
# positions cost less than one more prefill pass and one more attention call per layer and step
SEGMENT_SLACK_TOKENS = 32
# each segment adds a prefill pass and an attention call per layer to every step, so a batch whose
# lengths spread widely gets at most this many (the cheapest neighbours merged): benchmarks/RESULTS.md
MAX_PREFILL_SEGMENTS = 4


def prefill_segments(lengths: Sequence[int], tolerance: float | None) -> list[range]:
    """Runs of consecutive rows prefilled together: within a run the longest prompt is at most
    (1 + ``tolerance``) times the shortest, or ``SEGMENT_SLACK_TOKENS`` longer; beyond
    ``MAX_PREFILL_SEGMENTS`` runs, the neighbours whose merge pads the fewest positions are merged.
    None: one run."""
    if tolerance is None or not lengths:
        return [range(len(lengths))]
    segments, start = [], 0
    longest = shortest = lengths[0]
    for row in range(1, len(lengths)):
        longest, shortest = max(longest, lengths[row]), min(shortest, lengths[row])
        if longest > (1 + tolerance) * shortest and longest - shortest > SEGMENT_SLACK_TOKENS:
            segments.append(range(start, row))
            start, longest, shortest = row, lengths[row], lengths[row]
    segments.append(range(start, len(lengths)))
    while len(segments) > MAX_PREFILL_SEGMENTS:
        def added_padding(i: int) -> int:
            a, b = segments[i], segments[i + 1]
            return _padded(lengths, range(a.start, b.stop)) - _padded(lengths, a) - _padded(lengths, b)
        cheapest = min(range(len(segments) - 1), key=added_padding)
        segments[cheapest:cheapest + 2] = [range(segments[cheapest].start, segments[cheapest + 1].stop)]
    return segments


def _padded(lengths: Sequence[int], rows: range) -> int:
    """Prompt positions a prefill of these rows computes: rows x their longest prompt."""
    return len(rows) * max(lengths[rows.start:rows.stop])


def static_decode_unsupported(model: Any) -> str | None:
    """Why ``model`` cannot decode with one full-length static cache and one 4D mask, or None. A
    sliding-window layer keeps a window-sized cache and needs its own mask, and an encoder-decoder
    has a second cache."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if getattr(model.config, "is_encoder_decoder", False):
        return f"{model.config.model_type} is an encoder-decoder model"
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"}:
        return f"{config.model_type} has {sorted(kinds - {'full_attention'})} layers"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return f"{config.model_type} attends within a sliding window of {config.sliding_window} tokens"
    return None


class StaticDecoder:
    """``decode(input_ids, attention_mask)`` returns the new tokens of each row of a left-padded
    batch: ``max_new_tokens`` of them, or fewer when every row has produced an end token (what
    follows a row's end token is left to the caller to cut, as with ``generate``)."""

    def __init__(self, model: Any, max_new_tokens: int, eos_ids: Sequence[int], *, temperature: float = 0.0,
                 top_p: float = 1.0, repetition_penalty: float = 1.0, seeds: Sequence[int] | None = None,
                 use_graph: bool | None = None,
                 grouped_attention: bool = True, segment_tolerance: float | None = PADDING_TOLERANCE) -> None:
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.eos_ids = sorted(eos_ids)
        self.temperature, self.top_p, self.repetition_penalty = temperature, top_p, repetition_penalty
        self.seeds = [int(s) for s in seeds] if seeds is not None else None
        if temperature > 0 and self.seeds is None:
            raise ValueError("sampling (temperature > 0) needs one seed per row")
        self.use_graph = use_graph
        # off only to compare against transformers' own attention (tests, benchmarks/gpu.py)
        self.grouped_attention = grouped_attention
        # None: one prefill over the whole padded batch (see prefill_segments)
        self.segment_tolerance = segment_tolerance

    def _choose(self, logits: torch.Tensor, seeds: torch.Tensor | None, step: torch.Tensor,
                seen: torch.Tensor | None) -> torch.Tensor:
        """The next token of each row, after the repetition penalty on the tokens it has ``seen``
        (None: no penalty): greedy at T = 0, else the seeded draw of sampling step ``step`` (the same
        counter-based stream as :class:`SeededSampler`, whose step counts its calls); ``seen`` then
        marks the chosen tokens."""
        if seen is not None:
            logits = penalize_repeats(logits, seen, self.repetition_penalty)
        chosen = self._draw(logits, seeds, step)
        if seen is not None:
            seen.scatter_(1, chosen[:, None], True)
        return chosen

    def _draw(self, logits: torch.Tensor, seeds: torch.Tensor | None, step: torch.Tensor) -> torch.Tensor:
        if self.temperature <= 0:
            return logits.argmax(dim=-1)
        return draw(logits, seeds, step, self.temperature, self.top_p)

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        device = input_ids.device
        use_graph = device.type == "cuda" if self.use_graph is None else self.use_graph
        rows, prompt_len = input_ids.shape
        n = self.max_new_tokens
        cache = StaticCache(config=self.model.config, max_cache_len=prompt_len + n)
        seeds = torch.tensor(self.seeds, dtype=torch.int64, device=device) if self.seeds is not None else None
        eos = torch.tensor(self.eos_ids or [-1], dtype=torch.int64, device=device)
        # as generate numbers them: padding positions get 1 (they are masked out of every real query)
        positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
        lengths = attention_mask.sum(-1).tolist()
        segments = prefill_segments(lengths, self.segment_tolerance) if splits_rows(self.model) else [range(rows)]
        # each segment's rows attend from the first column their longest prompt fills
        spans = [(s.start, s.stop, prompt_len - max(lengths[s.start:s.stop])) for s in segments]
        with torch.inference_mode(), grouped_decoding(self.model, enabled=self.grouped_attention, spans=spans):
            if len(segments) == 1:
                # the prefill runs eagerly, with the mask transformers builds from the 2D padding mask
                logits = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                                    past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1].float()
            else:
                logits = self._prefill_segments(cache, input_ids, attention_mask, positions, spans)
            step = torch.zeros((), dtype=torch.int64, device=device)
            seen = None
            if self.repetition_penalty != 1.0:
                seen = seen_tokens(input_ids, attention_mask, logits.shape[-1])
            first = self._choose(logits, seeds, step, seen)
            generated = torch.zeros((rows, n), dtype=torch.int64, device=device)
            generated[:, 0] = first
            # the state every step reads and updates in place (fixed addresses: what a graph needs)
            token = first[:, None].clone()
            position = positions[:, -1:] + 1
            allowed = torch.zeros((rows, 1, 1, prompt_len + n), dtype=torch.bool, device=device)
            allowed[:, 0, 0, :prompt_len] = attention_mask.bool()
            allowed[:, 0, 0, prompt_len] = True  # the slot the first new token's keys go to
            ended = torch.isin(first, eos)
            columns = torch.arange(prompt_len + n, device=device)

            def one_step() -> None:
                out = self.model(input_ids=token, attention_mask=allowed, position_ids=position,
                                 past_key_values=cache, use_cache=True, logits_to_keep=1)
                step.add_(1)
                chosen = self._choose(out.logits[:, -1].float(), seeds, step, seen)
                generated.index_copy_(1, step.reshape(1), chosen[:, None])
                ended.logical_or_(torch.isin(chosen, eos))
                token.copy_(chosen[:, None])
                position.add_(1)
                # open the slot the next token's keys go to (at most prompt_len + n - 1: the loop
                # below stops once step reaches n - 1)
                allowed.logical_or_((columns == prompt_len + step)[None, None, None, :])

            done = 1
            replay = one_step
            if use_graph and n > 1:
                replay = self._capture(one_step)  # runs the second token's step, then captures the rest
                done = 2
            while done < n:
                replay()
                done += 1
                if self.eos_ids and done % STOP_CHECK_EVERY == 0 and bool(ended.all()):
                    break
        return generated[:, :done]

    def _prefill_segments(self, cache: StaticCache, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          positions: torch.Tensor, spans: Sequence[tuple[int, int, int]]) -> torch.Tensor:
        """Prefill each (first row, end row, first column) span over its own columns, copy its keys
        and values into the same rows and columns of ``cache``, and return every row's last logits."""
        rows, prompt_len = input_ids.shape
        logits = []
        for start, end, column in spans:
            own = DynamicCache()
            out = self.model(input_ids=input_ids[start:end, column:], attention_mask=attention_mask[start:end, column:],
                             position_ids=positions[start:end, column:], past_key_values=own, use_cache=True,
                             logits_to_keep=1)
            logits.append(out.logits[:, -1].float())
            for layer, filled in zip(cache.layers, own.layers):
                if not layer.is_initialized:
                    # only the dtype, device and (rows, heads, ..., dim) shape of these are read
                    layer.lazy_initialization(filled.keys.new_empty((rows, *filled.keys.shape[1:])),
                                              filled.values.new_empty((rows, *filled.values.shape[1:])))
                layer.keys[start:end, :, column:prompt_len] = filled.keys
                layer.values[start:end, :, column:prompt_len] = filled.values
            del own, out
        for layer in cache.layers:
            layer.cumulative_length.fill_(prompt_len)  # the next step writes at the first new slot
        return torch.cat(logits)

    def _capture(self, one_step: Callable[[], None]) -> Callable[[], None]:
        """Run the first step eagerly on a side stream (it initialises cuBLAS and cuDNN and is a
        real step), then capture the next one's kernels into a graph that each later step replays."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            one_step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            one_step()  # recorded, not run
        return graph.replay
