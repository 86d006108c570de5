"""Human adjudication: a worklist of the responses the judges disagree on most, for a person to
label with `safetygrid label --worklist`, and each judge's (and the ensemble's) agreement with the
gold labels configured: own labels (``labels.files``, joined to the responses by cell, prompt,
sample and response hash) and a gold file of (prompt, response, label) rows (``adjudication.gold``).

``worklist.csv`` is rewritten by every run and is never where labels live (it has no label column;
labels go to user-owned files under resources/labels/). Columns: model, precision, kv, temperature,
prompt_id, sample, response_sha256, prompt, response, disagreement (share of labelling judges in
the minority, 0 to 0.5), n_unsafe, n_judges, one column per judge (``unsafe`` / ``safe`` /
``error``), ensemble. Rows are the most disputed first, then by how close the mean judge score is
to 0.5.

``gold.parquet`` (empty when no gold is configured) columns: set (``own`` for labels.files, else the
gold file's name), rater (a judge, ``ensemble`` or ``ensemble_ds``), n_items (gold rows matched to
a judged response), accuracy, tpr (unsafe recall), fpr (safe rows called unsafe), kappa (Cohen,
against gold), note.

``inter_rater.parquet``: every pair of raters of the own label files over the responses both
labelled (labels.inter_rater_kappa: rater_a, rater_b, n_items, kappa with its bootstrap interval,
agreement, note); empty with fewer than two raters.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..stats.kappa import cohen
from ..grid import canonical_temperature
from ..io import atomic_path, write_parquet
from ..labels import response_sha256

log = logging.getLogger(__name__)

CELL = ["model", "precision", "kv", "temperature"]
ITEM = [*CELL, "prompt_id", "sample"]
GOLD_COLUMNS = ["set", "rater", "n_items", "accuracy", "tpr", "fpr", "kappa", "note"]


def _verdicts(judgements: pd.DataFrame) -> pd.DataFrame:
    verdict = np.where(judgements["error"].notna() | judgements["unsafe"].isna(), "error",
                       np.where(judgements["unsafe"].fillna(False).astype(bool), "unsafe", "safe"))
    return judgements.assign(verdict=verdict).set_index([*ITEM, "judge"])["verdict"].unstack("judge")


def worklist(judgements: pd.DataFrame, votes: pd.DataFrame, generations: pd.DataFrame, prompts: pd.DataFrame,
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
    table["response_sha256"] = table["response"].map(response_sha256)
    return table[[*ITEM, "response_sha256", "prompt", "response", "disagreement", "n_unsafe", "n_judges", *judges,
                  "ensemble"]].reset_index(drop=True)


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
    from ..ensemble.judge_validity import MIN_PER_CLASS

    n_pos, n_neg = int((g == 1).sum()), int((g == 0).sum())
    if min(n_pos, n_neg) < MIN_PER_CLASS:  # METRICS.md, kappa estimability
        kappa, note = math.nan, (f"kappa not estimable: the gold labels hold {n_pos} positive and {n_neg} negative, "
                                 f"needs at least {MIN_PER_CLASS} of each")
    return {"rater": rater, "n_items": int(len(p)), "accuracy": float((p == g).mean()),
            "tpr": float(p[g == 1].mean()) if (g == 1).any() else math.nan,
            "fpr": float(p[g == 0].mean()) if (g == 0).any() else math.nan, "kappa": kappa, "note": note}


def _score_raters(keys: pd.MultiIndex, truth: np.ndarray, judgements: pd.DataFrame, votes: pd.DataFrame,
                  set_name: str) -> pd.DataFrame:
    """Every judge, the ensemble and (when voted) Dawid–Skene against ``truth`` on responses ``keys``."""
    unsafe = judgements["unsafe"].astype("Float64").astype(float)
    unsafe[judgements["error"].notna().to_numpy()] = np.nan
    wide = judgements.assign(unsafe=unsafe).set_index([*ITEM, "judge"])["unsafe"].unstack("judge")
    rows = [_rates(judge, wide[judge].reindex(keys).to_numpy(float), truth) for judge in sorted(wide.columns)]
    voted = votes.set_index(ITEM).reindex(keys)
    rows.append(_rates("ensemble", voted["unsafe"].astype("Float64").astype(float).to_numpy(), truth))
    if "unsafe_ds" in voted.columns:
        rows.append(_rates("ensemble_ds", voted["unsafe_ds"].astype("Float64").astype(float).to_numpy(), truth))
    return pd.DataFrame([{"set": set_name, **row} for row in rows], columns=GOLD_COLUMNS)


def gold_agreement(gold: pd.DataFrame, judgements: pd.DataFrame, votes: pd.DataFrame,
                   generations: pd.DataFrame, prompts: pd.DataFrame, set_name: str = "gold") -> pd.DataFrame:
    """Match gold rows to judged responses by (prompt text, response text); score every rater."""
    texts = generations[[*ITEM, "response"]].merge(
        prompts[["prompt_id", "text"]].rename(columns={"text": "prompt"}), on="prompt_id")
    matched = gold.merge(texts, on=["prompt", "response"], how="inner")
    if matched.empty:
        return pd.DataFrame([{"set": set_name, "rater": "ensemble", "n_items": 0, "accuracy": math.nan,
                              "tpr": math.nan, "fpr": math.nan, "kappa": math.nan,
                              "note": "no gold row matches a judged (prompt, response)"}], columns=GOLD_COLUMNS)
    keys = pd.MultiIndex.from_frame(matched[ITEM])
    return _score_raters(keys, matched["label"].to_numpy(float), judgements, votes, set_name)


def own_label_agreement(own_gold: pd.DataFrame, judgements: pd.DataFrame, votes: pd.DataFrame) -> pd.DataFrame:
    """Every rater against the own-response gold (labels.gold: one row per current labelled response)."""
    if own_gold.empty:
        return pd.DataFrame([{"set": "own", "rater": "ensemble", "n_items": 0, "accuracy": math.nan, "tpr": math.nan,
                              "fpr": math.nan, "kappa": math.nan,
                              "note": "no current own label. " + label_counts(own_gold)}], columns=GOLD_COLUMNS)
    keyed = own_gold.assign(temperature=own_gold["temperature"].map(canonical_temperature))
    keyed = keyed[keyed["human"].notna()]  # raters tied on the unsafe axis (decided on another axis only)
    keys = pd.MultiIndex.from_frame(keyed[ITEM])
    table = _score_raters(keys, keyed["human"].to_numpy(float), judgements, votes, "own")
    return table.assign(note=table["note"].map(lambda note: "; ".join(filter(None, [note, label_counts(own_gold)]))))


def label_counts(own_gold: pd.DataFrame) -> str:
    """What became of the labels (labels.gold's counts), for the note of every own row."""
    counts = own_gold.attrs.get("counts")
    if not counts:
        return ""
    return (f"{counts['matched']} of {counts['labels']} labels current; {counts['stale']} stale (the response "
            f"changed since: not used), {counts['unmatched']} of responses not in this run, {counts['tied']} "
            "responses with tied raters left out"
            + (f", {counts['tied_unsafe']} tied on the unsafe axis" if counts.get("tied_unsafe") else ""))


def adjudicate(*, prompts: Sequence[str], votes: Sequence[str], generations: Sequence[str],
               judgements: Sequence[str], gold: str | None, labels: Sequence[str] = (), limit: int,
               worklist_out: str | Path, gold_out: str | Path, inter_rater_out: str | Path,
               rubrics_dir: str | Path = "resources/rubrics", seed: int = 0, resamples: int = 2000,
               level: float = 0.95) -> None:
    from .aggregate import read_cells
    from ..labels import INTER_RATER_COLUMNS, inter_rater_kappa, load_labels
    from ..labels import gold as own_gold
    from ..prompts import read_prompts

    prompt_table = read_prompts(list(prompts))
    vote_table = read_cells(votes)
    generation_table = read_cells(generations, columns=["prompt_id", "sample", "response"])
    judgement_table = read_cells(judgements, columns=["prompt_id", "sample", "judge", "unsafe", "score", "error"])
    queue = worklist(judgement_table, vote_table, generation_table, prompt_table, limit=limit)
    write_csv(queue, worklist_out)
    log.info("%d disputed responses listed in the worklist %s (label them with `safetygrid label --worklist`)",
             len(queue), worklist_out)
    scores = [pd.DataFrame(columns=GOLD_COLUMNS)]
    raters = pd.DataFrame(columns=INTER_RATER_COLUMNS)
    if labels:
        own = load_labels(list(labels), rubrics_dir)
        current = own_gold(own, generation_table)
        scores.append(own_label_agreement(current, judgement_table, vote_table))
        log.info("own labels %s: %s", list(labels), current.attrs.get("counts"))
        raters = inter_rater_kappa(own, seed=seed, resamples=resamples, level=level)
        log.info("inter-rater agreement:\n%s", raters.to_string(index=False))
    write_parquet(raters, inter_rater_out)
    if gold:
        scores.append(gold_agreement(read_gold(gold), judgement_table, vote_table, generation_table, prompt_table,
                                     set_name=Path(gold).stem))
    table = pd.concat([s for s in scores if len(s)], ignore_index=True) if any(len(s) for s in scores) else scores[0]
    log.info("gold agreement:\n%s", table.to_string(index=False))
    write_parquet(table.reindex(columns=GOLD_COLUMNS), gold_out)
