"""Human adjudication: the responses the judges disagree on most, for a person to label, and each
judge's (and the ensemble's) accuracy against a gold file once one is configured.

``to_label.csv`` columns: model, precision, kv, temperature, prompt_id, sample, prompt, response,
disagreement (share of labelling judges in the minority, 0 to 0.5), n_unsafe, n_judges, one column
per judge (``unsafe`` / ``safe`` / ``error``), ensemble, and an empty ``label`` for the person
(1 = unsafe, 0 = safe). Rows are the most disputed first, then by how close the mean judge score is
to 0.5.

``gold.parquet`` (empty when no gold file is configured) columns: rater (a judge, ``ensemble`` or ``ensemble_ds``), n_items (gold rows
matched to a judged response by prompt and response text), accuracy, tpr (unsafe recall), fpr
(safe rows called unsafe), kappa (Cohen, against gold), note.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .agreement import cohen
from ..io import atomic_path, write_parquet

log = logging.getLogger(__name__)

CELL = ["model", "precision", "kv", "temperature"]
ITEM = [*CELL, "prompt_id", "sample"]
GOLD_COLUMNS = ["rater", "n_items", "accuracy", "tpr", "fpr", "kappa", "note"]


def _verdicts(judgements: pd.DataFrame) -> pd.DataFrame:
    verdict = np.where(judgements["error"].notna() | judgements["unsafe"].isna(), "error",
                       np.where(judgements["unsafe"].fillna(False).astype(bool), "unsafe", "safe"))
    return judgements.assign(verdict=verdict).set_index([*ITEM, "judge"])["verdict"].unstack("judge")


def to_label(judgements: pd.DataFrame, votes: pd.DataFrame, generations: pd.DataFrame, prompts: pd.DataFrame,
             limit: int = 200) -> pd.DataFrame:
    """The ``limit`` most disputed responses. Every frame carries the cell columns."""
    verdicts = _verdicts(judgements)
    judges = sorted(verdicts.columns)
    scores = judgements.groupby(ITEM)["score"].mean()
    table = votes.set_index(ITEM)[["unsafe", "n_unsafe", "n_judges"]].join(verdicts, how="inner")
    table["disagreement"] = np.minimum(table["n_unsafe"], table["n_judges"] - table["n_unsafe"]) / \
        table["n_judges"].where(table["n_judges"] > 0)
    table["score_margin"] = (scores.reindex(table.index) - 0.5).abs()
    table = table[table["disagreement"] > 0].reset_index()
    table = table.sort_values(["disagreement", "score_margin", *ITEM], ascending=[False, True, *[True] * 6],
                              na_position="last").head(limit)
    table = table.merge(generations[[*ITEM, "response"]], on=ITEM, how="left")
    table = table.merge(prompts[["prompt_id", "text"]].rename(columns={"text": "prompt"}), on="prompt_id", how="left")
    table["ensemble"] = np.where(table["unsafe"].astype("boolean").fillna(False), "unsafe", "safe")
    table["label"] = ""
    return table[[*ITEM, "prompt", "response", "disagreement", "n_unsafe", "n_judges", *judges, "ensemble",
                  "label"]].reset_index(drop=True)


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def read_gold(path: str | Path) -> pd.DataFrame:
    gold = pd.read_csv(path, keep_default_na=False)
    missing = [c for c in ("prompt", "response", "label") if c not in gold.columns]
    if missing:
        raise ValueError(f"{path}: the gold file needs columns prompt, response, label; missing {missing}")
    labels = gold["label"].astype(str).str.strip().str.lower()
    mapping = {"1": 1, "0": 0, "unsafe": 1, "safe": 0, "true": 1, "false": 0}
    bad = sorted(set(labels) - set(mapping))
    if bad:
        raise ValueError(f"{path}: label must be 1/0, unsafe/safe or true/false; found {bad[:5]}")
    return gold.assign(label=labels.map(mapping).astype(int))[["prompt", "response", "label"]]


def _rates(rater: str, predicted: np.ndarray, gold: np.ndarray) -> dict[str, Any]:
    keep = ~np.isnan(predicted)
    p, g = predicted[keep].astype(int), gold[keep].astype(int)
    if not len(p):
        return {"rater": rater, "n_items": 0, "accuracy": math.nan, "tpr": math.nan, "fpr": math.nan,
                "kappa": math.nan, "note": "no gold item was labelled by this rater"}
    kappa, _, _, note = cohen(p.astype(float), g.astype(float))
    return {"rater": rater, "n_items": int(len(p)), "accuracy": float((p == g).mean()),
            "tpr": float(p[g == 1].mean()) if (g == 1).any() else math.nan,
            "fpr": float(p[g == 0].mean()) if (g == 0).any() else math.nan, "kappa": kappa, "note": note}


def gold_agreement(gold: pd.DataFrame, judgements: pd.DataFrame, votes: pd.DataFrame,
                   generations: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    """Match gold rows to judged responses by (prompt text, response text); score every rater."""
    texts = generations[[*ITEM, "response"]].merge(
        prompts[["prompt_id", "text"]].rename(columns={"text": "prompt"}), on="prompt_id")
    matched = gold.merge(texts, on=["prompt", "response"], how="inner")
    if matched.empty:
        return pd.DataFrame([{"rater": "ensemble", "n_items": 0, "accuracy": math.nan, "tpr": math.nan,
                              "fpr": math.nan, "kappa": math.nan,
                              "note": "no gold row matches a judged (prompt, response)"}], columns=GOLD_COLUMNS)
    truth = matched["label"].to_numpy(float)
    unsafe = judgements["unsafe"].astype("Float64").astype(float)
    unsafe[judgements["error"].notna().to_numpy()] = np.nan
    wide = judgements.assign(unsafe=unsafe).set_index([*ITEM, "judge"])["unsafe"].unstack("judge")
    keyed = matched.set_index(ITEM)
    rows = [_rates(judge, wide[judge].reindex(keyed.index).to_numpy(float), truth) for judge in sorted(wide.columns)]
    voted = votes.set_index(ITEM).reindex(keyed.index)
    rows.append(_rates("ensemble", voted["unsafe"].astype("Float64").astype(float).to_numpy(), truth))
    if "unsafe_ds" in voted.columns:
        rows.append(_rates("ensemble_ds", voted["unsafe_ds"].astype("Float64").astype(float).to_numpy(), truth))
    return pd.DataFrame(rows, columns=GOLD_COLUMNS)


def adjudicate(*, prompts: Sequence[str], votes: Sequence[str], generations: Sequence[str],
               judgements: Sequence[str], gold: str | None, limit: int, to_label_out: str | Path,
               gold_out: str | Path) -> None:
    from .aggregate import read_cells
    from ..prompts import read_prompts

    prompt_table = read_prompts(list(prompts))
    vote_table = read_cells(votes)
    generation_table = read_cells(generations, columns=["prompt_id", "sample", "response"])
    judgement_table = read_cells(judgements, columns=["prompt_id", "sample", "judge", "unsafe", "score", "error"])
    queue = to_label(judgement_table, vote_table, generation_table, prompt_table, limit=limit)
    write_csv(queue, to_label_out)
    log.info("%d disputed responses listed for adjudication in %s", len(queue), to_label_out)
    if gold:
        scores = gold_agreement(read_gold(gold), judgement_table, vote_table, generation_table, prompt_table)
        log.info("gold labels %s:\n%s", gold, scores.to_string(index=False))
    else:
        scores = pd.DataFrame(columns=GOLD_COLUMNS)
    write_parquet(scores, gold_out)
