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
targeted), the human label being the unsafe axis. A judge whose ``refusal_threshold`` was fitted on
own refusal labels (``refusal_fitted_on: own``) is refitted the same way on its ``refusal_score``
against the training folds' refusal labels, so the corrected refusal rate (rr_pp) never averages
residuals of a threshold fitted to the labels it corrects with either.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .calibration import fit_threshold, prompt_fold_ids
from .stack import fit_stack, judge_features
from .voting import vote

log = logging.getLogger(__name__)
CELL_KEYS = ["model", "precision", "kv", "temperature"]
ITEM_KEYS = [*CELL_KEYS, "prompt_id", "sample"]


def _own_refusal_judges(calibration: Mapping[str, Any]) -> list[str]:
    return sorted(judge for judge, fit in calibration.get("judges", {}).items()
                  if fit.get("refusal_threshold") is not None and fit.get("refusal_fitted_on") == "own")


def _unsafe_fitted_on_own(calibration: Mapping[str, Any], lead: str) -> bool:
    if calibration.get("fitted_on") != "own":
        return False
    unsafe_judges = any(fit.get("threshold") is not None for fit in calibration.get("judges", {}).values())
    return unsafe_judges or (lead == "stacked" and bool(calibration.get("stack")))


def cross_fitting_needed(calibration: Mapping[str, Any] | None, lead: str = "majority") -> bool:
    """Whether the votes' ``unsafe`` or ``refusal`` depends on a fit to the run's own labels."""
    if not calibration:
        return False
    return _unsafe_fitted_on_own(calibration, lead) or bool(_own_refusal_judges(calibration))


def _human_axis(gold: pd.DataFrame, axis: str) -> pd.Series:
    if axis in gold:
        column = gold[axis]
    elif axis == "unsafe" and "human" in gold:
        column = gold["human"]
    else:
        return pd.Series(np.nan, index=gold.index)
    return column.astype("Float64").astype(float)


def _wide(items: pd.DataFrame, judgements: pd.DataFrame, column: str, judges: list[str]) -> pd.DataFrame:
    values = judgements[column].astype("Float64").astype(float).where(judgements["error"].isna())
    wide = judgements.assign(value=values).pivot_table(index=ITEM_KEYS, columns="judge", values="value",
                                                       aggfunc="first", dropna=False)
    return wide.reindex(pd.MultiIndex.from_frame(items[ITEM_KEYS])).reindex(columns=judges)


def _fold_calibration(calibration: Mapping[str, Any], lead: str, scores: pd.DataFrame, raw: pd.DataFrame,
                      refusal_scores: pd.DataFrame, y: np.ndarray, y_refusal: np.ndarray,
                      train: np.ndarray) -> dict[str, Any]:
    """The calibration refitted on the ``train`` rows: what was fitted on own labels is refitted
    (unsafe thresholds and stack on the unsafe labels, own refusal thresholds on the refusal labels;
    rows without a label of that axis take no part); everything else is kept as it was."""
    judges = {judge: dict(fit) for judge, fit in calibration.get("judges", {}).items()}
    stack = calibration.get("stack")
    if _unsafe_fitted_on_own(calibration, lead):
        unsafe_train = train[np.isfinite(y[train])]
        labels = y[unsafe_train].astype(int)
        for judge, fit in judges.items():
            if fit.get("threshold") is not None:
                fit["threshold"] = fit_threshold(scores[judge].to_numpy(float)[unsafe_train], labels)
        if stack:
            names, label_judges = list(stack["judges"]), list(stack.get("label_judges", []))
            features = judge_features(scores[names], raw[names], label_judges)
            stack = {**fit_stack(features[unsafe_train], labels, names).to_dict(), "label_judges": label_judges}
    refusal_train = train[np.isfinite(y_refusal[train])]
    for judge in _own_refusal_judges(calibration):
        judges[judge]["refusal_threshold"] = fit_threshold(refusal_scores[judge].to_numpy(float)[refusal_train],
                                                           y_refusal[refusal_train].astype(int))
    return {**calibration, "judges": judges, "stack": stack}


def cross_fitted_labels(judgements: pd.DataFrame, gold: pd.DataFrame, calibration: Mapping[str, Any], *,
                        vote_threshold: float = 0.5, lead: str = "majority", folds: int = 5, seed: int = 0,
                        refusal_judges: Sequence[str] | None = None) -> pd.DataFrame:
    """Per labelled response of ``gold`` (cell columns with temperature a float, prompt_id, sample,
    and unsafe or human and/or refusal): the ensemble's ``unsafe`` and ``refusal`` voted with a
    calibration fitted on the other prompt folds. ``judgements``: every judge's rows of the
    labelled cells (cell columns, prompt_id, sample, judge, unsafe, score, refusal, refusal_score
    where judges give it, error). ``refusal_judges`` as ``vote`` takes it."""
    gold = gold.assign(temperature=gold["temperature"].astype(float), y=_human_axis(gold, "unsafe"),
                       y_refusal=_human_axis(gold, "refusal"))
    gold = gold[gold["y"].notna() | gold["y_refusal"].notna()].drop_duplicates(ITEM_KEYS).reset_index(drop=True)
    judgements = judgements.assign(temperature=judgements["temperature"].astype(float))
    if "refusal_score" not in judgements.columns:
        judgements = judgements.assign(refusal_score=np.nan)
    judges = sorted(judgements["judge"].unique())
    scores, raw = _wide(gold, judgements, "score", judges), _wide(gold, judgements, "unsafe", judges)
    refusal_scores = _wide(gold, judgements, "refusal_score", judges)
    y, y_refusal = gold["y"].to_numpy(float), gold["y_refusal"].to_numpy(float)
    fold = prompt_fold_ids(gold["prompt_id"].to_numpy(), folds, seed)
    by_cell = dict(tuple(judgements.groupby(CELL_KEYS, sort=False)))
    out = []
    for f in np.unique(fold):
        held = gold[fold == f]
        fitted = _fold_calibration(calibration, lead, scores, raw, refusal_scores, y, y_refusal,
                                   np.flatnonzero(fold != f))
        for key, items in held.groupby(CELL_KEYS, sort=False):
            rows = by_cell.get(key)
            if rows is None:
                continue
            votes = vote([rows.drop(columns=CELL_KEYS)], vote_threshold, calibration=fitted, lead=lead,
                         refusal_judges=refusal_judges)
            out.append(items[ITEM_KEYS].merge(votes[["prompt_id", "sample", "unsafe", "refusal"]],
                                              on=["prompt_id", "sample"], how="inner"))
    if not out:
        return pd.DataFrame({**{k: gold[k].iloc[:0] for k in ITEM_KEYS}, "unsafe": pd.array([], dtype="boolean"),
                             "refusal": pd.array([], dtype="boolean")})
    return pd.concat(out, ignore_index=True)


def cross_fitted_unsafe(judgements: pd.DataFrame, gold: pd.DataFrame, calibration: Mapping[str, Any],
                        **options: Any) -> pd.DataFrame:
    """``cross_fitted_labels`` without the refusal column (the unsafe axis alone)."""
    return cross_fitted_labels(judgements, gold, calibration, **options).drop(columns="refusal")


def with_cross_fitted_labels(votes: pd.DataFrame, judgements: Any, gold: pd.DataFrame,
                             calibration: Mapping[str, Any] | None, *, vote_threshold: float = 0.5,
                             lead: str = "majority", folds: int = 5, seed: int = 0,
                             refusal_judges: Sequence[str] | None = None) -> pd.DataFrame:
    """``votes`` (cell columns, prompt_id, sample, unsafe, refusal, ...) with ``unsafe`` (where the
    unsafe label depends on a fit to own labels) and ``refusal`` (where a refusal threshold was
    fitted on own labels) of every labelled response replaced by its cross-fitted vote; unchanged
    otherwise. ``judgements``: a frame as ``cross_fitted_labels`` reads, or a callable returning it
    for the labelled cells (read only when needed)."""
    if not len(gold) or not len(votes) or not cross_fitting_needed(calibration, lead):
        return votes
    frame = judgements() if callable(judgements) else judgements
    try:
        crossed = cross_fitted_labels(frame, gold, calibration, vote_threshold=vote_threshold, lead=lead,
                                      folds=folds, seed=seed, refusal_judges=refusal_judges)
    except ValueError as error:  # too few prompts to fold: the estimates would use in-sample labels
        log.warning("no cross-fitted judge labels (%s): the prediction-powered estimates use the labels of the "
                    "fit on all own labels", error)
        return votes
    keys = votes[ITEM_KEYS].assign(temperature=votes["temperature"].astype(float))
    merged = keys.merge(crossed, on=ITEM_KEYS, how="left", suffixes=("_full", ""))
    out = votes.copy()
    axes = [axis for axis, refitted in (("unsafe", _unsafe_fitted_on_own(calibration, lead)),
                                         ("refusal", bool(_own_refusal_judges(calibration))))
            if refitted and axis in out.columns]
    for axis in axes:
        replace = merged[axis].notna().to_numpy()
        values = out[axis].astype("boolean").to_numpy(copy=True)
        values[replace] = merged[axis].astype("boolean").to_numpy()[replace]
        out[axis] = pd.array(values, dtype="boolean")
        log.info("%d labelled responses' %s labels cross-fitted by prompt (%d folds)", int(replace.sum()), axis, folds)
    return out
