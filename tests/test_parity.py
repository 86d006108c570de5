"""Teacher-forced parity (engines/parity.py) and the numerics every generation row records
(engines/numerics.py), on the tiny random checkpoint and hand-made inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from safetygrid.engines import GENERATION_COLUMNS
from safetygrid.engines.llama_cpp import ggml_kernel
from safetygrid.engines.numerics import Numerics, cpu_flags, cpu_isa, generation_table, has_amx
from safetygrid.engines.parity import (ForcedSequence, PositionScore, coarse_kl, hf_forced_scores, hf_greedy_answers,
                                       parity, read_scores, read_sequences, write_sequences)
from safetygrid.engines.vllm import weight_only_bits

PROMPTS = {"a": "how do i make bread", "b": "help", "c": "how do i make a cake and bread"}


def test_the_hf_engine_agrees_with_its_own_greedy_answers_and_bfloat16_mostly_does(tiny_checkpoint: Path) -> None:
    answers = hf_greedy_answers(str(tiny_checkpoint), PROMPTS, 8)
    assert [len(s.answer_ids) for s in answers] and all(0 < len(s.answer_ids) <= 8 for s in answers)
    scores, full = hf_forced_scores(str(tiny_checkpoint), answers, "float32")
    same = parity(answers, scores, full)
    assert same.positions == sum(len(s.answer_ids) for s in answers)
    # every greedy token is the top-1 of the same engine's forward pass over the whole sequence
    assert same.agreement == 1.0 and same.kl == pytest.approx(0.0, abs=1e-6)
    bf16_scores, _ = hf_forced_scores(str(tiny_checkpoint), answers, "bfloat16")
    rounded = parity(answers, bf16_scores, full)
    assert 0.5 < rounded.agreement <= 1.0 and rounded.kl > 0


def test_parity_pools_positions_and_counts_rank_one_only() -> None:
    sequences = [ForcedSequence("a", [1, 2], [3, 4, 5]), ForcedSequence("b", [1], [6])]
    scores = [[PositionScore(1, -0.1, {}), PositionScore(2, -1.0, {}), PositionScore(1, -0.2, {})],
              [PositionScore(5, -3.0, {})]]
    result = parity(sequences, scores)
    assert result.positions == 4 and result.agreement == 0.5 and math.isnan(result.kl)
    with pytest.raises(ValueError, match="3 scored positions for 4 answer tokens"):
        parity(sequences, [scores[0]])


def test_coarse_kl_is_zero_for_the_same_distribution_and_a_lower_bound_otherwise() -> None:
    p = np.log(np.array([0.5, 0.2, 0.15, 0.1, 0.05]))
    same = PositionScore(1, float(p[0]), {0: float(p[0]), 1: float(p[1])})
    assert coarse_kl(p, same, 0) == pytest.approx(0.0, abs=1e-12)
    q = np.log(np.array([0.3, 0.4, 0.1, 0.1, 0.1]))
    other = PositionScore(2, float(q[0]), {1: float(q[1]), 0: float(q[0])})
    full = float(np.sum(np.exp(p) * (p - q)))
    # support {0, 1} and the rest (0.3 on both sides)
    merged = 0.5 * math.log(0.5 / 0.3) + 0.2 * math.log(0.2 / 0.4) + 0.3 * math.log(0.3 / 0.3)
    assert coarse_kl(p, other, 0) == pytest.approx(merged)
    assert coarse_kl(p, other, 0) <= full


def test_sequences_and_scores_round_trip_through_json(tmp_path: Path) -> None:
    sequences = [ForcedSequence("a", [1, 2], [3])]
    write_sequences(sequences, tmp_path / "s.json")
    assert read_sequences(tmp_path / "s.json") == sequences
    (tmp_path / "scores.json").write_text('[[{"rank": 2, "logprob": -0.5, "top": {"7": -0.1}}]]')
    assert read_scores(tmp_path / "scores.json") == [[PositionScore(2, -0.5, {7: -0.1})]]


def test_cpu_flags_and_isa_from_cpuinfo(tmp_path: Path) -> None:
    sapphire = tmp_path / "intel"
    sapphire.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n")
    epyc = tmp_path / "amd"
    epyc.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert has_amx(cpu_flags(sapphire)) and cpu_isa(cpu_flags(sapphire)) == "avx512+amx"
    assert not has_amx(cpu_flags(epyc)) and cpu_isa(cpu_flags(epyc)) == "avx512"
    assert cpu_isa({"avx2"}) == "avx2" and cpu_flags(tmp_path / "absent") == set()


def test_every_engine_stamps_the_same_numerics_columns() -> None:
    rows = [{"prompt_id": "a", "sample": 0, "response": "hi"}]
    table = generation_table(rows, GENERATION_COLUMNS, Numerics("bfloat16", "vllm 0.32.0 cpu avx512"))
    assert list(table.columns) == GENERATION_COLUMNS
    assert table.loc[0, "dtype"] == "bfloat16" and table.loc[0, "kernel"] == "vllm 0.32.0 cpu avx512"
    assert generation_table([], GENERATION_COLUMNS, Numerics("float32", "x")).empty


def test_the_hf_engine_records_the_dtype_it_ran_and_its_kernel(tiny_checkpoint: Path) -> None:
    from safetygrid.engines.cell import generate_cell

    prompts = pd.DataFrame({"prompt_id": ["a"], "text": ["help"]})
    rows = {dtype: generate_cell(str(tiny_checkpoint), prompts, model="tiny", engine="hf", temperature=0.0, k=1,
                                 seed=1, generation={"max_new_tokens": 2, "device": "cpu"},
                                 precision={"dtype": dtype} if dtype else {}, kv={})
            for dtype in (None, "bfloat16")}
    assert rows[None].loc[0, "dtype"] == "float32"  # the engine's choice on a CPU
    assert rows["bfloat16"].loc[0, "dtype"] == "bfloat16"
    assert rows[None].loc[0, "kernel"].startswith("torch ") and " cpu " in rows[None].loc[0, "kernel"]


def test_llama_cpp_kernel_names_the_features_its_build_has() -> None:
    info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 0 | AMX_INT8 = 0 | LLAMAFILE = 1 | "
    assert ggml_kernel("0.3.36", info) == "llama.cpp 0.3.36 CPU: SSE3 AVX AVX2 LLAMAFILE"


def test_weight_only_bits_of_checkpoint_configs() -> None:
    compressed = {"quantization_config": {"quant_method": "compressed-tensors", "config_groups": {
        "group_0": {"weights": {"num_bits": 4, "group_size": 64}, "input_activations": None}}}}
    w8a8 = {"quantization_config": {"quant_method": "compressed-tensors", "config_groups": {
        "group_0": {"weights": {"num_bits": 8}, "input_activations": {"num_bits": 8}}}}}
    assert weight_only_bits(compressed) == 4
    assert weight_only_bits({"quantization_config": {"quant_method": "gptq", "bits": 8}}) == 8
    assert weight_only_bits(w8a8) is None and weight_only_bits({}) is None
