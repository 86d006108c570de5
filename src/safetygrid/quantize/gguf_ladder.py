"""GGUF block quantization of a checkpoint's weights with the ``gguf`` package's own quantizers.

Each 2-D weight whose rows split into whole GGUF blocks is quantized to the asked type and
dequantized back, and the checkpoint is saved as safetensors: these are the weights transformers
serves when it loads a GGUF file (it dequantizes on load). Norms and biases stay as they are, as in
llama.cpp. K-quants need llama.cpp's quantizer, which the ``gguf`` package does not have.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import UnsupportedPrecision

log = logging.getLogger(__name__)

# the ladder the package can quantize itself, in order of precision
NATIVE_TYPES = ("BF16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0")
K_QUANTS = ("Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")


def round_trip(weight: np.ndarray, type_name: str) -> np.ndarray:
    """``weight`` quantized to ``type_name`` and back, as float32."""
    from gguf import GGMLQuantizationType
    from gguf.constants import GGML_QUANT_SIZES
    from gguf.quants import dequantize, quantize

    qtype = GGMLQuantizationType[type_name]
    block, _ = GGML_QUANT_SIZES[qtype]
    if weight.shape[-1] % block:
        raise ValueError(f"row width {weight.shape[-1]} is not a multiple of the {type_name} block {block}")
    return dequantize(quantize(np.ascontiguousarray(weight, dtype=np.float32), qtype), qtype).astype(np.float32)


def block_size(type_name: str) -> int:
    from gguf import GGMLQuantizationType
    from gguf.constants import GGML_QUANT_SIZES

    return GGML_QUANT_SIZES[GGMLQuantizationType[type_name]][0]


def quantize_checkpoint(source: Path, out: Path, spec: Mapping[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    type_name = spec["type"]
    if type_name in K_QUANTS:
        raise UnsupportedPrecision(
            f"{type_name} is a K-quant: the gguf package has no quantizer for it and llama.cpp's "
            "(llama-cpp-python's llama_model_quantize) is not installed in this environment")
    if type_name not in NATIVE_TYPES:
        raise UnsupportedPrecision(f"unknown GGUF type {type_name!r}")
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    block = block_size(type_name)
    quantized, kept = [], []
    with torch.no_grad():
        seen: set[int] = set()
        for name, param in model.named_parameters():
            if param.ndim != 2 or id(param) in seen:  # tied embeddings: quantize once
                continue
            seen.add(id(param))
            if param.shape[-1] % block:
                kept.append(name)
                continue
            param.copy_(torch.from_numpy(round_trip(param.numpy(), type_name)))
            quantized.append(name)
    if not quantized:
        raise UnsupportedPrecision(f"no weight of this model has rows that split into {type_name} blocks of {block}")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for extra in ("generation_config.json", "fetch.json"):
        if (source / extra).exists():
            (out / extra).write_bytes((source / extra).read_bytes())
    log.info("%s: %d matrices quantized, %d kept (rows not a multiple of %d)", type_name, len(quantized), len(kept), block)
    return {"served_as": "safetensors of the dequantized GGUF weights", "quantized_matrices": len(quantized),
            "kept_matrices": kept, "gguf_file": None}
