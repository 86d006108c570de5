"""One cell's generations. A command line rather than a Snakemake script: the vLLM engine runs in
its own environment (.venvs/vllm), and vLLM's worker processes need the __main__ guard."""
import argparse
import json
import logging
import sys

from safetygrid.cpu_numerics import pin_cpu_numerics
from safetygrid.engines import EngineUnavailable, OutOfMemory
from safetygrid.engines.cell import generate_cell
from safetygrid.io import write_parquet
from safetygrid.logs import to_file
from safetygrid.prompts import read_prompts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--prompts", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--log")
    parser.add_argument("--cell", required=True, help="the cell's own settings, as JSON")
    parser.add_argument("--batch-divisor", type=int, default=1, help="a retry's batch is the configured one divided by this")
    args = parser.parse_args()
    to_file(args.log)
    cell = json.loads(args.cell)
    generation = dict(cell["generation"])
    if cell["engine"] == "hf":
        # before torch is imported (the imports above do not): the hf engine's CPU kernels are fixed, so
        # its rows have the same text on every x86-64 CPU (safetygrid/cpu_numerics.py). vLLM and
        # llama.cpp choose their kernels by their own rules (docs/reproducibility.md)
        pin_cpu_numerics(generation.get("device", "auto"))
    if args.batch_divisor > 1:
        logging.getLogger("generate").warning("retry: batch size %s divided by %d",
                                              generation.get("batch_size", "the device's default"), args.batch_divisor)
    try:
        table = generate_cell(
            args.checkpoint, read_prompts(args.prompts), model=cell["model"], engine=cell["engine"],
            temperature=float(cell["temperature"]), k=cell["k"], seed=cell["seed"], generation=generation,
            precision=cell["precision"], kv=cell["kv"], engine_options=cell["engine_options"],
            batch_divisor=args.batch_divisor,
        )
    except EngineUnavailable as exc:
        logging.getLogger("generate").error("cell %s (engine %s) cannot run: %s", cell.get("cell", cell["model"]),
                                            cell["engine"], exc)
        sys.exit(1)
    except OutOfMemory as exc:
        logging.getLogger("generate").error(
            "cell %s (engine %s) ran out of memory: %s. Snakemake retries it with half the batch (retries: 2); "
            "if it still fails lower generation.batch_size, or give the job more memory (mem_mb) or a larger "
            "GPU", cell.get("cell", cell["model"]), cell["engine"], exc)
        sys.exit(1)
    write_parquet(table, args.out)


if __name__ == "__main__":
    main()
