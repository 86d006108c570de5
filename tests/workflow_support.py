"""Running the workflow from tests: a copy of the workflow in a scratch directory, Snakemake as a
subprocess, dry-run job counts, and table comparison across runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Callable

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ["Snakefile", "config.yaml", "config", "rules", "workflow", "resources", "profiles"]
MODEL = "smollm2-135m"
# columns that measure the run itself (wall time), not the study
RUN_DEPENDENT_COLUMNS = {"cells.parquet": ["seconds"]}


def copy_workflow(workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, workdir / name, dirs_exist_ok=True)
        else:
            shutil.copy2(src, workdir / name)
    (workdir / "config" / "grown.yaml").unlink(missing_ok=True)
    if (ROOT / ".venvs").exists() and not (workdir / ".venvs").exists():
        (workdir / ".venvs").symlink_to(ROOT / ".venvs")
    # this interpreter's venv linked in, so that Snakemake runs from inside the working directory as
    # from a checkout (`make demo`): its jobs' params then name it as a checkout's run does
    if sys.prefix != sys.base_prefix and not (workdir / ".venv").exists():
        (workdir / ".venv").symlink_to(sys.prefix)
    return workdir


def workdir_python(workdir: Path) -> str:
    linked = workdir / ".venv" / "bin" / Path(sys.executable).name
    return str(linked) if linked.exists() else sys.executable


def snakemake_command(workdir: Path, *args: str, configfile: str = "config/ci.yaml") -> list[str]:
    return [workdir_python(workdir), "-m", "snakemake", "--snakefile", str(workdir / "Snakefile"), "--directory",
            str(workdir), "--configfile", str(workdir / configfile), *args]


def snakemake(workdir: Path, *args: str, configfile: str = "config/ci.yaml", env: dict[str, str] | None = None) -> str:
    cmd = snakemake_command(workdir, "--cores", "2", *args, configfile=configfile)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=2400, env=env)
    if proc.returncode != 0:
        logs = "\n".join(p.read_text()[-3000:] for p in (workdir / "results" / "logs").rglob("*.log")
                         if "Error" in p.read_text())
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}\n{logs}")
    return proc.stdout + proc.stderr


def scheduled_jobs(output: str) -> Counter[str]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    counts: Counter[str] = Counter()
    if "Nothing to be done" in output:
        return counts
    table = output.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match or match.group(1) == "total":
            break
        counts[match.group(1)] = int(match.group(2))
    return counts


def snapshot_tables(workdir: Path, into: Path) -> Path:
    """Copy results/tables aside: later tests grow and rerun the grid in place."""
    shutil.copytree(workdir / "results" / "tables", into, dirs_exist_ok=True)
    return into


def reuse_ci_run(ci_run: Path, workdir: Path, finished_precision: str) -> set[Path]:
    """Seed ``workdir`` with the CI run's outputs that come before the cells, as a later run finds
    them from its earlier stages: its prompts, fetched model, checkpoints, quality measures and the
    judges' validation and calibration (mtimes kept; benchmark files too, since a rule's benchmark
    is one of its outputs and a missing one reruns it), and ``finished_precision``'s finished cells
    (generations, judgements, votes). Returns the per-cell files seeded."""
    import yaml

    results, source = workdir / "results", ci_run / "results"
    upstream = ("prepare_prompts", "fetch_model", "quantize", "measure_quality", "measure_tasks", "validate_judge")
    for stage in ("prompts", "sources", "models", "quality", "validation", "validity", "calibration",
                  *(f"benchmarks/{rule}" for rule in upstream)):
        shutil.copytree(source / stage, results / stage)
    for rule in ("prepare_validation", "calibrate_judges"):
        shutil.copy2(source / "benchmarks" / f"{rule}.tsv", results / "benchmarks" / f"{rule}.tsv")
    (results / "tables").mkdir()
    shutil.copy2(source / "tables" / "judge_validity.parquet", results / "tables" / "judge_validity.parquet")
    judges = yaml.safe_load((workdir / "config" / "ci.yaml").read_text())["judges"]
    per_cell = ("generations", "votes", "benchmarks/generate", "benchmarks/vote",
                *(f"{stage}/{judge}" for stage in ("judgements", "benchmarks/judge") for judge in judges))
    for stage in per_cell:
        shutil.copytree(source / stage / MODEL / finished_precision, results / stage / MODEL / finished_precision)
    return {p for stage in ("generations", "judgements", "votes") for p in (results / stage).rglob("*.parquet")}


def table_differences(expected: Path, actual: Path) -> list[str]:
    """Every table of `expected` against its namesake in `actual`, run-dependent columns left out;
    one line per difference, empty when they agree."""
    differences = []
    for path in sorted(expected.glob("*.parquet")):
        other = actual / path.name
        if not other.exists():
            differences.append(f"{path.name}: missing")
            continue
        drop = RUN_DEPENDENT_COLUMNS.get(path.name, [])
        left = pd.read_parquet(path).drop(columns=drop)
        right = pd.read_parquet(other).drop(columns=drop)
        try:
            pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=1e-9)
        except AssertionError as exc:
            differences.append(f"{path.name}: {exc}")
    return differences


# ---- a finished run without running anything: for dry-run tests of what reruns ------------------
JOB_HEADER = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
JOB_KEYS = {"input", "output", "log", "benchmark", "jobid", "reason", "wildcards"}
# the workflow's directory() outputs (everything else it writes is a file)
DIRECTORY_OUTPUT = re.compile(r"^results/(?:sources/[^/]+|models/[^/]+/[^/]+|report/figures)$")


def dry_run_jobs(output: str) -> list[dict[str, str]]:
    """Each job of a dry run (group members, printed indented, included) as {"rule": ...,
    "output": ..., "reason": ..., "wildcards": ...}."""
    jobs: list[dict[str, str]] = []
    for line in output.splitlines():
        header = JOB_HEADER.match(line.strip())
        if header:
            jobs.append({"rule": header.group(1)})
            continue
        key, _, value = line.strip().partition(": ")
        if jobs and key in JOB_KEYS and key not in jobs[-1]:
            jobs[-1][key] = value
    return jobs


# rules whose inputs are enumerated from the quantize checkpoints: made once the cells are known
AFTER_CHECKPOINTS = {"aggregate", "adjudicate", "report", "archive"}


def fake_finished_run(workdir: Path, configfile: str, status: Callable[[str], dict[str, object]]) -> None:
    """Make ``workdir`` look like a finished run of ``configfile`` without running a model: every
    output the DAG asks for is created empty (each quantize checkpoint with ``status(precision)`` as
    its status.json, so the cells behind it are enumerated), then ``snakemake --touch --forceall``
    stamps them in DAG order and records each job's metadata (params, inputs), as a real run would."""
    import json

    for round_ in range(4):  # the first round makes the checkpoints; the next, the cells behind them
        created = 0
        for job in dry_run_jobs(snakemake(workdir, "-n", configfile=configfile)):
            if round_ == 0 and job["rule"] in AFTER_CHECKPOINTS:
                continue
            for key in ("output", "benchmark"):
                for name in filter(None, job.get(key, "").split(", ")):
                    path = workdir / name
                    if path.exists():
                        continue
                    created += 1
                    if DIRECTORY_OUTPUT.match(name):
                        path.mkdir(parents=True)
                        if job["rule"] == "quantize":
                            (path / "status.json").write_text(json.dumps(status(path.name)))
                    else:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.touch()
        if not created:
            break
    snakemake(workdir, "--touch", "--forceall", configfile=configfile)
