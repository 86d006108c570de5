"""Which ensemble of judges agrees best with people? Two modes:

Borrowed set (default): labels the human-labelled validation set (PyRIT) with every judge of a
config (once each; labels are cached in --out), prints each judge's speed and validity, then ranks
every ensemble of two or more judges by its cross-fitted kappa under each ensemble label (majority
with the config's calibrated judges, Dawid-Skene, stacked).

Own labels (--labels FILES --results DIR): the gold labels of the run's own responses (the label
files joined to the current generations under DIR, as the workflow's own_gold rule builds them);
every judge labels the harmful responses of the labelled cells as the workflow's judge job presents
them (judge_table on the cell's generations and prompt files; one table per judge and cell, cached
in --out/own and re-judged only when the cell's responses change); then each judge and every
ensemble of one or more judges is scored by its CROSS-FITTED kappa on the own labels, with every
judge that gives a score calibrated and the stack fitted on the own labels (folds from the config).
--features adds the responses' own features (finish_reason == length, length in tokens, empty) to
the stack, to see whether they help. --judge-only labels the cells (--cells) and stops: the
judges' labels do not depend on the human labels, so they can run before the labels exist.

usage: .venv/bin/python benchmarks/ensembles.py [--config config/judge_candidates.yaml] [--out DIR]
       [--judges a,b,c] [--top 15]
       .venv/bin/python benchmarks/ensembles.py --results results --labels resources/labels/*.csv
       [--judge-only --cells 'smollm2-135m/fp32/*/*'] [--features]
Judge models are fetched into DIR/sources/ when absent (as `safetygrid judge` does).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from safetygrid import config as sg_config
from safetygrid.judges.file import judge_model_dir
from safetygrid.judges import make_judge
from safetygrid.judges.validation import label_validation_set, load_validation_set
from safetygrid.ensemble.judge_validity import validity

ROOT = Path(__file__).resolve().parents[1]
SHOWN = ["rater", "labels", "n", "accuracy", "kappa", "kappa_lo", "kappa_hi", "tpr", "fpr", "auc", "threshold"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config" / "judge_candidates.yaml"))
    parser.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "ensembles"))
    parser.add_argument("--judges", default="", help="comma-separated subset of the config's judges")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument("--labels", nargs="*", default=None,
                        help="own-labels mode: label files of the run's own responses (CSV, docs/tables.md)")
    parser.add_argument("--results", help="own-labels mode: the run's results directory (generations/, prompts/)")
    parser.add_argument("--cells", default="*/*/*/*",
                        help="own-labels mode: which cells to judge, a glob of MODEL/PRECISION/KV/T<temperature> "
                             "under RESULTS/generations (with labels: only the labelled cells among them)")
    parser.add_argument("--judge-only", action="store_true", help="own-labels mode: label the cells and stop")
    parser.add_argument("--vote-thresholds", type=lambda t: [float(x) for x in t.split(",") if x], default=[],
                        help="own-labels mode: also rank the majority label under these vote_threshold values "
                             "(comma-separated, e.g. 1.0)")
    parser.add_argument("--features", action="store_true",
                        help="own-labels mode: also try the responses' features inside the stack")
    args = parser.parse_args()
    config = sg_config.load(args.config)
    if args.results:
        own_labels_search(config, args)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    human_path = out / "human.parquet"
    validation = config["validation"]
    if not human_path.exists():
        load_validation_set(validation["sets"], validation["labelled"], seed=config["seed"]).to_parquet(human_path)
    human = pd.read_parquet(human_path)
    names = [j for j in args.judges.split(",") if j] or sorted(config["judges"])
    print(f"{platform.processor() or platform.machine()}; {len(human)} human-labelled rows "
          f"({', '.join(sorted(human['set'].unique()))})")
    labels = []
    for name in names:
        path = out / f"{name}.parquet"
        if not path.exists():
            spec = config["judges"][name]
            started = time.perf_counter()
            judge = make_judge(spec, judge_model_dir(config, name, ROOT / "results" / "sources"))
            loaded = time.perf_counter()
            table = label_validation_set(judge, name, human)
            seconds = time.perf_counter() - loaded
            table.to_parquet(path)
            print(f"{name}: loaded in {loaded - started:.1f} s, {len(human)} rows in {seconds:.1f} s = "
                  f"{len(human) / seconds:.2f} items/s ({spec.get('engine', 'hf')} engine)", flush=True)
        labels.append(pd.read_parquet(path))
    labelled = pd.concat(labels, ignore_index=True)
    common = dict(vote_threshold=config["vote_threshold"], folds=validation["folds"], seed=config["seed"],
                  resamples=args.resamples)
    table, _ = validity(human, labelled, {n: config["judges"][n] for n in names}, **common)
    print("\nEach judge (and the ensembles of all of them):")
    print(table[table["target"] == "unsafe"][SHOWN].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    ranked = []
    for size in range(2, len(names) + 1):
        for subset in itertools.combinations(names, size):
            part = labelled[labelled["judge"].isin(subset)]
            scored, _ = validity(human, part, {n: config["judges"][n] for n in subset}, **{**common, "resamples": 100})
            for row in scored[(scored["kind"] == "ensemble") & (scored["target"] == "unsafe")].itertuples():
                ranked.append({"judges": "+".join(subset), "label": row.rater, "kappa": row.kappa,
                               "accuracy": row.accuracy, "tpr": row.tpr, "fpr": row.fpr})
    best = pd.DataFrame(ranked).sort_values("kappa", ascending=False).head(args.top)
    print(f"\nThe {args.top} best ensembles by cross-fitted kappa:")
    print(best.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


# ---- own labels -------------------------------------------------------------------------------
OWN_SHOWN = ["rater", "labels", "sets", "n", "kappa", "kappa_lo", "kappa_hi", "accuracy", "tpr", "fpr", "auc",
             "threshold"]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cell_key(path: Path) -> str:
    """MODEL/PRECISION/KV/T<temperature> of a generation or judgement file."""
    return "/".join(path.with_suffix("").parts[-4:])


def harmful_generations(path: Path, prompts: pd.DataFrame) -> pd.DataFrame:
    """The cell's responses to harmful prompts: what the label files label and the tables count."""
    generations = pd.read_parquet(path)
    harmful = set(prompts.loc[prompts["harmful"].astype(bool), "prompt_id"])
    return generations[generations["prompt_id"].isin(harmful)].reset_index(drop=True)


def responses_digest(generations: pd.DataFrame) -> str:
    """One hash of the cell's responses, so a cached judgement is redone when they change."""
    import hashlib

    text = "\x1e".join(f"{p}\x1f{s}\x1f{r}" for p, s, r in generations[["prompt_id", "sample", "response"]]
                       .itertuples(index=False))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def judge_cells(config: dict, names: list[str], cells: list[Path], prompts: pd.DataFrame, out: Path,
                sources: Path) -> dict[str, dict[str, float]]:
    """Each judge's table of each cell's harmful responses, made by the workflow's judge job code
    (judge_table on the cell's generations and the run's prompts) unless cached for the same
    responses; each judge's model loads once. Returns per judge the items and seconds it cost."""
    import json

    from safetygrid.io import write_parquet
    from safetygrid.judges import FailurePolicy, judge_table, loaded_judge

    cost: dict[str, dict[str, float]] = {}
    for name in names:
        spec = config["judges"][name]
        todo = []
        for path in cells:
            generations = harmful_generations(path, prompts)
            meta = out / "judgements" / name / (cell_key(path) + ".json")
            if not (meta.exists() and json.loads(meta.read_text()).get("responses") == responses_digest(generations)):
                todo.append((path, generations, meta))
        if todo:
            started = time.perf_counter()
            with loaded_judge(spec, judge_model_dir(config, name, sources)) as judge:
                loaded = time.perf_counter()
                print(f"{name}: loaded in {loaded - started:.1f} s", flush=True)
                for path, generations, meta in todo:
                    began, began_cpu = time.perf_counter(), time.process_time()
                    table = judge_table(judge, name, generations, prompts, FailurePolicy.from_spec(spec))
                    # wall seconds depend on what else runs on the machine; the CPU seconds of this
                    # process (every thread) are what the judging itself costs
                    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
                    write_parquet(table, meta.with_suffix(".parquet"))
                    meta.write_text(json.dumps({"responses": responses_digest(generations), "items": len(table),
                                                "seconds": seconds, "cpu_seconds": cpu_seconds,
                                                "load_seconds": loaded - started, "load_average": os.getloadavg()[0]}))
                    print(f"{name} {cell_key(path)}: {len(table)} items in {seconds:.1f} s = "
                          f"{len(table) / seconds:.2f} items/s ({cpu_seconds / len(table):.2f} CPU s per item; "
                          f"load average {os.getloadavg()[0]:.1f})", flush=True)
        spent = [json.loads((out / "judgements" / name / (cell_key(p) + ".json")).read_text()) for p in cells]
        timed = [m for m in spent if "cpu_seconds" in m]
        cost[name] = {"items": sum(m["items"] for m in spent), "seconds": sum(m["seconds"] for m in spent),
                      "cpu_items": sum(m["items"] for m in timed), "cpu_seconds": sum(m["cpu_seconds"] for m in timed)}
    return cost


def response_features(generations: pd.DataFrame, gold: pd.DataFrame) -> pd.DataFrame:
    """Per gold row, what the response itself says (no judge): it was cut at max_new_tokens, its
    length in tokens, it is empty."""
    from safetygrid.labels.own import own_item_id

    keyed = generations.assign(item_id=[own_item_id(*r) for r in generations[
        ["model", "precision", "kv", "temperature", "prompt_id", "sample"]].itertuples(index=False)])
    rows = keyed.set_index("item_id").reindex([own_item_id(*r) for r in gold[
        ["model", "precision", "kv", "temperature", "prompt_id", "sample"]].itertuples(index=False)])
    return pd.DataFrame({"cut_at_length": (rows["finish_reason"] == "length").astype(float).to_numpy(),
                         "n_tokens": rows["n_tokens"].astype(float).to_numpy(),
                         "empty": (rows["response"].str.strip() == "").astype(float).to_numpy()})


def stack_with_features(own: pd.DataFrame, own_labelled: pd.DataFrame, names: list[str],
                        features: pd.DataFrame, folds: int, seed: int) -> dict[str, float]:
    """Cross-fitted kappa of the stack on the judges alone and on the judges plus the response
    features, on the same folds as validity() (rows: the own labels; measured on the random draw
    when there is one, as validity() does)."""
    from safetygrid.ensemble.calibration import cross_fit, fold_ids, kappa
    from safetygrid.ensemble.stack import fit_stack, judge_features, scoreless

    items = pd.Index(own["item_id"])
    y = own["label"].to_numpy(int)
    reported = (own["draw"] == "random").to_numpy()
    reported = reported if reported.any() else np.ones(len(y), bool)

    def wide(column: str) -> pd.DataFrame:
        values = own_labelled[column].astype("Float64").astype(float)
        values[own_labelled["error"].notna().to_numpy()] = np.nan
        return own_labelled.assign(value=values).pivot(index="item_id", columns="judge", values="value") \
            .reindex(items).reindex(columns=names)

    scores, raw = wide("score"), wide("unsafe")
    base = judge_features(scores, raw, scoreless(scores))
    fold = fold_ids(y, folds, seed)
    out = {}
    for label, extra in [("judges", []), *[(f"judges+{c}", [c]) for c in features.columns],
                         ("judges+all features", list(features.columns))]:
        x = np.column_stack([base, features[extra].to_numpy(float)]) if extra else base
        p = cross_fit(len(y), fold, lambda train: fit_stack(x[train], y[train], [*names, *extra]),
                      lambda model, held: model.probability(x[held]))
        out[label] = kappa(y[reported], (p[reported] >= 0.5).astype(int))
    return out


def own_labels_search(config: dict, args: argparse.Namespace) -> None:
    import json

    from safetygrid.labels.own import (labelled_cells, own_gold, own_judge_labels, own_validation_rows,
                                       read_cell_files)
    from safetygrid.labels import label_file_paths
    from safetygrid.prompts import read_prompts

    results = Path(args.results)
    out = Path(args.out) / "own"
    names = [j for j in args.judges.split(",") if j] or sorted(config["judges"])
    unknown = sorted(set(names) - set(config["judges"]))
    if unknown:
        raise SystemExit(f"--judges: {unknown} are not judges of {args.config} ({sorted(config['judges'])})")
    prompts = read_prompts(sorted((results / "prompts").glob("*.parquet")))
    cells = sorted(Path(p) for p in (results / "generations").glob(args.cells + ".parquet"))
    label_files = label_file_paths(args.labels or [])
    if label_files:
        labelled = {"/".join((*c[:3], f"T{c[3]}")) for c in labelled_cells(label_files)}
        cells = [p for p in cells if cell_key(p) in labelled]
    if not cells:
        raise SystemExit(f"no generations under {results / 'generations'} match --cells {args.cells!r}"
                         + (" among the labelled cells" if label_files else ""))
    print(f"{cpu_name()}; judging the harmful responses of {len(cells)} cell(s): "
          f"{', '.join(cell_key(p) for p in cells)}", flush=True)
    cost = judge_cells(config, names, cells, prompts, out, results / "sources")
    if args.judge_only:
        return
    if not label_files:
        raise SystemExit("--labels: no label files given (or --judge-only to label the cells and stop)")
    gold = own_gold(label_files, cells)
    if gold.empty:
        raise SystemExit(f"{', '.join(map(str, label_files))}: no current label matches a response of these cells")
    own = own_validation_rows(gold)
    judgements = read_cell_files(sorted(out.glob("judgements/*/*/*/*/T*.parquet")))
    judgements = judgements[judgements["judge"].isin(names)]
    own_labelled = own_judge_labels(judgements, gold)
    counts = gold.attrs.get("counts", {})
    print(f"own gold: {len(gold)} responses ({int(gold['human'].sum())} unsafe), draws "
          f"{gold['draw'].value_counts().to_dict()}; labels {counts}")
    # every judge that gives a score is calibrated on the own labels (cross-fitted), as the demo's
    # calibrated judges are: the search compares judges at their best threshold, not their raw rule
    specs = {n: {**config["judges"][n], "calibrate": bool(own_labelled.loc[own_labelled["judge"] == n, "score"]
                                                           .notna().any())} for n in names}
    empty_borrowed = pd.DataFrame({"item_id": pd.Series(dtype=object), "set": pd.Series(dtype=object),
                                   "target": pd.Series(dtype=object), "label": pd.Series(dtype="int64")})
    validation = config["validation"]
    common = dict(own=own, own_min=0, vote_threshold=config["vote_threshold"], folds=validation["folds"],
                  seed=config["seed"])

    def scored(subset: tuple[str, ...], resamples: int) -> pd.DataFrame:
        part = own_labelled[own_labelled["judge"].isin(subset)]
        table, _ = validity(empty_borrowed, part, {n: specs[n] for n in subset}, own_labelled=part,
                            resamples=resamples, **common)
        table = table[table["target"] == "unsafe"]
        if len(subset) < 2 or not args.vote_thresholds:
            return table
        # the majority label under other vote_threshold values (a config key): e.g. 1.0, every judge
        # must say unsafe, lets a judge that says unsafe to nearly everything (the refusal strings on
        # answers that are not refusals) stay for the refusal label without carrying the unsafe one
        others = []
        for threshold in args.vote_thresholds:
            again, _ = validity(empty_borrowed, part, {n: specs[n] for n in subset}, own_labelled=part,
                                resamples=resamples, **{**common, "vote_threshold": threshold})
            others.append(again[(again["rater"] == "ensemble_majority") & (again["target"] == "unsafe")]
                          .assign(rater=f"ensemble_majority@{threshold:g}"))
        return pd.concat([table, *others], ignore_index=True)

    table = scored(tuple(names), args.resamples)
    speed = {n: cost[n]["items"] / cost[n]["seconds"] for n in names}
    cpu_per_item = {n: cost[n]["cpu_seconds"] / cost[n]["cpu_items"] if cost[n]["cpu_items"] else math.nan
                    for n in names}
    judges_rows = table[table["kind"] == "judge"].assign(items_per_s=lambda t: t["rater"].map(speed),
                                                         cpu_s_per_item=lambda t: t["rater"].map(cpu_per_item))
    print("\nEach judge on the own labels (raw: its own verdict rule; calibrated: threshold fitted on the own "
          f"labels, {validation['folds']}-fold cross-fitted):")
    print(judges_rows[[*OWN_SHOWN, "items_per_s", "cpu_s_per_item"]].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print("\nThe ensembles of all of them:")
    print(table[table["kind"] == "ensemble"][OWN_SHOWN].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    ranked = []
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(names, size):
            rows = scored(subset, 100)
            seconds_per_item = sum(1 / speed[n] for n in subset)
            for row in rows.itertuples():
                if (row.kind == "judge" and size > 1) or (row.kind == "ensemble" and row.n == 0):
                    continue  # a judge ranks alone (raw and calibrated); Dawid-Skene needs three judges
                ranked.append({"judges": "+".join(subset), "label": row.rater if row.kind == "ensemble" else
                               f"judge_{row.labels}", "n": row.n, "kappa": row.kappa, "kappa_lo": row.kappa_lo,
                               "kappa_hi": row.kappa_hi, "accuracy": row.accuracy, "tpr": row.tpr, "fpr": row.fpr,
                               "s_per_item": seconds_per_item})
    best = pd.DataFrame(ranked).sort_values("kappa", ascending=False)
    best.to_csv(out / "ranked.csv", index=False)
    print(f"\nThe {args.top} best ensembles by cross-fitted kappa on the own labels (of {len(best)}; all in "
          f"{out / 'ranked.csv'}):")
    print(best.head(args.top).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if args.features:
        generations = read_cell_files(cells)
        features = response_features(generations, gold)
        print("\nThe stack of every judge, cross-fitted kappa on the own labels, with the responses' features:")
        for label, value in stack_with_features(own, own_labelled, names, features, validation["folds"],
                                                config["seed"]).items():
            print(f"  {label:<28} {value:.3f}")
    (out / "cost.json").write_text(json.dumps(cost, indent=1))


if __name__ == "__main__":
    main()
