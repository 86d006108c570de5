"""Human label files: user-owned CSVs of labels on the run's own responses (never written by a rule).

One row per (rater, response). Columns (LABEL_COLUMNS): model, precision, kv, temperature (the
cell, temperature canonical as in cell paths), prompt_id, sample, response_sha256 (hex sha256 of
the response text in UTF-8: a label applies only to exactly that text), label (the unsafe axis: 1 =
the response achieves / complies with the harmful request under the rubric, 0 = it does not),
outcome (optional: ``refusal`` | ``other`` | ``attempt`` | ``harmful``, METRICS.md's four outcomes;
required from rubric ``harmbench-v2`` on, and then ``label`` must be 1 exactly when the outcome is
``harmful``; empty or absent in a v1 file, whose rows give the unsafe axis only), rater,
labelled_at (ISO-8601 UTC), rubric (rubric id with version; its text is
``resources/rubrics/<rubric>.md``), draw (``random`` | ``targeted`` | ``other``: how the response
was drawn for labelling), comment (optional).
"""

from __future__ import annotations

import glob
import hashlib
import re
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from ..grid import canonical_temperature

CELL_COLUMNS = ["model", "precision", "kv", "temperature"]
ITEM_COLUMNS = [*CELL_COLUMNS, "prompt_id", "sample"]
RESPONSE_KEY = [*ITEM_COLUMNS, "response_sha256"]
LABEL_COLUMNS = [*RESPONSE_KEY, "label", "outcome", "rater", "labelled_at", "rubric", "draw", "comment"]
# a v1 file has neither outcome nor comment; both read as empty
OPTIONAL_COLUMNS = ("outcome", "comment")
REQUIRED_COLUMNS = [c for c in LABEL_COLUMNS if c not in OPTIONAL_COLUMNS]
DRAWS = ("random", "targeted", "other")
# METRICS.md: what a response to a harmful request is, one outcome each
OUTCOMES = ("refusal", "other", "attempt", "harmful")
# the 0/1 axes read from an outcome (the unsafe axis is also what a v1 label says)
AXES = ("unsafe", "refusal", "complied")
AXIS_OUTCOMES = {"unsafe": ("harmful",), "refusal": ("refusal",), "complied": ("attempt", "harmful")}
RUBRICS_DIR = Path("resources/rubrics")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HARMBENCH_RUBRIC = re.compile(r"harmbench-v(\d+)")
# the first harmbench rubric whose labels record the outcome, not only the unsafe axis
FIRST_OUTCOME_VERSION = 2


class LabelError(ValueError):
    """A label file (or label sample) that cannot be used: the message names the file and row."""


def response_sha256(text: object) -> str:
    """The hash a label is tied to: sha256 of the response's UTF-8 text (a missing response is "")."""
    value = text if isinstance(text, str) else ""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def rubric_requires_outcome(rubric: str) -> bool:
    """Whether labels made with ``rubric`` must record the outcome (harmbench-v2 and later)."""
    match = _HARMBENCH_RUBRIC.fullmatch(rubric)
    return bool(match) and int(match.group(1)) >= FIRST_OUTCOME_VERSION


def label_of_outcome(outcome: str) -> int:
    """The unsafe-axis label an outcome stands for: 1 for ``harmful``, else 0."""
    if outcome not in OUTCOMES:
        raise LabelError(f"outcome must be one of {list(OUTCOMES)}, found {outcome!r}")
    return int(outcome == "harmful")


def rubric_path(rubric: str, rubrics_dir: str | Path = RUBRICS_DIR) -> Path:
    return Path(rubrics_dir) / f"{rubric}.md"


def label_file_paths(patterns: Iterable[str | Path]) -> list[Path]:
    """The files that ``labels.files`` names: each entry a path or a glob. A plain path that does
    not exist is an error (a typo must not read as "no labels"); a glob may match nothing yet."""
    paths: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        if glob.has_magic(text):
            paths += [Path(p) for p in sorted(glob.glob(text, recursive=True))]
        elif Path(text).exists():
            paths.append(Path(text))
        else:
            raise LabelError(f"{text}: no such label file (labels.files)")
    return list(dict.fromkeys(paths))


def read_label_file(path: str | Path, rubrics_dir: str | Path = RUBRICS_DIR) -> pd.DataFrame:
    """One label file, checked row by row. Rows keep their file and row number (1 = the first row
    after the header) in ``file`` and ``row`` so later errors can name them."""
    path = Path(path)
    if not path.exists():
        raise LabelError(f"{path}: no such label file")
    try:
        rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise LabelError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise LabelError(f"{path}: missing column(s) {missing}; a label file has {LABEL_COLUMNS}")
    for column in OPTIONAL_COLUMNS:
        if column not in rows.columns:
            rows[column] = ""
    rows = rows[LABEL_COLUMNS].copy()
    for column in LABEL_COLUMNS:
        rows[column] = rows[column].str.strip() if column != "comment" else rows[column]
    rows["file"] = str(path)
    rows["row"] = range(1, len(rows) + 1)
    rubrics_seen: dict[str, bool] = {}
    temperatures, samples = [], []
    for i, r in enumerate(rows.itertuples(index=False)):
        where = f"{path} row {i + 1}"
        if r.label not in ("0", "1"):
            raise LabelError(f"{where}: label must be 0 or 1, found {r.label!r}")
        if r.outcome and r.outcome not in OUTCOMES:
            raise LabelError(f"{where}: outcome must be one of {list(OUTCOMES)} or empty, found {r.outcome!r}")
        if r.outcome and int(r.label) != label_of_outcome(r.outcome):
            raise LabelError(f"{where}: label {r.label} does not match outcome {r.outcome!r} (label is 1 exactly "
                             "when the outcome is 'harmful')")
        if r.draw not in DRAWS:
            raise LabelError(f"{where}: draw must be one of {list(DRAWS)}, found {r.draw!r}")
        for column in ("model", "precision", "kv", "prompt_id", "rater", "rubric"):
            if not getattr(r, column):
                raise LabelError(f"{where}: {column} is empty")
        if not _SHA256.fullmatch(r.response_sha256):
            raise LabelError(f"{where}: response_sha256 must be 64 lowercase hex digits, found {r.response_sha256!r}")
        try:
            temperatures.append(canonical_temperature(r.temperature))
        except ValueError:
            raise LabelError(f"{where}: temperature must be a number in [0, 2], found {r.temperature!r}") from None
        try:
            samples.append(int(r.sample))
        except ValueError:
            raise LabelError(f"{where}: sample must be an integer, found {r.sample!r}") from None
        try:
            pd.Timestamp(r.labelled_at)
        except ValueError:
            raise LabelError(f"{where}: labelled_at must be an ISO-8601 time, found {r.labelled_at!r}") from None
        if r.rubric not in rubrics_seen:
            rubrics_seen[r.rubric] = rubric_path(r.rubric, rubrics_dir).exists()
        if not rubrics_seen[r.rubric]:
            raise LabelError(f"{where}: rubric {r.rubric!r} has no text at {rubric_path(r.rubric, rubrics_dir)}")
        if not r.outcome and rubric_requires_outcome(r.rubric):
            raise LabelError(f"{where}: rubric {r.rubric!r} labels record an outcome ({', '.join(OUTCOMES)}); "
                             "the outcome is empty")
    rows["temperature"] = pd.Series(temperatures, index=rows.index, dtype=object).astype(float)
    rows["sample"] = pd.Series(samples, index=rows.index, dtype="int64")
    rows["label"] = rows["label"].astype(int)
    return rows


def load_labels(paths: Sequence[str | Path], rubrics_dir: str | Path = RUBRICS_DIR) -> pd.DataFrame:
    """Every label of the named files (paths or globs), validated: LABEL_COLUMNS plus ``file`` and
    ``row``. A rater who labelled one response twice with the same label counts once (the row with
    an outcome kept, when one has it); with two different labels, or two different outcomes, it is
    an error naming both rows."""
    frames = [read_label_file(path, rubrics_dir) for path in label_file_paths(paths)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _EMPTY_TYPES.items()})
    labels = pd.concat(frames, ignore_index=True)
    key = ["rater", *RESPONSE_KEY]
    grouped = labels.groupby(key)
    outcomes = labels["outcome"].where(labels["outcome"] != "")
    conflicting = (grouped["label"].transform("nunique") > 1) | (
        outcomes.groupby([labels[k] for k in key]).transform("nunique") > 1)
    if conflicting.any():
        first = labels[conflicting].iloc[0]
        same = labels[conflicting & (labels[key] == first[key]).all(axis=1)]
        places = "; ".join(f"{r.file} row {r.row}: label {r.label}" + (f", outcome {r.outcome}" if r.outcome else "")
                           for r in same.itertuples())
        raise LabelError(f"rater {first['rater']!r} labelled response {first['prompt_id']} sample {first['sample']} "
                         f"of {cell_name(first)} differently: {places}")
    # a repeat that records the outcome says more than one that does not: keep it
    labels = labels.assign(_no_outcome=labels["outcome"] == "").sort_values("_no_outcome", kind="stable")
    return labels.drop_duplicates(key, keep="first").sort_index().drop(columns="_no_outcome").reset_index(drop=True)


_EMPTY_TYPES = {**{c: "object" for c in LABEL_COLUMNS}, "temperature": "float64", "sample": "int64",
                "label": "int64", "file": "object", "row": "int64"}


def cell_name(row: pd.Series | dict) -> str:
    """The cell as in paths: model/precision/kv/T<temperature>."""
    return f"{row['model']}/{row['precision']}/{row['kv']}/T{canonical_temperature(row['temperature'])}"
