"""The prompt file, ``results/prompts/{promptset}.parquet``: its columns, the provenance kept in its
metadata, and reading a run's prompt files back.

Columns: prompt_id, promptset, text (what the model is sent), category (null when the source has
none), harmful (bool), source, functional_category (HarmBench's standard / contextual / copyright;
null elsewhere), behavior (the request without its context: what a judge is asked about) and context
(a contextual behaviour's context, null elsewhere). The parquet's schema metadata holds, under
``safetygrid.sources``, the wheel and file each prompt came from (package, version, sha256 of the
wheel and of the file) and the rows a selection left out, with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

COLUMNS = ["prompt_id", "promptset", "text", "category", "harmful", "source", "functional_category", "behavior",
           "context"]
METADATA_KEY = b"safetygrid.sources"


def prompt_sources(path: str | Path) -> dict[str, Any] | None:
    """The provenance stored in a prompt file; None for a file written before it was recorded."""
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(METADATA_KEY)
    return json.loads(raw) if raw else None


def read_prompts(paths: list[str | Path]) -> pd.DataFrame:
    """All prompts of a run, harmful and benign, from the prepare rules' outputs. Files written
    before the functional_category, behavior and context columns existed get them (null; behavior
    is the text)."""
    frames = []
    for p in paths:
        frame = pd.read_parquet(p)
        for column in ("functional_category", "behavior", "context"):
            if column not in frame:
                frame[column] = pd.Series(pd.NA, index=frame.index, dtype="string")
        frame["behavior"] = frame["behavior"].fillna(frame["text"])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
