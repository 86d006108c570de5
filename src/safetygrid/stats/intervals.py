"""Intervals: Wilson for a proportion of independent responses, percentile bootstrap over prompts,
and Clopper-Pearson where a bootstrap interval has zero width (METRICS.md)."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.stats import norm


def wilson(successes: float, n: int, level: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    z = float(norm.ppf(0.5 + level / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at p = 0 (p = 1) the bound is exactly 0 (1); the subtraction leaves rounding noise (7e-18)
    lower = 0.0 if successes <= 0 else max(0.0, centre - half)
    upper = 1.0 if successes >= n else min(1.0, centre + half)
    return (lower, upper)


def bootstrap_indices(n_prompts: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n_prompts) prompt indices; the same draw is used for every cell of a model so
    that contrasts between cells keep each prompt's pairing."""
    return rng.integers(0, n_prompts, size=(resamples, n_prompts))


def bootstrap_means(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Mean over resampled prompts for each resample; ``values`` is (n_prompts,) or (n_prompts, k).
    NaN entries (a prompt without that statistic) are left out of the mean."""
    drawn = values[indices]  # (B, n) or (B, n, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resamples give NaN, on purpose
        return np.nanmean(drawn, axis=1)


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    draws = np.asarray(draws, dtype=float)
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return (math.nan, math.nan)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def clopper_pearson(events: float, trials: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of ``events`` in ``trials`` (statsmodels' 'beta')."""
    from statsmodels.stats.proportion import proportion_confint

    if trials <= 0:
        return (math.nan, math.nan)
    lo, hi = proportion_confint(int(events), int(trials), alpha=1 - level, method="beta")
    return (float(lo), float(hi))


# a bootstrap interval narrower than this has no width: every resample gave the same value
ZERO_WIDTH = 1e-12


def proportion_interval(estimate: float, interval: tuple[float, float], trials: int,
                        level: float = 0.95) -> tuple[float, float]:
    """A proportion's bootstrap interval as METRICS.md reports it: clipped to [0, 1], and where it has
    zero width (every resample equal, as with no events) the Clopper-Pearson interval of
    round(estimate * trials) events in ``trials`` (the prompts) instead, so no interval is [0, 0]."""
    lo, hi = interval
    if math.isnan(lo) or math.isnan(hi) or math.isnan(estimate):
        return (lo, hi)
    if hi - lo <= ZERO_WIDTH and trials > 0:
        return clopper_pearson(round(min(max(estimate, 0.0), 1.0) * trials), trials, level)
    return (min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0))


def bootstrap_counts(indices: np.ndarray, n_items: int) -> np.ndarray:
    """(resamples, n_items) how often each item (prompt) was drawn in each resample of ``indices``
    (``bootstrap_indices``), so a resampled sum of per-prompt totals is one matrix product."""
    resamples = indices.shape[0]
    flat = (indices + n_items * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n_items).reshape(resamples, n_items).astype(float)


def effective_wilson(estimate: float, variance: float, max_trials: float,
                     level: float = 0.95) -> tuple[float, float]:
    """The Wilson interval at the effective sample size (the design-effect reading of a clustered or
    corrected proportion, as in Korn & Graubard 1998): estimate * n_eff successes in n_eff =
    estimate (1 - estimate) / variance trials, at most ``max_trials`` (the responses); an estimate
    of 0 or 1, or no variance, takes ``max_trials``. Its score form keeps the small-count skew a
    percentile bootstrap of few events lacks."""
    if math.isnan(estimate) or max_trials <= 0:
        return (math.nan, math.nan)
    p = min(max(estimate, 0.0), 1.0)
    n_eff = max_trials
    if 0 < p < 1 and variance > 0 and math.isfinite(variance):
        n_eff = min(max_trials, p * (1 - p) / variance)
    return wilson(p * n_eff, n_eff, level)
