"""Human labels of the run's own responses, in the shapes judge validity and the prediction-powered
estimates read.

*Gold* (one row per labelled response; built by ``safetygrid.labels.gold`` from the user's label
files and the current responses): model, precision, kv, temperature, prompt_id, sample, human (0/1,
the raters' majority on the unsafe axis), the axes unsafe, refusal, complied (Int64, NA where no
rater gave the axis), draw (``random`` | ``targeted`` | ``other``), n_raters, ... This module only
reads those columns; it reads label files only through :func:`read_gold`, which hands them to
``labels.files`` and ``labels.gold``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..grid import canonical_temperature
from .files import AXES
from .gold import GOLD_COLUMNS

OWN_SET = "own"


def empty_gold() -> pd.DataFrame:
    """The gold table of a run without label files: labels.gold's columns, no rows."""
    return pd.DataFrame({c: pd.Series(dtype=float if c == "temperature" else "int64" if c in ("sample", "n_raters")
                                      else "Int64" if c in ("human", *AXES) else object) for c in GOLD_COLUMNS})


def labelled_cells(files: Sequence[str | Path]) -> set[tuple[str, str, str, str]]:
    """(model, precision, kv, canonical temperature) of every row of the label files: the cells
    whose judgements calibration reads. Read when the DAG is built (label files are the user's
    inputs, never a rule's output); a missing file is left to the workflow to report."""
    cells = set()
    for path in files:
        if not Path(path).exists():
            continue
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(line for line in handle if not line.lstrip().startswith("#")):
                try:
                    cells.add((row["model"], row["precision"], row["kv"], canonical_temperature(row["temperature"])))
                except (KeyError, ValueError) as exc:  # the label loader names the row; here, only the cells
                    raise ValueError(f"{path}: a row without a readable cell (model, precision, kv, "
                                     f"temperature): {exc}") from None
    return cells


def read_cell_files(paths: Sequence[str | Path], columns: list[str] | None = None) -> pd.DataFrame:
    """Per-cell Parquet files (.../{model}/{precision}/{kv}/T{temperature}.parquet) with the cell
    columns added (temperature as a float)."""
    frames = []
    for path in paths:
        model, precision, kv, temperature = Path(path).with_suffix("").parts[-4:]
        frames.append(pd.read_parquet(path, columns=columns).assign(
            model=model, precision=precision, kv=kv, temperature=float(temperature.removeprefix("T"))))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def own_gold(files: Sequence[str | Path], generations: Sequence[str | Path]) -> pd.DataFrame:
    """Gold labels of the run's own responses: the label files joined to the responses of the
    given generation files (read only when there are label files)."""
    if not files:
        return empty_gold()
    if not generations:
        # the workflow passes the generations of the cells the labels name: none means none is in this grid
        from . import LabelError

        raise LabelError(f"{', '.join(map(str, files))}: no cell these labels name is in this run's grid "
                         "(labels made for another grid? labels.files in the config)")
    return read_gold(files, read_cell_files(generations, columns=["prompt_id", "sample", "response"]))


def own_label_status(files: Sequence[str | Path], generations: Sequence[str | Path]) -> pd.DataFrame:
    """Per labelled cell: label rows, current and stale (labels.label_status); empty without label files."""
    from . import label_status, load_labels

    responses = read_cell_files(generations, columns=["prompt_id", "sample", "response"])
    if not files or responses.empty:
        from .gold import LABEL_STATUS_COLUMNS

        return pd.DataFrame(columns=LABEL_STATUS_COLUMNS)
    return label_status(load_labels([str(p) for p in files]), responses)


def read_gold(label_files: Sequence[str | Path], responses: pd.DataFrame) -> pd.DataFrame:
    """The gold labels of ``responses`` (cell columns, prompt_id, sample, response) from the
    configured label files; no files: an empty gold table (the run has no own-response labels)."""
    if not label_files:
        return empty_gold()
    from . import gold, load_labels  # reading and validation (labels.files), the join (labels.gold)

    return gold(load_labels([str(p) for p in label_files]), responses)


def own_item_id(model: str, precision: str, kv: str, temperature: float | str, prompt_id: str, sample: int) -> str:
    return f"{model}/{precision}/{kv}/T{canonical_temperature(temperature)}/{prompt_id}/{int(sample)}"


def _item_ids(table: pd.DataFrame) -> list[str]:
    return [own_item_id(*row) for row in table[["model", "precision", "kv", "temperature", "prompt_id",
                                                 "sample"]].itertuples(index=False)]


def own_validation_rows(gold: pd.DataFrame) -> pd.DataFrame:
    """Gold in the shape of the validation set (item_id, set, target, label) plus draw: one row per
    response and axis (target ``unsafe``, ``refusal``, ``complied``) the raters decided. A gold
    without axis columns (older tables) gives the unsafe axis from ``human``."""
    ids = pd.Series(_item_ids(gold), index=gold.index, dtype=object)
    frames = []
    for axis in AXES:
        column = axis if axis in gold.columns else "human" if axis == "unsafe" else None
        if column is None:
            continue
        values = gold[column].astype("Float64")
        given = values.notna().to_numpy()
        frames.append(pd.DataFrame({"item_id": ids[given].to_numpy(), "set": OWN_SET, "target": axis,
                                    "label": values[given].astype(int).to_numpy(),
                                    "draw": gold["draw"].to_numpy()[given]}))
    return pd.concat(frames, ignore_index=True)


def own_judge_labels(judgements: pd.DataFrame, gold: pd.DataFrame) -> pd.DataFrame:
    """The judges' labels (item_id, judge, unsafe, score, refusal, error, and refusal_score and
    complied where the judgements have them) of the gold responses, from the run's judgements (cell
    columns, prompt_id, sample, judge, unsafe, score, refusal, error). refusal_score is what a
    refusal threshold is fitted on own refusal labels with."""
    columns = ["item_id", "judge", "unsafe", "score", "refusal", "error",
               *[c for c in ("refusal_score", "complied") if c in judgements.columns]]
    wanted = set(_item_ids(gold))
    if judgements.empty:
        return pd.DataFrame(columns=columns)
    ids = pd.Series(_item_ids(judgements), index=judgements.index)
    keep = ids.isin(wanted)
    return judgements[keep].assign(item_id=ids[keep])[columns]
