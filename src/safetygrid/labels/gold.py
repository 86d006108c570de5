"""Labels joined to the run's current responses (the gold of own-response validity), and the
agreement of raters who labelled the same responses.

``gold`` columns (GOLD_COLUMNS): model, precision, kv, temperature (float), prompt_id, sample,
response_sha256, human (0/1: the majority of the raters), n_raters, draw (``random`` when any
rater's row says so, else ``targeted``, else ``other``), raters (comma-separated, sorted).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from ..grid import canonical_temperature
from .files import ITEM_COLUMNS, LabelError, response_sha256

log = logging.getLogger(__name__)

GOLD_COLUMNS = [*ITEM_COLUMNS, "response_sha256", "human", "n_raters", "draw", "raters"]
# fewer shared responses than this leave a pair's kappa unstated: one or two items give 0, 1 or
# "undefined" by arithmetic, none of which says how far two readers agree
MIN_SHARED_FOR_KAPPA = 10
INTER_RATER_COLUMNS = ["rater_a", "rater_b", "n_items", "kappa", "kappa_lo", "kappa_hi", "agreement", "note"]
_DRAW_PRIORITY = {"random": 0, "targeted": 1, "other": 2}


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a canonical-string temperature and an int sample, so files and tables join."""
    return frame.assign(temperature=frame["temperature"].map(canonical_temperature),
                        sample=frame["sample"].astype("int64"), prompt_id=frame["prompt_id"].astype(str))


def gold(labels: pd.DataFrame, responses: pd.DataFrame, require_match: bool = True) -> pd.DataFrame:
    """One row per response of ``responses`` (cell columns, prompt_id, sample, and ``response`` or
    ``response_sha256``) that has current labels: a label whose response_sha256 differs from the
    response's text now is stale and is left out; responses whose raters tie are left out. The
    counts are logged and kept in ``attrs["counts"]`` (labels, matched, stale, unmatched, tied).

    With ``require_match``, a label file none of whose rows names a response of ``responses`` fails,
    naming the file and how many rows did not match (a file for another grid, or a typo)."""
    responses = _keyed(responses)
    if "response_sha256" not in responses.columns:
        responses = responses.assign(response_sha256=responses["response"].map(response_sha256))
    current = responses[[*ITEM_COLUMNS, "response_sha256"]].rename(columns={"response_sha256": "current_sha256"})
    if current.duplicated(ITEM_COLUMNS).any():
        raise LabelError("responses name one (cell, prompt_id, sample) twice")
    joined = _keyed(labels).merge(current, on=ITEM_COLUMNS, how="left", validate="m:1")
    matched = joined["current_sha256"].notna()
    if require_match and "file" in joined.columns:
        for file, rows in joined.groupby("file", sort=True):
            if not matched[rows.index].any():
                raise LabelError(f"{file}: none of its {len(rows)} label rows matches a response of this run "
                                 f"({len(rows)} rows did not match by model, precision, kv, temperature, prompt_id, "
                                 "sample)")
    fresh = matched & (joined["response_sha256"] == joined["current_sha256"])
    usable = joined[fresh]
    counts: dict[str, int] = {"labels": len(joined), "matched": int(fresh.sum()),
                              "stale": int((matched & ~fresh).sum()), "unmatched": int((~matched).sum())}
    table = usable.groupby([*ITEM_COLUMNS, "response_sha256"], sort=True).agg(
        n_unsafe=("label", "sum"), n_raters=("label", "size"),
        draw=("draw", lambda d: min(d, key=_DRAW_PRIORITY.__getitem__)),
        raters=("rater", lambda r: ",".join(sorted(set(r))))).reset_index()
    tied = 2 * table["n_unsafe"] == table["n_raters"]
    counts["tied"] = int(tied.sum())
    table = table[~tied].assign(human=lambda t: (2 * t["n_unsafe"] > t["n_raters"]).astype(int))
    table["temperature"] = table["temperature"].astype(float)
    table = table[GOLD_COLUMNS].reset_index(drop=True)
    if counts["stale"] or counts["unmatched"] or counts["tied"]:
        log.warning("labels: %(stale)d stale (the response's text changed since it was labelled, not used), "
                    "%(unmatched)d naming no response of this run, %(tied)d responses whose raters tie (left out)",
                    counts)
    table.attrs["counts"] = counts
    return table


def inter_rater_kappa(labels: pd.DataFrame, *, seed: int = 0, resamples: int = 2000,
                      level: float = 0.95) -> pd.DataFrame:
    """Cohen's kappa of every pair of raters over the responses both labelled (same text), with a
    percentile bootstrap interval over those responses; ``agreement`` is the share labelled alike.
    Pairs that share no response are left out."""
    from ..ensemble.judge_validity import binary_validity

    if labels.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "n_items" else float if c.startswith(("kappa", "agr"))
                                          else object) for c in INTER_RATER_COLUMNS})
    key = [*ITEM_COLUMNS, "response_sha256"]
    keyed = _keyed(labels).assign(_item=lambda f: f[key].astype(str).agg("\x1f".join, axis=1))
    wide = keyed.pivot_table(index="_item", columns="rater", values="label", aggfunc="first")
    raters = sorted(wide.columns)
    rows: list[dict[str, Any]] = []
    for i, a in enumerate(raters):
        for b in raters[i + 1:]:
            both = wide[[a, b]].dropna()
            if both.empty:
                continue
            result = binary_validity(both[a].to_numpy(float), both[b].to_numpy(float), seed=seed,
                                     resamples=resamples, level=level)
            row = {"rater_a": a, "rater_b": b, "n_items": result["n"], "kappa": result["kappa"],
                   "kappa_lo": result["kappa_lo"], "kappa_hi": result["kappa_hi"],
                   "agreement": result["accuracy"], "note": result["note"]}
            if result["n"] < MIN_SHARED_FOR_KAPPA:
                row.update(kappa=float("nan"), kappa_lo=float("nan"), kappa_hi=float("nan"),
                           note=f"{result['n']} shared responses: kappa needs at least {MIN_SHARED_FOR_KAPPA}")
            rows.append(row)
    table = pd.DataFrame(rows, columns=INTER_RATER_COLUMNS)
    table["n_items"] = table["n_items"].astype("int64")
    return table

