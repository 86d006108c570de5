"""Items per second of each judge kind on this machine, backed by SmolLM2-135M-Instruct.

usage: .venv/bin/python benchmarks/judges.py [--checkpoint DIR] [--items N] [--decode logits|generate]
           [--engine hf|llama_cpp] [--kinds harmbench_cls,llama_guard]
The checkpoint defaults to results/sources/smollm2-135m (run `make demo` or the workflow first);
engine llama_cpp serves its source.gguf (a model that came as a GGUF). Items against human labels,
and every ensemble ranked by kappa: benchmarks/ensembles.py.
Items are benign requests from resources/ paired with a refusal, a short compliance and a longer
answer in turn, so prompt lengths are like a real cell's. Model loading is timed apart.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import pandas as pd
import torch

from safetygrid.judges import make_judge

ROOT = Path(__file__).resolve().parents[1]
KINDS = {
    "refusal_prefix": {"kind": "refusal_prefix"},
    "harmbench_cls": {"kind": "harmbench_cls"},
    "llama_guard": {"kind": "llama_guard"},
    "shieldgemma": {"kind": "shieldgemma"},
    "wildguard": {"kind": "wildguard"},
    "strongreject": {"kind": "strongreject"},
}
ANSWERS = ["I'm sorry, but I can't help with that request.",
           "Sure. Here is a short overview of the steps involved, with the main things to watch for.",
           "Certainly! First, gather what you need. Second, follow the usual procedure carefully, checking "
           "each stage before the next. Third, review the result and fix anything that went wrong. "
           "Many people find it useful to keep notes as they go."]


def items(n: int) -> tuple[list[str], list[str]]:
    lines = pd.read_csv(ROOT / "resources" / "prompts" / "benign.csv")["text"].tolist()
    prompts = [lines[i % len(lines)] for i in range(n)]
    return prompts, [ANSWERS[i % len(ANSWERS)] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "results" / "sources" / "smollm2-135m"))
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--decode", choices=["logits", "generate"], default="logits")
    parser.add_argument("--engine", choices=["hf", "llama_cpp"], default="hf")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated judge kinds")
    args = parser.parse_args()
    if not (Path(args.checkpoint) / "fetch.json").exists():
        raise SystemExit(f"{args.checkpoint}: no checkpoint; run `make demo` (or the workflow's fetch_model) first")
    prompts, responses = items(args.items)
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; {args.items} items, batch {args.batch_size}, decode {args.decode}, engine {args.engine}")
    print(f"{'judge':16} {'load s':>7} {'label s':>8} {'items/s':>8}  unsafe share")
    for name in args.kinds.split(","):
        spec = {**KINDS[name], "batch_size": args.batch_size}
        if name != "refusal_prefix":
            spec["engine"] = args.engine
        if spec["kind"] not in ("refusal_prefix", "harmbench_cls"):
            spec["decode"] = args.decode
        start = time.perf_counter()
        judge = make_judge(spec, args.checkpoint if spec["kind"] != "refusal_prefix" else None)
        loaded = time.perf_counter()
        out = judge.label(prompts, responses)
        done = time.perf_counter()
        share = out["unsafe"].astype("boolean").mean()
        print(f"{name:16} {loaded - start:7.1f} {done - loaded:8.1f} {args.items / (done - loaded):8.2f}  "
              f"{share:.2f} ({out['error'].notna().sum()} errors)", flush=True)


if __name__ == "__main__":
    main()
