"""Cutting a length-sorted list of sequences into padded batches, paying for tokens rather than rows.

A padded batch costs what its rectangle holds: rows x (its longest prompt + the tokens each row may
still add). Cut by row count alone, a batch that starts with a few long prompts pads every short one
to their length: the demo's first sampled batch once prefilled ~38 000 positions for ~7 000 real
ones. So a batch here is bounded three ways, each optional:

- ``rows``: at most this many sequences (``batch_size``);
- ``tokens``: at most this many padded tokens, rows x (longest + new tokens) (``token_budget``);
- ``padding``: its padded tokens at most (1 + ``padding``) x its real ones (each row's own length
  + new tokens), so long and short sequences are never padded together beyond that tolerance.

A batch always takes its first sequence, so one sequence longer than the budget still runs (alone).
The limits never change which tokens a sequence gets: every sampled row draws from its own seed
(sampling.py); only rounding differs between batch shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

# the padding a batch may carry, as a share of its real tokens: enough to keep runs of nearly equal
# lengths together, too little for one long prompt to pad a batch of short ones
PADDING_TOLERANCE = 0.25


def padded_tokens(lengths: Sequence[int], new_tokens: int) -> int:
    """Tokens a left-padded batch of these prompt lengths holds once ``new_tokens`` are added."""
    return len(lengths) * (max(lengths, default=0) + new_tokens)


@dataclass(frozen=True)
class BatchLimits:
    """The bounds of one batch; None leaves that bound off."""

    rows: int | None = None
    tokens: int | None = None
    padding: float | None = PADDING_TOLERANCE

    def __post_init__(self) -> None:
        if self.rows is not None and self.rows < 1:
            raise ValueError(f"a batch holds at least one row, not {self.rows}")
        if self.tokens is not None and self.tokens < 1:
            raise ValueError(f"a token budget is at least 1, not {self.tokens}")
        if self.padding is not None and self.padding < 0:
            raise ValueError(f"a padding tolerance is at least 0, not {self.padding}")

    def divided(self, divisor: int) -> "BatchLimits":
        """The limits of a retried job: rows and tokens divided by ``divisor`` (at least 1 each)."""
        if divisor <= 1:
            return self
        return replace(self, rows=None if self.rows is None else max(1, self.rows // divisor),
                       tokens=None if self.tokens is None else max(1, self.tokens // divisor))

    def halved_below(self, rows: int, tokens: int) -> "BatchLimits":
        """The limits after a batch of ``rows`` rows and ``tokens`` padded tokens ran out of memory:
        at most half of each, so the next batch is smaller whichever bound let that one through."""
        return replace(self, rows=max(1, min(rows // 2, self.rows or rows)),
                       tokens=max(1, min(tokens // 2, self.tokens or tokens)))


def next_batch(lengths: Sequence[int], start: int, new_tokens: int, limits: BatchLimits) -> int:
    """How many sequences from ``start`` on form the next batch (at least one while any are left).
    ``lengths`` are prompt lengths in the order the batches are cut, longest first: a batch's first
    row is then its longest, and each row added only adds padding."""
    if start >= len(lengths):
        return 0
    longest = lengths[start]
    real = longest + new_tokens
    end = start + 1
    while end < len(lengths):
        rows = end - start + 1
        longest = max(longest, lengths[end])
        padded = rows * (longest + new_tokens)
        if limits.rows is not None and rows > limits.rows:
            break
        if limits.tokens is not None and padded > limits.tokens:
            break
        if limits.padding is not None and padded > (1 + limits.padding) * (real + lengths[end] + new_tokens):
            break
        real += lengths[end] + new_tokens
        end += 1
    return end - start


def plan_batches(lengths: Sequence[int], new_tokens: int, limits: BatchLimits) -> list[range]:
    """Every batch of ``lengths`` (already in the order they are cut) as index ranges."""
    batches, start = [], 0
    while start < len(lengths):
        size = next_batch(lengths, start, new_tokens, limits)
        batches.append(range(start, start + size))
        start += size
    return batches


@dataclass(frozen=True)
class CpuCosts:
    """What a generate batch costs on a CPU, in milliseconds of one core: the prefill, each position
    (unique prompts x the batch's longest prompt, left padding included) at ``prefill_position`` plus
    ``prefill_context`` for each earlier token it attends to (half the prompt on average); then
    ``new_tokens`` decoding steps, each ``step`` (what a step costs whatever its rows: the weights
    read once, Python) plus ``row_step`` a row (its share of the matmuls and the sampler) plus
    ``context_token`` for every cached token a row attends over. Measured with SmolLM2-135M in
    float32, 2 threads, on the 2-core AMD EPYC the demo is timed on (benchmarks/RESULTS.md,
    "Token-budget batching"): a decoding step 57 ms for 1 row, 356 ms for 64 rows at 50 cached
    tokens, 710 ms at 600; a prefill 3.1 ms a position at 50 tokens, 3.5 ms at 600. A CPU runs the
    small model compute-bound, so a position costs about the same prefilled as decoded. Only the
    ratios matter to the planner; a larger model scales the terms nearly alike."""

    prefill_position: float = 3.1
    prefill_context: float = 0.0013
    context_token: float = 0.01
    step: float = 50.0
    row_step: float = 4.3

    def batch(self, rows: int, unique_prompts: int, longest: int, new_tokens: int) -> float:
        """The modelled cost of one left-padded batch of ``rows`` rows whose prompts are
        ``unique_prompts`` distinct ones (each prefilled once), the longest ``longest`` tokens."""
        prefill = unique_prompts * longest * (self.prefill_position + self.prefill_context * longest / 2)
        per_row = self.row_step + self.context_token * (longest + new_tokens / 2)
        return prefill + new_tokens * (self.step + rows * per_row)


def plan_by_cost(lengths: Sequence[int], prompts: Sequence[object], new_tokens: int, limits: BatchLimits,
                 costs: CpuCosts = CpuCosts()) -> list[range]:
    """The cuts of ``lengths`` (longest first, the rows of one prompt next to each other, ``prompts``
    naming each row's prompt) into batches of least total modelled cost (:class:`CpuCosts`), each
    within ``limits.rows`` and ``limits.tokens``. ``limits.padding`` is not applied: padding is
    priced, so a lone long row joins a batch of shorter ones when that costs less than its own
    decoding steps, and a batch of short rows is not split for a little padding. Exact, by dynamic
    programming over the cut points; a batch holds at most ``limits.rows`` (else 4096) rows, which
    bounds the work at n x that."""
    n = len(lengths)
    widest = limits.rows or 4096
    best = [0.0] + [float("inf")] * n  # best[j]: least cost of the first j rows
    cut = [0] * (n + 1)  # cut[j]: where the last batch of that best plan starts
    for end in range(1, n + 1):
        unique = 0
        for start in range(end - 1, max(end - widest, 0) - 1, -1):
            if start == end - 1 or prompts[start] != prompts[start + 1]:
                unique += 1
            rows, longest = end - start, lengths[start]
            if start < end - 1 and limits.tokens is not None and rows * (longest + new_tokens) > limits.tokens:
                break  # longest first: a batch reaching further back only grows
            total = best[start] + costs.batch(rows, unique, longest, new_tokens)
            if total < best[end]:
                best[end], cut[end] = total, start
    batches, end = [], n
    while end > 0:
        batches.append(range(cut[end], end))
        end = cut[end]
    return batches[::-1]
