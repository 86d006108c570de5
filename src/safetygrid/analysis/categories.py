"""Per-category results: ASR and RR of every cell over each harm category's prompts, and their
change against the model's baseline cell (baseline precision and kv, T = 0).

Over the harmful prompts of category c (prompts without a category form the category ``(none)``),
ASR and RR are METRICS.md's per-cell definitions restricted to c, computed from the same
prompt-level quantities as cells.parquet (``metrics.prompt_level``). Intervals follow METRICS.md:
Wilson when k = 1, otherwise a percentile bootstrap over the category's prompts (Clopper-Pearson
over them where every resample gives the same value, as with no events); the change against
the baseline is always a paired percentile bootstrap over the category's prompts (every cell of a
model resamples the same prompts of c, so a prompt stays paired with itself in the baseline).

Columns of ``categories.parquet``: model, precision, kv, temperature, category, k, n_prompts,
n_responses, interval, asr (+ _lo, _hi), rr (+ _lo, _hi), asr_baseline, delta_asr (+ _lo, _hi),
rr_baseline, delta_rr (+ _lo, _hi).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .metrics import _ratio_draws, _rng, prompt_level
from ..stats.intervals import bootstrap_indices, bootstrap_means, percentile_interval, proportion_interval, wilson

NO_CATEGORY = "(none)"
CATEGORY_COLUMNS = ["model", "precision", "kv", "temperature", "category", "k", "n_prompts", "n_responses", "interval",
                    "asr", "asr_lo", "asr_hi", "rr", "rr_lo", "rr_hi", "asr_baseline", "delta_asr", "delta_asr_lo",
                    "delta_asr_hi", "rr_baseline", "delta_rr", "delta_rr_lo", "delta_rr_hi"]


def harmful_categories(prompts: pd.DataFrame) -> dict[str, list[str]]:
    """category -> the sorted ids of its harmful prompts."""
    harmful = prompts[prompts["harmful"].astype(bool)]
    category = harmful["category"].astype("object").where(harmful["category"].notna(), NO_CATEGORY)
    return {str(c): sorted(ids) for c, ids in harmful.groupby(category.to_numpy())["prompt_id"]}


def _interval(draws: np.ndarray, point: float, level: float) -> tuple[float, float]:
    if math.isnan(point) or not len(draws):
        return math.nan, math.nan
    return percentile_interval(draws, level)


def category_metrics(votes: pd.DataFrame, prompts: pd.DataFrame, *, baseline: Mapping[str, str], seed: int,
                     resamples: int = 2000, level: float = 0.95) -> pd.DataFrame:
    """``votes``: vote rows with the cell columns (model, precision, kv, temperature as canonical str)."""
    categories = harmful_categories(prompts)
    base_key = (baseline["precision"], baseline["kv"], "0.0")
    rows: list[dict[str, Any]] = []
    if votes.empty:
        return pd.DataFrame(rows, columns=CATEGORY_COLUMNS)
    for model, model_votes in votes.groupby("model", sort=True):
        indices = {c: bootstrap_indices(len(ids), resamples, _rng(seed, model, "category", c))
                   for c, ids in categories.items()}
        # per cell and category: the point values, the draws and the row
        cells: dict[tuple[str, str, str], dict[str, tuple[float, float, np.ndarray, np.ndarray, dict[str, Any]]]] = {}
        for (precision, kv, temperature), cell in model_votes.groupby(["precision", "kv", "temperature"], sort=True):
            k = int(cell["sample"].nunique())
            level_table = prompt_level(cell)
            per_category = {}
            for c, ids in categories.items():
                h = level_table.reindex(ids)
                n_prompts = int(h["n_labelled"].fillna(0).gt(0).sum())
                asr = float(h["ubar"].mean()) if n_prompts else math.nan
                n_r = float(h["refusal_n"].sum())
                rr = float(h["refusal_sum"].sum()) / n_r if n_r else math.nan
                idx = indices[c]
                asr_d = bootstrap_means(h["ubar"].to_numpy(float), idx)
                rr_d = _ratio_draws(h["refusal_sum"].fillna(0).to_numpy(float), h["refusal_n"].fillna(0).to_numpy(float),
                                    idx)
                row: dict[str, Any] = {"model": model, "precision": precision, "kv": kv,
                                       "temperature": float(temperature), "category": c, "k": k,
                                       "n_prompts": n_prompts,
                                       "n_responses": int(cell["prompt_id"].isin(ids).sum()),
                                       "interval": "wilson" if k == 1 else "bootstrap", "asr": asr, "rr": rr}
                if k == 1:
                    row["asr_lo"], row["asr_hi"] = wilson(asr * n_prompts, n_prompts, level) if n_prompts else (
                        math.nan, math.nan)
                    row["rr_lo"], row["rr_hi"] = wilson(float(h["refusal_sum"].sum()), int(n_r), level)
                else:  # METRICS.md, zero-width intervals: a category with no events is not [0, 0]
                    n_rr_prompts = int(h["refusal_n"].fillna(0).gt(0).sum())
                    row["asr_lo"], row["asr_hi"] = proportion_interval(asr, _interval(asr_d, asr, level), n_prompts,
                                                                       level)
                    row["rr_lo"], row["rr_hi"] = proportion_interval(rr, _interval(rr_d, rr, level), n_rr_prompts,
                                                                     level)
                per_category[c] = (asr, rr, asr_d, rr_d, row)
            cells[precision, kv, temperature] = per_category
        for key in sorted(cells, key=lambda k: (k[0], k[1], float(k[2]))):
            for c, (asr, rr, asr_d, rr_d, row) in cells[key].items():
                if base_key in cells:
                    asr0, rr0, asr0_d, rr0_d, _ = cells[base_key][c]
                    delta_asr, delta_rr = asr - asr0, rr - rr0
                    row["delta_asr_lo"], row["delta_asr_hi"] = _interval(asr_d - asr0_d, delta_asr, level)
                    row["delta_rr_lo"], row["delta_rr_hi"] = _interval(rr_d - rr0_d, delta_rr, level)
                else:
                    asr0 = rr0 = delta_asr = delta_rr = math.nan
                    row["delta_asr_lo"] = row["delta_asr_hi"] = row["delta_rr_lo"] = row["delta_rr_hi"] = math.nan
                row.update(asr_baseline=asr0, delta_asr=delta_asr, rr_baseline=rr0, delta_rr=delta_rr)
                rows.append(row)
    return pd.DataFrame(rows, columns=CATEGORY_COLUMNS)
