"""Seeded sampling on the model's device: each (prompt, sample) draws every token from its own
counter-based stream, so a sample does not depend on the batch it lands in or on the device, and no
step copies logits to the host.

The uniform of row r at decoding step t is SplitMix64's finaliser applied to
seed_r + (t + 1) * golden-ratio increment, keeping the top 53 bits (a float64 in [0, 1)): a pure
function of (seed, step), computed with 64-bit integer arithmetic on whatever device holds the
logits. The token is the inverse-CDF draw of that uniform from softmax(logits / T), after top-p
keeps the smallest set of most probable tokens whose mass reaches p.
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import LogitsProcessor

# recorded in every sampled hf cell's params: a change of sampler reruns those cells
SAMPLER = "splitmix64-counter-inverse-cdf"
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    """A uint64 constant as the int64 with the same bits (torch has no uint64 arithmetic)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's >> on int64 is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors; products wrap modulo 2**64 as two's complement."""
    x = x ^ _shift_right(x, 30)
    x = x * _signed(MIX1)
    x = x ^ _shift_right(x, 27)
    x = x * _signed(MIX2)
    return x ^ _shift_right(x, 31)


def counter_uniforms(seeds: torch.Tensor, step: int | torch.Tensor) -> torch.Tensor:
    """One float64 uniform in [0, 1) per row, a function of (seed, step) alone. ``step`` may be a
    0-d int64 tensor on the seeds' device (a captured CUDA graph reads it there at each replay):
    int64 products wrap modulo 2**64, so both forms give the same bits."""
    if isinstance(step, torch.Tensor):
        increment = (step + 1) * _signed(GOLDEN)
    else:
        increment = _signed(((step + 1) * GOLDEN) & MASK64)
    bits = mix64(seeds + increment)
    return _shift_right(bits, 11).to(torch.float64) * (1.0 / (1 << 53))


def reference_uniform(seed: int, step: int) -> float:
    """The same draw in plain Python integers (the specification the tensor code is tested against)."""
    x = (seed + (step + 1) * GOLDEN) & MASK64
    x = ((x ^ (x >> 30)) * MIX1) & MASK64
    x = ((x ^ (x >> 27)) * MIX2) & MASK64
    x ^= x >> 31
    return (x >> 11) / (1 << 53)


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """``probs`` with everything outside each row's nucleus set to 0: the smallest set of most
    probable tokens whose mass reaches ``top_p`` (always at least the top token)."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


def seen_tokens(ids: torch.Tensor, real: torch.Tensor, vocab: int) -> torch.Tensor:
    """(rows, vocab) booleans: which tokens each row's ``ids`` hold where ``real`` is true (padding
    is not counted: a request's penalties, and so its tokens, do not depend on its batch)."""
    counts = torch.zeros((ids.shape[0], vocab), dtype=torch.int32, device=ids.device)
    return counts.scatter_add_(1, ids, real.to(torch.int32)) > 0


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """The repetition penalty of transformers' ``RepetitionPenaltyLogitsProcessor`` (and vLLM's and
    llama.cpp's): the logits of the tokens a row has ``seen`` divided by ``penalty`` where positive
    and multiplied where negative."""
    return torch.where(seen, torch.where(logits < 0, logits * penalty, logits / penalty), logits)


class RepetitionPenalty(LogitsProcessor):
    """:func:`penalize_repeats` as a LogitsProcessor for ``generate``, over the prompt's real tokens
    (``prompt_mask``: its batch's attention mask) and every token generated since. transformers' own
    processor would count the left padding too (the pad token, often an end token), so a row's
    tokens would change with the batch it lands in."""

    def __init__(self, penalty: float, prompt_mask: torch.Tensor) -> None:
        self.penalty = penalty
        self.prompt_mask = prompt_mask.bool()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] - self.prompt_mask.shape[1]
        real = torch.cat([self.prompt_mask.to(input_ids.device),
                          self.prompt_mask.new_ones((input_ids.shape[0], generated)).to(input_ids.device)], dim=1)
        return penalize_repeats(scores, seen_tokens(input_ids, real, scores.shape[-1]), self.penalty)


def draw(logits: torch.Tensor, seeds: torch.Tensor, step: int | torch.Tensor, temperature: float,
         top_p: float) -> torch.Tensor:
    """The next token of each row, on the logits' device."""
    probs = nucleus(torch.softmax(logits.float() / temperature, dim=-1), top_p)
    cdf = probs.double().cumsum(dim=-1)
    cdf = cdf / cdf[:, -1:]
    uniforms = counter_uniforms(seeds, step).unsqueeze(-1)
    return torch.searchsorted(cdf, uniforms).clamp(max=probs.shape[-1] - 1).squeeze(-1)


class SeededSampler(LogitsProcessor):
    """A LogitsProcessor that draws each row's next token with :func:`draw` and returns logits that
    are -inf everywhere but the drawn token, so ``generate`` then runs greedy. Its step counter
    counts calls, not positions: left padding differs between batches, the number of tokens a row
    has generated does not."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        self.seeds = torch.tensor([int(s) for s in seeds], dtype=torch.int64)
        self.temperature = temperature
        self.top_p = top_p
        self.step = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.seeds.device != scores.device:
            self.seeds = self.seeds.to(scores.device)
        picks = draw(scores, self.seeds, self.step, self.temperature, self.top_p)
        self.step += 1
        return torch.full_like(scores, float("-inf")).scatter_(-1, picks.unsqueeze(-1), 0.0)
