"""Throughput of the llama_cpp engine by the number of requests decoding together (``parallel``).

Generates the same cell (the given prompts, greedy or sampled) once per ``parallel`` value with the
engine the workflow uses, and prints generated tokens per second of wall time (load included) and
how many responses equal those of the first setting (a batched step may round differently, so a
response can change with ``parallel``; each setting is reproducible on its own).

    .venv/bin/python benchmarks/llama_cpp_parallel.py \\
        --checkpoint results/models/qwen2.5-coder-0.5b/gguf-q3_k_m \\
        --prompts results/prompts/harmbench_behaviors.parquet --parallel 1 8 16 --max-new-tokens 128
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd

from safetygrid.engines import Request, Settings, make_engine
from safetygrid.engines.numerics import cpu_isa
from safetygrid.engines.parity import cpu_model
from safetygrid.grid import sample_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a folder with model.gguf, or a .gguf file")
    parser.add_argument("--prompts", required=True, help="a prompts parquet (results/prompts/...)")
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--n-prompts", type=int, default=None, help="the first N prompts only")
    parser.add_argument("--n-ctx", type=int, default=1536)
    parser.add_argument("--seed", type=int, default=20260628, help="the config's seed (config.yaml's by default)")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", help="the model's config name (it enters each seed)")
    args = parser.parse_args()

    prompts = pd.read_parquet(args.prompts)
    if args.n_prompts:
        prompts = prompts.head(args.n_prompts)
    # the workflow's seeds, so a sampled run draws what the cell drew
    requests = [Request(p.prompt_id, s, sample_seed(args.seed, args.model, p.prompt_id, s), p.text)
                for p in prompts.itertuples() for s in range(args.samples)]
    settings = Settings(temperature=args.temperature, max_new_tokens=args.max_new_tokens)
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, {cpu_isa()}; "
          f"{len(requests)} requests, T = {args.temperature}, up to {args.max_new_tokens} new tokens")
    first: list[str] | None = None
    for parallel in args.parallel:
        engine = make_engine("llama_cpp", args.checkpoint, {"n_ctx": args.n_ctx, "parallel": parallel})
        started = time.time()
        table = engine.generate(requests, settings)
        seconds = time.time() - started
        responses = table["response"].tolist()
        first = first if first is not None else responses
        same = sum(a == b for a, b in zip(first, responses))
        print(f"parallel {parallel:>3}: {int(table['n_tokens'].sum()):>6} tokens in {seconds:7.1f} s = "
              f"{table['n_tokens'].sum() / seconds:6.1f} tokens/s; cut {float((table['finish_reason'] == 'length').mean()):.2f}; "
              f"responses equal to parallel {args.parallel[0]}'s: {same}/{len(responses)}")


if __name__ == "__main__":
    main()
