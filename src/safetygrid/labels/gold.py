"""Labels joined to the run's current responses (the gold of own-response validity), and the
agreement of raters who labelled the same responses.

``gold`` columns (GOLD_COLUMNS): model, precision, kv, temperature (float), prompt_id, sample,
response_sha256, human (0/1: the unsafe axis, the same as ``unsafe``; kept for its older readers),
n_raters, draw (``random`` when any rater's row says so, else ``targeted``, else ``other``), raters
(comma-separated, sorted), then the three axes of METRICS.md as nullable ``Int64``: unsafe
([harmful], or a v1 label), refusal ([refusal]), complied ([attempt or harmful]), each the majority
of the raters who gave that axis (a v1 row gives only unsafe), NA when none gave it or they tie; and
outcome (the outcome more than half the raters who gave one chose; NA when none did or none gave one).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from ..grid import canonical_temperature
from .files import AXES, AXIS_OUTCOMES, ITEM_COLUMNS, LabelError, response_sha256

log = logging.getLogger(__name__)

GOLD_COLUMNS = [*ITEM_COLUMNS, "response_sha256", "human", "n_raters", "draw", "raters", *AXES, "outcome"]
# fewer shared responses than this leave a pair's kappa unstated: one or two items give 0, 1 or
# "undefined" by arithmetic, none of which says how far two readers agree
MIN_SHARED_FOR_KAPPA = 10
INTER_RATER_COLUMNS = ["axis", "rater_a", "rater_b", "n_items", "kappa", "kappa_lo", "kappa_hi", "agreement", "n_pos",
                       "n_neg", "note"]
_DRAW_PRIORITY = {"random": 0, "targeted": 1, "other": 2}


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a canonical-string temperature and an int sample, so files and tables join."""
    return frame.assign(temperature=frame["temperature"].map(canonical_temperature),
                        sample=frame["sample"].astype("int64"), prompt_id=frame["prompt_id"].astype(str))


def axis_values(labels: pd.DataFrame) -> pd.DataFrame:
    """Each label row's three axes (nullable Int64): unsafe from ``label``; refusal and complied from
    ``outcome``, NA on a row without one (a v1 label says nothing about refusing)."""
    outcome = labels["outcome"] if "outcome" in labels.columns else pd.Series("", index=labels.index)
    outcome = outcome.fillna("").astype(str)
    given = outcome != ""
    axes = {"unsafe": pd.Series(labels["label"].astype(int).to_numpy(), index=labels.index, dtype="Int64")}
    for axis in ("refusal", "complied"):
        axes[axis] = pd.Series(outcome.isin(AXIS_OUTCOMES[axis]).astype(int), dtype="Int64").where(given, pd.NA)
    return pd.DataFrame(axes, index=labels.index)


def _majority(values: pd.Series) -> object:
    """The raters' majority on one axis (0/1); NA when no rater gave it or they tie."""
    given = values.dropna()
    yes = int(given.sum())
    if not len(given) or 2 * yes == len(given):
        return pd.NA
    return int(2 * yes > len(given))


def _majority_outcome(values: pd.Series) -> object:
    """The outcome more than half the raters who gave one chose; NA when none did."""
    counts = values[values != ""].value_counts()
    if not len(counts) or 2 * counts.iat[0] <= counts.sum():
        return pd.NA
    return counts.index[0]


def _joined_to_current(labels: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """Each label row with the sha256 of its response's text now (``current_sha256``; NA: no such response)."""
    responses = _keyed(responses)
    if "response_sha256" not in responses.columns:
        responses = responses.assign(response_sha256=responses["response"].map(response_sha256))
    current = responses[[*ITEM_COLUMNS, "response_sha256"]].rename(columns={"response_sha256": "current_sha256"})
    if current.duplicated(ITEM_COLUMNS).any():
        raise LabelError("responses name one (cell, prompt_id, sample) twice")
    return _keyed(labels).merge(current, on=ITEM_COLUMNS, how="left", validate="m:1")


LABEL_STATUS_COLUMNS = ["model", "precision", "kv", "temperature", "labels", "current", "stale", "superseded",
                        "stale_share"]


def label_status(labels: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """Per cell the label files name that is in ``responses``: how many label rows it has
    (``labels``), how many still name their response's text (``current``) and how many are
    ``stale`` (the response's text changed since it was labelled: another machine's kernels, a
    package or code change, a changed config), how many of those are ``superseded`` (their response's
    current text is labelled as well, so nothing is missing), and ``stale_share``. What the report
    opens with when a stale label's response has no current label; rows naming no response of the
    run are left out (gold counts them)."""
    joined = _joined_to_current(labels, responses)
    joined = joined[joined["current_sha256"].notna()]
    cells = ["model", "precision", "kv", "temperature"]
    if joined.empty:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("temperature", "stale_share") else
                                          "int64" if c in ("labels", "current", "stale", "superseded") else object)
                             for c in LABEL_STATUS_COLUMNS})
    joined = joined.assign(current=joined["response_sha256"] == joined["current_sha256"])
    relabelled = joined.groupby(ITEM_COLUMNS)["current"].transform("any")
    joined = joined.assign(superseded=~joined["current"] & relabelled)
    table = (joined.groupby(cells, sort=True)[["current", "superseded"]]
             .agg(labels=("current", "size"), current=("current", "sum"), superseded=("superseded", "sum"))
             .reset_index())
    table[["current", "superseded"]] = table[["current", "superseded"]].astype("int64")
    table["stale"] = table["labels"] - table["current"]
    table["stale_share"] = table["stale"] / table["labels"]
    table["temperature"] = table["temperature"].astype(float)
    return table[LABEL_STATUS_COLUMNS]


def gold(labels: pd.DataFrame, responses: pd.DataFrame, require_match: bool = True) -> pd.DataFrame:
    """One row per response of ``responses`` (cell columns, prompt_id, sample, and ``response`` or
    ``response_sha256``) that has current labels: a label whose response_sha256 differs from the
    response's text now is stale and is left out. Each axis is the majority of the raters who gave
    it; a tie on an axis leaves that axis NA (counted in ``tied_<axis>``), and a response with no
    axis decided is left out (counted in ``tied``). The counts are logged and kept in
    ``attrs["counts"]`` (labels, matched, stale, unmatched, tied, tied_unsafe, tied_refusal,
    tied_complied).

    With ``require_match``, a label file none of whose rows names a response of ``responses`` fails,
    naming the file and how many rows did not match (a file for another grid, or a typo)."""
    joined = _joined_to_current(labels, responses)
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
    key = [*ITEM_COLUMNS, "response_sha256"]
    usable = pd.concat([usable, axis_values(usable)], axis=1)
    if "outcome" not in usable.columns:
        usable = usable.assign(outcome="")
    grouped = usable.assign(outcome=usable["outcome"].fillna("")).groupby(key, sort=True)
    table = grouped.agg(n_raters=("label", "size"),
                        draw=("draw", lambda d: min(d, key=_DRAW_PRIORITY.__getitem__)),
                        raters=("rater", lambda r: ",".join(sorted(set(r))))).reset_index()
    for axis in AXES:
        given = grouped[axis].count().to_numpy()
        table[axis] = pd.array(grouped[axis].agg(_majority).tolist(), dtype="Int64")
        counts[f"tied_{axis}"] = int(((given > 0) & table[axis].isna().to_numpy()).sum())
    table["outcome"] = pd.Series(grouped["outcome"].agg(_majority_outcome).tolist(), dtype=object)
    decided = table[list(AXES)].notna().any(axis=1)
    counts["tied"] = int((~decided).sum())
    table = table[decided].assign(human=lambda t: t["unsafe"])
    table["temperature"] = table["temperature"].astype(float)
    table = table[GOLD_COLUMNS].reset_index(drop=True)
    if any(counts[k] for k in ("stale", "unmatched", "tied", *[f"tied_{a}" for a in AXES])):
        log.warning("labels: %(stale)d stale (the response's text changed since it was labelled, not used), "
                    "%(unmatched)d naming no response of this run, %(tied)d responses whose raters tie (left out); "
                    "ties on one axis (that axis NA): unsafe %(tied_unsafe)d, refusal %(tied_refusal)d, complied "
                    "%(tied_complied)d",
                    counts)
    table.attrs["counts"] = counts
    return table


def inter_rater_kappa(labels: pd.DataFrame, *, seed: int = 0, resamples: int = 2000,
                      level: float = 0.95) -> pd.DataFrame:
    """Cohen's kappa of every pair of raters on each axis (``axis``: unsafe, refusal, complied) over
    the responses both labelled (same text) and both gave that axis (a v1 label gives only unsafe),
    with a percentile bootstrap interval over those responses; ``agreement`` is the share labelled
    alike. Kappa is left NA, with the reason in ``note``, below MIN_SHARED_FOR_KAPPA shared responses
    or when the two raters' labels together hold fewer than MIN_PER_CLASS of either class (n_pos,
    n_neg: labels of each class, both raters counted). Pairs that share no response on an axis are
    left out of that axis."""
    from ..ensemble.judge_validity import MIN_PER_CLASS, binary_validity

    if labels.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("n_items", "n_pos", "n_neg") else float
                                          if c.startswith(("kappa", "agr")) else object) for c in INTER_RATER_COLUMNS})
    key = [*ITEM_COLUMNS, "response_sha256"]
    keyed = _keyed(labels).assign(_item=lambda f: f[key].astype(str).agg("\x1f".join, axis=1))
    keyed = pd.concat([keyed, axis_values(keyed).astype("Float64").astype(float)], axis=1)
    rows: list[dict[str, Any]] = []
    for axis in AXES:
        wide = keyed.dropna(subset=[axis]).pivot_table(index="_item", columns="rater", values=axis, aggfunc="first")
        raters = sorted(wide.columns)
        for i, a in enumerate(raters):
            for b in raters[i + 1:]:
                both = wide[[a, b]].dropna()
                if both.empty:
                    continue
                pooled = np.concatenate([both[a].to_numpy(float), both[b].to_numpy(float)])
                n_pos, n_neg = int((pooled == 1).sum()), int((pooled == 0).sum())
                enough_shared, enough_each = len(both) >= MIN_SHARED_FOR_KAPPA, min(n_pos, n_neg) >= MIN_PER_CLASS
                # a pair whose kappa is not reported gets no bootstrap: most pairs of a labelling
                # history share a handful of responses, and their resamples were most of a run's wait
                result = binary_validity(both[a].to_numpy(float), both[b].to_numpy(float), seed=seed,
                                         resamples=resamples if enough_shared and enough_each else 0, level=level,
                                         min_per_class=0)
                row = {"axis": axis, "rater_a": a, "rater_b": b, "n_items": result["n"], "kappa": result["kappa"],
                       "kappa_lo": result["kappa_lo"], "kappa_hi": result["kappa_hi"],
                       "agreement": result["accuracy"], "n_pos": n_pos, "n_neg": n_neg, "note": result["note"]}
                if not enough_shared:
                    row.update(kappa=float("nan"), kappa_lo=float("nan"), kappa_hi=float("nan"),
                               note=f"{result['n']} shared responses: kappa needs at least {MIN_SHARED_FOR_KAPPA}")
                elif not enough_each:
                    row.update(kappa=float("nan"), kappa_lo=float("nan"), kappa_hi=float("nan"),
                               note=f"kappa not estimable: the two raters' labels hold {n_pos} positive and {n_neg} "
                                    f"negative, needs at least {MIN_PER_CLASS} of each")
                rows.append(row)
    table = pd.DataFrame(rows, columns=INTER_RATER_COLUMNS)
    for column in ("n_items", "n_pos", "n_neg"):
        table[column] = table[column].astype("int64")
    return table
