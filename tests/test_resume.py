"""A run killed with SIGKILL during generation resumes to the tables of an uninterrupted run, and
no partial file is ever taken as finished."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from workflow_support import copy_workflow, reuse_ci_run, snakemake, snakemake_command, table_differences

pytestmark = pytest.mark.workflow

N_PROMPTS = 9  # config/ci.yaml: 6 harmful + 3 benign
JUDGES = ("refusal_prefix", "harmbench_cls", "shieldgemma")  # config/ci.yaml
SEEDED_PRECISION = "fp32"
STAGES = ("generations", "judgements", "votes")


def _expected_rows(path: Path) -> int:
    temperature = float(path.stem.removeprefix("T"))
    return N_PROMPTS * (1 if temperature == 0 else 2)


def _in_progress_generation(results: Path, seeded: set[Path]) -> Path | None:
    """A generate job that has started (its log exists) and not finished (no output), once this run
    has finished at least one other cell: a kill then lands in the middle of the generation stage."""
    finished = set((results / "generations").rglob("*.parquet")) - seeded
    if not finished:
        return None
    for log in (results / "logs" / "generate").rglob("*.log"):
        output = results / "generations" / log.relative_to(results / "logs" / "generate").with_suffix(".parquet")
        if not output.exists():
            return output
    return None


def _finished_outputs(results: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for stage in STAGES for p in (results / stage).rglob("*.parquet")}


def test_killed_run_resumes_to_the_same_tables(ci_run: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = copy_workflow(tmp_path_factory.mktemp("resume"))
    results = workdir / "results"
    # the CI run's stages before the cells, so the run reaches generation soon, and its finished
    # fp32 cells: this run generates, judges and votes the GPTQ cells
    seeded = reuse_ci_run(ci_run, workdir, SEEDED_PRECISION)
    assert len(seeded) == 2 * (2 + len(JUDGES))

    run = subprocess.Popen(snakemake_command(workdir, "--cores", "2"), start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    interrupted = None
    while interrupted is None and run.poll() is None and time.monotonic() < deadline:
        interrupted = _in_progress_generation(results, seeded)
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)  # snakemake and the job it is running, at once
    run.wait()
    assert interrupted is not None, "the run ended or timed out before a generate job was caught mid-way"
    assert not interrupted.exists()

    # every file that looks finished is complete
    survivors = _finished_outputs(results)
    assert set(survivors) > seeded, "this run finished nothing before the kill"
    for path in survivors:
        assert len(pd.read_parquet(path)) == _expected_rows(path), path

    # the killed Snakemake left its lock behind: unlock, then run again
    snakemake(workdir, "--unlock")
    snakemake(workdir, "--rerun-incomplete")

    after = _finished_outputs(results)
    assert interrupted in after
    # what had finished was kept, not recomputed
    assert {p: after[p] for p in survivors} == survivors
    assert table_differences(ci_run / "tables-first-run", results / "tables") == []
