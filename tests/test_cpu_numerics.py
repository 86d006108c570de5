"""Pinned CPU numerics (safetygrid/cpu_numerics.py): a GPTQ checkpoint and the hf engine's
generations have the same bytes whichever CPU made them.

No second kind of CPU is at hand in a test, so two machines are emulated with the settings through
which torch, MKL and oneDNN choose their kernels: an AVX-512 machine with MKL's own dispatch and two
threads, and an AVX2 machine with MKL in its reproducible mode's default branch, one thread.
Each comparison has a control that runs the same pair with the pinning off
(SAFETYGRID_CPU_NUMERICS=native) and asserts that they differ, so the emulation is known to change
the bytes the pinned runs keep equal. (What no emulation shows: MKL's Intel-only code paths; that
MKL_CBWR=COMPATIBLE gives one result on Intel and AMD is MKL's documented guarantee,
docs/reproducibility.md.)
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from safetygrid import cpu_numerics
from safetygrid.cpu_numerics import MODE_VARIABLE, PINNED_CPU_ENV, pin_cpu_numerics, runs_on_cpu

from conftest import WORDS, build_tiny_checkpoint
from components import component_unavailable

ROOT = Path(__file__).resolve().parents[1]
QUANTIZE_PYTHON = ROOT / ".venvs" / "quantize" / "bin" / "python"

# Two CPUs, emulated through the libraries' own kernel choices (the variables a shell or a batch
# system may well set, and which pin_cpu_numerics replaces)
AVX512_MACHINE = {"ATEN_CPU_CAPABILITY": "avx512", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
AVX2_MACHINE = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AUTO", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MACHINES = {"avx512": AVX512_MACHINE, "avx2": AVX2_MACHINE}


def machine_env(machine: dict[str, str], numerics: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PINNED_CPU_ENV and k != "MKL_ENABLE_INSTRUCTIONS"}
    env.update(machine)
    env[MODE_VARIABLE] = numerics
    env["PYTHONPATH"] = str(ROOT / "src")
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU path, on a machine with a GPU too
    return env


# ---- the pinning itself (fast) -------------------------------------------------------------------

def test_pinning_sets_every_setting_and_replaces_what_the_machine_had() -> None:
    environ = {"ATEN_CPU_CAPABILITY": "avx512", "OMP_NUM_THREADS": "16"}
    assert pin_cpu_numerics("cpu", environ) == PINNED_CPU_ENV
    assert environ == PINNED_CPU_ENV


def test_native_mode_and_gpu_jobs_are_left_as_found(tmp_path: Path) -> None:
    environ = {MODE_VARIABLE: "native", "OMP_NUM_THREADS": "16"}
    assert pin_cpu_numerics("cpu", environ) == {} and environ["OMP_NUM_THREADS"] == "16"
    environ = {"OMP_NUM_THREADS": "16"}
    assert pin_cpu_numerics("cuda:0", environ) == {} and environ == {"OMP_NUM_THREADS": "16"}
    # "auto" decides by the GPU it can see, without importing torch
    (tmp_path / "nvidia0").touch()
    assert not runs_on_cpu("auto", {}, dev=tmp_path)
    assert runs_on_cpu("auto", {"CUDA_VISIBLE_DEVICES": ""}, dev=tmp_path)
    assert runs_on_cpu("auto", {}, dev=tmp_path / "none")


def test_an_unknown_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="pinned.*native"):
        pin_cpu_numerics("cpu", {MODE_VARIABLE: "fast"})


def test_pinning_after_torch_is_imported_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch", object()))
    monkeypatch.delenv(MODE_VARIABLE, raising=False)
    with pytest.raises(RuntimeError, match="before torch is imported"):
        pin_cpu_numerics("cpu")


# ---- GPTQ checkpoints and generations under two emulated CPUs (minutes) ---------------------------

def calibration_text(path: Path) -> Path:
    """Words of the tiny tokenizer's vocabulary in a fixed random order (the shipped calibration
    text would be mostly <unk> to it)."""
    rng = random.Random(0)
    path.write_text(" ".join(rng.choice(WORDS) for _ in range(2000)))
    return path


GPTQ_SPEC = {"method": "gptq", "bits": 4, "group_size": 64, "calibration_samples": 8, "calibration_seq_len": 64}


@pytest.fixture(scope="module")
def gptq_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A random Llama wide enough (256) that the solve's matrix products and Cholesky factorisations
    run MKL's blocked kernels, as SmolLM2's 576 do, in seconds instead of minutes."""
    if not QUANTIZE_PYTHON.exists():
        component_unavailable(f"no quantize environment at {QUANTIZE_PYTHON} (make envs)")
    root = tmp_path_factory.mktemp("gptq-source")
    source = build_tiny_checkpoint(root / "model", hidden_size=256, intermediate_size=512)
    spec = {**GPTQ_SPEC, "calibration_text": str(calibration_text(root / "calibration.txt"))}
    return source, spec


def gptq_sha256(source: Path, spec: dict, out: Path, machine: dict[str, str], numerics: str) -> str:
    subprocess.run([str(QUANTIZE_PYTHON), "workflow/scripts/quantize.py", "--source", str(source), "--out", str(out),
                    "--spec", json.dumps(spec)], env=machine_env(machine, numerics), check=True,
                   capture_output=True, text=True)
    status = json.loads((out / "status.json").read_text())
    assert status["supported"], status
    return status["sha256"]


@pytest.mark.numerics
@pytest.mark.parametrize("numerics", ["pinned", "native"])
def test_the_gptq_checkpoint_is_the_same_on_both_emulated_cpus_only_when_pinned(gptq_source, tmp_path, numerics) -> None:
    source, spec = gptq_source
    hashes = {name: gptq_sha256(source, spec, tmp_path / name, machine, numerics) for name, machine in MACHINES.items()}
    if numerics == "pinned":
        assert hashes["avx512"] == hashes["avx2"], hashes
        assert "pinned" in json.loads((tmp_path / "avx2" / "status.json").read_text())["details"]["cpu_numerics"]
    else:  # the control: without the pinning the two machines' kernels make different checkpoints
        assert hashes["avx512"] != hashes["avx2"], hashes


def knife_edge_checkpoint(directory: Path) -> Path:
    """A random Llama whose every word has a twin: the two lm_head rows differ by a few float32
    units in the last place, so which twin wins a step is decided by the kernels' rounding, as a
    real model's near-ties are, only at every step instead of now and then. Its responses then
    record any change of kernel, and stay the same only where the kernels do."""
    import torch
    from safetensors.torch import load_file, save_file

    build_tiny_checkpoint(directory, hidden_size=256, intermediate_size=512)
    weights = load_file(directory / "model.safetensors")
    head = weights["lm_head.weight"]
    words = torch.nonzero(head.abs().sum(1)).flatten()  # the specials' rows are zero (never said)
    generator = torch.Generator().manual_seed(1)
    for first, second in zip(words[0::2], words[1::2]):
        head[second] = head[first] * (1 + 4e-7 * torch.randn(head.shape[1], generator=generator))
    weights["lm_head.weight"] = head.contiguous()
    save_file(weights, directory / "model.safetensors", metadata={"format": "pt"})
    return directory


GENERATE_CELLS = {"0.0": 1, "1.0": 3}  # temperature: samples


def responses(checkpoint: Path, prompts: Path, out: Path, machine: dict[str, str], numerics: str) -> list[str]:
    texts = []
    for temperature, k in GENERATE_CELLS.items():
        cell = {"model": "tiny", "engine": "hf", "engine_options": {}, "precision": {"method": "none", "dtype": "float32"},
                "kv": {}, "temperature": temperature, "k": k, "seed": 7,
                "generation": {"max_new_tokens": 24, "batch_size": 8, "device": "cpu"}}
        table_path = out / f"T{temperature}.parquet"
        subprocess.run([sys.executable, "workflow/scripts/generate.py", "--checkpoint", str(checkpoint), "--prompts",
                        str(prompts), "--out", str(table_path), "--cell", json.dumps(cell)],
                       env=machine_env(machine, numerics), check=True, capture_output=True, text=True)
        table = pd.read_parquet(table_path)
        assert (table["kernel"].str.endswith("native") != (numerics == "pinned")).all(), table["kernel"].iloc[0]
        texts += table["response"].tolist()
    return texts


@pytest.mark.numerics
@pytest.mark.parametrize("numerics", ["pinned", "native"])
def test_generations_are_the_same_on_both_emulated_cpus_only_when_pinned(tmp_path, numerics) -> None:
    checkpoint = knife_edge_checkpoint(tmp_path / "model")
    prompts = tmp_path / "prompts.parquet"
    pd.DataFrame({"prompt_id": [f"p{i}" for i in range(4)],
                  "text": ["how do i make a cake", "how do i make a bomb", "is it safe", "the recipe step one"]}
                 ).to_parquet(prompts)
    texts = {}
    for name, machine in MACHINES.items():
        (tmp_path / name).mkdir()
        texts[name] = responses(checkpoint, prompts, tmp_path / name, machine, numerics)
    assert len(set(texts["avx2"])) > 1  # words, not one repeated empty answer
    if numerics == "pinned":
        assert texts["avx512"] == texts["avx2"]
    else:
        assert texts["avx512"] != texts["avx2"]
