"""The CI grid through profiles/slurm on a real one-node SLURM cluster started for the test."""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from components import component_unavailable
from slurm_cluster import SlurmUnavailable, jobs, one_node_cluster
from workflow_support import copy_workflow, reuse_ci_run, snakemake, table_differences

pytestmark = [pytest.mark.workflow, pytest.mark.slurm]

# what the CI grid submits here: its GPTQ precision's 2 temperatures of generate, and those 2 cells'
# judges (3 each) and votes as group jobs; prepare_prompts, fetch_model, label_sample, aggregate,
# adjudicate and report are local rules. The CI run's checkpoints, quality measures, judges'
# validation and fp32 cells are reused, as a cluster run that grows a grid finds them: every rule
# that a cluster runs is still submitted, and the tables must equal the local run's. The SLURM
# submissions took 21 min of the suite when this test re-ran the whole grid, 5 min with 4 cells.
# The quantize checkpoint and the quality rules run on the local executor, in the CI run itself
# (the ci_run fixture).
SEEDED_PRECISION = "fp32"
SUBMITTED_ALONE = Counter(generate=2)
CELLS, CELLS_SUBMITTED = 4, 2


def submitted_rule(comment: str) -> str:
    """The plugin's --comment is rule_<name>[_wildcards_...]; a group job's name lists its rules."""
    name = comment.removeprefix("rule_").split("_wildcards_")[0]
    return "judge_cell" if name.endswith("_judge_vote") else name


def test_ci_grid_on_slurm(ci_run: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm-grid"))
    reuse_ci_run(ci_run, workdir, SEEDED_PRECISION)
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
    assert 1 <= judge_groups <= CELLS_SUBMITTED

    assert table_differences(ci_run / "tables-first-run", workdir / "results" / "tables") == []
    cells = pd.read_parquet(workdir / "results" / "tables" / "cells.parquet")
    assert len(cells) == CELLS
