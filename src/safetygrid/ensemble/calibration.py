"""Calibrating judges on human labels, and scoring them out of sample (METRICS.md, judge validity).

- A judge's **threshold** t is the score cut that maximises Cohen's kappa against the human label
  on the rows it is fitted on (unsafe = score >= t); candidates are the midpoints between
  consecutive distinct scores, so the fit does not depend on how finely the scores are rounded.
- The **stacked** ensemble, the other model fitted on human labels, is stack.py.
- **Cross-fitting**: rows are split into k label-stratified folds by a seeded permutation; each
  fold is labelled by a fit made on the other folds, so no row is ever scored by a fit that saw it.
  For the prediction-powered estimates the folds are split by prompt instead (``prompt_fold_ids``):
  a response is labelled by a fit that saw no response to its prompt, in any cell.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..stats.kappa import cohen


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


def prompt_fold_ids(prompt_ids: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number per row such that all rows of one prompt share a fold: the distinct prompts, in
    a seeded random order, dealt round the folds (fewer prompts than folds: one prompt per fold)."""
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
    prompts, which = np.unique(np.asarray(prompt_ids, dtype=str), return_inverse=True)
    if len(prompts) < 2:
        raise ValueError("cross-fitting by prompt needs labels of at least 2 prompts")
    order = np.random.default_rng(seed).permutation(len(prompts))
    fold_of_prompt = np.empty(len(prompts), dtype=int)
    fold_of_prompt[order] = np.arange(len(prompts)) % min(folds, len(prompts))
    return fold_of_prompt[which]


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
