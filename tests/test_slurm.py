"""The CI grid through profiles/slurm on a real one-node SLURM cluster started for the test."""

from __future__ import annotations

import contextlib
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from components import component_unavailable
from slurm_cluster import SlurmUnavailable, jobs, one_node_cluster
from workflow_support import copy_workflow, snakemake, table_differences

pytestmark = [pytest.mark.workflow, pytest.mark.slurm]

# what the CI grid submits here: 1 quantize (GPTQ W4A16 g64: the checkpoint rule, re-evaluated after a
# SLURM job; the fp32 and unsupported g128 checkpoints and the judges' validation come from the CI
# run, as the pipeline's earlier stages would on a cluster, to keep the suite's time), 2 supported
# precisions x 2 temperatures of generate, 2 measure_quality, 2 measure_tasks; the 4 cells' judges (3
# each) and votes as group jobs; prepare_prompts, fetch_model, label_sample, aggregate, adjudicate and
# report are local rules
SUBMITTED_ALONE = Counter(quantize=1, generate=4, measure_quality=2, measure_tasks=2)
REUSED_CHECKPOINTS = ("fp32", "gptq-w4a16-g128")
CELLS = 4


def submitted_rule(comment: str) -> str:
    """The plugin's --comment is rule_<name>[_wildcards_...]; a group job's name lists its rules."""
    name = comment.removeprefix("rule_").split("_wildcards_")[0]
    return "judge_cell" if name.endswith("_judge_vote") else name


def test_ci_grid_on_slurm(ci_run: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm-grid"))
    # the CI run's prompts, fetched model, judge validation and calibration, and two of its three
    # checkpoints (mtimes kept, benchmark files too: a rule's benchmark is one of its outputs)
    for stage in ("prompts", "sources", "validation", "validity", "calibration",
                  *(f"benchmarks/{rule}" for rule in ("prepare_prompts", "fetch_model", "validate_judge"))):
        shutil.copytree(ci_run / "results" / stage, workdir / "results" / stage)
    results = workdir / "results"
    for rule in ("prepare_validation", "calibrate_judges"):
        shutil.copy2(ci_run / "results" / "benchmarks" / f"{rule}.tsv", results / "benchmarks" / f"{rule}.tsv")
    (results / "tables").mkdir()
    shutil.copy2(ci_run / "results" / "tables" / "judge_validity.parquet", results / "tables" / "judge_validity.parquet")
    model = next(p.name for p in (ci_run / "results" / "models").iterdir())
    for precision in REUSED_CHECKPOINTS:
        shutil.copytree(ci_run / "results" / "models" / model / precision, results / "models" / model / precision)
        (results / "benchmarks" / "quantize" / model).mkdir(parents=True, exist_ok=True)
        shutil.copy2(ci_run / "results" / "benchmarks" / "quantize" / model / f"{precision}.tsv",
                     results / "benchmarks" / "quantize" / model / f"{precision}.tsv")
    with contextlib.ExitStack() as stack:
        try:
            env = stack.enter_context(one_node_cluster(tmp_path_factory.mktemp("slurm-cluster")))
        except SlurmUnavailable as exc:
            component_unavailable(f"no SLURM cluster here: {exc}")
        snakemake(workdir, "--profile", "slurm", "--slurm-no-account", "--slurm-status-command", "squeue",
                  "--slurm-init-seconds-before-status-checks", "5", env=env)
        submitted = jobs(env)

    assert {job["state"] for job in submitted} == {"COMPLETED"}, submitted
    kinds = Counter(submitted_rule(job["comment"]) for job in submitted)
    print("sbatch submissions:", dict(kinds))
    judge_groups = kinds.pop("judge_cell", 0)
    assert kinds == SUBMITTED_ALONE
    # one group per cell, fewer when cells became ready together (group-components); never a
    # judge or vote alone
    assert 1 <= judge_groups <= CELLS

    assert table_differences(ci_run / "tables-first-run", workdir / "results" / "tables") == []
    cells = pd.read_parquet(workdir / "results" / "tables" / "cells.parquet")
    assert len(cells) == CELLS
