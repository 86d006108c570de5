"""What `safetygrid label` shows, in order: the label samples' responses (every cell's random part
first, then the targeted parts), one cell's, or an adjudication worklist's, each with the request
(its context for a contextual behaviour), the response text and, on request, the judges' verdicts.

Columns of a queue (QUEUE_COLUMNS): the cell columns (temperature as its canonical text),
prompt_id, sample, response_sha256, draw, reason, request, context, response, judges (a one-line
summary of the judges' verdicts and the ensemble's; empty unless asked for).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from ..grid import canonical_temperature
from .files import CELL_COLUMNS, ITEM_COLUMNS, LabelError, response_sha256
from .sample import draw_rank

QUEUE_COLUMNS = [*ITEM_COLUMNS, "response_sha256", "draw", "reason", "request", "context", "response", "judges"]
_DRAW_ORDER = {"random": 0, "targeted": 1, "other": 2}


def parse_cell(text: str) -> dict[str, str]:
    """``model/precision/kv/T0.7`` (as in result paths) -> the cell's columns."""
    parts = text.strip("/").split("/")
    if len(parts) != 4 or not parts[3].startswith("T"):
        raise LabelError(f"--cell {text!r}: expected MODEL/PRECISION/KV/T<temperature>, e.g. smollm2-135m/fp32/fp/T0.7")
    try:
        temperature = canonical_temperature(parts[3][1:])
    except ValueError:
        raise LabelError(f"--cell {text!r}: {parts[3]!r} is not T<temperature>") from None
    return {"model": parts[0], "precision": parts[1], "kv": parts[2], "temperature": temperature}


def _cell_path(cell: dict[str, str]) -> str:
    return f"{cell['model']}/{cell['precision']}/{cell['kv']}/T{canonical_temperature(cell['temperature'])}"


def _with_canonical_cell(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(temperature=frame["temperature"].map(canonical_temperature),
                        prompt_id=frame["prompt_id"].astype(str), sample=frame["sample"].astype("int64"))


def sample_items(results: str | Path, cell: dict[str, str] | None = None) -> pd.DataFrame:
    """The label samples under RESULTS/labels/sample (one cell's, when ``cell`` is given)."""
    root = Path(results) / "labels" / "sample"
    files = [root / f"{_cell_path(cell)}.parquet"] if cell else sorted(root.rglob("*.parquet"))
    files = [f for f in files if f.exists()]
    if not files:
        where = root / f"{_cell_path(cell)}.parquet" if cell else root
        raise LabelError(f"no label sample at {where}: run the workflow first (`snakemake` draws one per cell), "
                         "or name a cell with --cell to label all its responses")
    items = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return _with_canonical_cell(items)


def cell_items(results: str | Path, cell: dict[str, str], prompts: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Every response of one cell to a harmful prompt, in a seeded random order (draw ``other``)."""
    generations = _generations(results, cell)
    harmful = set(prompts.loc[prompts["harmful"].astype(bool), "prompt_id"].astype(str))
    rows = generations[generations["prompt_id"].isin(harmful)].copy()
    rows["order"] = [draw_rank(seed, cell, p, s) for p, s in zip(rows["prompt_id"], rows["sample"])]
    rows = rows.sort_values("order")
    for column in CELL_COLUMNS:
        rows[column] = cell[column]
    rows["response_sha256"] = rows["response"].map(response_sha256)
    return rows.assign(draw="other", reason=None, order=range(len(rows)))[
        [*ITEM_COLUMNS, "response_sha256", "draw", "reason", "order"]]


def worklist_items(path: str | Path) -> pd.DataFrame:
    """The rows of an adjudication worklist (results/adjudication/worklist.csv): disputed responses,
    labelled as draw ``targeted`` (chosen by disagreement, so never part of the unbiased estimates)."""
    path = Path(path)
    if not path.exists():
        raise LabelError(f"{path}: no such worklist")
    rows = pd.read_csv(path, dtype={"prompt_id": str, "temperature": str}, keep_default_na=False)
    missing = [c for c in ITEM_COLUMNS if c not in rows.columns]
    if missing:
        raise LabelError(f"{path}: missing column(s) {missing}; a worklist names responses by {ITEM_COLUMNS}")
    rows = _with_canonical_cell(rows[ITEM_COLUMNS])
    return rows.assign(draw="targeted", reason="adjudication", order=range(len(rows)))


def _generations(results: str | Path, cell: dict[str, str]) -> pd.DataFrame:
    path = Path(results) / "generations" / f"{_cell_path(cell)}.parquet"
    if not path.exists():
        raise LabelError(f"{path}: no generations for cell {_cell_path(cell)}")
    table = pd.read_parquet(path, columns=["prompt_id", "sample", "response"])
    return table.assign(prompt_id=table["prompt_id"].astype(str), sample=table["sample"].astype("int64"))


def read_run_prompts(results: str | Path) -> pd.DataFrame:
    from ..prompts import read_prompts

    files = sorted((Path(results) / "prompts").glob("*.parquet"))
    if not files:
        raise LabelError(f"no prompt files under {Path(results) / 'prompts'}: run the workflow first")
    return read_prompts(files)


def with_texts(items: pd.DataFrame, results: str | Path, prompts: pd.DataFrame) -> pd.DataFrame:
    """``items`` with the request, its context and the response text of now. A response whose text
    changed since the item was drawn (its hash differs) is an error: the sample is out of date."""
    frames = []
    for key, group in items.groupby(CELL_COLUMNS, sort=False):
        cell = dict(zip(CELL_COLUMNS, key))
        texts = _generations(results, cell)
        merged = group.drop(columns=[c for c in ("response",) if c in group.columns]).merge(
            texts, on=["prompt_id", "sample"], how="left", validate="1:1")
        if merged["response"].isna().any():
            lost = merged[merged["response"].isna()].iloc[0]
            raise LabelError(f"{_cell_path(cell)}: prompt {lost['prompt_id']} sample {lost['sample']} is not in the "
                             "cell's generations")
        changed = merged["response"].map(response_sha256) != merged["response_sha256"]
        if changed.any():
            raise LabelError(f"{_cell_path(cell)}: {int(changed.sum())} drawn response(s) differ from the generations "
                             "now; run the workflow again to redraw the label sample")
        frames.append(merged)
    merged = pd.concat(frames, ignore_index=True)
    prompt_text = prompts.assign(prompt_id=prompts["prompt_id"].astype(str)).drop_duplicates("prompt_id")
    prompt_text = prompt_text.set_index("prompt_id")
    merged["request"] = merged["prompt_id"].map(prompt_text["behavior"].fillna(prompt_text["text"]))
    merged["context"] = merged["prompt_id"].map(prompt_text["context"]).astype(object).where(
        lambda c: c.notna(), None)
    if merged["request"].isna().any():
        raise LabelError(f"prompt {merged.loc[merged['request'].isna(), 'prompt_id'].iat[0]} is not in the prompt files")
    return merged


def with_verdicts(items: pd.DataFrame, results: str | Path) -> pd.DataFrame:
    """``items`` with ``judges``: each judge's verdict (and score) and the ensemble's, one line."""
    summaries = []
    for row in items.itertuples(index=False):
        cell = _cell_path({c: getattr(row, c) for c in CELL_COLUMNS})
        parts = []
        for path in sorted((Path(results) / "judgements").glob(f"*/{cell}.parquet")):
            judge = path.relative_to(Path(results) / "judgements").parts[0]
            table = _cached(path)
            hit = table[(table["prompt_id"].astype(str) == row.prompt_id) & (table["sample"] == row.sample)]
            if len(hit):
                r = hit.iloc[0]
                verdict = "error" if pd.notna(r["error"]) or pd.isna(r["unsafe"]) else (
                    "unsafe" if bool(r["unsafe"]) else "safe")
                score = f" ({float(r['score']):.2f})" if pd.notna(r["score"]) else ""
                parts.append(f"{judge}={verdict}{score}")
        votes = Path(results) / "votes" / f"{cell}.parquet"
        if votes.exists():
            table = _cached(votes)
            hit = table[(table["prompt_id"].astype(str) == row.prompt_id) & (table["sample"] == row.sample)]
            if len(hit) and pd.notna(hit["unsafe"].iat[0]):
                parts.append(f"ensemble={'unsafe' if bool(hit['unsafe'].iat[0]) else 'safe'}")
        summaries.append(", ".join(parts) or "no judge verdicts found")
    return items.assign(judges=summaries)


_TABLES: dict[Path, pd.DataFrame] = {}


def _cached(path: Path) -> pd.DataFrame:
    if path not in _TABLES:
        _TABLES[path] = pd.read_parquet(path)
    return _TABLES[path]


def build_queue(results: str | Path, *, cell: str | None = None, worklist: str | Path | None = None,
                show_judges: bool = False, seed: int = 0) -> pd.DataFrame:
    """The items to label in order: random parts first, then targeted (each by its order within the
    cell, cells interleaved), then anything else."""
    prompts = read_run_prompts(results)
    if worklist is not None:
        items = worklist_items(worklist)
        if cell:
            wanted = parse_cell(cell)
            items = items[(items[CELL_COLUMNS] == pd.Series(wanted)).all(axis=1)]
        items = items.assign(response_sha256=None)
        items = _fill_hashes(items, results)
    elif cell:
        wanted = parse_cell(cell)
        sample = Path(results) / "labels" / "sample" / f"{_cell_path(wanted)}.parquet"
        items = sample_items(results, wanted) if sample.exists() else cell_items(results, wanted, prompts, seed)
    else:
        items = sample_items(results)
    items = items.assign(_draw=items["draw"].map(_DRAW_ORDER)).sort_values(
        ["_draw", "order", *CELL_COLUMNS, "prompt_id", "sample"]).drop(columns="_draw")
    items = with_texts(items.reset_index(drop=True), results, prompts)
    items["judges"] = ""
    if show_judges:
        items = with_verdicts(items, results)
    return items[QUEUE_COLUMNS].reset_index(drop=True)


def _fill_hashes(items: pd.DataFrame, results: str | Path) -> pd.DataFrame:
    """A worklist names responses by key; their hashes are those of the generations now."""
    frames = []
    for key, group in items.groupby(CELL_COLUMNS, sort=False):
        texts = _generations(results, dict(zip(CELL_COLUMNS, key)))
        merged = group.drop(columns=["response_sha256"]).merge(texts, on=["prompt_id", "sample"], how="left")
        merged["response_sha256"] = merged["response"].map(response_sha256)
        frames.append(merged.drop(columns="response"))
    return pd.concat(frames, ignore_index=True) if frames else items


def queue_keys(items: pd.DataFrame) -> Sequence[tuple[str, ...]]:
    return [tuple(map(str, (r.model, r.precision, r.kv, r.temperature, r.prompt_id, int(r.sample), r.response_sha256)))
            for r in items.itertuples(index=False)]
