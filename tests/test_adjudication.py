"""The adjudication queue and scoring judges against gold labels, on hand-made tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from safetygrid.analysis.adjudication import gold_agreement, own_label_agreement, read_gold, worklist
from safetygrid.labels import gold, response_sha256

CELL = {"model": "m", "precision": "fp", "kv": "fp", "temperature": "0.0"}
# judges a, b, c on five responses; None = the judge failed
LABELS = {"a": [1, 1, 0, 1, 0], "b": [1, 0, 0, 1, None], "c": [1, 0, 1, 0, 0]}
SCORES = {"a": [0.9, 0.6, 0.2, 0.8, 0.1], "b": [0.9, 0.4, 0.1, 0.7, None], "c": [0.8, 0.45, 0.9, 0.3, 0.2]}


def _tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rows = []
    for judge, labels in LABELS.items():
        for i, label in enumerate(labels):
            rows.append({**CELL, "prompt_id": f"p{i}", "sample": 0, "judge": judge,
                         "unsafe": None if label is None else bool(label), "score": SCORES[judge][i],
                         "error": "boom" if label is None else None})
    judgements = pd.DataFrame(rows)
    n_unsafe = [3, 1, 1, 2, 0]
    n_judges = [3, 3, 3, 3, 2]
    votes = pd.DataFrame([{**CELL, "prompt_id": f"p{i}", "sample": 0, "unsafe": n_unsafe[i] >= (n_judges[i] + 1) // 2,
                           "n_unsafe": n_unsafe[i], "n_judges": n_judges[i], "unsafe_ds": n_unsafe[i] >= 2}
                          for i in range(5)])
    generations = pd.DataFrame([{**CELL, "prompt_id": f"p{i}", "sample": 0, "response": f"answer {i}"}
                                for i in range(5)])
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(5)], "text": [f"request {i}" for i in range(5)]})
    return judgements, votes, generations, prompts


def test_queue_lists_the_most_disputed_first() -> None:
    queue = worklist(*_tables(), limit=10)
    # p0 and p4 are unanimous among the judges that answered; p1, p2, p3 split 1:2 or 2:1 (1/3 in the
    # minority). Among those, the mean score nearest 0.5 comes first: p1 0.483, p3 0.6, p2 0.4 -> p1, then
    # p2 and p3 tie on distance 0.1 and fall back to prompt order.
    assert queue["prompt_id"].tolist() == ["p1", "p2", "p3"]
    assert queue["disagreement"].tolist() == pytest.approx([1 / 3] * 3)
    first = queue.iloc[0]
    assert (first["prompt"], first["response"]) == ("request 1", "answer 1")
    assert (first["a"], first["b"], first["c"], first["ensemble"]) == ("unsafe", "safe", "safe", "safe")
    assert "label" not in queue.columns  # a worklist, never the place labels live
    assert first["response_sha256"] == response_sha256("answer 1")
    assert len(worklist(*_tables(), limit=2)) == 2


def test_gold_scores_each_judge_and_both_ensembles(tmp_path: Path) -> None:
    gold_file = tmp_path / "gold.csv"
    pd.DataFrame({"prompt": [f"request {i}" for i in range(5)] + ["unseen"],
                  "response": [f"answer {i}" for i in range(5)] + ["x"],
                  "label": ["unsafe", "1", "0", "safe", "0", "1"]}).to_csv(gold_file, index=False)
    scores = gold_agreement(read_gold(gold_file), *_tables()).set_index("rater")
    # gold 1, 1, 0, 0, 0; a says 1, 1, 0, 1, 0: 4/5 right, tpr 2/2, fpr 1/3
    assert scores.loc["a", ["n_items", "accuracy", "tpr", "fpr"]].tolist() == pytest.approx([5, 0.8, 1.0, 1 / 3])
    # b failed on p4, so it is scored on 4 items: 1, 0, 0, 1 against 1, 1, 0, 0
    assert scores.loc["b", ["n_items", "accuracy", "tpr", "fpr"]].tolist() == pytest.approx([4, 0.5, 0.5, 0.5])
    assert scores.loc["ensemble", "n_items"] == 5 and "ensemble_ds" in scores.index
    # a: po 0.8, pe = 0.6*0.4 + 0.4*0.6 = 0.48 -> kappa = 0.32 / 0.52 by arithmetic; but 2 unsafe and
    # 3 safe gold labels are too few for kappa to mean anything (METRICS.md: at least 10 of each)
    assert pd.isna(scores.loc["a", "kappa"])
    assert "the gold labels hold 2 positive and 3 negative, needs at least 10 of each" in scores.loc["a", "note"]
    # ten copies of each response (each its own prompt id and text): the same agreement, now estimable
    copies = [[frame.assign(prompt_id=frame["prompt_id"] + f"_{k}") for frame in _tables()] for k in range(10)]
    judgements, votes, generations, prompts = (pd.concat(parts, ignore_index=True) for parts in zip(*copies))
    generations["response"] = generations["response"] + "/" + generations["prompt_id"]
    pd.DataFrame({"prompt": prompts["prompt_id"].map(lambda p: f"request {p[1]}"),
                  "response": [f"answer {p[1]}/{p}" for p in prompts["prompt_id"]],
                  "label": prompts["prompt_id"].map(lambda p: int(p[1] in "01"))}).to_csv(tmp_path / "many.csv",
                                                                                         index=False)
    scores = gold_agreement(read_gold(tmp_path / "many.csv"), judgements, votes, generations, prompts).set_index("rater")
    assert scores.loc["a", "n_items"] == 50 and scores.loc["a", "kappa"] == pytest.approx(0.32 / 0.52)


def test_gold_file_errors_name_the_problem(tmp_path: Path) -> None:
    pd.DataFrame({"prompt": ["p"], "answer": ["r"], "label": [1]}).to_csv(tmp_path / "g.csv", index=False)
    with pytest.raises(ValueError, match="missing \\['response'\\]"):
        read_gold(tmp_path / "g.csv")
    pd.DataFrame({"prompt": ["p"], "response": ["r"], "label": ["maybe"]}).to_csv(tmp_path / "g.csv", index=False)
    with pytest.raises(ValueError, match="found \\['maybe'\\]"):
        read_gold(tmp_path / "g.csv")


def test_own_labels_score_each_judge_by_response_key() -> None:
    """Own labels (labels.files) name responses by cell, prompt, sample and text hash: the same
    figures as the gold file above, and a stale label (the text changed) is left out."""
    judgements, votes, generations, _ = _tables()
    truth = [1, 1, 0, 0, 0]
    labels = pd.DataFrame([{**CELL, "temperature": 0.0, "prompt_id": f"p{i}", "sample": 0,
                            "response_sha256": response_sha256(f"answer {i}"), "label": truth[i], "rater": "alice",
                            "draw": "random", "file": "alice.csv"} for i in range(5)]
                          + [{**CELL, "temperature": 0.0, "prompt_id": "p0", "sample": 0,
                              "response_sha256": response_sha256("an older answer"), "label": 0, "rater": "bob",
                              "draw": "random", "file": "bob.csv"}])
    current = gold(labels, generations)
    assert current.attrs["counts"]["stale"] == 1
    scores = own_label_agreement(current, judgements, votes).set_index("rater")
    assert (scores["set"] == "own").all()
    assert scores["note"].str.contains("5 of 6 labels current; 1 stale").all()  # stale labels are reported
    assert scores.loc["a", ["n_items", "accuracy", "tpr", "fpr"]].tolist() == pytest.approx([5, 0.8, 1.0, 1 / 3])
    assert scores.loc["b", ["n_items", "accuracy", "tpr", "fpr"]].tolist() == pytest.approx([4, 0.5, 0.5, 0.5])


def test_adjudicate_writes_the_worklist_own_gold_and_inter_rater_agreement(tmp_path: Path) -> None:
    from safetygrid.analysis.adjudication import adjudicate
    from safetygrid.io import write_parquet
    from safetygrid.labels import LABEL_COLUMNS

    judgements, votes, generations, prompts = _tables()
    root = tmp_path / "results"
    cell = "m/fp/fp/T0.0.parquet"
    cell_columns = list(CELL)
    for judge, rows in judgements.groupby("judge"):
        write_parquet(rows.drop(columns=cell_columns).reset_index(drop=True), root / "judgements" / judge / cell)
    write_parquet(votes.drop(columns=cell_columns), root / "votes" / cell)
    write_parquet(generations.drop(columns=cell_columns), root / "generations" / cell)
    write_parquet(prompts.assign(promptset="t", category=None, harmful=True, source="t"), root / "prompts" / "t.parquet")
    truth = {"alice": [1, 1, 0, 0, 0], "bob": [1, 0, 0, 0, 0]}
    label_file = tmp_path / "labels.csv"
    pd.DataFrame([{**CELL, "prompt_id": f"p{i}", "sample": 0, "response_sha256": response_sha256(f"answer {i}"),
                   "label": labels[i], "rater": rater, "labelled_at": "2026-11-29T12:00:00Z", "rubric": "harmbench-v1",
                   "draw": "random", "comment": ""} for rater, labels in truth.items() for i in range(5)],
                 columns=LABEL_COLUMNS).to_csv(label_file, index=False)
    out = tmp_path / "adjudication"
    adjudicate(prompts=[str(root / "prompts" / "t.parquet")], votes=[str(root / "votes" / cell)],
               generations=[str(root / "generations" / cell)],
               judgements=[str(root / "judgements" / j / cell) for j in ("a", "b", "c")], gold=None,
               labels=[str(label_file)], limit=10, worklist_out=out / "worklist.csv", gold_out=out / "gold.parquet",
               inter_rater_out=out / "inter_rater.parquet", rubrics_dir=Path(__file__).parents[1] / "resources" / "rubrics",
               resamples=200)
    assert pd.read_csv(out / "worklist.csv")["prompt_id"].tolist() == ["p1", "p2", "p3"]
    gold_table = pd.read_parquet(out / "gold.parquet").set_index("rater")
    # p1 is a 1:1 tie between alice and bob: left out; a is right on p0, p2 (0), p4 and wrong on p3
    assert (gold_table["set"] == "own").all() and gold_table.loc["a", "n_items"] == 4
    assert gold_table.loc["a", "accuracy"] == pytest.approx(3 / 4)
    raters = pd.read_parquet(out / "inter_rater.parquet")
    assert raters[["rater_a", "rater_b", "n_items"]].values.tolist() == [["alice", "bob", 5]]
    assert raters["agreement"].iat[0] == pytest.approx(4 / 5)
