"""Vote + aggregate (cells, contrasts, tests, hidden danger, deployment card, judge agreement) at
the seeds' scale: 161 cells, ~322k responses, six judges (~1.9M labels), as files laid out like
results/. Prints seconds per phase and the peak memory of the analysis. Target: under 60 s and
4 GB on a 2-core machine.

    .venv/bin/python benchmarks/aggregate.py [--prompts 460] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from safetygrid.analysis.aggregate import TABLES, aggregate
from safetygrid.io import write_parquet
from safetygrid.ensemble.voting import vote

MODELS = [f"model{i}" for i in range(9)]
PRECISIONS = ["fp16", "gptq-w8a16", "awq-w4a16"]
TEMPERATURES = ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
JUDGES = [f"judge{j}" for j in range(6)]


def cells() -> list[tuple[str, str, str, str]]:
    grid = [(m, q, "fp", t) for m in MODELS for q in PRECISIONS for t in TEMPERATURES]
    return grid[:-1]  # 161, as in the seeds' study (one cell missing)


def fabricate(root: Path, n_prompts: int, seed: int = 0) -> int:
    """Prompts, status files, quality, generations, timings and six judges' labels per cell; the
    number of responses."""
    rng = np.random.default_rng(seed)
    results = root / "results"
    ids = [f"hb-{i:05d}" for i in range(n_prompts)]
    write_parquet(pd.DataFrame({"prompt_id": ids, "promptset": "harmbench", "text": "x", "category": "c",
                                "harmful": True, "source": "synthetic"}), results / "prompts" / "harmbench.parquet")
    for m in MODELS:
        for q in PRECISIONS:
            (results / "models" / m / q).mkdir(parents=True)
            (results / "models" / m / q / "status.json").write_text(json.dumps({"supported": True, "method": "none"}))
            (results / "quality" / m / q).mkdir(parents=True)
            (results / "quality" / m / q / "fp.json").write_text(json.dumps(
                {"perplexity": 10 + rng.random(), "mean_nll": 2.3, "n_tokens": 4096}))
    n_responses = 0
    for m, q, v, t in cells():
        k = 1 if t == "0.0" else 5
        cell = f"{m}/{q}/{v}/T{t}"
        prompt_ids, samples = np.repeat(ids, k), np.tile(np.arange(k), n_prompts)
        n = len(prompt_ids)
        n_responses += n
        write_parquet(pd.DataFrame({"prompt_id": prompt_ids, "sample": samples, "seed": 0, "temperature": float(t),
                                    "engine": "hf", "response": "", "n_prompt_tokens": 20, "n_tokens": 64,
                                    "finish_reason": "stop"}), results / "generations" / f"{cell}.parquet")
        (results / "benchmarks" / "generate" / cell).parent.mkdir(parents=True, exist_ok=True)
        (results / "benchmarks" / "generate" / f"{cell}.tsv").write_text("s\th:m:s\n12.0\t0:00:12\n")
        truth = rng.random(n) < rng.uniform(0.1, 0.6)
        for judge in JUDGES:
            unsafe = np.where(rng.random(n) < 0.85, truth, ~truth)
            write_parquet(pd.DataFrame({"prompt_id": prompt_ids, "sample": samples, "judge": judge,
                                        "unsafe": unsafe, "score": unsafe.astype(float), "refusal": ~unsafe,
                                        "raw": "", "error": None}),
                          results / "judgements" / judge / f"{cell}.parquet")
    return n_responses


def analyse(root: Path) -> dict[str, float]:
    results = root / "results"
    paths = [f"{m}/{q}/{v}/T{t}" for m, q, v, t in cells()]
    start = time.perf_counter()
    for cell in paths:
        judged = [pd.read_parquet(results / "judgements" / judge / f"{cell}.parquet") for judge in JUDGES]
        write_parquet(vote(judged), results / "votes" / f"{cell}.parquet")
    voted = time.perf_counter()
    out = SimpleNamespace(**{t: str(results / "tables" / f"{t}.parquet") for t in TABLES})
    aggregate(checkpoints=[str(results / "models" / m / q) for m in MODELS for q in PRECISIONS],
              prompts=[str(results / "prompts" / "harmbench.parquet")],
              votes=[str(results / "votes" / f"{c}.parquet") for c in paths],
              generations=[str(results / "generations" / f"{c}.parquet") for c in paths],
              timings=[str(results / "benchmarks" / "generate" / f"{c}.tsv") for c in paths],
              quality=[str(p) for p in sorted((results / "quality").rglob("*.json"))], judges=JUDGES,
              judgements=[str(results / "judgements" / j / f"{c}.parquet") for j in JUDGES for c in paths],
              baseline={"precision": "fp16", "kv": "fp"}, seed=1, bootstrap={"resamples": 2000}, out=out)
    done = time.perf_counter()
    return {"vote": voted - start, "aggregate": done - voted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=460, help="harmful prompts (460: ~322k responses)")
    parser.add_argument("--keep", type=Path, help="fabricate here and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="aggregate-bench-"))
    try:
        start = time.perf_counter()
        n = fabricate(root, args.prompts)
        print(f"fabricated {len(cells())} cells, {n} responses, {n * len(JUDGES)} labels "
              f"in {time.perf_counter() - start:.1f} s", flush=True)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        seconds = analyse(root)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tests = pd.read_parquet(root / "results" / "tables" / "tests.parquet")
        print(f"vote: {seconds['vote']:.1f} s   aggregate (every table, {len(tests)} tests): "
              f"{seconds['aggregate']:.1f} s   total {sum(seconds.values()):.1f} s (target < 60 s)")
        print(f"peak memory: {peak:.0f} MB (after fabricating: {before:.0f} MB; target < 4096 MB)")
    finally:
        if not args.keep:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
