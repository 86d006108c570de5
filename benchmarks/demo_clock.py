"""How long `make demo` takes on a fresh clone, on this machine, and whether the run made the tables
a reference run made: the measurement issue 36 (item 5) asks for on each kind of CPU, as recorded in
docs/timings.md and docs/demo.md ("What its time goes to").

It clones COMMIT of this checkout into WORKDIR and runs `/usr/bin/time -v make demo` there: the
environments (pip's cache and the llama.cpp wheel in ~/.cache/safetygrid are used where this machine
has them), then the default grid. It prints the CPU, the total, the environments' and the workflow's
shares, peak memory and the verdict against the issue's 20 and 25 minutes; then, run in the clone's
own environment, each rule's job seconds, each cell's unlabelled responses (labels that no longer
match the text the run made: a run on another CPU that made other answers shows here), and, with
--reference, whether each table equals the reference run's (cells.parquet without its `seconds`).

The figures are only as good as the machine is quiet: it says when the load average was above 0.5
at the start, and the run's log is WORKDIR/make-demo.log.

usage: python3 benchmarks/demo_clock.py [--commit HEAD] [--workdir DIR] [--reference RESULTS_DIR]
       .venv/bin/python benchmarks/demo_clock.py --summarize RESULTS_DIR [--reference RESULTS_DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the tables a rerun on the same answers must reproduce exactly (bootstrap seeds are fixed); the
# cells' `seconds` are the jobs' own times
COMPARED_TABLES = ("cells", "contrasts", "deployment", "judge_validity", "quality")
TIMED_COLUMNS = ("seconds",)
PROGRESS = re.compile(r"^>> |steps \(\d+%\) done|^Error|error in rule", re.IGNORECASE)
STEP_LINE = re.compile(r"^>> (\d\d:\d\d:\d\d) (.*)")


def cpu_description() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.*)$", info, re.MULTILINE)
    family = re.search(r"^cpu family\s*:\s*(\d+)$", info, re.MULTILINE)
    number = re.search(r"^model\s*:\s*(\d+)$", info, re.MULTILINE)
    flags = set(re.search(r"^flags\s*:\s*(.*)$", info, re.MULTILINE).group(1).split()) if "flags" in info else set()
    features = ", ".join(name for name, flag in (("AVX-512", "avx512f"), ("AMX", "amx_tile")) if flag in flags) or "no AVX-512"
    return (f"{model.group(1).strip() if model else 'unknown CPU'} (family {family.group(1) if family else '?'}, "
            f"model {number.group(1) if number else '?'}; {features}; {len(os.sched_getaffinity(0))} cores)")


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def wall_seconds(text: str) -> float:
    """GNU time's "Elapsed (wall clock) time (h:mm:ss or m:ss): 22:40.12"."""
    value = text.rsplit(": ", 1)[1].strip()
    seconds = 0.0
    for part in value.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def run_demo(clone: Path) -> tuple[float, float, list[tuple[str, str]]]:
    """(wall seconds, peak GB, the `>>` step lines with their clock times) of `make demo` in ``clone``."""
    log_path, time_path = clone / "make-demo.log", clone / "make-demo.time"
    steps: list[tuple[str, str]] = []
    with open(log_path, "w") as log:
        process = subprocess.Popen(["/usr/bin/time", "-v", "-o", str(time_path), "make", "demo"], cwd=clone,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            if PROGRESS.search(line):
                print("   " + line.rstrip(), flush=True)
            step = STEP_LINE.match(line)
            if step:
                steps.append((step.group(1), step.group(2)))
        code = process.wait()
    report = time_path.read_text() if time_path.exists() else ""
    if code != 0:
        sys.exit(f"make demo failed (exit {code}); its log: {log_path}")
    wall = next(wall_seconds(line) for line in report.splitlines() if "Elapsed (wall clock)" in line)
    peak_kb = next(float(line.rsplit(":", 1)[1]) for line in report.splitlines() if "Maximum resident set size" in line)
    return wall, peak_kb / 1024 ** 2, steps


def environment_seconds(steps: list[tuple[str, str]]) -> float | None:
    """From make demo's first line to "environments ready" (the clock may pass midnight)."""
    start = next((t for t, text in steps if text.startswith("make demo")), None)
    ready = next((t for t, text in steps if text.startswith("environments ready")), None)
    if start is None or ready is None:
        return None
    elapsed = (dt.datetime.strptime(ready, "%H:%M:%S") - dt.datetime.strptime(start, "%H:%M:%S")).total_seconds()
    return elapsed % 86400


def verdict(wall: float) -> str:
    if wall <= 20 * 60:
        return "within the issue's 20 minutes"
    if wall <= 25 * 60:
        return "over the issue's 20 minutes, within its 25-minute ceiling"
    return "over the issue's 25-minute ceiling"


def differing_tables(results: Path, reference: Path) -> dict[str, str]:
    """Each compared table: "equal", or what differs from the reference's."""
    import pandas as pd

    verdicts = {}
    for name in COMPARED_TABLES:
        ours, theirs = results / "tables" / f"{name}.parquet", reference / "tables" / f"{name}.parquet"
        if not ours.exists() or not theirs.exists():
            verdicts[name] = f"missing ({ours if not ours.exists() else theirs})"
            continue
        a = pd.read_parquet(ours).drop(columns=list(TIMED_COLUMNS), errors="ignore")
        b = pd.read_parquet(theirs).drop(columns=list(TIMED_COLUMNS), errors="ignore")
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            verdicts[name] = f"different shape: {a.shape} against {b.shape}"
            continue
        differ = [column for column in a.columns if not a[column].reset_index(drop=True).equals(b[column].reset_index(drop=True))]
        verdicts[name] = "equal" if not differ else "differs in " + ", ".join(differ)
    return verdicts


def summarize(results: Path, reference: Path | None) -> int:
    import pandas as pd

    from grid_tables import cost_table, job_seconds, markdown  # beside this file

    print("\nWhat each rule cost (results/benchmarks; one job at a time, each on every core):\n")
    print(markdown(cost_table(results / "benchmarks")))
    jobs = job_seconds(results / "benchmarks")
    print("\nEach job of the rules that run one per cell or precision, wall seconds:")
    for rule, group in jobs[jobs["job"] != ""].groupby("rule", sort=False):
        print(f"  {rule}: " + "; ".join(f"{job} {seconds:.0f}" for job, seconds in zip(group["job"], group["s"])))
    cells = pd.read_parquet(results / "tables" / "cells.parquet")
    print("\nResponses to harmful prompts without a current label, by cell (cells.parquet n_unlabelled):")
    for _, cell in cells.iterrows():
        print(f"  {cell['model']} {cell['precision']} {cell['kv']} T={cell['temperature']:g}: "
              f"{int(cell['n_unlabelled'])} of {int(cell['n_responses'])}")
    unlabelled = int(cells["n_unlabelled"].sum())
    status = 0
    if unlabelled:
        print(f"  {unlabelled} responses carry no current label: this run made other answers than those the "
              "labels were read on, and its corrected rates rest on fewer labels")
        status = 1
    if reference is not None:
        print(f"\nTables against {reference}:")
        for name, outcome in differing_tables(results, reference).items():
            print(f"  {name}: {outcome}")
            status = status or int(outcome != "equal")
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commit", default="HEAD", help="the commit of this checkout to clone (default HEAD)")
    parser.add_argument("--workdir", type=Path, help="where to clone (default: a new folder under /tmp)")
    parser.add_argument("--reference", type=Path, help="a finished run's results folder to compare tables with")
    parser.add_argument("--summarize", type=Path, metavar="RESULTS_DIR",
                        help="only summarize a finished run's results folder (needs pandas)")
    args = parser.parse_args()
    reference = args.reference.resolve() if args.reference else None
    if args.summarize:
        return summarize(args.summarize.resolve(), reference)

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", args.commit], check=True, capture_output=True,
                            text=True).stdout.strip()
    clone = (args.workdir or Path(tempfile.mkdtemp(prefix="demo-clock-"))).resolve()
    if clone.exists() and any(clone.iterdir()):
        sys.exit(f"{clone} is not empty: name a new --workdir")
    print(f"CPU: {cpu_description()}")
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"   the load average is {load:.2f}: another process is running, and the figures will show it")
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
    print(f"make demo on a fresh clone of {commit[:7]} in {clone} (log: make-demo.log), "
          f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)
    wall, peak_gb, steps = run_demo(clone)
    environments = environment_seconds(steps)
    compiled = any("compiling once" in text for _, text in steps)
    print(f"\nmake demo: {minutes(wall)} ({wall:.0f} s), {verdict(wall)}; peak memory {peak_gb:.1f} GB")
    if environments is not None:
        print(f"  environments {minutes(environments)}, workflow {minutes(wall - environments)}; the llama.cpp wheel "
              + ("compiled in this run (a machine new to the project)" if compiled else "cached by an earlier build"))
    # this file, not the clone's copy: an older commit may not have it
    summary = [str(clone / ".venv" / "bin" / "python"), str(Path(__file__).resolve()), "--summarize",
               str(clone / "results")]
    if reference is not None:
        summary += ["--reference", str(reference)]
    return subprocess.run(summary, cwd=clone).returncode


if __name__ == "__main__":
    sys.exit(main())
