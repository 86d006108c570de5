"""Which judges (and which majority of them) give the refusal label rho that agrees best with people?

METRICS.md: rho(r) is the majority of the judges that give a refusal label. The refusal strings catch
few of a small model's declines (it redirects or argues the other side), so the choice of the judges
rho is taken from (the config's ``refusal_judges``) is made on the refusal axis of the maintainers'
labels of the run's OWN responses, by cross-fitted kappa. Two modes:

Own labels (--results DIR --labels FILES): the run's judgements (DIR/judgements/**.parquet, as the
workflow wrote them) joined to the gold labels' ``refusal`` axis (labels.gold: the raters' majority
of [outcome == refusal], rubric harmbench-v2; rows without it are left out). Printed for each judge
that gives a refusal label: its raw label, and, for a judge with a refusal score (kind refusal_lm,
WildGuard read from logits), its label at a threshold fitted on the own labels, cross-fitted by
PROMPT folds (no prompt's samples are both fitted on and scored; --folds, --seed); then every
candidate rho (the majority of each subset of those judges, calibrated where the judge is so
configured or --calibrate-all). Each row: n, n_pos, n_neg (human refusals and non-refusals), kappa
with a prompt-cluster bootstrap percentile interval (--resamples, --level), accuracy, tpr, fpr, and
whether it meets the target (kappa >= 0.6, interval's lower bound >= 0.4). Measured on the random
draw when there is one (it stands for the run's responses); targeted rows only help the fit.

Borrowed (--borrowed PYRIT_REFUSAL_CSV --checkpoint DIR): labels N rows of PyRIT's hand-labelled
refusal set (refusal.csv from the pyrit wheel; judges/validation.py) with the refusal strings and the
refusal_lm judge backed by DIR, timing each, and prints their agreement there (informative only:
those are other models' answers, not the run's).

usage: .venv/bin/python benchmarks/refusal_axis.py --results results --labels resources/labels/*.csv
           [--config config.yaml] [--cells '*/*/*/*'] [--folds 5] [--seed 0] [--calibrate-all]
       .venv/bin/python benchmarks/refusal_axis.py --borrowed refusal.csv --checkpoint DIR
           [--engine llama_cpp] [--items 16] [--max-response-tokens 256] [--template refusal|attempt]
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TARGET_KAPPA, TARGET_KAPPA_LO = 0.6, 0.4
SHOWN = ["rater", "labels", "n", "n_pos", "n_neg", "kappa", "kappa_lo", "kappa_hi", "accuracy", "tpr", "fpr",
         "meets_target"]


def cross_fitted_labels(scores: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Each row's label at the kappa-best threshold fitted on the other folds (NaN: no score)."""
    from safetygrid.ensemble.calibration import cross_fit, fit_threshold

    finite = np.isfinite(scores)
    return cross_fit(len(y), fold, lambda train: fit_threshold(scores[train], y[train]),
                     lambda cut, held: np.where(finite[held], (scores[held] >= cut).astype(float), np.nan))


def majority(labels: np.ndarray) -> np.ndarray:
    """rho as the votes table forms it (ensemble.voting.refusal_majority): more than half of the
    judges that gave a refusal label; NaN where none did."""
    from safetygrid.ensemble.voting import refusal_majority

    gave = (~np.isnan(labels)).sum(axis=1)
    said = np.nansum(labels, axis=1)
    return np.where(gave > 0, refusal_majority(said, gave).astype(float), np.nan)


def clustered_kappa(y: np.ndarray, predicted: np.ndarray, clusters: np.ndarray, *, resamples: int, level: float,
                    seed: int) -> dict[str, Any]:
    """kappa, accuracy, tpr, fpr of ``predicted`` against ``y`` over the rows it labelled, with a
    prompt-cluster bootstrap percentile interval of kappa; n_pos / n_neg: human label counts."""
    from safetygrid.ensemble.calibration import kappa
    from safetygrid.stats.intervals import percentile_interval

    keep = ~np.isnan(predicted)
    y, p, clusters = y[keep].astype(int), predicted[keep].astype(int), clusters[keep]
    out: dict[str, Any] = {"n": int(len(y)), "n_pos": int((y == 1).sum()), "n_neg": int((y == 0).sum())}
    if not len(y):
        return {**out, "kappa": math.nan, "kappa_lo": math.nan, "kappa_hi": math.nan, "accuracy": math.nan,
                "tpr": math.nan, "fpr": math.nan}
    out.update(kappa=kappa(y, p), accuracy=float((y == p).mean()),
               tpr=float(p[y == 1].mean()) if (y == 1).any() else math.nan,
               fpr=float(p[y == 0].mean()) if (y == 0).any() else math.nan)
    groups = pd.Series(np.arange(len(y))).groupby(clusters).apply(list).tolist()
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        rows = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        draws.append(kappa(y[rows], p[rows]))
    finite = np.asarray(draws)[np.isfinite(draws)]
    out["kappa_lo"], out["kappa_hi"] = percentile_interval(finite, level) if len(finite) else (math.nan, math.nan)
    return out


def refusal_table(y: np.ndarray, raw: pd.DataFrame, scores: pd.DataFrame, prompt_ids: np.ndarray,
                  reported: np.ndarray, calibrated: Sequence[str], *, folds: int, seed: int, resamples: int,
                  level: float, max_subset: int) -> pd.DataFrame:
    """Per judge (raw; cross-fitted calibrated where it has a refusal score) and per candidate rho
    (the majority of a subset of judges, each voting with its calibrated label when in
    ``calibrated``), cross-fitted kappa on the ``reported`` rows. ``raw`` and ``scores``: one column
    per judge (refusal label 0/1/NaN; refusal_score or NaN), one row per gold row."""
    from safetygrid.ensemble.calibration import prompt_fold_ids

    fold = prompt_fold_ids(prompt_ids, folds, seed)
    boot = dict(resamples=resamples, level=level, seed=seed)
    rows: list[dict[str, Any]] = []
    voting = {}
    for judge in raw.columns:
        label = raw[judge].to_numpy(float)
        rows.append({"rater": judge, "labels": "raw", **clustered_kappa(y[reported], label[reported],
                                                                       prompt_ids[reported], **boot)})
        voting[judge] = label
        score = scores[judge].to_numpy(float) if judge in scores.columns else np.full(len(y), np.nan)
        if np.isfinite(score).any():
            crossed = cross_fitted_labels(score, y, fold)
            rows.append({"rater": judge, "labels": "calibrated", **clustered_kappa(
                y[reported], crossed[reported], prompt_ids[reported], **boot)})
            if judge in calibrated:
                voting[judge] = crossed
    names = list(raw.columns)
    for size in range(2, min(len(names), max_subset) + 1):
        for subset in itertools.combinations(names, size):
            rho = majority(np.column_stack([voting[j] for j in subset]))
            labels = "+".join("calibrated" if j in calibrated and j in scores.columns and
                              np.isfinite(scores[j].to_numpy(float)).any() else "raw" for j in subset)
            rows.append({"rater": "rho(" + "+".join(subset) + ")", "labels": labels,
                         **clustered_kappa(y[reported], rho[reported], prompt_ids[reported], **boot)})
    table = pd.DataFrame(rows)
    table["meets_target"] = (table["kappa"] >= TARGET_KAPPA) & (table["kappa_lo"] >= TARGET_KAPPA_LO)
    return table.sort_values("kappa", ascending=False, na_position="last").reset_index(drop=True)


def own_mode(args: argparse.Namespace) -> None:
    from safetygrid import config as sg_config
    from safetygrid.labels import label_file_paths
    from safetygrid.labels.own import own_gold, read_cell_files

    config = sg_config.load(args.config)
    results = Path(args.results)
    generations = sorted((results / "generations").glob(args.cells + ".parquet"))
    gold = own_gold(label_file_paths(args.labels), generations)
    if "refusal" not in gold.columns:
        raise SystemExit("the gold labels have no refusal axis (labels.gold before the four outcomes); label the "
                         "responses with an outcome (rubric harmbench-v2)")
    gold = gold[gold["refusal"].notna()].reset_index(drop=True)
    if gold.empty:
        raise SystemExit("no gold row gives the refusal axis (no label with an outcome matches a current response)")
    key = ["model", "precision", "kv", "temperature", "prompt_id", "sample"]
    # results/judgements/{judge}/{model}/{precision}/{kv}/T{temperature}.parquet
    judgements = read_cell_files(sorted((results / "judgements").glob("*/" + args.cells + ".parquet")))
    if "refusal_score" not in judgements.columns:
        judgements["refusal_score"] = np.nan
    judgements = judgements.assign(temperature=judgements["temperature"].astype(float))
    failed = judgements["error"].notna().to_numpy()
    values = {c: judgements[c].astype("Float64").astype(float).where(~failed) for c in ("refusal", "refusal_score")}
    wide = {c: judgements.assign(value=v).pivot_table(index=key, columns="judge", values="value", aggfunc="first",
                                                       dropna=False)
            for c, v in values.items()}
    index = pd.MultiIndex.from_frame(gold[key].assign(temperature=gold["temperature"].astype(float)))
    raw = wide["refusal"].reindex(index)
    raw = raw.loc[:, raw.notna().any()]  # judges that give a refusal label
    scores = wide["refusal_score"].reindex(index).reindex(columns=raw.columns)
    y = gold["refusal"].astype(int).to_numpy()
    reported = (gold["draw"] == "random").to_numpy()
    measured = "the random draw" if reported.any() else "every labelled row (no random draw: not representative)"
    reported = reported if reported.any() else np.ones(len(y), bool)
    calibrated = [j for j in raw.columns if args.calibrate_all or config["judges"].get(j, {}).get("calibrate")]
    prompt_ids = np.array(["/".join(map(str, k)) for k in gold[key[:5]].itertuples(index=False)])
    print(f"own refusal labels: {len(y)} responses ({int(y.sum())} refusals), measured on {measured}; judges giving "
          f"a refusal label: {', '.join(raw.columns)}; configured refusal_judges: "
          f"{config.get('refusal_judges') or 'all of them'}")
    table = refusal_table(y, raw, scores, prompt_ids, reported, calibrated, folds=args.folds, seed=args.seed,
                          resamples=args.resamples, level=args.level, max_subset=args.max_subset)
    print(table[SHOWN].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if not table["meets_target"].any():
        print(f"\nno judge or rho reaches the target (kappa >= {TARGET_KAPPA}, lower bound >= {TARGET_KAPPA_LO}) "
              "on the refusal axis: let the prediction-powered RR carry the tables")


def borrowed_mode(args: argparse.Namespace) -> None:
    from safetygrid.ensemble.calibration import kappa
    from safetygrid.judges import FailurePolicy, judge_table, loaded_judge
    from safetygrid.judges.validation import PYRIT_REFUSAL_FILE, pyrit_rows, stratified_pick

    rows = pyrit_rows("pyrit_refusal", {PYRIT_REFUSAL_FILE: Path(args.borrowed).read_text(encoding="utf-8")})
    rows = stratified_pick(rows, args.items, args.seed)
    items = pd.DataFrame({"prompt_id": rows["item_id"], "sample": 0, "response": rows["response"]})
    prompts = pd.DataFrame({"prompt_id": rows["item_id"], "text": rows["prompt"]})
    specs = {"refusal_prefix": ({"kind": "refusal_prefix"}, None),
             "refusal_lm": ({"kind": "refusal_lm", "engine": args.engine, "device": "cpu", "template": args.template,
                             "max_response_tokens": args.max_response_tokens}, args.checkpoint)}
    y = rows["label"].to_numpy(int)
    print(f"{len(rows)} PyRIT refusal rows ({int(y.sum())} refusals); engine {args.engine}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for name, (spec, model_dir) in specs.items():
        began = time.perf_counter()
        with loaded_judge(spec, model_dir) as judge:
            loaded = time.perf_counter()
            cpu = time.process_time()
            table = judge_table(judge, name, items, prompts, FailurePolicy.from_spec(spec))
            seconds, cpu_seconds = time.perf_counter() - loaded, time.process_time() - cpu
        predicted = table["refusal"].astype("Float64").astype(float).to_numpy()
        keep = ~np.isnan(predicted)
        print(f"{name}: load {loaded - began:.1f} s; {len(table)} items in {seconds:.1f} s wall = "
              f"{seconds / len(table):.2f} s per response ({cpu_seconds / len(table):.2f} CPU s); labelled "
              f"{int(keep.sum())}; said refusal {int(np.nansum(predicted))}; kappa "
              f"{kappa(y[keep], predicted[keep].astype(int)):.3f}; refusals caught "
              f"{int(((predicted == 1) & (y == 1)).sum())} of {int(y.sum())}")
        if "refusal_score" in table and table["refusal_score"].notna().any():
            from safetygrid.ensemble.judge_validity import auc

            score = table["refusal_score"].to_numpy(float)
            print(f"  refusal_score AUC {auc(y[keep], score[keep]):.3f}; scores by human label: refusal "
                  f"{np.round(score[y == 1], 2).tolist()} / not {np.round(score[y == 0], 2).tolist()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", help="own-labels mode: the run's results directory")
    parser.add_argument("--labels", nargs="*", default=[], help="own-labels mode: the label files (globs)")
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--cells", default="*/*/*/*", help="MODEL/PRECISION/KV/T<temperature> glob")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--max-subset", type=int, default=3, help="candidate rho: subsets of at most this many judges")
    parser.add_argument("--calibrate-all", action="store_true",
                        help="every judge with a refusal score votes calibrated in the candidate rho")
    parser.add_argument("--borrowed", help="borrowed mode: PyRIT's refusal.csv")
    parser.add_argument("--checkpoint", help="borrowed mode: the refusal_lm judge's model directory")
    parser.add_argument("--engine", choices=["hf", "llama_cpp", "vllm"], default="llama_cpp")
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--template", choices=["refusal", "attempt"], default="refusal", help="borrowed mode: refusal_lm's template")
    parser.add_argument("--max-response-tokens", type=int, default=256)
    args = parser.parse_args()
    if args.borrowed:
        if not args.checkpoint:
            raise SystemExit("--borrowed needs --checkpoint (the judge model's directory)")
        borrowed_mode(args)
    elif args.results:
        own_mode(args)
    else:
        raise SystemExit("give --results and --labels (own labels) or --borrowed and --checkpoint")


if __name__ == "__main__":
    main()
