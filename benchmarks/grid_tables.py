"""Markdown tables of a finished grid, for docs pages: each (model, precision) with its quality and
safety figures, the hidden-danger rows, the direction split, how long the answers run (the share
that reaches each length and the share cut at the budget), and what each rule cost (its jobs'
benchmark files). Reads only results/tables/*.parquet, results/generations/**/*.parquet and
results/benchmarks/**/*.tsv.

usage: .venv/bin/python benchmarks/grid_tables.py [--results results] [--lengths 128,256,384]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from safetygrid.analysis import read_cells


def number(value: object, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NA"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def interval(row: pd.Series, name: str, digits: int = 2) -> str:
    value = row.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NA"
    lo, hi = row.get(f"{name}_lo"), row.get(f"{name}_hi")
    if lo is None or (isinstance(lo, float) and math.isnan(lo)):
        return number(value, digits)
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def cell_table(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, precision): quality once, safety at each temperature."""
    rows = []
    for (model, precision), group in cells.groupby(["model", "precision"], sort=True):
        first = group.iloc[0]
        row = {"model": model, "precision": precision, "engine": first["engine"],
               "perplexity (ratio)": f"{number(first['perplexity'])} ({number(first['perplexity_ratio'])})",
               "task accuracy": number(first["accuracy"])}
        for _, cell in group.sort_values("temperature").iterrows():
            t = f"T{cell['temperature']:g}"
            row[f"RR {t}"] = interval(cell, "rr")
            row[f"ASR {t} judges"] = interval(cell, "asr", 3)
            row[f"ASR {t} corrected"] = (interval(cell, "asr_pp", 3) if cell.get("asr_pp_n", 0) else "NA (no labels)")
        row["ORR T0"] = interval(group.sort_values("temperature").iloc[0], "orr")
        rows.append(row)
    return pd.DataFrame(rows)


def hidden_table(hidden: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "model": hidden["model"], "comparison": hidden["comparison"], "precision": hidden["precision"],
        "RR (reference)": [f"{number(a)} ({number(b)})" for a, b in zip(hidden["rr"], hidden["rr_reference"])],
        "refusal drop pp": [interval(r, "refusal_drop_pp", 1) for _, r in hidden.iterrows()],
        "perplexity ratio": hidden["perplexity_ratio"].map(number),
        "accuracy drop pp": hidden["accuracy_drop_pp"].map(lambda v: number(v, 1)),
        "status": hidden["status"], "note": hidden["note"].fillna("")})


def split_table(split: pd.DataFrame) -> pd.DataFrame:
    shown = split[split["n_models"] > 0]
    return pd.DataFrame({
        "precision": shown["precision"], "T": shown["temperature"].map(lambda t: f"{t:g}"),
        "quality": shown["quality_metric"], "safety": shown["safety_metric"], "models": shown["n_models"],
        "directions": shown["directions"], "split": shown["split"].map({True: "**yes**", False: "no"})})


def job_seconds(benchmarks: Path) -> pd.DataFrame:
    """One row per job's benchmark file: rule, job (its wildcards' path; empty for a single job),
    s (wall seconds), cpu_time."""
    rows = []
    for path in sorted(benchmarks.rglob("*.tsv")):
        rule, *job = path.relative_to(benchmarks).parts
        first = pd.read_csv(path, sep="\t").iloc[0]
        rows.append({"rule": rule.removesuffix(".tsv"), "job": "/".join(job).removesuffix(".tsv"),
                     "s": float(first["s"]), "cpu_time": float(first.get("cpu_time", math.nan))})
    return pd.DataFrame(rows, columns=["rule", "job", "s", "cpu_time"])


def cost_table(benchmarks: Path) -> pd.DataFrame:
    jobs = job_seconds(benchmarks)
    if jobs.empty:
        return pd.DataFrame()
    table = jobs.groupby("rule").agg(jobs=("s", "size"), wall_s=("s", "sum"), cpu_s=("cpu_time", "sum"))
    table = table.sort_values("wall_s", ascending=False).reset_index()
    total = pd.DataFrame([{"rule": "**all jobs**", "jobs": int(table["jobs"].sum()),
                           "wall_s": table["wall_s"].sum(), "cpu_s": table["cpu_s"].sum()}])
    table = pd.concat([table, total], ignore_index=True)
    table["wall_s"] = table["wall_s"].map(lambda v: f"{v:,.0f}")
    table["cpu_s"] = table["cpu_s"].map(lambda v: f"{v:,.0f}")
    return table.rename(columns={"wall_s": "wall s (summed)", "cpu_s": "CPU s (summed)"})


def length_table(generations: pd.DataFrame, lengths: list[int]) -> pd.DataFrame:
    """Per cell: the share of answers with at least L new tokens for each L, the share cut at the
    budget (finish_reason ``length``), and the mean and median new tokens."""
    rows = []
    for (model, precision, kv, temperature), cell in generations.groupby(["model", "precision", "kv", "temperature"]):
        tokens, cut = cell["n_tokens"], cell["finish_reason"] == "length"
        row = {"model": model, "precision": precision, "kv": kv, "T": temperature, "answers": len(cell)}
        row.update({f"≥ {length}": f"{(tokens >= length).mean():.2f}" for length in lengths})
        row.update({"cut": f"{cut.mean():.2f} ({int(cut.sum())})", "mean tokens": f"{tokens.mean():.0f}",
                    "median": f"{tokens.median():.0f}"})
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results")
    parser.add_argument("--lengths", default="128,256,384", help="answer lengths (new tokens) to count answers reaching")
    args = parser.parse_args()
    results = Path(args.results)
    tables = results / "tables"
    cells = pd.read_parquet(tables / "cells.parquet")
    print("## Cells\n\n" + markdown(cell_table(cells)) + "\n")
    print("## Hidden danger (T = 0)\n\n" + markdown(hidden_table(pd.read_parquet(tables / "hidden_danger.parquet"))) + "\n")
    split = pd.read_parquet(tables / "direction_split.parquet")
    shown = split_table(split)
    print(f"## Direction split ({int(split['split'].sum())} of {int((split['n_models'] > 0).sum())} measured "
          "pairings split: the models moved differently)\n\n" + markdown(shown) + "\n")
    generations = sorted((results / "generations").glob("*/*/*/T*.parquet"))
    if generations:
        answers = read_cells(generations, columns=["n_tokens", "finish_reason"])
        all_cut = answers["finish_reason"] == "length"
        print(f"## Answer lengths ({int(all_cut.sum())} of {len(answers)} answers cut at the budget, "
              f"{all_cut.mean():.0%})\n\n" + markdown(length_table(answers, [int(v) for v in args.lengths.split(",")])) + "\n")
    costs = cost_table(results / "benchmarks")
    if len(costs):
        print("## What each rule cost\n\n" + markdown(costs) + "\n")


if __name__ == "__main__":
    main()
