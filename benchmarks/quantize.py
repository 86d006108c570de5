"""Seconds and peak memory of each quantization method on SmolLM2-135M, on this machine.

usage: .venv/bin/python benchmarks/quantize.py [SOURCE_CHECKPOINT]
SOURCE defaults to results/sources/smollm2-135m (run `make demo` or fetch it first). Each method
runs in a fresh process of the quantize environment, so peak RSS is that method's own.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venvs" / "quantize" / "bin" / "python"
METHODS = {
    "gptq-w4a16-g64": {"method": "gptq", "bits": 4, "group_size": 64, "calibration_samples": 64, "calibration_seq_len": 128},
    "gptq-w8a16-g64": {"method": "gptq", "bits": 8, "group_size": 64, "calibration_samples": 64, "calibration_seq_len": 128},
    "awq-w4a16-g64": {"method": "awq", "bits": 4, "group_size": 64, "calibration_samples": 64, "calibration_seq_len": 128},
    **{f"gguf-{t.lower()}": {"method": "gguf", "type": t} for t in ("BF16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0")},
}
RUN = """
import json, resource, sys
from safetygrid.quantize import quantize
status = quantize(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
print(json.dumps({"supported": status["supported"], "reason": status["reason"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    source = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "results" / "sources" / "smollm2-135m")
    if not source.exists():
        sys.exit(f"{source} does not exist: run `make demo` (or the fetch_model rule) first")
    python = PYTHON if PYTHON.exists() else Path(sys.executable)
    print(f"# quantize on {platform.processor() or platform.machine()}, {source}")
    print(f"{'method':<18} {'seconds':>8} {'peak MB':>8}  result")
    for name, spec in METHODS.items():
        with tempfile.TemporaryDirectory() as tmp:
            started = time.time()
            proc = subprocess.run([str(python), "-c", RUN, str(source), f"{tmp}/out", json.dumps(spec)],
                                  capture_output=True, text=True, cwd=ROOT)
            seconds = time.time() - started
        if proc.returncode != 0:
            print(f"{name:<18} {seconds:8.1f} {'-':>8}  failed: {proc.stderr.strip().splitlines()[-1]}")
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        outcome = "ok" if result["supported"] else f"unsupported: {result['reason']}"
        print(f"{name:<18} {seconds:8.1f} {result['peak_rss_mb']:8.0f}  {outcome}")


if __name__ == "__main__":
    main()
