"""Which ensemble of judges agrees best with people? Labels the human-labelled validation set with
every judge of a config (once each; labels are cached in --out), prints each judge's speed and
validity, then ranks every ensemble of two or more judges by its cross-fitted kappa under each
ensemble label (majority with the config's calibrated judges, Dawid-Skene, stacked).

usage: .venv/bin/python benchmarks/ensembles.py [--config config/judge_candidates.yaml] [--out DIR]
       [--judges a,b,c] [--top 15]
Judge models are fetched into results/sources/ when absent (as `safetygrid judge` does).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time
from pathlib import Path

import pandas as pd

from safetygrid import config as sg_config
from safetygrid.judge_file import judge_model_dir
from safetygrid.judges import make_judge
from safetygrid.judges.validation import label_validation_set, load_validation_set
from safetygrid.judges.validity import validity

ROOT = Path(__file__).resolve().parents[1]
SHOWN = ["rater", "labels", "n", "accuracy", "kappa", "kappa_lo", "kappa_hi", "tpr", "fpr", "auc", "threshold"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config" / "judge_candidates.yaml"))
    parser.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "ensembles"))
    parser.add_argument("--judges", default="", help="comma-separated subset of the config's judges")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--resamples", type=int, default=500)
    args = parser.parse_args()
    config = sg_config.load(args.config)
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


if __name__ == "__main__":
    main()
