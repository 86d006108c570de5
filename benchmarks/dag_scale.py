"""How long `snakemake -n` takes to build the DAG, and its peak memory, for the paper grid
(config/paper.yaml: 162 cells, six judges) and for a grid ten times its size (90 models).

The quantize checkpoints' outputs are fabricated (a status.json saying supported) so the checkpoint
is resolved and every cell's generate, judge and vote job is in the DAG, as in a grid that has
been running for a while. Nothing is generated. Targets: under 15 s (paper) and 60 s (10x) on 2 cores.

    .venv/bin/python benchmarks/dag_scale.py [--scales 1 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ["Snakefile", "rules", "workflow", "resources"]


def grid(scale: int) -> dict:
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    if scale > 1:
        config["models"] = {f"{name}-r{i}": dict(entry) for i in range(scale) for name, entry in config["models"].items()}
    return config


def fabricate(workdir: Path, config: dict) -> None:
    """Sources, then supported checkpoints (newer than their sources): the state after quantize."""
    for model in config["models"]:
        source = workdir / "results" / "sources" / model
        source.mkdir(parents=True)
        (source / "config.json").write_text("{}")
    time.sleep(0.05)
    for model in config["models"]:
        for precision, spec in config["precisions"].items():
            checkpoint = workdir / "results" / "models" / model / precision
            checkpoint.mkdir(parents=True)
            status = {"supported": True, "reason": "fabricated for benchmarks/dag_scale.py", "method": spec["method"]}
            (checkpoint / "status.json").write_text(json.dumps(status))


def dry_run(workdir: Path, configfile: Path) -> tuple[float, float, int, str]:
    """Seconds, peak resident MB, scheduled job count, and the tail of the output."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--quiet", "rules", "--directory", str(workdir),
           "--snakefile", str(workdir / "Snakefile"), "--configfile", str(configfile)]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"snakemake -n failed:\n{text[-3000:]}")
    total = re.search(r"^total\s+(\d+)", text, re.MULTILINE)
    return seconds, usage.ru_maxrss / 1024, int(total.group(1)) if total else 0, text[-500:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    rows = []
    for scale in args.scales:
        with tempfile.TemporaryDirectory(prefix="dag-scale-") as tmp:
            workdir = Path(tmp)
            for name in WORKFLOW:
                src = ROOT / name
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, workdir / name)
            config = grid(scale)
            configfile = workdir / "grid.yaml"
            configfile.write_text(yaml.safe_dump(config, sort_keys=False))
            fabricate(workdir, config)
            cells = len(config["models"]) * len(config["precisions"]) * len(config["kv"]) * len(config["temperatures"])
            seconds, peak_mb, jobs, _ = dry_run(workdir, configfile)
            rows.append((f"paper x{scale}", len(config["models"]), cells, jobs, seconds, peak_mb))
            print(f"paper x{scale}: {cells} cells, {jobs} jobs, {seconds:.1f} s, {peak_mb:.0f} MB", flush=True)
    print(f"\n{'grid':<11} {'models':>6} {'cells':>6} {'jobs':>6} {'seconds':>8} {'peak MB':>8}")
    for name, models, cells, jobs, seconds, peak in rows:
        print(f"{name:<11} {models:>6} {cells:>6} {jobs:>6} {seconds:>8.1f} {peak:>8.0f}")
    print(f"({os.cpu_count()} CPUs; targets: paper < 15 s, x10 < 60 s)")


if __name__ == "__main__":
    main()
