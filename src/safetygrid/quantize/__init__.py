"""The quantize step: one precision entry applied to one fetched checkpoint.

Every outcome writes ``status.json`` ({supported, reason, method, args, seconds, sha256}). A method
that cannot handle the architecture is a result, not a crash: the cell is recorded as unsupported
with the reason, and the rest of the grid goes on. Only these known conditions are such results
(each raises UnsupportedPrecision, each has a test):

- gptq, awq: ``group_size`` does not divide the input width of a linear layer (llmcompressor.py)
- gguf with the gguf package: no weight matrix has rows that split into the type's blocks
- gguf with llama.cpp: its converter does not know the architecture, the tokenizer's pre-tokenizer or
  a tensor's name, or a feature of the model (llama_cpp.py); or the GGUF it made does not load back
  into the architecture

Anything else (out of memory, a missing import, a full disk, a converter that dies another way, a
config that asks for the impossible) fails the job with its error.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

from ..io import atomic_dir, write_json
from ..models.fetch import checkpoint_sha256


class UnsupportedPrecision(Exception):
    """The method cannot produce this precision for this model; the message is the reason."""


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        # dotfiles are bookkeeping (Snakemake's .snakemake_timestamp): a hard link would make
        # touching the copy touch the source, and the source would look newer than its products.
        # A kept GGUF source is not part of the checkpoint that is served.
        if path.is_file() and not path.name.startswith(".") and path.suffix != ".gguf":
            try:
                os.link(path, dst / path.name)
            except OSError:
                shutil.copy2(path, dst / path.name)


def _apply(method: str, source: Path, out: Path, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Write the precision's checkpoint into ``out``; return details for status.json."""
    if method == "none":
        _link_or_copy(source, out)
        return {"quantizer": None}
    if method in ("gptq", "awq"):
        from .llmcompressor import compress

        from ..cpu_numerics import describe

        compress(method, source, out, spec)
        # the checkpoint's bytes depend on the kernels that made it (cpu_numerics.py)
        return {"quantizer": "llm-compressor", "format": "compressed-tensors", "cpu_numerics": describe()}
    if method == "gguf":
        from .gguf_ladder import quantize_checkpoint

        return quantize_checkpoint(source, out, spec)
    raise ValueError(f"unknown method {method!r}; known: none, gptq, awq, gguf")


def quantize(source: str | Path, out_dir: str | Path, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``out_dir`` with a checkpoint (when supported) and its status.json; return the status."""
    source, out_dir = Path(source), Path(out_dir)
    method = spec["method"]
    args = {k: v for k, v in spec.items() if k != "method"}
    started = time.time()
    status: dict[str, Any] = {"method": method, "args": args, "supported": True, "reason": None}
    with atomic_dir(out_dir) as tmp:
        try:
            status["details"] = _apply(method, source, tmp, spec)
        except UnsupportedPrecision as exc:
            # only the documented reasons a method cannot handle a model are raised as this (a group
            # size that does not divide a width, a type the quantizer lacks, an architecture the
            # converter does not know); any other exception is a bug or a broken install and fails
            # the job with its traceback, so it can never turn into a result
            status.update(supported=False, reason=str(exc), traceback=traceback.format_exc())
        # what made the checkpoint; a GGUF precision's `auto` resolution is in args (quantizer.py)
        status["quantizer"] = (status.get("details") or {}).get("quantizer")
        if not status["supported"]:
            for path in list(tmp.iterdir()):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        status["seconds"] = round(time.time() - started, 1)
        status["sha256"] = checkpoint_sha256(tmp) if status["supported"] else None
        write_json(status, tmp / "status.json")
    return status
