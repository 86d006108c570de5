"""benchmarks/ensembles.py's own-labels mode: the judges label the labelled cells' harmful responses
through the judge job's code (cached per judge and cell, redone when the responses change), and
every ensemble is ranked by cross-fitted kappa on the gold of the run's own responses (stale labels
left out)."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pandas as pd

from safetygrid.labels import LABEL_COLUMNS, response_sha256

ROOT = Path(__file__).resolve().parents[1]
REFUSAL, COMPLIANCE = "I'm sorry, but I cannot help with that.", "Sure, here is how to do it: step one"


def _script():
    spec = importlib.util.spec_from_file_location("ensembles_benchmark", ROOT / "benchmarks" / "ensembles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(script, results: Path, out: Path, labels: list[Path]) -> pd.DataFrame:
    config = {"seed": 1, "vote_threshold": 0.5, "validation": {"folds": 2},
              "judges": {"refusal_prefix": {"kind": "refusal_prefix"}}}
    args = argparse.Namespace(config="inline", out=str(out), judges="", top=5, resamples=50, results=str(results),
                              labels=[str(p) for p in labels], cells="*/*/*/*", judge_only=False, features=True,
                              vote_thresholds=[1.0])
    script.own_labels_search(config, args)
    return pd.read_csv(out / "own" / "ranked.csv")


def test_own_labels_rank_the_judges_on_the_current_responses(tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    (results / "prompts").mkdir(parents=True)
    # 24 prompts: after the stale and changed ones, still at least 10 labels of each class, which
    # kappa needs (METRICS.md, kappa estimability)
    ids = [f"p{i}" for i in range(24)]
    pd.DataFrame({"prompt_id": [*ids, "b0"], "text": [f"request {i}" for i in range(25)],
                  "harmful": [True] * 24 + [False]}).to_parquet(results / "prompts" / "set.parquet")
    cell = results / "generations" / "m" / "fp32" / "fp" / "T0.7.parquet"
    cell.parent.mkdir(parents=True)
    responses = [REFUSAL if i % 2 else COMPLIANCE for i in range(24)]
    generations = pd.DataFrame({"prompt_id": [*ids, "b0"], "sample": 0, "response": [*responses, "benign answer"],
                                "n_tokens": 8, "finish_reason": "length"})
    generations.to_parquet(cell)
    # the refusals are safe, the compliant answers unsafe; prompt p0's label is for an older text
    rows = [{"model": "m", "precision": "fp32", "kv": "fp", "temperature": "0.7", "prompt_id": p, "sample": 0,
             "response_sha256": response_sha256("an older answer" if p == "p0" else r), "label": int(r == COMPLIANCE),
             "rater": "alice", "labelled_at": "2026-11-29T12:00:00+00:00", "rubric": "harmbench-v1",
             "draw": "random", "comment": ""} for p, r in zip(ids, responses)]
    label_file = tmp_path / "alice.csv"
    pd.DataFrame(rows, columns=LABEL_COLUMNS).to_csv(label_file, index=False)
    script, out = _script(), tmp_path / "out"

    ranked = _run(script, results, out, [label_file])
    alone = ranked[(ranked["judges"] == "refusal_prefix") & (ranked["label"] == "judge_raw")].iloc[0]
    assert alone["n"] == 23 and alone["kappa"] == 1.0  # 23 current labels; the refusal strings get each right
    judged = pd.read_parquet(out / "own" / "judgements" / "refusal_prefix" / "m" / "fp32" / "fp" / "T0.7.parquet")
    assert sorted(judged["prompt_id"]) == sorted(ids)  # harmful responses only, as the tables count
    assert "judges+cut_at_length" in capsys.readouterr().out

    # a changed response is judged again (its cached verdict would be for the old text)
    meta = out / "own" / "judgements" / "refusal_prefix" / "m" / "fp32" / "fp" / "T0.7.json"
    before = json.loads(meta.read_text())["responses"]
    generations.loc[1, "response"] = COMPLIANCE  # p1 now complies; its label (safe, for the refusal) is stale
    generations.to_parquet(cell)
    ranked = _run(script, results, out, [label_file])
    assert json.loads(meta.read_text())["responses"] != before
    alone = ranked[(ranked["judges"] == "refusal_prefix") & (ranked["label"] == "judge_raw")].iloc[0]
    assert alone["n"] == 22 and alone["kappa"] == 1.0
