"""Teacher-forced parity of an engine with the hf engine on the same checkpoint.

Comparing free-running greedy answers is fragile: one flipped near-tie changes every token after
it, so two faithful engines can share no whole answer. Teacher forcing does not cascade: the hf
engine's greedy answer is appended to the prompt, the other engine scores that sequence, and at
each answer position we ask whether the hf token is the other engine's top-1 (its rank is 1).

Two measures per comparison, pooled over every answer position:

- ``agreement``: the share of positions where the reference token is the other side's top-1;
- ``kl``: the mean KL(reference || other) of the next-token distributions on a coarse support: the
  other side's ``top_k`` tokens, the reference token, and one bucket for the rest of the vocabulary.
  vLLM returns only its top-k log-probabilities, so this is what it allows; merging tokens can only
  lower a KL divergence, so it is a lower bound of the full one.

The vLLM side runs in its own environment (.venvs/vllm): ``python -m safetygrid.engines.parity``
scores a JSON file of sequences there and writes the scores as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

# the log-probabilities vLLM returns per position by default (its max_logprobs)
TOP_K = 20


@dataclass(frozen=True)
class ForcedSequence:
    """A prompt's chat-templated ids and the reference engine's greedy answer to it."""
    prompt_id: str
    prompt_ids: list[int]
    answer_ids: list[int]


@dataclass(frozen=True)
class PositionScore:
    """One engine's verdict on one answer position: the reference token's rank (1: its top-1) and
    log-probability, and its ``top_k`` tokens' log-probabilities."""
    rank: int
    logprob: float
    top: dict[int, float]


@dataclass(frozen=True)
class Parity:
    positions: int
    agreement: float
    kl: float

    def __str__(self) -> str:
        return f"{self.agreement:.3f} of {self.positions} positions agree, mean KL >= {self.kl:.4f}"


def hf_greedy_answers(checkpoint: str, prompts: Mapping[str, str], max_new_tokens: int, dtype: str = "float32",
                      system_prompt: str | None = None) -> list[ForcedSequence]:
    """The hf engine's greedy answers, one prompt at a time (no padding), as token ids; an answer
    that stops early ends with its end-of-sequence token."""
    import torch

    from . import Settings, chat_token_ids
    from .hf import HFEngine

    model, tokenizer, device = HFEngine(checkpoint)._load(Settings(temperature=0, max_new_tokens=max_new_tokens,
                                                                   device="cpu", dtype=dtype))
    eos = model.generation_config.eos_token_id
    eos_ids = sorted([eos] if isinstance(eos, int) else (eos or []))
    sequences = []
    for prompt_id, text in prompts.items():
        ids = chat_token_ids(tokenizer, text, system_prompt)
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids], device=device), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=max_new_tokens, do_sample=False, top_p=None, top_k=None,
                                 eos_token_id=eos_ids or None, pad_token_id=tokenizer.pad_token_id)
        answer = out[0, len(ids):].tolist()
        stop = next((j for j, t in enumerate(answer) if t in eos_ids), None)
        sequences.append(ForcedSequence(prompt_id, ids, answer if stop is None else answer[:stop + 1]))
    return sequences


def hf_forced_scores(checkpoint: str, sequences: Sequence[ForcedSequence], dtype: str,
                     top_k: int = TOP_K) -> tuple[list[list[PositionScore]], list[Any]]:
    """The hf engine in ``dtype`` on each prompt + answer: per answer position its score, and the
    full next-token log-probabilities (float32 arrays, for the reference side of :func:`parity`)."""
    import torch

    from . import Settings
    from .hf import HFEngine

    model, _, device = HFEngine(checkpoint)._load(Settings(temperature=0, max_new_tokens=1, device="cpu", dtype=dtype))
    scores, distributions = [], []
    for seq in sequences:
        ids = torch.tensor([seq.prompt_ids + seq.answer_ids], device=device)
        with torch.inference_mode():
            logits = model(ids).logits[0, len(seq.prompt_ids) - 1:-1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        answer = torch.tensor(seq.answer_ids)
        chosen = logprobs[torch.arange(len(answer)), answer]
        ranks = (logprobs > chosen[:, None]).sum(-1) + 1
        top = logprobs.topk(top_k, dim=-1)
        scores.append([PositionScore(int(r), float(c), dict(zip(i.tolist(), v.tolist())))
                       for r, c, i, v in zip(ranks, chosen, top.indices, top.values)])
        distributions.append(logprobs.cpu().numpy())
    return scores, distributions


def vllm_forced_scores(checkpoint: str, sequences: Sequence[ForcedSequence], dtype: str = "auto",
                       top_k: int = TOP_K, options: Mapping[str, Any] | None = None) -> list[list[PositionScore]]:
    """vLLM (the engine's own settings: :class:`VLLMEngine`) on each prompt + answer, through
    ``prompt_logprobs``: the rank vLLM gives the reference token at each answer position."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from . import Settings
    from .vllm import VLLMEngine, shut_down

    llm = VLLMEngine(checkpoint, options)._llm(Settings(temperature=0, max_new_tokens=1, dtype=dtype))
    prompts = [TokensPrompt(prompt_token_ids=s.prompt_ids + s.answer_ids) for s in sequences]
    try:
        outputs = llm.generate(prompts, SamplingParams(max_tokens=1, prompt_logprobs=top_k), use_tqdm=False)
    finally:
        shut_down(llm)
    scores = []
    for seq, out in zip(sequences, outputs):
        per_position = out.prompt_logprobs[len(seq.prompt_ids):]
        row = []
        for token, logprobs in zip(seq.answer_ids, per_position):
            top = {t: lp.logprob for t, lp in logprobs.items() if lp.rank is not None and lp.rank <= top_k}
            row.append(PositionScore(int(logprobs[token].rank), float(logprobs[token].logprob), top))
        scores.append(row)
    return scores


def coarse_kl(reference: Any, other: PositionScore, token: int) -> float:
    """KL(reference || other) on the support {other's top tokens, the reference token, the rest}:
    ``reference`` is the full log-probability vector, ``other`` knows only these tokens."""
    import numpy as np

    support = sorted(set(other.top) | {token})
    other_known = {**other.top, token: other.logprob}
    p = np.exp(reference[support].astype(np.float64))
    q = np.exp(np.array([other_known[t] for t in support], dtype=np.float64))
    p_rest, q_rest = max(0.0, 1.0 - p.sum()), max(0.0, 1.0 - q.sum())
    kl = float(np.sum(p * (np.log(p) - np.log(q))))
    if p_rest > 0:
        # a rest bucket the other side leaves empty (its top-k carry all its mass, to rounding) is
        # given the smallest mass float64 rounding leaves, rather than an infinite divergence
        kl += p_rest * (math.log(p_rest) - math.log(max(q_rest, 1e-12)))
    return max(kl, 0.0)


def parity(sequences: Sequence[ForcedSequence], scores: Sequence[Sequence[PositionScore]],
           reference: Sequence[Any] | None = None) -> Parity:
    """Pooled over every answer position: the share where the answer token is the scored side's
    top-1, and (given the reference side's full log-probabilities) the mean coarse KL."""
    ranks = [s.rank for row in scores for s in row]
    if len(ranks) != sum(len(seq.answer_ids) for seq in sequences):
        raise ValueError(f"{len(ranks)} scored positions for {sum(len(s.answer_ids) for s in sequences)} answer tokens")
    if not ranks:
        raise ValueError("no answer positions to compare: every answer is empty")
    kls = ([coarse_kl(ref[j], score, seq.answer_ids[j])
            for seq, row, ref in zip(sequences, scores, reference) for j, score in enumerate(row)]
           if reference is not None else [math.nan])
    return Parity(len(ranks), sum(r == 1 for r in ranks) / len(ranks), sum(kls) / len(kls))


def write_sequences(sequences: Iterable[ForcedSequence], path: Path) -> None:
    path.write_text(json.dumps([asdict(s) for s in sequences]))


def read_sequences(path: Path) -> list[ForcedSequence]:
    return [ForcedSequence(**s) for s in json.loads(path.read_text())]


def read_scores(path: Path) -> list[list[PositionScore]]:
    return [[PositionScore(s["rank"], s["logprob"], {int(t): lp for t, lp in s["top"].items()}) for s in row]
            for row in json.loads(path.read_text())]


def main(argv: Sequence[str] | None = None) -> None:
    """Score sequences with vLLM (run with .venvs/vllm's python); the scores go to --out as JSON."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--sequences", required=True, type=Path, help="JSON written by write_sequences")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--options", default="{}", help="the engine's vllm: options, as JSON")
    args = parser.parse_args(argv)
    scores = vllm_forced_scores(args.checkpoint, read_sequences(args.sequences), args.dtype,
                                options=json.loads(args.options))
    args.out.write_text(json.dumps([[asdict(s) for s in row] for row in scores]))


if __name__ == "__main__":
    main()
