"""`safetygrid judge`: label any table of (prompt, response) rows with the configured judges and
their ensemble, outside the workflow (someone else's generations, a red-team log, a gold set).

Output: the input's columns, then per judge ``<judge>_unsafe``, ``<judge>_score``,
``<judge>_refusal``, ``<judge>_refusal_score``, ``<judge>_error``, then the ensemble's ``unsafe``
(the config's ``ensemble_label``, with calibrated thresholds where configured), ``refusal`` (the
majority of the config's ``refusal_judges`` among the judges run, or of all that give one), ``unsafe_majority``,
``unsafe_ds``, ``p_unsafe_ds``, ``unsafe_stacked``, ``p_unsafe_stacked``, ``n_unsafe``, ``n_judges``,
``n_failed`` (as in the vote files).

Every row needs a non-empty ``prompt`` and a ``response`` that is text; an empty response is judged
(an empty answer is an answer). A row that breaks this fails the command, naming the row.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
from pyarrow import ArrowException

from ..ensemble.voting import vote
from ..io import write_parquet
from . import FailurePolicy, judge_table, loaded_judge

log = logging.getLogger(__name__)
REQUIRED = ("prompt", "response")


class BadRows(ValueError):
    """An input file whose rows cannot be judged: the message names the file, the row and the column."""


def _row_problem(value: object, column: str) -> str | None:
    """Why ``value`` cannot be a row's ``column``, or None. A prompt must be non-empty text; a
    response may be empty (a model that answered nothing is judged like any other answer: the
    refusal strings find no refusal in it, a language-model judge reads the empty answer)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"column {column!r} is missing (null)"
    if not isinstance(value, str):
        return f"column {column!r} holds {value!r} ({type(value).__name__}), not text"
    if column == "prompt" and not value.strip():
        return "column 'prompt' is empty"
    return None


def check_rows(rows: pd.DataFrame, path: Path) -> None:
    """Raise BadRows naming the first bad rows (numbered from 1, the header not counted)."""
    problems = []
    for column in REQUIRED:
        for number, value in enumerate(rows[column].tolist(), start=1):
            problem = _row_problem(value, column)
            if problem:
                problems.append(f"row {number}: {problem}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise BadRows(f"{path}: {'; '.join(problems[:3])}{more}")


def read_rows(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        if path.suffix == ".parquet":
            rows = pd.read_parquet(path)
        elif path.suffix in (".csv", ".tsv"):
            # every field as text: a prompt of digits stays the text it is, an empty field stays ""
            rows = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", keep_default_na=False, dtype=str)
        elif path.suffix in (".jsonl", ".json"):
            rows = pd.read_json(path, lines=path.suffix == ".jsonl", dtype=False)
        else:
            raise BadRows(f"{path}: expected .csv, .tsv, .parquet, .jsonl or .json")
    except (ValueError, OSError, pd.errors.ParserError, ArrowException) as exc:
        if isinstance(exc, BadRows):
            raise
        raise BadRows(f"{path}: cannot be read as {path.suffix.lstrip('.')}: {' '.join(str(exc).split())}") from exc
    missing = [c for c in REQUIRED if c not in rows.columns]
    if missing:
        raise BadRows(f"{path}: missing column(s) {missing}; found {list(rows.columns)}")
    if rows.empty:
        raise BadRows(f"{path}: no rows")
    rows = rows.reset_index(drop=True)
    check_rows(rows, path)
    return rows


def judge_model_dir(config: Mapping[str, Any], judge: str, sources: Path) -> str | None:
    """The judge model's folder: the precision of the grid its entry names (in models/ beside
    ``sources``, made by the workflow), else its fetched checkpoint under ``sources``, fetched first
    when absent or when its fetch.json records another source or other weights than the config now
    names (as the workflow's fetch job would be rerun), so a judge never runs on a model the config
    no longer names."""
    from ..models.fetch import fetch_model, fetch_request, fetched_differs

    name = config["judges"][judge].get("model")
    if not name:
        return None
    precision = config["judges"][judge].get("precision")
    if precision:
        # a precision of the grid is made by the workflow's quantize rule, never here
        made = sources.parent / "models" / name / precision
        if not (made / "status.json").is_file():
            raise ValueError(f"judge {judge} reads precision {precision} of model {name} ({made}), which the "
                             f"workflow makes: run `snakemake --profile local {made}` first")
        return str(made)
    directory = sources / name
    request = fetch_request(config, name)
    why = fetched_differs(directory, request)
    if why:
        log.info("fetching judge model %s into %s: %s", name, directory, why)
        fetch_model(request, directory, work_dir=directory.parent / f".{name}.download")
    return str(directory)


def label_rows(rows: pd.DataFrame, config: Mapping[str, Any], judges: Sequence[str], *,
               sources: str | Path = "results/sources", calibration: Mapping[str, Any] | None = None) -> pd.DataFrame:
    unknown = [j for j in judges if j not in config["judges"]]
    if unknown:
        raise ValueError(f"unknown judge(s) {unknown}; the config has {sorted(config['judges'])}")
    # items are named by their row number (from 1, as read_rows names bad rows), so a judge's
    # errors name the row
    items = pd.DataFrame({"prompt_id": [f"row {i}" for i in range(1, len(rows) + 1)], "sample": 0,
                          "response": rows["response"].to_numpy()})
    prompts = pd.DataFrame({"prompt_id": items["prompt_id"], "text": rows["prompt"].to_numpy()})
    out = rows.copy()
    judgements = []
    for judge in judges:
        log.info("judge %s: %d rows", judge, len(rows))
        # each judge's model is freed before the next one loads
        with loaded_judge(config["judges"][judge], judge_model_dir(config, judge, Path(sources))) as judge_impl:
            table = judge_table(judge_impl, judge, items, prompts, FailurePolicy.from_spec(config["judges"][judge]))
        judgements.append(table)
        for column in ("unsafe", "score", "refusal", "refusal_score", "error"):
            out[f"{judge}_{column}"] = table[column].to_numpy()
    chosen = config.get("refusal_judges")
    ensemble = vote(judgements, float(config.get("vote_threshold", 0.5)), calibration=calibration,
                    lead=config.get("ensemble_label", "majority"),
                    refusal_judges=None if chosen is None else [j for j in chosen if j in judges])
    ensemble = ensemble.set_index("prompt_id").reindex(items["prompt_id"])
    for column in ("unsafe", "refusal", "unsafe_majority", "unsafe_ds", "p_unsafe_ds", "unsafe_stacked",
                   "p_unsafe_stacked", "n_unsafe", "n_judges", "n_failed"):
        out[column] = ensemble[column].to_numpy()
    return out


def judge_file(input_path: str | Path, output_path: str | Path, config: Mapping[str, Any],
               judges: Sequence[str] | None = None, sources: str | Path = "results/sources",
               calibration: Mapping[str, Any] | None = None) -> pd.DataFrame:
    rows = read_rows(input_path)
    labelled = label_rows(rows, config, list(judges or sorted(config["judges"])), sources=sources,
                          calibration=calibration)
    write_parquet(labelled, output_path)
    return labelled
