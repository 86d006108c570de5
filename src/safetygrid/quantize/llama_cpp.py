"""GGUF files made with llama.cpp's own tools, as users make the files they deploy.

``convert_hf_to_gguf.py`` (from the llama.cpp sources llama-cpp-python was built from; `make
envs-llamacpp` puts it under ``<env>/share/llama.cpp``) writes the checkpoint as an F32 GGUF, and
llama.cpp's quantizer (llama-cpp-python's ``llama_model_quantize``, what ``llama-quantize`` runs)
makes the asked type from it, K-quants included, with llama.cpp's default per-tensor choices. A
model that came as a GGUF file is requantized from that file instead (see gguf_ladder.py).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from . import UnsupportedPrecision

log = logging.getLogger(__name__)

CONVERT_SCRIPT_ENV = "SAFETYGRID_LLAMA_CPP_CONVERT"
# GGUF type name -> llama_ftype in llama.h (K-quants with a size suffix name a mix of types)
FTYPES = {"F32": "LLAMA_FTYPE_ALL_F32",
          **{t: f"LLAMA_FTYPE_MOSTLY_{t}" for t in ("BF16", "Q8_0", "Q6_K", "Q5_1", "Q5_0", "Q5_K_M", "Q4_1", "Q4_0",
                                                     "Q4_K_M", "Q3_K_M", "Q2_K")}}


def convert_script() -> Path:
    return Path(os.environ.get(CONVERT_SCRIPT_ENV) or Path(sys.prefix) / "share" / "llama.cpp" / "convert_hf_to_gguf.py")


def missing_reason() -> str | None:
    """Why llama.cpp's tools cannot run in this environment, or None when they can."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        return f"llama-cpp-python is not installed in this environment ({exc}); make envs-llamacpp installs it"
    if not convert_script().exists():
        return (f"llama.cpp's convert_hf_to_gguf.py is not at {convert_script()} (make envs-llamacpp puts it there; "
                f"or set {CONVERT_SCRIPT_ENV})")
    return None


# What convert_hf_to_gguf.py prints when it cannot handle a model (llama.cpp's conversion/ sources):
# an architecture it has no class for, a tokenizer or model feature it has not implemented (the BPE
# pre-tokenizer check, rope scaling types, ...), a tensor its name map lacks. Matched on the last line
# of its stderr, with exit status 1; every other failure is the job's error.
CANNOT_CONVERT = (
    (re.compile(r"^Model (\S+) is not supported$"), "llama.cpp's converter does not know the architecture {0}"),
    (re.compile(r"^NotImplementedError: (BPE pre-tokenizer was not recognized.*)$"),
     "llama.cpp's converter does not know this tokenizer's pre-tokenizer ({0})"),
    (re.compile(r"^NotImplementedError: (.+)$"), "llama.cpp's converter has not implemented a feature of this model ({0})"),
    (re.compile(r"^ValueError: Can not map tensor (.+)$"), "llama.cpp's converter has no GGUF name for the tensor {0}"),
)


def cannot_convert_reason(returncode: int, stderr: str) -> str | None:
    """Why the converter cannot handle the model, when its failure is one of CANNOT_CONVERT; None
    for any other failure (killed, out of memory, a missing import, a full disk, ...)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    if returncode != 1 or not lines:
        return None
    last = re.sub(r"^(ERROR|CRITICAL):[\w.-]+:", "", lines[-1]).strip()  # the logger's prefix
    for pattern, reason in CANNOT_CONVERT:
        match = pattern.match(last)
        if match:
            return reason.format(match.group(1))
    return None


def convert_to_gguf(source: Path, out_file: Path) -> None:
    """``source`` (an HF checkpoint) as an F32 GGUF file, with its tokenizer and chat template."""
    command = [sys.executable, str(convert_script()), str(source), "--outtype", "f32", "--outfile", str(out_file)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
        return
    tail = "\n".join(result.stderr.strip().splitlines()[-8:])
    reason = cannot_convert_reason(result.returncode, result.stderr)
    if reason:
        raise UnsupportedPrecision(f"{reason}:\n{tail}")
    how = f"was killed by signal {-result.returncode}" if result.returncode < 0 else f"exited {result.returncode}"
    raise RuntimeError(f"llama.cpp's convert_hf_to_gguf.py {how} on {source} (not a known 'cannot handle this "
                       f"model' condition, so the job fails):\n{tail}")


def quantize_gguf(in_file: Path, out_file: Path, type_name: str, threads: int = 0,
                  allow_requantize: bool = False) -> None:
    """``in_file`` (F32, or already quantized with ``allow_requantize``) quantized to ``type_name``."""
    import llama_cpp

    if type_name not in FTYPES:
        raise UnsupportedPrecision(f"llama.cpp has no quantization type {type_name!r}; known: {', '.join(FTYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPES[type_name])
    params.nthread = threads
    params.allow_requantize = allow_requantize
    code = llama_cpp.llama_model_quantize(str(in_file).encode(), str(out_file).encode(), params)
    if code != 0 or not out_file.exists():
        # llama.cpp reports a full disk only as "basic_ios::clear: iostream error" (2026-12-07: a demo
        # on a disk with 1.3 GB left), so the message says how much room there was
        free_mib = shutil.disk_usage(out_file.parent).free / 2**20
        needs = (f"; the output needs up to {in_file.stat().st_size / 2**20:,.0f} MiB (the size of its input)"
                 if in_file.exists() else f"; its input {in_file} does not exist")
        raise RuntimeError(f"llama.cpp's quantizer failed on {type_name} (return code {code}); its log is above. "
                           f"{free_mib:,.0f} MiB free on {out_file.parent}{needs}")
