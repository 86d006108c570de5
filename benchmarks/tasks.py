"""Seconds per (model, precision) of the offline lm-evaluation-harness smoke task (quality.tasks) on
this machine, and its accuracy, through the same call the measure_tasks rule makes.

usage: .venv/bin/python benchmarks/tasks.py NAME=CHECKPOINT_DIR [NAME=CHECKPOINT_DIR ...]
           [--task safetygrid_smoke_mc] [--limit N] [--repeat 2] [--batch-size 8] [--device cpu]
e.g.   .venv/bin/python benchmarks/tasks.py fp32=results/models/smollm2-135m/fp32 \\
           gptq-w4a16=results/models/smollm2-135m/gptq-w4a16
Each run is a fresh interpreter (as a workflow job is): "seconds" is interpreter start, lm-eval's
task index, the model load and the evaluation; "eval seconds" is task_accuracy's own timer (index,
load and evaluation). Runs are repeated to show that the accuracy does not change.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, sys
from safetygrid.quality.tasks import task_accuracy
checkpoint, task, limit, batch, device = sys.argv[1:6]
r = task_accuracy(checkpoint, [task], task_paths=[sys.argv[6]], limit=int(limit) if limit != "none" else None,
                  seed=20260628, batch_size=int(batch), device=device)
print(json.dumps({"seconds": r["seconds"], **r["tasks"][task]}))
"""


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoints", nargs="+", help="NAME=DIR")
    parser.add_argument("--task", default="safetygrid_smoke_mc")
    parser.add_argument("--limit", default="none")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--batch-size", default="8")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import os

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; task {args.task}, limit {args.limit}")
    print("| precision | run | seconds (fresh process) | eval seconds | n | acc | stderr |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for spec in args.checkpoints:
        name, directory = spec.split("=", 1)
        for run in range(1, args.repeat + 1):
            started = time.time()
            out = subprocess.run([sys.executable, "-c", CHILD, directory, args.task, args.limit, args.batch_size,
                                  args.device, str(ROOT / "resources" / "quality")],
                                 capture_output=True, text=True, check=True)
            wall = time.time() - started
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {name} | {run} | {wall:.1f} | {r['seconds']:.1f} | {r['n']} | {r['accuracy']:.4f} | "
                  f"{r['stderr']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
