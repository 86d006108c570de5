"""Calibrating judges on human labels, and scoring them out of sample (METRICS.md, judge validity).

- A judge's **threshold** t is the score cut that maximises Cohen's kappa against the human label
  on the rows it is fitted on (unsafe = score >= t); candidates are the midpoints between
  consecutive distinct scores, so the fit does not depend on how finely the scores are rounded.
- The **stacked** ensemble is a ridge-penalised logistic regression of the human label on the
  judges' scores (a judge without a score contributes its 0/1 label; a missing score is the
  judge's mean on the fitted rows).
- **Cross-fitting**: rows are split into k label-stratified folds by a seeded permutation; each
  fold is labelled by a fit made on the other folds, so no row is ever scored by a fit that saw it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..analysis.agreement import cohen


def kappa(labels: np.ndarray, predicted: np.ndarray) -> float:
    value, _, _, _ = cohen(np.asarray(predicted, dtype=float), np.asarray(labels, dtype=float))
    return value


def fit_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The cut maximising Cohen's kappa of (score >= cut) against ``labels`` (rows with a NaN score
    left out). Among equally good cuts the middle one is taken. Fewer than two distinct scores, or a
    single label class, leave nothing to fit: 0.5."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=int)
    keep = ~np.isnan(scores)
    scores, labels = scores[keep], labels[keep]
    distinct = np.unique(scores)
    if len(distinct) < 2 or len(np.unique(labels)) < 2:
        return 0.5
    cuts = (distinct[:-1] + distinct[1:]) / 2
    values = np.array([_kappa_or_minus_one(labels, (scores >= cut).astype(int)) for cut in cuts])
    best = np.flatnonzero(np.isclose(values, values.max()))
    return float(cuts[best[len(best) // 2]])


def _kappa_or_minus_one(labels: np.ndarray, predicted: np.ndarray) -> float:
    value = kappa(labels, predicted)
    return -1.0 if math.isnan(value) else value


def fold_ids(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number per row: each label's rows spread over the folds in a seeded random order."""
    labels = np.asarray(labels, dtype=int)
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=int)
    offset = 0
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        out[rows] = (np.arange(len(rows)) + offset) % folds
        offset += len(rows)
    return out


def cross_fit(n_rows: int, fold: np.ndarray, fit: Callable[[np.ndarray], object],
              predict: Callable[[object, np.ndarray], np.ndarray]) -> np.ndarray:
    """Out-of-fold predictions: for each fold f, ``fit(rows not in f)`` then ``predict(model, rows
    in f)``. ``fit`` and ``predict`` get row indices, never the fold's own rows for fitting."""
    out = np.full(n_rows, np.nan)
    for f in np.unique(fold):
        held = np.flatnonzero(fold == f)
        model = fit(np.flatnonzero(fold != f))
        out[held] = predict(model, held)
    return out


@dataclass
class Stack:
    """Logistic regression of the human label on the judges' scores."""

    judges: list[str]
    coef: list[float]
    intercept: float
    fill: list[float] = field(default_factory=list)  # per judge: the value of a missing score

    def probability(self, scores: np.ndarray) -> np.ndarray:
        x = np.where(np.isnan(scores), np.asarray(self.fill)[None, :], scores)
        return 1 / (1 + np.exp(-(self.intercept + x @ np.asarray(self.coef))))

    def to_dict(self) -> dict[str, object]:
        return {"judges": self.judges, "coef": self.coef, "intercept": self.intercept, "fill": self.fill}

    @classmethod
    def from_dict(cls, data: dict) -> "Stack":  # type: ignore[type-arg]
        return cls(list(data["judges"]), [float(c) for c in data["coef"]], float(data["intercept"]),
                   [float(f) for f in data["fill"]])


def fit_stack(scores: np.ndarray, labels: np.ndarray, judges: Sequence[str], penalty: float = 0.01) -> Stack:
    """A ridge-penalised logistic fit (statsmodels' GLM, elastic net with no L1 part) on standardised
    scores, so the penalty treats judges whose scores span different ranges alike; it keeps a judge
    that separates the fitted rows perfectly from an infinite weight. The returned coefficients act
    on the raw scores."""
    import statsmodels.api as sm

    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=float)
    fill = [float(np.nanmean(column)) if np.isfinite(column).any() else 0.5 for column in scores.T]
    x = np.where(np.isnan(scores), np.asarray(fill)[None, :], scores)
    if len(np.unique(labels)) < 2:
        prior = float(np.clip(labels.mean(), 1e-3, 1 - 1e-3))
        return Stack(list(judges), [0.0] * x.shape[1], math.log(prior / (1 - prior)), fill)
    mean, spread = x.mean(axis=0), x.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    design = sm.add_constant((x - mean) / spread, has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sm.GLM(labels, design, family=sm.families.Binomial()).fit_regularized(
            alpha=penalty, L1_wt=0.0)
    params = np.asarray(result.params, dtype=float)
    coef = params[1:] / spread
    return Stack(list(judges), coef.tolist(), float(params[0] - (coef * mean).sum()), fill)
