"""Generated tokens per second and seconds to the first result of the HF, vLLM and llama.cpp engines
on one cell, and the workflow's overhead: the generate script (what the rule runs) against a bare
engine call on the same inputs.

usage: .venv/bin/python benchmarks/engines.py [--checkpoint DIR] [--engines hf,vllm,llama_cpp]
           [--prompts 16] [--k 4] [--tokens 64] [--device cpu|cuda] [--dtype float32|bfloat16]
The checkpoint defaults to results/sources/smollm2-135m. vLLM runs in .venvs/vllm (make envs-vllm);
llama.cpp serves the checkpoint's source.gguf requantized to F32 (the same weights as the others).
"Seconds to first result": engines return a cell at once, so this is interpreter start + model load
+ the whole cell.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "results" / "sources" / "smollm2-135m"))
    parser.add_argument("--engines", default="hf,vllm,llama_cpp")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
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
