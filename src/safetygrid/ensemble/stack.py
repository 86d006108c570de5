"""The stacked ensemble: a ridge-penalised logistic regression of the human label on the judges'
scores (METRICS.md, judge validity), fitted on human labels (judge_validity.py) and applied to every
cell's judgements (voting.py). A judge without a score contributes its 0/1 label; a missing score is
the judge's mean on the fitted rows.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd


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


def scoreless(scores: pd.DataFrame) -> list[str]:
    return [judge for judge in scores.columns if scores[judge].isna().all()]


def judge_features(scores: pd.DataFrame, labels: pd.DataFrame, label_judges: Sequence[str]) -> np.ndarray:
    """What the stack reads per judge: its score, or its 0/1 label for a judge that gives no score."""
    features = scores.copy()
    for judge in label_judges:
        features[judge] = labels[judge]
    return features.to_numpy(float)


def stack_probability(stack: Mapping[str, Any], scores: pd.DataFrame, labels: pd.DataFrame) -> np.ndarray:
    """The stacked P(unsafe) of each item from its judges' scores (labels where a judge has none)."""
    model = Stack.from_dict(dict(stack))
    features = judge_features(scores.reindex(columns=model.judges), labels.reindex(columns=model.judges),
                              stack.get("label_judges", []))
    return model.probability(features)
