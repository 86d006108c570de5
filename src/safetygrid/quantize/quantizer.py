"""Which quantizer makes a GGUF precision, decided once and recorded.

``quantizer: auto`` means llama.cpp where the quantize environment has it, else the gguf package.
The two make different checkpoints of one type, so the workflow resolves ``auto`` once, where it
starts, in the quantize job's own interpreter; puts the answer into the job's params (a change of
answer reruns the job) and status.json; and refuses to run a grid whose finished checkpoints were
made by the other quantizer, rather than mix the two in one study.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

# the ladder the gguf package can quantize itself, in order of precision (F32: unquantized, a full-precision
# baseline the llama_cpp engine serves); K-quants need llama.cpp
NATIVE_TYPES = ("F32", "BF16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0")
K_QUANTS = ("Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")
# the key params and status.json carry the resolution under (``quantizer`` keeps what was asked)
RESOLVED_KEY = "resolved_quantizer"


@dataclass(frozen=True)
class Resolution:
    quantizer: str  # "llama.cpp" or "gguf"
    why: str  # what decided it, for the error that names it


def resolve_here() -> Resolution:
    """What ``auto`` means in this interpreter."""
    from .llama_cpp import missing_reason

    reason = missing_reason()
    if reason is None:
        return Resolution("llama.cpp", "llama-cpp-python and convert_hf_to_gguf.py are installed")
    return Resolution("gguf", reason)


def resolve_in(python: str) -> Resolution:
    """What ``auto`` means in the environment of ``python`` (the quantize jobs' interpreter)."""
    code = ("import json; from safetygrid.quantize.quantizer import resolve_here; r = resolve_here(); "
            "print(json.dumps([r.quantizer, r.why]))")
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"could not ask {python} which quantizer `auto` means there:\n{proc.stderr[-2000:]}")
    quantizer, why = json.loads(proc.stdout.strip().splitlines()[-1])
    return Resolution(quantizer, why)


def chosen(spec: Mapping[str, Any]) -> str:
    """The quantizer a GGUF spec runs: the resolution the workflow recorded in it, what it names,
    or (a spec that says auto and was not resolved: a direct library call) this interpreter's."""
    if spec.get(RESOLVED_KEY):
        return str(spec[RESOLVED_KEY])
    asked = str(spec.get("quantizer", "auto"))
    return resolve_here().quantizer if asked == "auto" else asked


def resolved_spec(spec: Mapping[str, Any], resolution: Resolution | None) -> dict[str, Any]:
    """The quantize job's spec: a GGUF precision with ``quantizer: auto`` carries its resolution."""
    out = dict(spec)
    if spec.get("method") == "gguf" and spec.get("quantizer", "auto") == "auto" and resolution is not None:
        out[RESOLVED_KEY] = resolution.quantizer
    return out


def recorded(status: Mapping[str, Any]) -> str | None:
    """The quantizer a finished checkpoint's status.json says made it (None when it does not say)."""
    args = status.get("args") or {}
    return args.get(RESOLVED_KEY) or status.get("quantizer")


def needs_resolution(precisions: Mapping[str, Mapping[str, Any]]) -> bool:
    return any(p["method"] == "gguf" and p.get("quantizer", "auto") == "auto" for p in precisions.values())


def resolution_problems(precisions: Mapping[str, Mapping[str, Any]], models: Iterable[str], resolution: Resolution,
                        results: str | Path = "results") -> list[str]:
    """One line per GGUF precision with ``quantizer: auto`` that cannot run here as resolved: a K-quant
    where auto means the gguf package (which has no K-quants), or finished checkpoints that the other
    quantizer made. Each line names the key, both resolutions and how to proceed."""
    problems = []
    for name, spec in precisions.items():
        if spec["method"] != "gguf" or spec.get("quantizer", "auto") != "auto":
            continue
        if resolution.quantizer == "gguf" and spec["type"] in K_QUANTS:
            problems.append(f"  precisions.{name}.quantizer: auto resolves to the gguf package here ({resolution.why}), "
                            f"which has no quantizer for the K-quant {spec['type']}; install llama.cpp "
                            "(make envs-llamacpp) or drop the precision")
            continue
        made_by = {}
        for model in models:
            status_file = Path(results) / "models" / model / name / "status.json"
            if status_file.exists():
                made = recorded(json.loads(status_file.read_text()))
                if made and made != resolution.quantizer:
                    made_by[str(status_file.parent)] = made
        if made_by:
            where = ", ".join(f"{path} ({made})" for path, made in sorted(made_by.items()))
            other = next(iter(made_by.values()))
            problems.append(
                f"  precisions.{name}.quantizer: auto resolves to {resolution.quantizer} on this machine "
                f"({resolution.why}), but finished checkpoints were made by {other}: {where}. Mixing them would "
                f"compare checkpoints of two quantizers. Run where auto resolves to {other} (for llama.cpp: make "
                f"envs-llamacpp), or set precisions.{name}.quantizer: {resolution.quantizer} to remake every "
                "model's checkpoint of this precision with it")
    return problems
