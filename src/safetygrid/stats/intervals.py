"""Intervals: Wilson for a proportion of independent responses, percentile bootstrap over prompts."""

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
    return (max(0.0, centre - half), min(1.0, centre + half))


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
