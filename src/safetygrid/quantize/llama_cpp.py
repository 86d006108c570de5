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


def convert_to_gguf(source: Path, out_file: Path) -> None:
    """``source`` (an HF checkpoint) as an F32 GGUF file, with its tokenizer and chat template."""
    command = [sys.executable, str(convert_script()), str(source), "--outtype", "f32", "--outfile", str(out_file)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise UnsupportedPrecision(f"llama.cpp's convert_hf_to_gguf.py cannot convert this checkpoint:\n{tail}")


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
        raise RuntimeError(f"llama.cpp's quantizer failed on {type_name} (return code {code}); its log is above")
