"""GGUF block quantization of a checkpoint's weights with the ``gguf`` package's own quantizers.

Each 2-D weight whose rows split into whole GGUF blocks is quantized to the asked type and
dequantized back, and the checkpoint is saved as safetensors: these are the weights transformers
serves when it loads a GGUF file (it dequantizes on load). Norms and biases stay as they are, as in
llama.cpp. K-quants need llama.cpp's quantizer, which the ``gguf`` package does not have.

Where llama.cpp is installed (``quantizer: auto``, the default, or ``quantizer: llama.cpp``) every
type is made by llama.cpp instead, as a ``model.gguf`` the llama_cpp engine serves (see llama_cpp.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..models.fetch import SOURCE_GGUF, GGUFWeightsMismatch, keeps_gguf_only, model_from_gguf
from . import UnsupportedPrecision
from .quantizer import K_QUANTS, NATIVE_TYPES, chosen

log = logging.getLogger(__name__)
__all__ = ["K_QUANTS", "NATIVE_TYPES", "quantize_checkpoint", "round_trip"]


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


def _copy_extras(source: Path, out: Path) -> None:
    for extra in ("generation_config.json", "fetch.json"):
        if (source / extra).exists():
            (out / extra).write_bytes((source / extra).read_bytes())


def quantize_checkpoint(source: Path, out: Path, spec: Mapping[str, Any]) -> dict[str, Any]:
    type_name = spec["type"]
    if type_name not in NATIVE_TYPES + K_QUANTS:
        # the schema admits only these: a spec that names another is a caller's error, not a result
        raise ValueError(f"unknown GGUF type {type_name!r}; known: {', '.join(NATIVE_TYPES + K_QUANTS)}")
    quantizer = chosen(spec)
    if quantizer == "llama.cpp":
        return _with_llama_cpp(source, out, type_name)
    if keeps_gguf_only(source):
        # config load refuses quantizer: gguf for such a model; auto lands here where llama.cpp is
        # missing on the node that runs the job
        raise RuntimeError(f"{source} keeps only its GGUF file (weights: gguf), and the gguf package quantizes "
                           "safetensors; install llama.cpp's quantizer in the quantize environment (make envs-llamacpp)")
    if type_name in K_QUANTS:
        # a property of the quantizer chosen (config load refuses it), never of the model
        raise ValueError(f"{type_name} is a K-quant, which the gguf package cannot make; only llama.cpp's quantizer "
                         "does (quantizer: llama.cpp, or auto where make envs-llamacpp installed it)")
    return _with_gguf_package(source, out, type_name)


def _with_gguf_package(source: Path, out: Path, type_name: str) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
    _copy_extras(source, out)
    log.info("%s: %d matrices quantized, %d kept (rows not a multiple of %d)", type_name, len(quantized), len(kept), block)
    return {"quantizer": "gguf", "served_as": "safetensors of the dequantized GGUF weights",
            "quantized_matrices": len(quantized), "kept_matrices": kept, "gguf_file": None}


GGUF_NAME = "model.gguf"
# what a kept GGUF's folder holds beside source.gguf (fetch_model's _keep_gguf): the tokenizer that
# perplexity and lm-eval read, and the chat template
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def _with_llama_cpp(source: Path, out: Path, type_name: str) -> dict[str, Any]:
    """``model.gguf`` as llama.cpp makes it (served by the llama_cpp engine), and beside it the
    same weights dequantized to safetensors (for transformers: the hf engine, where the precision
    asks for it), unless the source keeps only its GGUF file (``weights: gguf``)."""
    from transformers import AutoConfig, AutoTokenizer

    from .llama_cpp import convert_to_gguf, missing_reason, quantize_gguf

    reason = missing_reason()
    if reason:
        # the config asked for llama.cpp, or auto was resolved to it where the workflow started: a
        # broken install (or a node unlike the submit host), not a property of the model
        raise RuntimeError(f"{type_name} with quantizer: llama.cpp (asked, or auto as resolved where the workflow "
                           f"started), but {reason}")
    original = source / SOURCE_GGUF
    if original.exists():
        # the model came as a GGUF: llama.cpp requantizes that file, whose tokenizer metadata is the
        # publisher's (a GGUF-born tokenizer written out by transformers is not one that
        # convert_hf_to_gguf.py recognises). Its weights are the baseline's, dequantized.
        log.info("requantizing %s to %s with llama.cpp", original, type_name)
        quantize_gguf(original, out / GGUF_NAME, type_name, allow_requantize=True)
        made_from = f"{SOURCE_GGUF} (the source GGUF, requantized)"
    else:
        f32 = out / "f32.gguf.tmp"
        log.info("converting %s to an F32 GGUF with llama.cpp's convert_hf_to_gguf.py", source)
        convert_to_gguf(source, f32)
        log.info("quantizing to %s with llama.cpp", type_name)
        quantize_gguf(f32, out / GGUF_NAME, type_name)
        f32.unlink()
        made_from = "convert_hf_to_gguf.py --outtype f32"
    if keeps_gguf_only(source):
        for name in TOKENIZER_FILES:
            if (source / name).exists():
                (out / name).write_bytes((source / name).read_bytes())
        _copy_extras(source, out)
        return {"quantizer": "llama.cpp", "made_from": made_from, "served_as": f"{GGUF_NAME} (llama_cpp engine); no "
                "safetensors (the model keeps only its GGUF file: weights: gguf)", "gguf_file": GGUF_NAME,
                "tensor_types": tensor_types(out / GGUF_NAME)}
    # the weights go into a model built from the source's own config, so the checkpoint matches
    # the baseline's
    try:
        model = model_from_gguf(out / GGUF_NAME, AutoConfig.from_pretrained(source))
    except GGUFWeightsMismatch as exc:
        raise UnsupportedPrecision(f"{GGUF_NAME} does not load back into the architecture ({exc})") from exc
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    _copy_extras(source, out)
    return {"quantizer": "llama.cpp", "made_from": made_from, "served_as": f"{GGUF_NAME} (llama_cpp engine); safetensors of its "
            "dequantized weights for transformers", "gguf_file": GGUF_NAME, "tensor_types": tensor_types(out / GGUF_NAME)}


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each GGML type the file holds (llama.cpp mixes types within a K-quant)."""
    from gguf import GGUFReader

    counts: dict[str, int] = {}
    for tensor in GGUFReader(path).tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    return dict(sorted(counts.items()))
