"""One prompt pick as a table: a set's rows given stable ids, the seeded pick of ``n`` of them, and
the provenance that goes into the prompt file's metadata (files.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .files import COLUMNS, METADATA_KEY
from .sets import PROMPTSETS, check_options
from .sources import rows_of


def prompt_id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha256(text.strip().encode()).hexdigest()[:12]}"


def pick(table: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A seeded pick of ``n`` prompts; growing ``n`` keeps every prompt picked before."""
    order = table["prompt_id"].map(lambda pid: hashlib.sha256(f"{seed}:{pid}".encode()).hexdigest())
    ranked = table.assign(_order=order).sort_values("_order").drop(columns="_order")
    if n is not None:
        if n > len(ranked):
            raise ValueError(f"asked for {n} prompts of {table['promptset'].iat[0]}, it has {len(ranked)}")
        ranked = ranked.head(n)
    return ranked.reset_index(drop=True)


def load_promptset(name: str, n: int | None, seed: int, resources: str | Path = "resources",
                   options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The picked prompts of one set. ``options``: the pick's split, categories and copyright
    (harmbench_behaviors, strongreject). The table's ``attrs["sources"]`` holds the provenance
    (wheel, file, sha256s, rows left out and why) that write_parquet stores in the parquet's metadata."""
    options = dict(options or {})
    problems = check_options(name, options)
    if problems:
        raise ValueError("invalid prompt pick:\n" + "\n".join(problems))
    spec = PROMPTSETS[name]
    got = rows_of(name, Path(resources), options)
    table = pd.DataFrame(got.rows)
    if table.empty:
        raise ValueError(f"prompt set {name} has no prompts with the selection {options}")
    for column in COLUMNS:
        if column not in table:
            table[column] = None
    table = table.drop_duplicates("text", keep="first")
    if spec.id_prefix:
        table["prompt_id"] = [prompt_id(spec.id_prefix, t) for t in table["text"]]
    table["promptset"] = name
    table["harmful"] = spec.harmful
    table["behavior"] = table["behavior"].where(table["behavior"].notna(), table["text"])
    for column in ("category", "functional_category", "behavior", "context"):
        table[column] = table[column].astype("string")
    picked = pick(table[COLUMNS], n, seed)
    sources = {"promptset": name, "options": options, "n": n, "seed": seed, "files": got.sources,
               "excluded": got.excluded}
    picked.attrs["sources"] = sources
    # write_parquet stores it in the file's metadata
    picked.attrs["parquet_metadata"] = {METADATA_KEY: json.dumps(sources, sort_keys=True)}
    return picked
