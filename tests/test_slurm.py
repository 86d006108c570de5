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

# what the CI grid submits here: 2 supported precisions x 2 temperatures of generate, and the 4 cells'
# judges (3 each) and votes as group jobs; prepare_prompts, fetch_model, label_sample, aggregate,
# adjudicate and report are local rules. The CI run's checkpoints, quality measures and the judges'
# validation are reused, as a cluster run would find them from its earlier stages: the SLURM
# submissions took 21 min of the suite when this test re-ran the whole grid. The quantize
# checkpoint and the quality rules run on the local executor in test_workflow.py and test_resume.py.
SUBMITTED_ALONE = Counter(generate=4)
CELLS = 4


def submitted_rule(comment: str) -> str:
    """The plugin's --comment is rule_<name>[_wildcards_...]; a group job's name lists its rules."""
    name = comment.removeprefix("rule_").split("_wildcards_")[0]
    return "judge_cell" if name.endswith("_judge_vote") else name


def test_ci_grid_on_slurm(ci_run: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm-grid"))
    # the CI run's prompts, fetched model, checkpoints, quality measures, judge validation and
    # calibration (mtimes kept, benchmark files too: a rule's benchmark is one of its outputs)
    reused_rules = ("prepare_prompts", "fetch_model", "quantize", "measure_quality", "measure_tasks", "validate_judge")
    for stage in ("prompts", "sources", "models", "quality", "validation", "validity", "calibration",
                  *(f"benchmarks/{rule}" for rule in reused_rules)):
        shutil.copytree(ci_run / "results" / stage, workdir / "results" / stage)
    results = workdir / "results"
    for rule in ("prepare_validation", "calibrate_judges"):
        shutil.copy2(ci_run / "results" / "benchmarks" / f"{rule}.tsv", results / "benchmarks" / f"{rule}.tsv")
    (results / "tables").mkdir()
    shutil.copy2(ci_run / "results" / "tables" / "judge_validity.parquet", results / "tables" / "judge_validity.parquet")
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
