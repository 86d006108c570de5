"""Generated tokens per second and seconds to the first result of the HF and vLLM engines on one
cell, and the workflow's overhead: the generate script (what the rule runs) against a bare engine
call on the same inputs.

usage: .venv/bin/python benchmarks/engines.py [--checkpoint DIR] [--prompts 16] [--k 4] [--tokens 64]
The checkpoint defaults to results/sources/smollm2-135m. vLLM runs in .venvs/vllm (make envs-vllm).
"Seconds to first result": engines return a cell at once, so this is load + the whole cell; the
load is also printed apart.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venvs" / "vllm" / "bin" / "python"
BARE = """
import json, sys, time
if __name__ == "__main__":
    started = time.perf_counter()
    from safetygrid.engines import Settings, make_engine
    from safetygrid.generate import build_requests
    import pandas as pd
    cfg = json.loads(sys.argv[1])
    prompts = pd.read_parquet(cfg["prompts"])
    requests = build_requests(prompts, "bench", 7, cfg["k"])
    engine = make_engine(cfg["engine"], cfg["checkpoint"], {"max_model_len": 1024})
    settings = Settings(temperature=0.7, max_new_tokens=cfg["tokens"], batch_size=64, device="cpu", dtype="float32")
    table = engine.generate(requests, settings)
    print(json.dumps({"seconds": time.perf_counter() - started, "tokens": int(table["n_tokens"].sum())}))
"""


def prompts_file(directory: Path, n: int) -> Path:
    from safetygrid.io import write_parquet

    benign = pd.read_csv(ROOT / "resources" / "prompts" / "benign.csv").head(n)
    table = pd.DataFrame({"prompt_id": [f"b{i:03d}" for i in range(len(benign))], "promptset": "bench",
                          "text": benign["text"], "category": benign["category"], "harmful": False, "source": "bench"})
    path = directory / "prompts.parquet"
    write_parquet(table, path)
    return path


def run(python: Path, args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([str(python), *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - started, result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "results" / "sources" / "smollm2-135m"))
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    engines = {"hf": Path(sys.executable)}
    if VLLM_PYTHON.exists():
        engines["vllm"] = VLLM_PYTHON
    else:
        print(f"({VLLM_PYTHON} missing: vLLM skipped; make envs-vllm)")
    print(f"{platform.machine()}, {time.strftime('%Y-%m-%d')}; {args.prompts} prompts x {args.k} samples, "
          f"T=0.7, {args.tokens} new tokens, fp32")
    print(f"{'engine':6} {'bare s':>7} {'tokens':>7} {'tok/s*':>7} {'job s':>7} {'overhead':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        prompts = prompts_file(Path(tmp), args.prompts)
        for name, python in engines.items():
            cfg = {"engine": name, "checkpoint": args.checkpoint, "prompts": str(prompts), "k": args.k,
                   "tokens": args.tokens}
            _, line = run(python, ["-c", BARE, json.dumps(cfg)])
            bare = json.loads(line)
            cell = {"model": "bench", "engine": name, "engine_options": {"max_model_len": 1024},
                    "precision": {"method": "none", "dtype": "float32"}, "kv": {}, "temperature": "0.7",
                    "k": args.k, "generation": {"max_new_tokens": args.tokens, "batch_size": 64, "device": "cpu"},
                    "seed": 7}
            job, _ = run(python, [str(ROOT / "workflow" / "scripts" / "generate.py"), "--checkpoint", args.checkpoint,
                                  "--prompts", str(prompts), "--out", str(Path(tmp) / f"{name}.parquet"),
                                  "--log", str(Path(tmp) / f"{name}.log"), "--cell", json.dumps(cell)])
            print(f"{name:6} {bare['seconds']:7.1f} {bare['tokens']:7d} {bare['tokens'] / bare['seconds']:7.1f} "
                  f"{job:7.1f} {100 * (job - bare['seconds']) / bare['seconds']:7.1f}%", flush=True)
    print("* tokens per second over the whole bare call, model load and interpreter start included")


if __name__ == "__main__":
    main()
