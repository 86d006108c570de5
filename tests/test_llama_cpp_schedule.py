"""The llama_cpp engine's continuous-batching schedule, against a stand-in for llama-cpp-python.

llama.cpp (one KV stream a sequence) puts only consecutive sequence ids into one micro-batch, and
each micro-batch reads every weight once. These tests check that every decoding step the engine
sends is one run of sequence ids from 0, that a sequence moved to a lower stream keeps its cache,
and that a long prompt joins as soon as a sequence is free instead of waiting for an empty step.
They need no model: the stand-in records each step and ends request i after lengths[i] tokens.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from safetygrid.engines.llama_cpp import _BatchDecoder, step_tokens

END = 0  # the stand-in's end-of-generation token


class FakeLlamaCpp(types.ModuleType):
    """What _BatchDecoder.run calls of llama_cpp: KV sequences as position lists, decode as a record."""

    def __init__(self) -> None:
        super().__init__("llama_cpp")
        self.cells: dict[int, list[int]] = {}  # sequence -> positions held in its stream
        self.steps: list[list[tuple[int, int]]] = []  # per decode: (sequence, tokens) in batch order

    def llama_memory_seq_rm(self, memory: Any, sequence: int, p0: int, p1: int) -> bool:
        self.cells.pop(sequence, None)
        return True

    def llama_memory_seq_cp(self, memory: Any, source: int, target: int, p0: int, p1: int) -> None:
        self.cells[target] = list(self.cells.get(source, []))

    def llama_decode(self, ctx: Any, batch: Any) -> int:
        runs: list[tuple[int, int]] = []
        for i in range(batch.n_tokens):
            sequence, position = batch.seq_id[i][0], batch.pos[i]
            held = self.cells.setdefault(sequence, [])
            assert position == len(held), f"sequence {sequence} fed position {position} after {len(held)} cells"
            held.append(position)
            if runs and runs[-1][0] == sequence:
                runs[-1] = (sequence, runs[-1][1] + 1)
            else:
                runs.append((sequence, 1))
        self.steps.append(runs)
        return 0

    def llama_sampler_sample(self, sampler: "FakeSampler", ctx: Any, row: int) -> int:
        sampler.sampled += 1
        return END if sampler.sampled > sampler.length else 1

    def llama_vocab_is_eog(self, vocab: Any, token: int) -> bool:
        return token == END


class FakeSampler:
    def __init__(self, length: int) -> None:
        self.sampler, self.length, self.sampled, self.closed = self, length, 0, False

    def close(self) -> None:
        self.closed = True


def _decoder(fake: FakeLlamaCpp, parallel: int, n_batch: int) -> _BatchDecoder:
    decoder = object.__new__(_BatchDecoder)
    decoder.parallel, decoder.n_batch = parallel, n_batch
    decoder.context, decoder.memory, decoder.vocab = types.SimpleNamespace(ctx=None), None, None
    decoder.batch = types.SimpleNamespace(n_tokens=0, token=[0] * n_batch, pos=[0] * n_batch,
                                          n_seq_id=[0] * n_batch, seq_id=[[0] for _ in range(n_batch)],
                                          logits=[False] * n_batch)
    decoder.generated, decoder.moved = 0, 0
    return decoder


def _run(monkeypatch: pytest.MonkeyPatch, prompt_lengths: list[int], answer_lengths: list[int], parallel: int,
         n_batch: int, max_new_tokens: int = 1000) -> tuple[FakeLlamaCpp, _BatchDecoder, dict[int, list[int]]]:
    fake = FakeLlamaCpp()
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    decoder = _decoder(fake, parallel, n_batch)
    samplers = [FakeSampler(length) for length in answer_lengths]
    prompts = [[5] * length for length in prompt_lengths]
    answers = {index: tokens for index, tokens, _ in decoder.run(prompts, samplers, max_new_tokens)}
    assert all(s.closed for s in samplers)
    return fake, decoder, answers


def _decode_rows(step: list[tuple[int, int]]) -> list[int]:
    """The sequences fed one token in a step (the decoding ones), in batch order."""
    return [sequence for sequence, tokens in step if tokens == 1]


def test_every_step_decodes_one_run_of_sequence_ids_from_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests end in an order unlike the one they joined in, and the last ones run on alone
    answer_lengths = [30, 3, 12, 1, 25, 7, 7, 40, 2, 18, 9, 5]
    fake, decoder, answers = _run(monkeypatch, [4] * len(answer_lengths), answer_lengths, parallel=4, n_batch=64)
    assert {i: len(tokens) for i, tokens in answers.items()} == dict(enumerate(answer_lengths))
    for step in fake.steps:
        rows = _decode_rows(step)
        assert rows == list(range(len(rows))), f"a step fed sequences {rows}: more than one micro-batch"
    assert decoder.moved > 0  # the tail's holes were closed by moving sequences down
    # the stand-in checked every fed position against the cells its sequence held: a moved sequence
    # kept its cache


def test_a_long_prompt_joins_beside_decoding_sequences(monkeypatch: pytest.MonkeyPatch) -> None:
    prompt_lengths, answer_lengths = [3, 3, 3, 50, 3], [40, 5, 40, 10, 40]
    parallel = 3
    fake, _, answers = _run(monkeypatch, prompt_lengths, answer_lengths, parallel,
                            n_batch=step_tokens(prompt_lengths, parallel, n_batch=8))
    assert len(answers) == len(prompt_lengths)
    joined = next(i for i, step in enumerate(fake.steps) if any(tokens == 50 for _, tokens in step))
    # request 1 ends after 5 tokens; the 50-token prompt takes its sequence the next step, while
    # requests 0 and 2 (40 tokens each) are still decoding
    assert joined <= 7
    assert len(_decode_rows(fake.steps[joined])) == 2


def test_step_tokens_leaves_room_for_the_longest_prompt_beside_every_sequence() -> None:
    assert step_tokens([10, 700, 30], parallel=25, n_batch=512) == 725
    assert step_tokens([10, 30], parallel=8, n_batch=512) == 512
    assert step_tokens([], parallel=1, n_batch=512) == 512
