"""GPTQ and AWQ weight-only quantization through llm-compressor, saved as compressed-tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..cpu_numerics import warn_if_unpinned
from . import UnsupportedPrecision


def calibration_windows(token_ids: list[int], n_samples: int, seq_len: int) -> list[list[int]]:
    """``n_samples`` windows of ``seq_len`` tokens spread evenly over the text (overlapping if short)."""
    if len(token_ids) < seq_len:
        # a text too short for the config's windows is the config's error, not the model's
        raise ValueError(f"the calibration text has {len(token_ids)} tokens, fewer than calibration_seq_len={seq_len}; "
                         "give the precision a longer calibration_text or a smaller calibration_seq_len")
    last_start = len(token_ids) - seq_len
    if n_samples == 1:
        starts = [0]
    else:
        starts = [round(i * last_start / (n_samples - 1)) for i in range(n_samples)]
    return [token_ids[s:s + seq_len] for s in starts]


def _scheme(spec: Mapping[str, Any]):  # type: ignore[no-untyped-def]
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    group_size = spec.get("group_size")
    weights = QuantizationArgs(
        num_bits=int(spec["bits"]),
        type="int",
        symmetric=bool(spec.get("symmetric", True)),
        strategy="group" if group_size else "channel",
        group_size=group_size,
    )
    return QuantizationScheme(targets=["Linear"], weights=weights)


def _check_widths(model: Any, spec: Mapping[str, Any]) -> None:
    import torch

    group_size = spec.get("group_size")
    if not group_size:
        return
    ignore = set(spec.get("ignore", []))
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] not in ignore and name not in ignore:
            if module.in_features % group_size:
                raise UnsupportedPrecision(
                    f"group_size {group_size} does not divide the input width {module.in_features} "
                    f"of {name}; use a divisor of it or drop group_size for per-channel scales")


def _skip_pinning_without_accelerator() -> None:
    """llm-compressor 0.14's AWQ pins cached activations unconditionally, and ``pin_memory`` raises
    when torch has no accelerator. Pinning only speeds host-to-device copies, so on a CPU-only
    machine it is safely a no-op."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if torch.accelerator.is_available() or getattr(IntermediatesCache, "_safetygrid_cpu", False):
        return
    IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None  # type: ignore[method-assign]
    IntermediatesCache._safetygrid_cpu = True  # type: ignore[attr-defined]


def compress(method: str, source: Path, out: Path, spec: Mapping[str, Any]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    _check_widths(model, spec)  # before importing llm-compressor: a shape mismatch needs no calibration

    from datasets import Dataset
    from llmcompressor import oneshot

    _skip_pinning_without_accelerator()
    if not torch.accelerator.is_available():
        # llm-compressor solves on the CPU here: float32 linear algebra whose bits follow the kernels
        warn_if_unpinned(f"the {method.upper()} solve")

    text = Path(spec.get("calibration_text", "resources/calibration.txt")).read_text()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    windows = calibration_windows(ids, int(spec.get("calibration_samples", 64)),
                                  int(spec.get("calibration_seq_len", 256)))
    dataset = Dataset.from_dict({"input_ids": windows, "attention_mask": [[1] * len(w) for w in windows]})

    ignore = list(spec.get("ignore", ["lm_head"]))
    scheme = {"group_0": _scheme(spec)}
    if method == "gptq":
        from llmcompressor.modifiers.gptq import GPTQModifier

        recipe = GPTQModifier(config_groups=scheme, ignore=ignore)
    else:
        from llmcompressor.modifiers.awq import AWQModifier

        recipe = AWQModifier(config_groups=scheme, ignore=ignore)

    oneshot(model=model, dataset=dataset, recipe=recipe, num_calibration_samples=len(windows),
            max_seq_length=len(windows[0]), shuffle_calibration_samples=False)
    model.save_pretrained(out, save_compressed=True)
    tokenizer.save_pretrained(out)
    for extra in ("generation_config.json", "fetch.json"):
        if (source / extra).exists() and not (out / extra).exists():
            (out / extra).write_bytes((source / extra).read_bytes())
