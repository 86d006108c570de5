"""Judge validity against human labels (METRICS.md): every judge and every ensemble label scored on
the human-labelled validation set, calibrated judges and the stacked ensemble out of sample.

Columns of ``results/tables/judge_validity.parquet``:
rater (a judge's name, or ``ensemble_majority``, ``ensemble_dawid_skene``, ``ensemble_stacked``),
kind (``judge`` | ``ensemble``), target (``unsafe`` | ``refusal`` | ``complied``: what the human label
says), axis (the same value under the name METRICS.md's axes go by: the judges' ``unsafe`` label is
measured on the unsafe axis, their ``refusal`` label on the refusal axis, a ``complied`` label, where
a judge gives one, on the complied axis; an axis no judge labels has no rows),
labels (``raw``: the judge's own verdict rule; ``calibrated``: its threshold fitted on human labels,
cross-fitted; for ensembles, what they vote with), measured_on (``own``: human labels of this run's
own responses, their random draw; ``borrowed``: a set labelled elsewhere, PyRIT or a configured
file), sets (the sets measured on: ``own:random``, or the borrowed sets' names), fitted_on (for a
calibrated judge, the stack and the votes of calibrated judges: ``own`` or ``borrowed``, where the
thresholds and the stack were fitted; null for raw labels), n (rows
labelled by the rater), n_failed (rows it could not label), n_pos, n_neg (rows whose human label is
1, 0), accuracy, kappa (Cohen, against the human label; NaN, with both counts in the note, unless the
human labels hold at least MIN_PER_CLASS of each class: METRICS.md's kappa estimability), tpr, fpr,
auc (of the score; NaN for a rater without one), each with ``_lo``/``_hi``
(percentile bootstrap over rows; for accuracy, tpr and fpr, where every resample gives the same
value, the Clopper-Pearson interval over the rows of that share instead, so none is [0, 0]),
threshold (for a calibrated judge: the cut fitted on every row, which the workflow applies), lead
(the ensemble label the tables lead with), note. A judge that labels only the refusal axis
(judge_axes.py) has no unsafe rows and is left out of the unsafe ensembles and the stack.

``results/calibration/ensemble.json`` holds what the workflow applies: each calibrated judge's
threshold (unsafe axis, on its score) and/or refusal_threshold (refusal axis, on its
refusal_score, fitted on refusal labels by the same rule, with refusal_n and refusal_fitted_on), the
stacked model's coefficients (both fitted on every row of the set they are fitted on), fitted_on (``own`` once there are at least ``labels.own_min`` own labels holding MIN_PER_CLASS of each class, else ``borrowed``),
n_own, own_min, the leading label, its kappa (lead_kappa: on own labels when there are any, else
borrowed), the lower bound of its interval (lead_kappa_lo) and lead_measured_on; and the same for
the refusal label the tables count, the majority of the judges that give one (refusal_lead_kappa,
refusal_lead_kappa_lo, refusal_lead_measured_on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..judge_axes import gives_unsafe
from ..stats.dawid_skene import MIN_JUDGES, dawid_skene
from ..stats.intervals import percentile_interval, proportion_interval
from .calibration import cross_fit, fit_threshold, fold_ids, kappa
from .stack import Stack, fit_stack, judge_features, scoreless
from .voting import refusal_majority, votes_needed

OWN, BORROWED = "own", "borrowed"
ENSEMBLES = {"majority": "ensemble_majority", "dawid_skene": "ensemble_dawid_skene", "stacked": "ensemble_stacked"}
METRICS = ("accuracy", "kappa", "tpr", "fpr", "auc")
AXES = ("unsafe", "refusal", "complied")
VALIDITY_COLUMNS = ["rater", "kind", "target", "axis", "labels", "measured_on", "sets", "fitted_on", "n", "n_failed",
                    "n_pos", "n_neg", *[f"{m}{s}" for m in METRICS for s in ("", "_lo", "_hi")], "threshold", "lead",
                    "note"]
# the report cites ratings only when the lower bound of the leading label's kappa interval (on the
# run's own responses) reaches this; the point alone never decides it
TRUST_KAPPA = 0.4
# METRICS.md, kappa estimability: kappa against human labels needs at least this many of each class
MIN_PER_CLASS = 10
# the proportions among METRICS, each with the count of rows it is a share of
PROPORTION_TRIALS = {"accuracy": "n", "tpr": "n_pos", "fpr": "n_neg"}


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half)."""
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if not n_pos or not n_neg:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _point(labels: np.ndarray, predicted: np.ndarray, scores: np.ndarray | None) -> dict[str, float]:
    positive, negative = labels == 1, labels == 0
    return {"accuracy": float((predicted == labels).mean()),
            "kappa": kappa(labels, predicted),
            "tpr": float(predicted[positive].mean()) if positive.any() else math.nan,
            "fpr": float(predicted[negative].mean()) if negative.any() else math.nan,
            "auc": auc(labels, scores) if scores is not None else math.nan}


def binary_validity(labels: np.ndarray, predicted: np.ndarray, scores: np.ndarray | None = None, *,
                    seed: int = 0, resamples: int = 2000, level: float = 0.95,
                    min_per_class: int = MIN_PER_CLASS) -> dict[str, Any]:
    """n, n_pos, n_neg, accuracy, kappa, TPR, FPR and AUC of ``predicted`` (0/1, NaN = not labelled)
    against ``labels``, with percentile bootstrap intervals over the labelled rows. Kappa (and its
    interval) is NaN unless ``labels`` hold at least ``min_per_class`` of each class among the
    labelled rows: with fewer, kappa swings between extremes with a single row and its percentile
    interval spans most of [-1, 1] (METRICS.md, kappa estimability)."""
    labels, predicted = np.asarray(labels, dtype=float), np.asarray(predicted, dtype=float)
    keep = ~np.isnan(predicted)
    if scores is not None:
        scores = np.asarray(scores, dtype=float)
        keep &= ~np.isnan(scores)
    y, p = labels[keep].astype(int), predicted[keep].astype(int)
    s = scores[keep] if scores is not None else None
    out: dict[str, Any] = {"n": int(keep.sum()), "n_failed": int((~keep).sum()), "n_pos": int((y == 1).sum()),
                           "n_neg": int((y == 0).sum())}
    if not len(y):
        return {**out, **{f"{m}{x}": math.nan for m in METRICS for x in ("", "_lo", "_hi")},
                "note": "no row labelled"}
    out.update(_point(y, p, s))
    rng = np.random.default_rng(seed)
    draws = {m: np.empty(resamples) for m in METRICS}
    for b in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        for metric, value in _point(y[idx], p[idx], s[idx] if s is not None else None).items():
            draws[metric][b] = value
    for metric in METRICS:
        finite = draws[metric][np.isfinite(draws[metric])]
        lo, hi = percentile_interval(finite, level) if len(finite) else (math.nan, math.nan)
        if metric in PROPORTION_TRIALS:  # METRICS.md, zero-width intervals: FPR 0 of 150 is not [0, 0]
            lo, hi = proportion_interval(out[metric], (lo, hi), out[PROPORTION_TRIALS[metric]], level)
        out[f"{metric}_lo"], out[f"{metric}_hi"] = lo, hi
    out["note"] = "" if not math.isnan(out["kappa"]) else "kappa undefined: one label throughout"
    if min(out["n_pos"], out["n_neg"]) < min_per_class:
        out["kappa"] = out["kappa_lo"] = out["kappa_hi"] = math.nan
        out["note"] = (f"kappa not estimable: the human labels hold {out['n_pos']} positive and {out['n_neg']} "
                       f"negative, needs at least {min_per_class} of each")
    return out


def _wide(labelled: pd.DataFrame, items: pd.Index, column: str) -> pd.DataFrame:
    if column not in labelled.columns:  # no judge gives this label (a complied label, today)
        return pd.DataFrame(np.nan, index=items, columns=sorted(labelled["judge"].unique()))
    values = labelled[column].astype("Float64").astype(float)
    values[labelled["error"].notna().to_numpy()] = np.nan
    wide = labelled.assign(value=values).pivot(index="item_id", columns="judge", values="value")
    return wide.reindex(items)


def _majority(labels: np.ndarray, threshold: float) -> np.ndarray:
    labelled = (~np.isnan(labels)).sum(axis=1)
    unsafe = np.nansum(labels, axis=1)
    need = np.array([votes_needed(threshold, int(j)) for j in labelled])
    return np.where(labelled > 0, (unsafe >= need).astype(float), np.nan)


def _axis_majority(labels: np.ndarray) -> np.ndarray:
    """rho as the votes table reads it (METRICS.md: the majority of the judges that give one; a tie
    is not a refusal); the complied axis, where judges give it, is combined the same way."""
    gave = (~np.isnan(labels)).sum(axis=1)
    said = np.nansum(labels, axis=1)
    return np.where(gave > 0, refusal_majority(said, gave).astype(float), np.nan)


@dataclass
class LabelledRows:
    """One human-labelled set as the validity figures read it: labels, and each judge's raw label
    and score per row; ``reported`` marks the rows the figures are measured on (own labels: the
    random draw, which stands for the run's responses; targeted draws only help the fit)."""

    measured_on: str  # own | borrowed
    sets: str
    y: np.ndarray
    raw: pd.DataFrame
    scores: pd.DataFrame
    reported: np.ndarray
    note: str = ""


def _labelled_rows(measured_on: str, human: pd.DataFrame, labelled: pd.DataFrame,
                   names: Sequence[str], axis: str = "unsafe") -> LabelledRows | None:
    rows = human[human["target"] == axis].reset_index(drop=True)
    if not len(rows):
        return None
    items = pd.Index(rows["item_id"])
    if measured_on == OWN:
        random = (rows["draw"] == "random").to_numpy()
        reported, sets = (random, "own:random") if random.any() else (np.ones(len(rows), bool), "own:all")
        note = "" if random.any() else "no random draw labelled: measured on targeted labels, not representative"
    else:
        reported, sets, note = np.ones(len(rows), bool), ",".join(sorted(rows["set"].unique())), ""
    return LabelledRows(measured_on, sets, rows["label"].to_numpy(int),
                        _wide(labelled, items, axis).reindex(columns=list(names)),
                        _wide(labelled, items, "score").reindex(columns=list(names)), reported, note)


def validity(human: pd.DataFrame, labelled: pd.DataFrame, judges: Mapping[str, Mapping[str, Any]], *,
             own: pd.DataFrame | None = None, own_labelled: pd.DataFrame | None = None, own_min: int = 100,
             lead: str = "majority", vote_threshold: float = 0.5, folds: int = 5, seed: int = 0,
             resamples: int = 2000, level: float = 0.95) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``human``: the borrowed validation set; ``labelled``: every judge's labels of it (item_id,
    judge, unsafe, score, refusal, error); ``own``/``own_labelled``: the same for human labels of the
    run's own responses (``labels.own``: item_id, target, label, draw); ``judges``: the config's
    judge entries (``calibrate``). Thresholds and the stack are fitted on the own labels when there
    are at least ``own_min`` of them, else on the borrowed set; figures on the set they were fitted
    on are cross-fitted, on the other set they come from the full fit (which never saw its rows).
    Returns the validity table and the calibration the workflow applies."""
    names = sorted(judges)
    missing = sorted(set(names) - set(labelled["judge"]))
    if missing and len(human):  # no borrowed set at all (validation.sets off): own labels alone
        raise ValueError(f"no validation labels for judge(s) {missing}")
    rows: list[dict[str, Any]] = []
    boot = dict(seed=seed, resamples=resamples, level=level)
    refusal_calibration = _refusal_thresholds(human, labelled, own, own_labelled, judges, own_min)
    raters = [j for j in names if gives_unsafe(judges[j])]  # the unsafe axis' raters
    borrowed = _labelled_rows(BORROWED, human, labelled, raters)
    mine = (_labelled_rows(OWN, own, own_labelled if own_labelled is not None else labelled.iloc[:0], raters)
            if own is not None and len(own) else None)
    n_own = len(mine.y) if mine else 0
    # a threshold or stack fitted on a handful of one class is a fit to those few responses: own
    # labels lead the fit only with MIN_PER_CLASS of each class (as kappa needs to be estimable)
    own_classes_enough = bool(mine) and min(int((mine.y == 1).sum()), int((mine.y == 0).sum())) >= MIN_PER_CLASS
    fit_on = mine if mine and ((n_own >= own_min and own_classes_enough) or borrowed is None) else borrowed
    calibration: dict[str, Any] = {"judges": {}, "stack": None, "lead": lead,
                                   "fitted_on": fit_on.measured_on if fit_on else None,
                                   "n_own": n_own, "own_min": own_min}
    if fit_on is not None:
        fit = _fit(fit_on, raters, judges)
        calibration["judges"], calibration["stack"] = fit.thresholds, fit.stack
        for part in (mine, borrowed):
            if part is not None:
                rows += _unsafe_rows(part, fit, fit_on, raters, judges, vote_threshold, folds, seed, boot)
    for judge, fitted in refusal_calibration.items():
        calibration["judges"].setdefault(judge, {}).update(fitted)

    for axis in AXES[1:]:
        own_rows = own_labelled if own_labelled is not None else labelled.iloc[:0]
        for part in (_labelled_rows(OWN, own, own_rows, names, axis) if own is not None and len(own) else None,
                     _labelled_rows(BORROWED, human, labelled, names, axis)):
            if part is not None:
                rows += _axis_rows(part, axis, names, boot)

    table = pd.DataFrame(rows).reindex(columns=VALIDITY_COLUMNS)
    table["axis"] = table["target"]
    table["lead"] = (table["rater"] == ENSEMBLES[lead]) & (table["target"] == "unsafe")
    table["note"] = table["note"].fillna("")
    # the refusal label the tables count is the majority of the judges that give one (METRICS.md's rho)
    refusal_lead = (table["rater"] == ENSEMBLES["majority"]) & (table["target"] == "refusal")
    for prefix, rows in (("", table[table["lead"]]), ("refusal_", table[refusal_lead])):
        kappa, kappa_lo, measured_on = _headline_kappa(rows)
        calibration[f"{prefix}lead_kappa"], calibration[f"{prefix}lead_kappa_lo"] = kappa, kappa_lo
        calibration[f"{prefix}lead_measured_on"] = measured_on
    return table, calibration


def _headline_kappa(rows: pd.DataFrame) -> tuple[float, float, str | None]:
    """A label's kappa, the lower end of its interval and where it was measured: on own labels
    when there are any, else on the borrowed set; NaN and None without rows."""
    if not len(rows):
        return math.nan, math.nan, None
    rows = rows.set_index("measured_on")
    measured_on = OWN if OWN in rows.index else BORROWED
    return float(rows.loc[measured_on, "kappa"]), float(rows.loc[measured_on, "kappa_lo"]), measured_on


def _axis_rows(part: LabelledRows, axis: str, names: Sequence[str], boot: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each judge that gives ``axis`` (its ``refusal`` or ``complied`` label, raw) and their majority,
    against the human labels of that axis in ``part`` (own labels: the random draw)."""
    giving = [j for j in names if part.raw[j].notna().any()]
    common = {"target": axis, "labels": "raw", "sets": part.sets, "measured_on": part.measured_on}
    y, keep = part.y[part.reported], part.reported

    def measured(predicted: np.ndarray) -> dict[str, Any]:
        out = binary_validity(y, predicted[keep], None, **boot)
        out["note"] = "; ".join(n for n in (part.note, out["note"]) if n)
        return out

    rows = [{"rater": judge, "kind": "judge", **common, **measured(part.raw[judge].to_numpy(float))}
            for judge in giving]
    if giving:
        rows.append({"rater": ENSEMBLES["majority"], "kind": "ensemble", **common,
                     **measured(_axis_majority(part.raw[giving].to_numpy(float)))})
    return rows


def _refusal_thresholds(human: pd.DataFrame, labelled: pd.DataFrame, own: pd.DataFrame | None,
                        own_labelled: pd.DataFrame | None, judges: Mapping[str, Mapping[str, Any]],
                        own_min: int) -> dict[str, dict[str, Any]]:
    """Each calibrated judge's refusal_threshold (and refusal_n, refusal_fitted_on) on its
    refusal_score: the kappa-best cut on the refusal labels of the run's own responses when there
    are at least ``own_min``, else on the borrowed set's; judges that give no refusal score on those
    rows are left out (a calibrated judge of the unsafe axis keeps its unsafe threshold alone)."""
    sets = []
    if own is not None and len(own):
        sets.append((OWN, own, own_labelled if own_labelled is not None else labelled.iloc[:0]))
    sets.append((BORROWED, human, labelled))
    usable = [(name, rows[rows["target"] == "refusal"], scored) for name, rows, scored in sets]
    usable = [(name, rows, scored) for name, rows, scored in usable if len(rows) and "refusal_score" in scored]
    if not usable:
        return {}
    name, rows, scored = next(((n, r, s) for n, r, s in usable if n == OWN and len(r) >= own_min
                               and min(int(r["label"].sum()), int((1 - r["label"]).sum())) >= MIN_PER_CLASS),
                              usable[-1])
    scores = _wide(scored, pd.Index(rows["item_id"]), "refusal_score")
    y = rows["label"].to_numpy(int)
    out = {}
    for judge in sorted(judges):
        if not judges[judge].get("calibrate") or judge not in scores.columns:
            continue
        score = scores[judge].to_numpy(float)
        if np.isfinite(score).any():
            out[judge] = {"refusal_threshold": fit_threshold(score, y), "refusal_n": int(np.isfinite(score).sum()),
                          "refusal_fitted_on": name}
    return out


@dataclass
class _Fit:
    thresholds: dict[str, dict[str, Any]]
    stack: dict[str, Any]
    label_judges: list[str]
    calibrated: list[str]


def _fit(rows: LabelledRows, names: Sequence[str], judges: Mapping[str, Mapping[str, Any]]) -> _Fit:
    """Each calibrated judge's threshold and the stack, fitted on every row of ``rows``."""
    thresholds = {}
    calibrated = [j for j in names if judges[j].get("calibrate")]
    for judge in calibrated:
        score = rows.scores[judge].to_numpy(float)
        if not np.isfinite(score).any():
            raise ValueError(f"judge {judge} has calibrate: true but gives no score to calibrate "
                             f"(on the {rows.measured_on} labels, {rows.sets})")
        thresholds[judge] = {"threshold": fit_threshold(score, rows.y), "n": int(np.isfinite(score).sum())}
    label_judges = scoreless(rows.scores)
    features = judge_features(rows.scores, rows.raw, label_judges)
    stack = {**fit_stack(features, rows.y, list(names)).to_dict(), "label_judges": label_judges}
    return _Fit(thresholds, stack, label_judges, calibrated)


def _unsafe_rows(part: LabelledRows, fit: _Fit, fit_on: LabelledRows, names: Sequence[str],
                 judges: Mapping[str, Mapping[str, Any]], vote_threshold: float, folds: int, seed: int,
                 boot: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every judge and ensemble label measured on ``part``: cross-fitted when ``part`` is the set
    the calibration is fitted on, else labelled by the full fit."""
    crossed_here = part is fit_on
    y, keep = part.y, part.reported
    fold = fold_ids(y, folds, seed) if crossed_here else None
    common = {"target": "unsafe", "sets": part.sets, "measured_on": part.measured_on, "note": part.note or None}
    fitted = {"fitted_on": fit_on.measured_on}
    rows: list[dict[str, Any]] = []

    def measured(predicted: np.ndarray, score: np.ndarray | None) -> dict[str, Any]:
        out = binary_validity(y[keep], predicted[keep], score[keep] if score is not None else None, **boot)
        if part.note:
            out["note"] = "; ".join(n for n in (part.note, out.get("note")) if n)
        return out

    used = part.raw.copy()  # the labels each judge votes with: calibrated (cross-fitted) where asked
    for judge in names:
        score = part.scores[judge].to_numpy(float)
        has_score = bool(np.isfinite(score).any())
        rows.append({"rater": judge, "kind": "judge", "labels": "raw", **common,
                     **measured(part.raw[judge].to_numpy(float), score if has_score else None)})
        if judge in fit.calibrated:
            finite = np.isfinite(score)
            if crossed_here:
                predicted = cross_fit(len(y), fold, lambda train: fit_threshold(score[train], y[train]),
                                      lambda cut, held: np.where(finite[held], (score[held] >= cut).astype(float),
                                                                 np.nan))
            else:
                cut = fit.thresholds[judge]["threshold"]
                predicted = np.where(finite, (score >= cut).astype(float), np.nan)
            used[judge] = predicted
            rows.append({"rater": judge, "kind": "judge", "labels": "calibrated", **common, **fitted,
                         **measured(predicted, score), "threshold": fit.thresholds[judge]["threshold"]})
    labels_used = "calibrated" if fit.calibrated else "raw"
    vote_fit = fitted if fit.calibrated else {}
    majority = _majority(used.to_numpy(float), vote_threshold)
    rows.append({"rater": ENSEMBLES["majority"], "kind": "ensemble", "labels": labels_used, **common, **vote_fit,
                 **measured(majority, None)})
    if len(names) >= MIN_JUDGES:
        posterior = dawid_skene(used.to_numpy(float)).posterior
        rows.append({"rater": ENSEMBLES["dawid_skene"], "kind": "ensemble", "labels": labels_used, **common,
                     **vote_fit, **measured((posterior >= 0.5).astype(float), posterior)})
    else:
        rows.append({"rater": ENSEMBLES["dawid_skene"], "kind": "ensemble", "labels": labels_used, **common,
                     "n": 0, "note": f"Dawid-Skene needs at least {MIN_JUDGES} judges"})
    features = judge_features(part.scores, part.raw, fit.label_judges)
    if crossed_here:
        stacked = cross_fit(len(y), fold, lambda train: fit_stack(features[train], y[train], list(names)),
                            lambda model, held: model.probability(features[held]))
    else:
        stacked = Stack.from_dict(fit.stack).probability(features)
    rows.append({"rater": ENSEMBLES["stacked"], "kind": "ensemble", "labels": "scores", **common, **fitted,
                 **measured((stacked >= 0.5).astype(float), stacked)})
    return rows
