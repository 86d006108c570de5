"""Cross-fitted ensemble labels of the human-labelled responses (METRICS.md, prediction-powered
estimates): where the votes' ``unsafe`` comes from thresholds or a stack fitted on the run's own
labels (``results/calibration/ensemble.json`` with ``fitted_on: own``), the correction term of a
prediction-powered estimate would average residuals of a fit to the same labels, which shrinks them
towards zero. Each labelled response is therefore re-voted with a calibration fitted on the folds
that hold none of its prompt (k folds by prompt, ``validation.folds``); every other response keeps
the vote made with the fit on all labels.

The refit is the same as judge validity's (ensemble.judge_validity): each calibrated judge's
threshold by ``fit_threshold`` on the judge's score, the stack by ``fit_stack`` on the judges'
scores (their 0/1 labels for judges without scores), on the own labels of every draw (random and
targeted), the human label being the unsafe axis.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .calibration import fit_threshold, prompt_fold_ids
from .stack import fit_stack, judge_features
from .voting import vote

log = logging.getLogger(__name__)
CELL_KEYS = ["model", "precision", "kv", "temperature"]
ITEM_KEYS = [*CELL_KEYS, "prompt_id", "sample"]


def cross_fitting_needed(calibration: Mapping[str, Any] | None, lead: str = "majority") -> bool:
    """Whether the votes' ``unsafe`` depends on a fit to the run's own labels."""
    if not calibration or calibration.get("fitted_on") != "own":
        return False
    return bool(calibration.get("judges")) or (lead == "stacked" and bool(calibration.get("stack")))


def _human_unsafe(gold: pd.DataFrame) -> pd.Series:
    column = gold["unsafe"] if "unsafe" in gold else gold["human"]
    return column.astype("Float64").astype(float)


def _wide(items: pd.DataFrame, judgements: pd.DataFrame, column: str, judges: list[str]) -> pd.DataFrame:
    values = judgements[column].astype("Float64").astype(float).where(judgements["error"].isna())
    wide = judgements.assign(value=values).pivot_table(index=ITEM_KEYS, columns="judge", values="value",
                                                       aggfunc="first", dropna=False)
    return wide.reindex(pd.MultiIndex.from_frame(items[ITEM_KEYS])).reindex(columns=judges)


def _fold_calibration(calibration: Mapping[str, Any], scores: pd.DataFrame, raw: pd.DataFrame, y: np.ndarray,
                      train: np.ndarray) -> dict[str, Any]:
    thresholds = {judge: {"threshold": fit_threshold(scores[judge].to_numpy(float)[train], y[train])}
                  for judge in calibration.get("judges", {})}
    stack = calibration.get("stack")
    if stack:
        names, label_judges = list(stack["judges"]), list(stack.get("label_judges", []))
        features = judge_features(scores[names], raw[names], label_judges)
        stack = {**fit_stack(features[train], y[train], names).to_dict(), "label_judges": label_judges}
    return {**calibration, "judges": thresholds, "stack": stack}


def cross_fitted_unsafe(judgements: pd.DataFrame, gold: pd.DataFrame, calibration: Mapping[str, Any], *,
                        vote_threshold: float = 0.5, lead: str = "majority", folds: int = 5,
                        seed: int = 0) -> pd.DataFrame:
    """Per labelled response of ``gold`` (cell columns with temperature a float, prompt_id, sample,
    unsafe or human): the ensemble's ``unsafe`` voted with a calibration fitted on the other prompt
    folds. ``judgements``: every judge's rows of the labelled cells (cell columns, prompt_id, sample,
    judge, unsafe, score, refusal, error)."""
    gold = gold.assign(temperature=gold["temperature"].astype(float), y=_human_unsafe(gold))
    gold = gold[gold["y"].notna()].drop_duplicates(ITEM_KEYS).reset_index(drop=True)
    judgements = judgements.assign(temperature=judgements["temperature"].astype(float))
    judges = sorted(judgements["judge"].unique())
    scores, raw = _wide(gold, judgements, "score", judges), _wide(gold, judgements, "unsafe", judges)
    y = gold["y"].to_numpy(int)
    fold = prompt_fold_ids(gold["prompt_id"].to_numpy(), folds, seed)
    by_cell = dict(tuple(judgements.groupby(CELL_KEYS, sort=False)))
    out = []
    for f in np.unique(fold):
        held = gold[fold == f]
        fitted = _fold_calibration(calibration, scores, raw, y, np.flatnonzero(fold != f))
        for key, items in held.groupby(CELL_KEYS, sort=False):
            rows = by_cell.get(key)
            if rows is None:
                continue
            votes = vote([rows.drop(columns=CELL_KEYS)], vote_threshold, calibration=fitted, lead=lead)
            out.append(items[ITEM_KEYS].merge(votes[["prompt_id", "sample", "unsafe"]], on=["prompt_id", "sample"],
                                              how="inner"))
    if not out:
        return pd.DataFrame({**{k: gold[k].iloc[:0] for k in ITEM_KEYS}, "unsafe": pd.array([], dtype="boolean")})
    return pd.concat(out, ignore_index=True)


def with_cross_fitted_labels(votes: pd.DataFrame, judgements: Any, gold: pd.DataFrame,
                             calibration: Mapping[str, Any] | None, *, vote_threshold: float = 0.5,
                             lead: str = "majority", folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """``votes`` (cell columns, prompt_id, sample, unsafe, ...) with ``unsafe`` of every labelled
    response replaced by its cross-fitted vote, where the votes depend on a fit to own labels;
    unchanged otherwise. ``judgements``: a frame as ``cross_fitted_unsafe`` reads, or a callable
    returning it for the labelled cells (read only when needed)."""
    if not len(gold) or not len(votes) or not cross_fitting_needed(calibration, lead):
        return votes
    frame = judgements() if callable(judgements) else judgements
    try:
        crossed = cross_fitted_unsafe(frame, gold, calibration, vote_threshold=vote_threshold, lead=lead,
                                      folds=folds, seed=seed)
    except ValueError as error:  # too few prompts to fold: the estimates would use in-sample labels
        log.warning("no cross-fitted judge labels (%s): the prediction-powered estimates use the labels of the "
                    "fit on all own labels", error)
        return votes
    keys = votes[ITEM_KEYS].assign(temperature=votes["temperature"].astype(float))
    merged = keys.merge(crossed.rename(columns={"unsafe": "crossed"}), on=ITEM_KEYS, how="left")
    replace = merged["crossed"].notna().to_numpy()
    out = votes.copy()
    unsafe = out["unsafe"].astype("boolean").to_numpy(copy=True)
    unsafe[replace] = merged["crossed"].astype("boolean").to_numpy()[replace]
    out["unsafe"] = pd.array(unsafe, dtype="boolean")
    log.info("%d labelled responses' judge labels cross-fitted by prompt (%d folds)", int(replace.sum()), folds)
    return out
