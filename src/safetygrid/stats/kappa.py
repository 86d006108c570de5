"""Chance-corrected agreement of binary labels: Fleiss' kappa over several raters, Cohen's kappa of
two (statsmodels' estimators), each with the raw agreement, the number of items and why it is NA."""

from __future__ import annotations

import math
import warnings

import numpy as np
from statsmodels.stats.inter_rater import cohens_kappa, fleiss_kappa


def fleiss(labels: np.ndarray) -> tuple[float, float, int, str]:
    """(kappa, mean pairwise agreement, n_items, note) of items x raters 0/1 labels, complete rows."""
    n_items, n_raters = labels.shape
    if n_raters < 2:
        return math.nan, math.nan, n_items, "fewer than two judges"
    if n_items == 0:
        return math.nan, math.nan, 0, "no item labelled by every judge"
    unsafe = labels.sum(axis=1)
    counts = np.column_stack([n_raters - unsafe, unsafe])
    agreement = float(((counts * (counts - 1)).sum(axis=1) / (n_raters * (n_raters - 1))).mean())
    if counts[:, 0].sum() == 0 or counts[:, 1].sum() == 0:
        return math.nan, agreement, n_items, "every label is the same: chance agreement is 1"
    return float(fleiss_kappa(counts)), agreement, n_items, ""


def cohen(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int, str]:
    """(kappa, agreement, n_items, note) of two 0/1 label vectors, NaN pairs dropped."""
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep].astype(int), b[keep].astype(int)
    if not len(a):
        return math.nan, math.nan, 0, "no item labelled by both"
    table = np.zeros((2, 2))
    np.add.at(table, (a, b), 1)
    agreement = float(np.trace(table) / len(a))
    expected = float((table.sum(axis=0) * table.sum(axis=1)).sum() / len(a) ** 2)
    if math.isclose(expected, 1.0):
        return math.nan, agreement, len(a), "both give one label throughout: chance agreement is 1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(cohens_kappa(table, return_results=False)), agreement, len(a), ""
