"""`safetygrid judge --labels FILE`: the configured judges and their ensemble against any
human-labelled file of (prompt, response, label) rows: n, κ, accuracy, TPR, FPR and AUC, each with
its percentile bootstrap interval (ensemble.judge_validity.binary_validity, as in judge_validity.parquet).

Columns of the table (SCORE_COLUMNS): rater (a judge's name, or ``ensemble`` for the config's
ensemble label), n, n_failed, n_pos, n_neg (rows whose human label is 1, 0), then accuracy, kappa (NA
unless the human labels hold at least 10 of each class), tpr, fpr, auc each with ``_lo`` / ``_hi``,
note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..ensemble.judge_validity import METRICS, binary_validity

SCORE_COLUMNS = ["rater", "n", "n_failed", "n_pos", "n_neg", *[f"{m}{s}" for m in METRICS for s in ("", "_lo", "_hi")], "note"]


def _verdicts(labelled: pd.DataFrame, judge: str) -> np.ndarray:
    unsafe = np.array(labelled[f"{judge}_unsafe"].astype("Float64").astype(float), dtype=float)  # a writable copy
    unsafe[labelled[f"{judge}_error"].notna().to_numpy()] = np.nan
    return unsafe


def score_labelled(labelled: pd.DataFrame, truth: np.ndarray, judges: Sequence[str], *, seed: int = 0,
                   resamples: int = 2000, level: float = 0.95) -> pd.DataFrame:
    """``labelled``: judges.file.label_rows' output for the rows whose human labels are ``truth``."""
    boot = dict(seed=seed, resamples=resamples, level=level)
    rows: list[dict[str, Any]] = []
    for judge in judges:
        score = labelled[f"{judge}_score"].astype("Float64").astype(float).to_numpy()
        has_score = bool(np.isfinite(score).any())
        rows.append({"rater": judge, **binary_validity(truth, _verdicts(labelled, judge),
                                                       score if has_score else None, **boot)})
    ensemble = labelled["unsafe"].astype("Float64").astype(float).to_numpy()
    rows.append({"rater": "ensemble", **binary_validity(truth, ensemble, None, **boot)})
    return pd.DataFrame(rows).reindex(columns=SCORE_COLUMNS)


def score_file(path: str | Path, config: Mapping[str, Any], judges: Sequence[str] | None = None, *,
               sources: str | Path = "results/sources", calibration: Mapping[str, Any] | None = None,
               output: str | Path | None = None) -> pd.DataFrame:
    """Label ``path``'s rows with the judges and score them against its ``label`` column."""
    from ..io import write_parquet
    from ..judges.file import label_rows
    from ..judges.validation import read_labelled_file

    rows = read_labelled_file(path)  # checks the columns and that every label is 0 or 1, naming the file
    chosen = list(judges or sorted(config["judges"]))
    labelled = label_rows(rows[["prompt", "response", "label"]], config, chosen, sources=sources,
                          calibration=calibration)
    if output is not None:
        write_parquet(labelled, output)
    bootstrap = config.get("bootstrap", {})
    return score_labelled(labelled, rows["label"].to_numpy(float), chosen, seed=int(config.get("seed", 0)),
                          resamples=int(bootstrap.get("resamples", 2000)), level=float(bootstrap.get("level", 0.95)))


def format_scores(table: pd.DataFrame, level: float = 0.95) -> str:
    """One line per rater: each figure with its interval."""
    def cell(row: pd.Series, metric: str) -> str:
        if pd.isna(row[metric]):
            return "NA"
        return f"{row[metric]:.2f} [{row[f'{metric}_lo']:.2f}, {row[f'{metric}_hi']:.2f}]"

    header = (f"{'rater':<24} {'n':>5} {'kappa':>18} {'accuracy':>18} {'TPR':>18} {'FPR':>18} {'AUC':>18}"
              f"   ({level:.0%} percentile bootstrap intervals)")
    lines = [header]
    for _, row in table.iterrows():
        note = f"  {row['note']}" if isinstance(row["note"], str) and row["note"] else ""
        failed = f" ({int(row['n_failed'])} failed)" if row["n_failed"] else ""
        lines.append(f"{row['rater']:<24} {int(row['n']):>5} " + " ".join(
            f"{cell(row, m):>18}" for m in ("kappa", "accuracy", "tpr", "fpr", "auc")) + failed + note)
    return "\n".join(lines)
