"""Gather every cell's votes and judgements into results/tables: cells, contrasts, skipped
precisions, quality, hypothesis tests, hidden danger, the direction split, the deployment card,
judge agreement and the per-category results."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import pyarrow.parquet as pq

from ..grid import canonical_temperature
from ..io import write_parquet
from ..labels.own import empty_gold
from .agreement import judge_agreement
from .categories import category_metrics
from .deployment import deployment_card, top_categories
from .hidden_danger import direction_split, hidden_danger_table
from .metrics import CELL_KEYS, cell_metrics, contrasts
from .ppi import cell_ppi, contrast_ppi
from ..prompts import read_prompts
from .significance import significance_table
from ..ensemble.judge_validity import OWN, TRUST_KAPPA
from ..ensemble.voting import apply_thresholds
from ..ensemble.crossfit import with_cross_fitted_labels

log = logging.getLogger(__name__)
# kv "*": the precision itself could not be made, so every kv setting of it is missing
SKIPPED_COLUMNS = ["model", "precision", "kv", "method", "reason"]
# every table aggregate writes, as results/tables/<name>.parquet
TABLES = ("cells", "contrasts", "skipped", "quality", "tests", "hidden_danger", "direction_split", "deployment",
          "judges", "categories")


def cell_of(path: str | Path, root: str) -> dict[str, str]:
    """(model, precision, kv, temperature) from a per-cell path under ``root``."""
    parts = Path(path).relative_to(root).with_suffix("").parts
    model, precision, kv, temp = parts[-4:]
    if not temp.startswith("T"):
        raise ValueError(f"{path}: not a per-cell path")
    return {"model": model, "precision": precision, "kv": kv, "temperature": canonical_temperature(temp[1:])}


def _root(path: str | Path, depth: int = 4) -> str:
    return str(Path(path).parents[depth - 1])


def read_cells(paths: Sequence[str | Path], columns: list[str] | None = None) -> pd.DataFrame:
    frames = []
    for path in paths:
        table = pd.read_parquet(path, columns=columns)
        for key, value in cell_of(path, _root(path)).items():
            table[key] = value
        frames.append(table)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def skipped_precisions(checkpoints: Sequence[str | Path],
                       skipped_cells: Sequence[Mapping[str, str]] = ()) -> pd.DataFrame:
    """Precisions that could not be made, then (model, precision, kv) combinations whose engine
    cannot run them (``skipped_cells``, from the workflow)."""
    rows = []
    for directory in checkpoints:
        status = json.loads((Path(directory) / "status.json").read_text())
        if not status["supported"]:
            rows.append({"model": Path(directory).parent.name, "precision": Path(directory).name, "kv": "*",
                         "method": status["method"], "reason": status["reason"]})
    rows.extend(dict(row) for row in skipped_cells)
    return pd.DataFrame(rows, columns=SKIPPED_COLUMNS)


def precision_quantizers(checkpoints: Sequence[str | Path]) -> pd.DataFrame:
    """Which tool made each (model, precision): ``quantizer: auto`` records its choice in status.json."""
    rows = []
    for directory in checkpoints:
        status = json.loads((Path(directory) / "status.json").read_text())
        quantizer = status.get("quantizer", (status.get("details") or {}).get("quantizer"))
        rows.append({"model": Path(directory).parent.name, "precision": Path(directory).name, "quantizer": quantizer})
    return pd.DataFrame(rows, columns=["model", "precision", "quantizer"])


QUALITY_COLUMNS = ["model", "precision", "kv", "metric", "kind", "value", "stderr", "n", "baseline_value", "ratio",
                   "change_pp", "mean_nll", "engine", "note"]
TASKS_SUFFIX = ".tasks.json"


def _task_rows(path: Path, kv: str) -> list[dict[str, Any]]:
    """One row per task of a (model, precision)'s task-accuracy file, at the kv it stands for."""
    result = json.loads(path.read_text())
    rows = []
    backend = result.get("backend")
    for task in result.get("order") or sorted(result["tasks"]):
        entry = result["tasks"][task]
        measured = entry.get("metric") is not None and backend not in (None, "none")
        note = "; ".join(dict.fromkeys(n for n in (entry.get("reason"), result.get("note")) if n)) or None
        rows.append({"model": path.parent.name, "precision": path.name[:-len(TASKS_SUFFIX)], "kv": kv,
                     "metric": task, "kind": "accuracy", "value": float(entry["accuracy"]),
                     "stderr": float(entry["stderr"]), "n": entry.get("n"), "mean_nll": float("nan"),
                     "engine": f"lm_eval:{backend}" if measured else None, "note": note})
    return rows


def task_order(paths: Sequence[str | Path]) -> list[str]:
    """The configured order of the tasks (the first is the main task), from any task file."""
    for path in paths:
        if str(path).endswith(TASKS_SUFFIX):
            result = json.loads(Path(path).read_text())
            return list(result.get("order") or sorted(result["tasks"]))
    return []


def quality_table(paths: Sequence[str | Path], baseline: Mapping[str, str]) -> pd.DataFrame:
    """Long form, one row per (model, precision, kv, metric): the perplexity of each kv setting
    ({precision}/{kv}.json) and each task's accuracy ({precision}.tasks.json, per (model,
    precision), filed under the baseline kv), with the ratio to (and, for accuracy, the change in
    points from) the model's baseline (q0, v0)."""
    rows = []
    for path in paths:
        path = Path(path)
        if path.name.endswith(TASKS_SUFFIX):
            rows.extend(_task_rows(path, baseline["kv"]))
            continue
        result = json.loads(path.read_text())
        rows.append({"model": path.parent.parent.name, "precision": path.parent.name, "kv": path.stem,
                     "metric": "perplexity", "kind": "perplexity", "value": result["perplexity"],
                     "stderr": float("nan"), "n": result["n_tokens"], "mean_nll": result["mean_nll"],
                     # results written before the engine was recorded were all measured by transformers
                     "engine": result.get("engine", "transformers" if result.get("n_tokens") else None),
                     "note": result.get("reason")})
    table = pd.DataFrame(rows, columns=[c for c in QUALITY_COLUMNS if c not in ("baseline_value", "ratio",
                                                                                  "change_pp")])
    table = table.astype({"value": float, "stderr": float, "mean_nll": float})
    base = table[(table["precision"] == baseline["precision"]) & (table["kv"] == baseline["kv"])]
    base = base.set_index(["model", "metric"])["value"]
    keys = pd.MultiIndex.from_frame(table[["model", "metric"]])
    table["baseline_value"] = base.reindex(keys).to_numpy(float)
    table["ratio"] = table["value"] / table["baseline_value"]
    table["change_pp"] = (100 * (table["value"] - table["baseline_value"])).where(table["kind"] == "accuracy")
    # perplexity first, then the tasks in file order
    table["_order"] = (table["kind"] == "accuracy").astype(int)
    return table.sort_values(["model", "precision", "kv", "_order"], kind="stable")[QUALITY_COLUMNS].reset_index(
        drop=True)


def cell_quality(quality: pd.DataFrame, main_task: str | None) -> pd.DataFrame:
    """cells.parquet's quality columns per (model, precision, kv): perplexity and its ratio, and the
    main task's accuracy with its standard error (at the baseline kv, where it is filed)."""
    ppl = quality[quality["metric"] == "perplexity"][["model", "precision", "kv", "value", "ratio"]].rename(
        columns={"value": "perplexity", "ratio": "perplexity_ratio"})
    if main_task is None:
        return ppl.assign(accuracy_task=None, accuracy=float("nan"), accuracy_stderr=float("nan"))
    acc = quality[(quality["kind"] == "accuracy") & (quality["metric"] == main_task)][
        ["model", "precision", "kv", "value", "stderr"]].rename(columns={"value": "accuracy",
                                                                       "stderr": "accuracy_stderr"})
    merged = ppl.merge(acc, on=["model", "precision", "kv"], how="outer")
    merged["accuracy_task"] = main_task
    return merged


def generation_summary(generations: Sequence[str], timings: Sequence[str]) -> pd.DataFrame:
    gens = read_cells(generations, columns=["engine", "n_tokens", "finish_reason"])
    keys = ["model", "precision", "kv", "temperature"]
    # named aggregation cannot be called "engine": agg() takes that keyword for itself
    summary = gens.groupby(keys).agg(
        engines=("engine", lambda s: ",".join(sorted(set(s)))),
        mean_tokens=("n_tokens", "mean"),
        truncated=("finish_reason", lambda s: float((s == "length").mean())),
    ).reset_index().rename(columns={"engines": "engine"})
    seconds = []
    for path in timings:
        seconds.append({**cell_of(path, _root(path)), "seconds": float(pd.read_csv(path, sep="\t")["s"].iloc[0])})
    if seconds:
        summary = summary.merge(pd.DataFrame(seconds), on=keys, how="left")
    else:
        summary["seconds"] = float("nan")
    return summary


def labelled_judgements(paths: Sequence[str], gold: pd.DataFrame) -> pd.DataFrame:
    """Every judge's rows (cell columns, temperature a float) of the cells that hold gold labels."""
    cells = {(m, p, k, float(t)) for m, p, k, t in gold[CELL_KEYS].drop_duplicates().itertuples(index=False)}
    def key(path: str) -> tuple[str, str, str, float]:
        cell = cell_of(path, _root(path))
        return cell["model"], cell["precision"], cell["kv"], float(cell["temperature"])

    wanted = [path for path in paths if key(path) in cells]
    # refusal_score: a refusal threshold fitted on own labels is refitted per fold on it (crossfit)
    frames = [read_cells([path], columns=[c for c in ("prompt_id", "sample", "judge", "unsafe", "score", "refusal",
                                                      "refusal_score", "error") if c in pq.read_schema(path).names])
              for path in wanted]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return table.assign(temperature=table["temperature"].astype(float)) if len(table) else table


def judges_citable(calibration: Mapping[str, Any] | None, axis: str = "unsafe") -> bool:
    """Whether the label the tables count on ``axis`` (``unsafe``: the leading ensemble label;
    ``refusal``: the judges' refusal majority) was shown to agree with labels of this run's own
    responses: calibrate_judges' kappa of it, measured on own labels, at least TRUST_KAPPA; the lower
    end of its interval (``*_kappa_lo``) decides where the calibration records one."""
    if axis not in ("unsafe", "refusal"):
        raise ValueError(f"judges are rated citable on the unsafe or the refusal axis, not {axis!r}")
    calibration, prefix = calibration or {}, "" if axis == "unsafe" else "refusal_"
    kappa = calibration.get(f"{prefix}lead_kappa_lo", calibration.get(f"{prefix}lead_kappa"))
    return (calibration.get(f"{prefix}lead_measured_on") == OWN and kappa is not None
            and float(kappa) >= TRUST_KAPPA)


def aggregate(*, checkpoints: Sequence[str], prompts: Sequence[str], votes: Sequence[str],
              generations: Sequence[str], timings: Sequence[str], quality: Sequence[str], judges: Sequence[str],
              baseline: Mapping[str, str], seed: int, bootstrap: Mapping[str, Any], out: Any,
              hidden_danger: Mapping[str, float] | None = None, judgements: Sequence[str] = (),
              deployment: Mapping[str, float] | None = None,
              skipped_cells: Sequence[Mapping[str, str]] = (),
              calibration: Mapping[str, Any] | None = None, gold: pd.DataFrame | None = None,
              ensemble: Mapping[str, Any] | None = None) -> None:
    """``gold``: human labels of the run's own responses (``labels.own``; None or empty: none), whose
    random draws give the prediction-powered ASR, RR and CR beside the judge-only ones. ``ensemble``:
    how the votes were made (vote_threshold, lead, folds), for the cross-fitted judge labels of the
    labelled responses when ``calibration`` was fitted on them."""
    prompt_table = read_prompts(list(prompts))
    skipped = skipped_precisions(checkpoints, skipped_cells)
    for row in skipped.itertuples():
        log.warning("skipped %s/%s/%s: %s", row.model, row.precision, row.kv, row.reason)
    vote_table = read_cells(votes)
    resamples, level = int(bootstrap.get("resamples", 2000)), float(bootstrap.get("level", 0.95))
    cells, draws = cell_metrics(vote_table, prompt_table, seed=seed, resamples=resamples, level=level)
    summary = generation_summary(generations, timings)
    summary["temperature"] = summary["temperature"].astype(float)
    cells = cells.merge(summary, on=["model", "precision", "kv", "temperature"], how="left")
    quality_rows = quality_table(quality, baseline)
    cells = cells.merge(cell_quality(quality_rows, next(iter(task_order(quality)), None)),
                        on=["model", "precision", "kv"], how="left")
    cells = cells.merge(precision_quantizers(checkpoints), on=["model", "precision"], how="left")
    cells["judges"] = ",".join(judges)
    harmful_ids = set(prompt_table.loc[prompt_table["harmful"], "prompt_id"])
    gold = gold if gold is not None else empty_gold()
    # the labelled responses' judge labels, cross-fitted where the votes' calibration saw those labels
    ppi_votes = with_cross_fitted_labels(vote_table, lambda: labelled_judgements(judgements, gold), gold,
                                         calibration, **(ensemble or {}), seed=seed)
    cells_pp = cell_ppi(ppi_votes, gold, harmful_ids, seed=seed, resamples=resamples, level=level)
    cells = cells.merge(cells_pp.cells, on=CELL_KEYS, how="left")
    table = contrasts(draws, baseline_precision=baseline["precision"], baseline_kv=baseline["kv"], level=level)
    table = contrast_ppi(table, cells_pp, baseline, level=level)
    write_parquet(cells, out.cells)
    write_parquet(table, out.contrasts)
    write_parquet(skipped, out.skipped)
    write_parquet(quality_rows, out.quality)

    harmful = set(prompt_table.loc[prompt_table["harmful"], "prompt_id"])
    responses = vote_table[vote_table["prompt_id"].isin(harmful)] if len(vote_table) else vote_table
    write_parquet(significance_table(responses, baseline_precision=baseline["precision"], baseline_kv=baseline["kv"]),
                  out.tests)
    write_parquet(hidden_danger_table(cells, table, baseline=baseline, thresholds=hidden_danger,
                                      quality=quality_rows), out.hidden_danger)
    write_parquet(direction_split(cells, quality_rows, baseline=baseline), out.direction_split)
    categories = category_metrics(vote_table, prompt_table, baseline=baseline, seed=seed, resamples=resamples,
                                  level=level)
    write_parquet(categories, out.categories)
    card = deployment_card(draws, baseline=baseline, thresholds=deployment, level=level, corrected=table,
                           judges_citable=judges_citable(calibration),
                           refusal_judges_citable=judges_citable(calibration, "refusal"))
    write_parquet(top_categories(card, categories), out.deployment)
    judge_rows = read_cells(judgements, columns=["prompt_id", "sample", "judge", "unsafe", "score", "error"])
    # a calibrated judge agrees or disagrees with the others by the labels it votes with
    thresholds = {j: c["threshold"] for j, c in (calibration or {}).get("judges", {}).items()}
    judge_rows = apply_thresholds(judge_rows, thresholds).drop(columns="score")
    write_parquet(judge_agreement(judge_rows, vote_table), out.judges)
    log.info("%d cells, %d contrasts, %d skipped precisions", len(cells), len(table), len(skipped))
