"""Judge agreement (METRICS.md): Fleiss' kappa over the judges per cell and overall, each judge's
Cohen kappa against the ensemble label, and every pair of judges' Cohen kappa (the agreement
matrix of the report).

Columns of ``judges.parquet``: scope (``cell`` | ``overall``), model, precision, kv, temperature
(empty/NaN for ``overall``), statistic (``fleiss_kappa`` | ``cohen_kappa``), judge and against
(for Cohen: the judge and the other judge or ``ensemble``; empty for Fleiss), kappa, agreement (the
share of items on which they agree; for Fleiss the mean pairwise agreement), n_items (items every
compared rater labelled: a judge's failures leave the item out), ds_sensitivity and ds_specificity
(on a judge's row against the ensemble: its P(says unsafe | unsafe) and P(says safe | safe) from a
Dawid–Skene fit over every response of the run; NaN with fewer than three judges), note (why kappa
is NA).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from ..stats.dawid_skene import MIN_JUDGES, dawid_skene
from ..stats.kappa import cohen, fleiss

ITEM = ["model", "precision", "kv", "temperature", "prompt_id", "sample"]
JUDGE_COLUMNS = ["scope", "model", "precision", "kv", "temperature", "statistic", "judge", "against",
                 "kappa", "agreement", "n_items", "ds_sensitivity", "ds_specificity", "note"]


def label_matrix(judgements: pd.DataFrame) -> pd.DataFrame:
    """Items x judges of unsafe labels as floats (NaN where the judge failed or gave none). A judge
    of the refusal axis alone (kind refusal_lm: no unsafe label, no error, a refusal one) is no
    rater of this axis and is left out, as in the vote."""
    unsafe = judgements["unsafe"].astype("Float64").astype(float)
    unsafe[judgements["error"].notna().to_numpy()] = np.nan
    refusal = judgements["refusal"] if "refusal" in judgements.columns else pd.Series(pd.NA, index=judgements.index)
    abstains = judgements["error"].isna() & judgements["unsafe"].isna() & refusal.notna()
    wide = judgements.assign(unsafe=unsafe).set_index(ITEM + ["judge"])["unsafe"].unstack("judge")
    wide = wide.drop(columns=sorted(set(judgements.loc[abstains.to_numpy(), "judge"])))
    return wide.reindex(columns=sorted(wide.columns))


def judge_agreement(judgements: pd.DataFrame, votes: pd.DataFrame) -> pd.DataFrame:
    """``judgements``: every judge's rows with the cell columns; ``votes``: the ensemble's rows with
    the cell columns (its ``unsafe`` is the ensemble label)."""
    wide = label_matrix(judgements)
    judges = list(wide.columns)
    rows: list[dict[str, Any]] = []

    def add(scope: str, cell: tuple, statistic: str, judge: str, against: str,
            result: tuple[float, float, int, str]) -> None:
        kappa, agreement, n_items, note = result
        model, precision, kv, temperature = cell if cell else (None, None, None, math.nan)
        rows.append({"scope": scope, "model": model, "precision": precision, "kv": kv,
                     "temperature": float(temperature), "statistic": statistic, "judge": judge,
                     "against": against, "kappa": kappa, "agreement": agreement, "n_items": n_items,
                     "ds_sensitivity": math.nan, "ds_specificity": math.nan, "note": note})

    complete = wide.dropna()
    for cell, block in complete.groupby(level=[0, 1, 2, 3], sort=True):
        add("cell", cell, "fleiss_kappa", "", "", fleiss(block.to_numpy()))
    add("overall", (), "fleiss_kappa", "", "", fleiss(complete.to_numpy()))

    ensemble = votes.set_index(ITEM)["unsafe"].astype("Float64").astype(float).reindex(wide.index)
    confusion = dawid_skene(wide.to_numpy(float)) if len(judges) >= MIN_JUDGES else None
    for index, judge in enumerate(judges):
        add("overall", (), "cohen_kappa", judge, "ensemble", cohen(wide[judge].to_numpy(), ensemble.to_numpy()))
        if confusion is not None:
            rows[-1].update(ds_sensitivity=float(confusion.sensitivity[index]),
                            ds_specificity=float(confusion.specificity[index]))
    for first, second in itertools.combinations(judges, 2):
        add("overall", (), "cohen_kappa", first, second, cohen(wide[first].to_numpy(), wide[second].to_numpy()))
    return pd.DataFrame(rows, columns=JUDGE_COLUMNS)


def kappa_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Judges (and the ensemble) x the same, of the overall Cohen kappas in a judges.parquet table."""
    pairs = table[(table["scope"] == "overall") & (table["statistic"] == "cohen_kappa")]
    names = sorted(set(pairs["judge"]) | (set(pairs["against"]) - {"ensemble"})) + ["ensemble"]
    matrix = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for row in pairs.itertuples():
        matrix.loc[row.judge, row.against] = matrix.loc[row.against, row.judge] = row.kappa
    return matrix
