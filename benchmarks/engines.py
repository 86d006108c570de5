"""Generated tokens per second and seconds to the first result of the HF, vLLM and llama.cpp engines
on one cell, and the workflow's overhead: the generate script (what the rule runs) against a bare
engine call on the same inputs.

usage: .venv/bin/python benchmarks/engines.py [--checkpoint DIR] [--engines hf,vllm,llama_cpp]
           [--prompts 16] [--k 4] [--tokens 64] [--device cpu|cuda] [--dtype float32|bfloat16]

With --demo: the hf engine on a config's own cells (its prompts, seeds, checkpoints under
RESULTS/models and generation settings), the batching policy before token budgets (rows alone:
batch_size rows, longest prompts first) against the config's own (token budget and padding
tolerance; on a CPU each prompt prefilled once for its samples), side by side in one process, each model loaded once and timed apart:
    .venv/bin/python benchmarks/engines.py --demo [--config config.yaml] [--results results]
           [--cells fp32/T0.0,fp32/T0.7 | all] [--repeat 1] [--also padding,cost]
It prints each policy's batches, padded tokens, seconds and generated tokens/s per cell, and how many
responses differ byte for byte between the two policies (naming each one that does).
The checkpoint defaults to results/sources/smollm2-135m. vLLM runs in .venvs/vllm (make envs-vllm);
llama.cpp serves the checkpoint's source.gguf requantized to F32 (the same weights as the others).
"Seconds to first result": engines return a cell at once, so this is interpreter start + model load
+ the whole cell.
"""

from __future__ import annotations

import argparse
import json
import os
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
    from safetygrid.engines.cell import build_requests
    import pandas as pd
    cfg = json.loads(sys.argv[1])
    prompts = pd.read_parquet(cfg["prompts"])
    requests = build_requests(prompts, "bench", 7, cfg["k"])
    engine = make_engine(cfg["engine"], cfg["checkpoint"], {"max_model_len": 1024, "n_ctx": 1024})
    settings = Settings(temperature=0.7, max_new_tokens=cfg["tokens"], batch_size=64, device=cfg["device"],
                        dtype=cfg["dtype"])
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
    # engines log to stdout too (vLLM at shutdown): the result is the last line that is our JSON
    lines = [line for line in result.stdout.splitlines() if line.startswith('{"seconds"')]
    return time.perf_counter() - started, lines[-1] if lines else ""


def gguf_checkpoint(checkpoint: Path, directory: Path) -> Path:
    """The checkpoint's source GGUF requantized to F32 by llama.cpp: the same weights the others serve."""
    from safetygrid.models.fetch import SOURCE_GGUF
    from safetygrid.quantize.llama_cpp import quantize_gguf

    out = directory / "gguf"
    out.mkdir()
    quantize_gguf(checkpoint / SOURCE_GGUF, out / "model.gguf", "F32", allow_requantize=True)
    return out


def demo_cells(config: dict, spec: str) -> list[tuple[str, str]]:
    """(precision, temperature) pairs: every one of the config's for "all", else precision/T<temperature>."""
    if spec == "all":
        return [(p, str(t)) for p in config["precisions"] for t in config["temperatures"]]
    return [(cell.split("/")[0], cell.split("/T")[1]) for cell in spec.split(",")]


def demo_policies(args: argparse.Namespace) -> None:
    """Old (rows alone) against new (the config's token budget) batching on the config's own cells."""
    import dataclasses
    import logging
    import statistics

    import torch

    from safetygrid.config import load
    from safetygrid.engines import chat_token_ids
    from safetygrid.engines.batching import plan_batches, plan_by_cost
    from safetygrid.engines.hf import HFEngine, generation_limits
    from safetygrid.engines.cell import build_requests, cell_settings
    from safetygrid.grid import samples_for
    from safetygrid.prompts import read_prompts

    logging.disable(logging.INFO)
    config = load(args.config)
    results = Path(args.results)
    prompts = read_prompts([results / "prompts" / f"{pick['promptset']}.parquet"
                            for pick in config["prompts"].values()])
    model_name, kv_name = next(iter(config["models"])), next(iter(config["kv"]))

    class LoadedOnce(HFEngine):
        """The engine with its model loaded once per checkpoint, so the timings are generation alone."""
        loaded: dict = {}

        def _load(self, settings):  # type: ignore[no-untyped-def]
            key = (self.checkpoint, settings.device, settings.dtype)
            if key not in self.loaded:
                self.loaded.clear()
                self.loaded[key] = super()._load(settings)
            return self.loaded[key]

    print(f"{platform.machine()}, {_cpu_name()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; config {args.config} "
          f"({len(prompts)} prompts, max_new_tokens {config['generation']['max_new_tokens']})")
    print(f"{'cell':24} {'policy':6} {'batches':>7} {'padded':>7} {'real':>6} {'prefill':>8} {'seconds':>8} {'tokens':>6} "
          f"{'tok/s':>6} {'CPU s':>7} {'tok/CPU s':>9}  (rows per batch)")
    for precision, temperature in demo_cells(config, args.cells):
        checkpoint = str(results / "models" / model_name / precision)
        new = cell_settings(config["generation"], config["precisions"][precision], config["kv"][kv_name],
                            float(temperature))
        # on request (--also): "padding", the token budget and padding bound with every row prefilled
        # (the policy before the shared prefill); "cost", batches cut by CpuCosts with the shared prefill
        extra = {"padding": dataclasses.replace(new, share_prompts=False), "cost": dataclasses.replace(new, planner="cost")}
        policies = {"old": dataclasses.replace(new, token_budget=None, padding_tolerance=None, share_prompts=False),
                    **{name: extra[name] for name in args.also.split(",") if name}, "new": new}
        requests = build_requests(prompts, model_name, config["seed"], samples_for(temperature, config))
        engine = LoadedOnce(checkpoint)
        model, tokenizer, device = engine._load(new)
        # the engine's own order: longest first, a prompt's samples next to each other
        encoded = sorted(((len(chat_token_ids(tokenizer, r.text, new.system_prompt)), r.prompt_id, r.sample)
                          for r in requests), key=lambda row: (-row[0], row[1], row[2]))
        lengths, row_prompts = [row[0] for row in encoded], [row[1] for row in encoded]
        # wall seconds, and CPU seconds of this process (every thread): on a machine shared with other
        # work the CPU seconds are the steadier measure of what a policy costs
        seconds: dict[str, list[float]] = {name: [] for name in policies}
        cpu_seconds: dict[str, list[float]] = {name: [] for name in policies}
        tables: dict[str, pd.DataFrame] = {}
        for repeat in range(args.repeat):
            # alternate which policy runs first: the machine's load drifts
            for name in (list(policies) if repeat % 2 == 0 else list(policies)[::-1]):
                started, cpu_started = time.perf_counter(), time.process_time()
                table = engine.generate(requests, policies[name])
                seconds[name].append(time.perf_counter() - started)
                cpu_seconds[name].append(time.process_time() - cpu_started)
                table = table.sort_values(["prompt_id", "sample"]).reset_index(drop=True)
                if name in tables and not table.equals(tables[name]):
                    print(f"    {precision}/T{temperature} {name}: run {repeat + 1} differs from run 1 (not deterministic)")
                tables.setdefault(name, table)
        cell = f"{precision}/{kv_name}/T{temperature}"
        for name, settings in policies.items():
            limits = generation_limits(settings, model, device)
            by_cost = settings.planner == "cost" and device == "cpu"  # the demo's cells: no quantized cache
            share = settings.share_prompts and device == "cpu"
            batches = (plan_by_cost(lengths, row_prompts, settings.max_new_tokens, limits) if by_cost
                       else plan_batches(lengths, settings.max_new_tokens, limits))
            padded = sum(len(b) * (lengths[b[0]] + settings.max_new_tokens) for b in batches)
            # prompt positions prefilled: each row's, or each distinct prompt's once where rows share it
            prefilled = sum((len(set(row_prompts[i] for i in b)) if share else len(b)) * lengths[b[0]] for b in batches)
            real = sum(lengths) + len(lengths) * settings.max_new_tokens
            tokens = int(tables[name]["n_tokens"].sum())
            median, cpu = statistics.median(seconds[name]), statistics.median(cpu_seconds[name])
            print(f"{cell:24} {name:6} {len(batches):7d} {padded:7d} {real:6d} {prefilled:8d} {median:8.1f} {tokens:6d} "
                  f"{tokens / median:6.1f} {cpu:7.1f} {tokens / cpu:9.1f}  ({', '.join(str(len(b)) for b in batches)})"
                  + (f"   runs: {', '.join(f'{s:.1f}' for s in seconds[name])}" if args.repeat > 1 else ""),
                  flush=True)
        print(f"{cell:24} load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} at {time.strftime('%H:%M')}")
        # the cell's generations in RESULTS, when a run left them there: the responses its labels are keyed to
        shipped_path = results / "generations" / model_name / precision / kv_name / f"T{temperature}.parquet"
        if shipped_path.exists():
            shipped = pd.read_parquet(shipped_path).sort_values(["prompt_id", "sample"]).reset_index(drop=True)
            for name in policies:
                differ = (tables[name]["response"] != shipped["response"]).sum()
                print(f"{cell:24} responses of {name} differing from {shipped_path}: {differ} of {len(shipped)}")
        old = tables["old"]
        for name in [name for name in policies if name != "old"]:
            differ = old.index[old["response"] != tables[name]["response"]]
            print(f"{cell:24} responses differing byte for byte between old and {name}: {len(differ)} of {len(old)}"
                  + "".join(f"\n    {old.at[i, 'prompt_id']} sample {old.at[i, 'sample']}: "
                            f"{old.at[i, 'response']!r} -> {tables[name].at[i, 'response']!r}" for i in differ), flush=True)


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", action="store_true", help="old against new batching on a config's own cells")
    parser.add_argument("--config", default=str(ROOT / "config.yaml"), help="--demo: the grid whose cells run")
    parser.add_argument("--results", default=str(ROOT / "results"), help="--demo: where its prompts and models are")
    parser.add_argument("--cells", default="fp32/T0.0,fp32/T0.7", help="--demo: precision/T<temperature>,... or all")
    parser.add_argument("--repeat", type=int, default=1, help="--demo: runs of each policy (the median is printed)")
    parser.add_argument("--also", default="", help="--demo: more policies beside old and new: padding (every row "
                        "prefilled), cost (batches by CpuCosts)")
    parser.add_argument("--checkpoint", default=str(ROOT / "results" / "sources" / "smollm2-135m"))
    parser.add_argument("--engines", default="hf,vllm,llama_cpp")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    if args.demo:
        demo_policies(args)
        return
    pythons = {"hf": Path(sys.executable), "vllm": VLLM_PYTHON, "llama_cpp": Path(sys.executable)}
    engines = {}
    for name in args.engines.split(","):
        if not pythons[name].exists():
            print(f"({pythons[name]} missing: {name} skipped)")
            continue
        engines[name] = pythons[name]
    device = "cuda" if args.device == "cuda" else "cpu"
    print(f"{platform.machine()}, {platform.node()}, {time.strftime('%Y-%m-%d')}; device {device}; {args.prompts} "
          f"prompts x {args.k} samples, T=0.7, {args.tokens} new tokens, {args.dtype}")
    if device == "cuda":
        import torch

        print(f"GPU: {torch.cuda.get_device_name(0)}")
    print(f"{'engine':9} {'bare s':>7} {'tokens':>7} {'tok/s*':>7} {'job s':>7} {'overhead':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        prompts = prompts_file(Path(tmp), args.prompts)
        for name, python in engines.items():
            checkpoint = str(gguf_checkpoint(Path(args.checkpoint), Path(tmp)) if name == "llama_cpp" else args.checkpoint)
            cfg = {"engine": name, "checkpoint": checkpoint, "prompts": str(prompts), "k": args.k,
                   "tokens": args.tokens, "device": device, "dtype": args.dtype}
            _, line = run(python, ["-c", BARE, json.dumps(cfg)])
            bare = json.loads(line)
            cell = {"model": "bench", "engine": name, "engine_options": {"max_model_len": 1024, "n_ctx": 1024},
                    "precision": {"method": "none", "dtype": args.dtype}, "kv": {}, "temperature": "0.7",
                    "k": args.k, "generation": {"max_new_tokens": args.tokens, "batch_size": 64, "device": device},
                    "seed": 7}
            job, _ = run(python, [str(ROOT / "workflow" / "scripts" / "generate.py"), "--checkpoint", checkpoint,
                                  "--prompts", str(prompts), "--out", str(Path(tmp) / f"{name}.parquet"),
                                  "--log", str(Path(tmp) / f"{name}.log"), "--cell", json.dumps(cell)])
            print(f"{name:9} {bare['seconds']:7.1f} {bare['tokens']:7d} {bare['tokens'] / bare['seconds']:7.1f} "
                  f"{job:7.1f} {100 * (job - bare['seconds']) / bare['seconds']:7.1f}%", flush=True)
    print("* tokens per second over the whole bare call, model load and interpreter start included")


if __name__ == "__main__":
    main()
