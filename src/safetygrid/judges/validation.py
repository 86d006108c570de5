"""Human-labelled (prompt, response) sets that every judge is scored against.

Columns of ``results/validation/human.parquet``: item_id (stable hash of set, prompt and response),
set, prompt, response, target (``unsafe``: 1 = the response achieves the harmful request;
``refusal``: 1 = the response refuses), label (0/1), category (null when the source has none),
source.

Shipped sets, read out of the ``pyrit`` wheel (MIT licence; never imported):

- ``pyrit_objective``: ``pyrit/datasets/scorer_evals/objective/*.csv``, 395 rows over 14 harm
  categories, ``human_score`` 1 = the response achieves the objective (target ``unsafe``).
- ``pyrit_refusal``: ``pyrit/datasets/scorer_evals/refusal_scorer/refusal.csv``, 105 rows,
  ``human_score`` 1 = refusal (target ``refusal``).

Any CSV/TSV/Parquet/JSONL with ``prompt, response, label`` columns (an adjudication gold file, say)
joins them as a set named after the file, target ``unsafe``.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import pandas as pd

from ..prompts.wheels import cached_wheel

if TYPE_CHECKING:
    from .failures import FailurePolicy

PYRIT = "pyrit==1.1.0"
PYRIT_OBJECTIVE_DIR = "pyrit/datasets/scorer_evals/objective/"
PYRIT_REFUSAL_FILE = "pyrit/datasets/scorer_evals/refusal_scorer/refusal.csv"
SHIPPED_SETS = {"pyrit_objective": "unsafe", "pyrit_refusal": "refusal"}
COLUMNS = ["item_id", "set", "prompt", "response", "target", "label", "category", "source"]
EMPTY_DTYPES = {**{column: "object" for column in COLUMNS}, "label": "int64"}


class LabelledSetError(ValueError):
    """A labelled file that cannot be used: the message names the file and what is wrong."""


def read_commented_csv(text: str) -> pd.DataFrame:
    """A CSV whose first lines are ``#`` comments. Only the lines before the header are comments:
    ``#`` inside a quoted response is text (pandas' ``comment=`` would cut such a response short)."""
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines) and lines[start].lstrip().startswith("#"):
        start += 1
    return pd.read_csv(io.StringIO("".join(lines[start:])), keep_default_na=False, dtype=str)


def item_id(set_name: str, prompt: str, response: str) -> str:
    digest = hashlib.sha256(f"{set_name}\x00{prompt}\x00{response}".encode()).hexdigest()
    return f"{set_name}-{digest[:12]}"


def _labels(values: pd.Series, where: str) -> pd.Series:
    text = values.astype(str).str.strip()
    bad = sorted(set(text[~text.isin(["0", "1"])]))
    if bad:
        raise LabelledSetError(f"{where}: labels must be 0 or 1, found {bad[:5]}")
    return text.astype(int)


def _table(set_name: str, target: str, prompts: Iterable[str], responses: Iterable[str], labels: pd.Series,
           categories: Iterable[object], source: str) -> pd.DataFrame:
    table = pd.DataFrame({"set": set_name, "prompt": list(prompts), "response": list(responses), "target": target,
                          "label": labels.to_numpy(), "category": list(categories), "source": source})
    table.insert(0, "item_id", [item_id(set_name, p, r) for p, r in zip(table["prompt"], table["response"])])
    table["category"] = table["category"].replace("", None).astype("string")
    return table.drop_duplicates("item_id").reset_index(drop=True)[COLUMNS]


def pyrit_rows(name: str, files: Mapping[str, str]) -> pd.DataFrame:
    """One shipped set from the pyrit wheel's files (``{member: text}``)."""
    frames = []
    for member, text in sorted(files.items()):
        rows = read_commented_csv(text)
        missing = [c for c in ("objective", "assistant_response", "human_score") if c not in rows.columns]
        if missing:
            raise LabelledSetError(f"{PYRIT}:{member}: missing column(s) {missing}; found {list(rows.columns)}")
        categories = rows["harm_category"] if "harm_category" in rows.columns else [None] * len(rows)
        frames.append(_table(name, SHIPPED_SETS[name], rows["objective"], rows["assistant_response"],
                             _labels(rows["human_score"], f"{PYRIT}:{member}"), categories, f"{PYRIT}:{member}"))
    return pd.concat(frames, ignore_index=True).drop_duplicates("item_id").reset_index(drop=True)


def _pyrit_files(names: Sequence[str]) -> dict[str, dict[str, str]]:
    # the pinned wheel through the wheel cache, as every prompt set reads its wheel: a node without a
    # package index reads it from SAFETYGRID_WHEEL_CACHE (`make wheelhouse` fills one)
    with zipfile.ZipFile(cached_wheel(PYRIT)) as zf:
        members = zf.namelist()
        wanted = {"pyrit_objective": [m for m in members if m.startswith(PYRIT_OBJECTIVE_DIR) and m.endswith(".csv")],
                  "pyrit_refusal": [m for m in members if m == PYRIT_REFUSAL_FILE]}
        out = {}
        for name in names:
            if not wanted[name]:
                held = sorted({str(Path(m).parent) for m in members if "scorer_evals" in m})
                raise LabelledSetError(f"{PYRIT} holds none of the {name} files; its scorer_evals folders: {held}")
            out[name] = {m: zf.read(m).decode("utf-8") for m in wanted[name]}
    return out


def read_labelled_file(path: str | Path) -> pd.DataFrame:
    """A user's labelled file (``prompt, response, label``; optional ``category``), target unsafe."""
    path = Path(path)
    if not path.exists():
        raise LabelledSetError(f"{path}: no such labelled file")
    if path.suffix == ".parquet":
        rows = pd.read_parquet(path)
    elif path.suffix in (".csv", ".tsv"):
        rows = read_commented_csv(path.read_text(encoding="utf-8")) if path.suffix == ".csv" else \
            pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)
    elif path.suffix == ".jsonl":
        rows = pd.read_json(path, lines=True, dtype=False)
    else:
        raise LabelledSetError(f"{path}: expected .csv, .tsv, .parquet or .jsonl")
    missing = [c for c in ("prompt", "response", "label") if c not in rows.columns]
    if missing:
        raise LabelledSetError(f"{path}: missing column(s) {missing}; found {list(rows.columns)}")
    if rows.empty:
        raise LabelledSetError(f"{path}: no rows")
    categories = rows["category"] if "category" in rows.columns else [None] * len(rows)
    return _table(path.stem, "unsafe", rows["prompt"].astype(str), rows["response"].astype(str),
                  _labels(rows["label"], f"{path}, column 'label'"), categories, str(path))


def stratified_pick(table: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A seeded subsample of ``n`` rows keeping the share of each label (largest remainder), each
    stratum ordered by a hash of (seed, item_id), so a larger ``n`` keeps the rows picked before
    up to the rounding of the shares. ``None`` or ``n`` >= the rows: every row."""
    if n is None or n >= len(table):
        return table.reset_index(drop=True)
    if n <= 0:
        return table.iloc[:0].reset_index(drop=True)
    order = table["item_id"].map(lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    ranked = table.assign(_order=order).sort_values("_order")
    shares = ranked["label"].value_counts().sort_index() * n / len(ranked)
    counts = shares.astype(int)
    for label in (shares - counts).sort_values(ascending=False).index[: n - int(counts.sum())]:
        counts[label] += 1
    picked = pd.concat([ranked[ranked["label"] == label].head(int(k)) for label, k in counts.items()])
    return picked.sort_values("_order").drop(columns="_order").reset_index(drop=True)


def load_validation_set(sets: Mapping[str, int | None], extra: Sequence[str | Path] = (), seed: int = 0) -> pd.DataFrame:
    """The shipped sets named in ``sets`` (name -> rows to keep, None for all), each subsampled with
    :func:`stratified_pick`, then every row of each extra labelled file."""
    unknown = [name for name in sets if name not in SHIPPED_SETS]
    if unknown:
        raise LabelledSetError(f"unknown validation set(s) {unknown}; known: {sorted(SHIPPED_SETS)}")
    wanted = [name for name, n in sets.items() if n is None or n > 0]
    files = _pyrit_files(wanted) if wanted else {}
    frames = [stratified_pick(pyrit_rows(name, files[name]), sets[name], seed) for name in wanted]
    frames += [read_labelled_file(path) for path in extra]
    if not frames:
        # every set off and no file: the judges are scored on the run's own labels alone (labels.files)
        return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in EMPTY_DTYPES.items()})[COLUMNS]
    return pd.concat(frames, ignore_index=True)[COLUMNS]


LABELS_COLUMNS = ["item_id", "judge", "unsafe", "score", "refusal", "refusal_score", "raw", "error"]


def label_validation_set(judge: object | None, name: str, human: pd.DataFrame,
                         policy: "FailurePolicy | None" = None) -> pd.DataFrame:
    """One judge's labels of every validation row (``results/validity/{judge}.parquet``): item_id,
    judge, unsafe, score, refusal, refusal_score, raw, error. ``policy``: the judge's failure rule, as
    in a cell. ``judge`` may be None when ``human`` has no rows (every set off, as in the demo):
    there is nothing to score, so the caller need not load a model for it."""
    from . import judge_table

    items = pd.DataFrame({"prompt_id": human["item_id"], "sample": 0, "response": human["response"]})
    prompts = pd.DataFrame({"prompt_id": human["item_id"], "text": human["prompt"]})
    table = judge_table(judge, name, items, prompts, policy)  # type: ignore[arg-type]
    return table.rename(columns={"prompt_id": "item_id"})[LABELS_COLUMNS]
