"""Dawid–Skene (1979) for binary labels: each judge's confusion (sensitivity, specificity) and each
item's posterior P(unsafe), estimated together by EM without gold labels.

Start from the majority vote's share (so "unsafe" keeps its meaning), then alternate
- M: prevalence = mean posterior; a judge's sensitivity = its unsafe labels weighted by the
  posterior over the posterior mass it labelled, specificity likewise for safe (half a pseudo-count
  on each side keeps them off 0 and 1, where one judge would otherwise overrule every other);
- E: log-odds of an item = log prior odds + the sum over the judges that labelled it of the log
  likelihood ratio of their label;
until no posterior moves by more than ``tol``.

With fewer than three judges the model is not identifiable (two binary judges give three free
pattern frequencies for five parameters): callers get ``MIN_JUDGES`` to check, and report NA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_JUDGES = 3


@dataclass
class DawidSkene:
    posterior: np.ndarray  # P(unsafe) per item
    sensitivity: np.ndarray  # per judge: P(says unsafe | unsafe)
    specificity: np.ndarray  # per judge: P(says safe | safe)
    prevalence: float
    iterations: int
    converged: bool


def dawid_skene(labels: np.ndarray, *, max_iter: int = 200, tol: float = 1e-6,
                pseudo_count: float = 0.5) -> DawidSkene:
    """``labels``: items x judges of 0/1 with NaN where a judge gave no label. Items nobody
    labelled get the prior as posterior."""
    labels = np.asarray(labels, dtype=float)
    if labels.ndim != 2:
        raise ValueError("labels must be items x judges")
    given = ~np.isnan(labels)
    said = np.where(given, labels, 0.0)
    n_given = given.sum(axis=1)
    with np.errstate(invalid="ignore"):
        posterior = np.where(n_given > 0, said.sum(axis=1) / np.maximum(n_given, 1), 0.5)
    # ties of the majority count as unsafe (METRICS.md); start them just above one half
    posterior = np.where(posterior == 0.5, 0.5 + 1e-3, posterior)
    sensitivity = specificity = np.full(labels.shape[1], 0.5)
    prevalence, converged, iteration = 0.5, False, 0
    for iteration in range(1, max_iter + 1):
        prevalence = float(np.clip(posterior.mean(), 1e-6, 1 - 1e-6)) if len(posterior) else 0.5
        weight_unsafe = posterior[:, None] * given
        weight_safe = (1 - posterior)[:, None] * given
        sensitivity = ((posterior[:, None] * said).sum(axis=0) + pseudo_count) / (
            weight_unsafe.sum(axis=0) + 2 * pseudo_count)
        specificity = (((1 - posterior)[:, None] * (1 - said) * given).sum(axis=0) + pseudo_count) / (
            weight_safe.sum(axis=0) + 2 * pseudo_count)
        log_unsafe = np.where(given, np.where(said == 1, np.log(sensitivity), np.log(1 - sensitivity)), 0.0)
        log_safe = np.where(given, np.where(said == 1, np.log(1 - specificity), np.log(specificity)), 0.0)
        log_odds = np.log(prevalence / (1 - prevalence)) + (log_unsafe - log_safe).sum(axis=1)
        updated = 1 / (1 + np.exp(-np.clip(log_odds, -500, 500)))
        change = float(np.max(np.abs(updated - posterior))) if len(posterior) else 0.0
        posterior = updated
        if change < tol:
            converged = True
            break
    return DawidSkene(posterior=posterior, sensitivity=sensitivity, specificity=specificity,
                      prevalence=prevalence, iterations=iteration, converged=converged)
