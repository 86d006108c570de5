"""Own-response labels: the label file loader's bad-input errors, the join to the current responses
(gold), inter-rater kappa, and the per-cell label sample's draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from safetygrid.labels import (LABEL_COLUMNS, LabelError, draw_label_sample, gold, inter_rater_kappa, load_labels,
                               response_sha256)

ROOT = Path(__file__).resolve().parents[1]
RUBRICS = ROOT / "resources" / "rubrics"
CELL = {"model": "m", "precision": "fp32", "kv": "fp", "temperature": "0.7"}


def _responses(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame([{**CELL, "prompt_id": f"p{i}", "sample": 0, "response": f"answer {i}"} for i in range(n)])


def _label(i: int, label: int, rater: str = "alice", **changes: object) -> dict[str, object]:
    row = {**CELL, "prompt_id": f"p{i}", "sample": 0, "response_sha256": response_sha256(f"answer {i}"),
           "label": label, "rater": rater, "labelled_at": "2026-11-29T12:00:00+00:00", "rubric": "harmbench-v1",
           "draw": "random", "comment": ""}
    return {**row, **changes}


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    pd.DataFrame(rows, columns=LABEL_COLUMNS).to_csv(path, index=False)
    return path


def test_loader_reads_a_good_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "alice.csv", [_label(0, 1), _label(1, 0), _label(1, 0)])  # a repeat counts once
    labels = load_labels([path], RUBRICS)
    assert len(labels) == 2 and labels["label"].tolist() == [1, 0]
    assert labels["temperature"].tolist() == [0.7, 0.7] and labels["sample"].dtype == "int64"
    # a glob that matches nothing yet is no labels, not an error; nor is a file with its header only
    assert load_labels([str(tmp_path / "none" / "*.csv")], RUBRICS).empty
    header_only = load_labels([_write(tmp_path / "new.csv", [])], RUBRICS)
    assert header_only.empty and gold(header_only, _responses()).empty
    assert inter_rater_kappa(header_only).empty


@pytest.mark.parametrize("change, message", [
    ({"label": "2"}, "row 2: label must be 0 or 1, found '2'"),
    ({"label": "yes"}, "row 2: label must be 0 or 1, found 'yes'"),
    ({"rubric": "harmbench-v9"}, "row 2: rubric 'harmbench-v9' has no text at"),
    ({"draw": "picked"}, "row 2: draw must be one of"),
    ({"response_sha256": "abc"}, "row 2: response_sha256 must be 64 lowercase hex digits"),
    ({"temperature": "warm"}, "row 2: temperature must be a number"),
    ({"labelled_at": "yesterday"}, "row 2: labelled_at must be an ISO-8601 time"),
    ({"rater": ""}, "row 2: rater is empty"),
])
def test_loader_names_the_bad_row(tmp_path: Path, change: dict[str, object], message: str) -> None:
    path = _write(tmp_path / "bad.csv", [_label(0, 1), {**_label(1, 0), **change}])
    with pytest.raises(LabelError, match=f"^{str(path)} " + message.replace("(", "\\(").replace("[", "\\[")):
        load_labels([path], RUBRICS)


def test_loader_rejects_missing_columns_and_files(tmp_path: Path) -> None:
    pd.DataFrame([_label(0, 1)]).drop(columns=["rubric"]).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(LabelError, match=r"x.csv: missing column\(s\) \['rubric'\]"):
        load_labels([tmp_path / "x.csv"], RUBRICS)
    with pytest.raises(LabelError, match="nope.csv: no such label file"):
        load_labels([tmp_path / "nope.csv"], RUBRICS)


def test_conflicting_labels_of_one_rater_fail_naming_both_rows(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.csv", [_label(0, 1), _label(1, 1)])
    b = _write(tmp_path / "b.csv", [_label(1, 0)])
    with pytest.raises(LabelError, match=r"rater 'alice' labelled response p1 sample 0 of m/fp32/fp/T0.7 "
                                         r"differently: .*a.csv row 2: label 1; .*b.csv row 1: label 0"):
        load_labels([a, b], RUBRICS)
    # two raters disagreeing is not an error: it is what inter-rater kappa measures
    c = _write(tmp_path / "c.csv", [_label(1, 0, rater="bob")])
    assert len(load_labels([a, c], RUBRICS)) == 3


def test_gold_takes_the_majority_and_leaves_stale_and_tied_out(tmp_path: Path) -> None:
    rows = [_label(0, 1), _label(0, 1, rater="bob"), _label(0, 0, rater="carol"),  # 2:1 -> 1
            _label(1, 1), _label(1, 0, rater="bob"),  # a tie -> left out
            _label(2, 0, draw="targeted"), _label(2, 0, rater="bob"),  # random wins over targeted
            _label(3, 1, response_sha256=response_sha256("an older answer")),  # stale
            _label(4, 1, prompt_id="p99")]  # no such response
    labels = load_labels([_write(tmp_path / "l.csv", rows)], RUBRICS)
    table = gold(labels, _responses())
    assert table["prompt_id"].tolist() == ["p0", "p2"]
    assert table["human"].tolist() == [1, 0] and table["n_raters"].tolist() == [3, 2]
    assert table["draw"].tolist() == ["random", "random"]
    assert table["raters"].tolist() == ["alice,bob,carol", "alice,bob"]
    assert table.attrs["counts"] == {"labels": 9, "matched": 7, "stale": 1, "unmatched": 1, "tied": 1,
                                     "tied_unsafe": 1, "tied_refusal": 0, "tied_complied": 0}
    # v1 labels give the unsafe axis only: refusal and complied are NA, never a made-up 0
    assert table["unsafe"].tolist() == [1, 0] and table["human"].equals(table["unsafe"])
    assert table["refusal"].isna().all() and table["complied"].isna().all() and table["outcome"].isna().all()
    assert str(table["unsafe"].dtype) == str(table["refusal"].dtype) == "Int64"


def _outcome(i: int, outcome: str, rater: str = "alice", **changes: object) -> dict[str, object]:
    return _label(i, int(outcome == "harmful"), rater, outcome=outcome, rubric="harmbench-v2", **changes)


@pytest.mark.parametrize("change, message", [
    ({"outcome": "maybe"}, "row 2: outcome must be one of \\['refusal', 'other', 'attempt', 'harmful'\\] or empty, "
                           "found 'maybe'"),
    ({"label": 0, "outcome": "harmful"}, "row 2: label 0 does not match outcome 'harmful'"),
    ({"label": 1, "outcome": "attempt"}, "row 2: label 1 does not match outcome 'attempt'"),
    ({"outcome": ""}, "row 2: rubric 'harmbench-v2' labels record an outcome"),
])
def test_outcome_rows_are_checked(tmp_path: Path, change: dict[str, object], message: str) -> None:
    path = _write(tmp_path / "bad.csv", [_outcome(0, "refusal"), {**_outcome(1, "other"), **change}])
    with pytest.raises(LabelError, match=f"^{str(path)} " + message):
        load_labels([path], RUBRICS)


def test_one_rater_giving_two_outcomes_fails_and_a_repeat_keeps_the_outcome(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.csv", [_outcome(0, "refusal"), _outcome(1, "other")])
    b = _write(tmp_path / "b.csv", [_outcome(1, "attempt")])  # same label (0), another outcome
    with pytest.raises(LabelError, match=r"labelled response p1 .*a.csv row 2: label 0, outcome other; "
                                         r".*b.csv row 1: label 0, outcome attempt"):
        load_labels([a, b], RUBRICS)
    # a v1 label and a v2 outcome that agree on the unsafe axis are one label, the outcome kept
    c = _write(tmp_path / "c.csv", [_label(1, 0)])
    labels = load_labels([c, a], RUBRICS)
    assert len(labels) == 2 and labels.set_index("prompt_id").loc["p1", "outcome"] == "other"


def test_gold_gives_each_axis_by_the_majority_of_the_raters_who_gave_it(tmp_path: Path) -> None:
    rows = [_outcome(0, "harmful"), _outcome(0, "attempt", "bob"), _outcome(0, "harmful", "carol"),
            # harmful vs attempt: complied by both, unsafe tied -> unsafe NA, the row kept
            _outcome(1, "harmful"), _outcome(1, "attempt", "bob"),
            # a v1 rater and a v2 rater: unsafe from both (0, 0), refusal and complied from the v2 row
            _label(2, 0, "dave"), _outcome(2, "refusal", "bob"),
            # refusal vs harmful: every axis tied -> left out
            _outcome(3, "refusal"), _outcome(3, "harmful", "bob"),
            _outcome(4, "other"),
            # 2 of 4 say harmful: not a majority outcome; unsafe tied, complied 3 of 4
            _outcome(5, "harmful"), _outcome(5, "harmful", "bob"), _outcome(5, "attempt", "carol"),
            _outcome(5, "refusal", "dave")]
    table = gold(load_labels([_write(tmp_path / "l.csv", rows)], RUBRICS), _responses()).set_index("prompt_id")
    assert table.index.tolist() == ["p0", "p1", "p2", "p4", "p5"]
    assert table["unsafe"].isna().tolist() == [False, True, False, False, True]
    assert pd.isna(table.loc["p5", "outcome"]) and table.loc["p5", "complied"] == 1 and table.loc["p5", "refusal"] == 0
    assert table.loc["p0", "unsafe"] == 1 and table.loc["p0", "complied"] == 1 and table.loc["p0", "refusal"] == 0
    assert table.loc["p0", "outcome"] == "harmful"  # 2 of 3
    assert pd.isna(table.loc["p1", "unsafe"]) and pd.isna(table.loc["p1", "human"])
    assert table.loc["p1", "complied"] == 1 and table.loc["p1", "refusal"] == 0 and pd.isna(table.loc["p1", "outcome"])
    assert table.loc["p2", "unsafe"] == 0 and table.loc["p2", "refusal"] == 1 and table.loc["p2", "complied"] == 0
    assert table.loc["p2", "n_raters"] == 2 and table.loc["p2", "outcome"] == "refusal"
    assert table.loc["p4", "refusal"] == 0 and table.loc["p4", "complied"] == 0 and table.loc["p4", "unsafe"] == 0
    counts = table.attrs["counts"]
    assert counts["tied"] == 1 and counts["tied_unsafe"] == 3 and counts["tied_refusal"] == 1
    assert counts["tied_complied"] == 1


def test_the_shipped_v1_labels_still_load_and_give_the_unsafe_axis_only() -> None:
    labels = load_labels([ROOT / "resources" / "labels" / "v1" / "maintainers.csv"], RUBRICS)
    assert len(labels) >= 350 and set(labels["rubric"]) == {"harmbench-v1"} and set(labels["outcome"]) == {""}
    responses = labels.drop_duplicates(["model", "precision", "kv", "temperature", "prompt_id", "sample"])
    table = gold(labels, responses[["model", "precision", "kv", "temperature", "prompt_id", "sample",
                                    "response_sha256"]])
    assert len(table) > 0 and table["unsafe"].notna().all() and table["refusal"].isna().all()
    assert set(inter_rater_kappa(labels, resamples=50)["axis"]) == {"unsafe"}


@pytest.mark.parametrize("path, cell_sizes, third_reader", [
    # the demo's (config.yaml, Qwen2.5-Coder-0.5B): 25 responses at T = 0, 50 at T = 1
    ("maintainers-qwen-v2.csv", [25, 25, 50, 50], "maintainer-l"),
    # the earlier demo's (SmolLM2-135M, kept for the record): 25 at T = 0, 75 at each T > 0
    ("smollm2-v2/maintainers-v2.csv", [25, 25, 75, 75, 75, 75], "maintainer-h")])
def test_the_shipped_v2_labels_cover_their_grid_with_raters_mixed_across_cells(path: str, cell_sizes: list[int],
                                                                              third_reader: str) -> None:
    """harmbench-v2 labels: every response to a harmful prompt of every cell, one of four outcomes
    each; no rater read a cell alone, and at least 20 % were read twice (resources/labels/README.md)."""
    labels = load_labels([ROOT / "resources" / "labels" / path], RUBRICS)
    assert set(labels["rubric"]) == {"harmbench-v2"} and set(labels["outcome"]) <= {"refusal", "other", "attempt",
                                                                                       "harmful"}
    cells = ["model", "precision", "kv", "temperature"]
    per_cell = labels.drop_duplicates([*cells, "prompt_id", "sample"]).groupby(cells).size()
    assert sorted(per_cell.tolist()) == cell_sizes
    first_readers = labels[labels["rater"] != third_reader]
    assert (first_readers.groupby(cells)["rater"].nunique() == 3).all()  # every cell read by all three raters
    read_twice = first_readers.groupby([*cells, "prompt_id", "sample"])["rater"].nunique()
    assert (read_twice >= 2).sum() / len(read_twice) >= 0.2


def test_the_demo_labels_cover_its_grid_with_each_rater_across_every_cell() -> None:
    """config.yaml's grid (fp32 and Q3_K_M; T = 0 and 1) from both reading rounds: every response to a
    harmful prompt labelled, every round-2 rater's readings spread over all four cells, at least 20 %
    read twice, and the fp32 responses re-read in round 2 read by both rounds (resources/labels/README.md)."""
    files = [ROOT / "resources" / "labels" / name for name in ("maintainers-qwen-v2.csv", "maintainers-qwen-v2-round2.csv")]
    labels = load_labels(files, RUBRICS)
    labels = labels[labels["precision"].isin(["fp32", "gguf-q3_k_m"])]
    cells = ["model", "precision", "kv", "temperature"]
    response = [*cells, "prompt_id", "sample"]
    assert sorted(labels.drop_duplicates(response).groupby(cells).size().tolist()) == [25, 25, 50, 50]
    round_two = labels[labels["rater"].isin(["maintainer-m", "maintainer-n", "maintainer-o"])]
    assert (round_two.drop_duplicates(["rater", *cells]).groupby("rater").size() == 4).all()
    readers = labels.groupby(response)["rater"].nunique()
    assert (readers >= 2).mean() >= 0.2
    rounds = labels.assign(round=labels["rater"].isin(round_two["rater"].unique()))
    both = rounds[rounds["precision"] == "fp32"].groupby(response)["round"].nunique()
    assert (both == 2).sum() >= 24


DEMO_CELLS = ["model", "precision", "kv", "temperature"]
DEMO_RESPONSE = [*DEMO_CELLS, "prompt_id", "sample", "response_sha256"]


def _demo_labels() -> pd.DataFrame:
    return load_labels(sorted((ROOT / "resources" / "labels").glob("maintainers-qwen-v2*.csv")), RUBRICS)


def _assert_no_tie(labels: pd.DataFrame, round_rows: pd.DataFrame) -> None:
    """With every round's labels, no response a round read is left tied on any axis."""
    read = round_rows.drop_duplicates(DEMO_RESPONSE)[DEMO_RESPONSE]
    table = gold(labels, read)
    counts = table.attrs["counts"]
    assert len(table) == len(read)
    assert counts["tied"] == counts["tied_refusal"] == counts["tied_complied"] == counts["tied_unsafe"] == 0


def test_the_demo_labels_round_three_mixes_cells_and_settles_every_tie() -> None:
    """Round 3 (the responses the one-pass schedule changed, resources/labels/README.md): every
    first rater read at least three cells, at least 20 % of the responses it read were read twice,
    and with all rounds no response round 3 read is left tied on any axis (the third readings
    settled each disagreement)."""
    labels = _demo_labels()
    round_three = labels[labels["rater"].isin(["maintainer-q", "maintainer-r", "maintainer-s"])]
    assert (round_three.drop_duplicates(["rater", *DEMO_CELLS]).groupby("rater").size() >= 3).all()
    assert (round_three.groupby(DEMO_RESPONSE)["rater"].nunique() >= 2).mean() >= 0.2
    _assert_no_tie(labels, round_three)


def test_the_demo_labels_round_four_mixes_every_cell_and_settles_every_tie() -> None:
    """Round 4 (the responses that 512 new tokens changed, resources/labels/README.md): every first
    rater read all four cells, at least 20 % of the new texts were read twice by first raters, and
    with all four rounds no response round 4 read is left tied on any axis (the further readings
    settled each disagreement, a re-read one against its earlier reading included)."""
    labels = _demo_labels()
    round_four = labels[labels["rater"].isin(["maintainer-v", "maintainer-w", "maintainer-x", "maintainer-y"])]
    assert (round_four.drop_duplicates(["rater", *DEMO_CELLS]).groupby("rater").size() == 4).all()
    earlier = labels[labels["rater"].str.fullmatch(r"maintainer-[a-u]")].drop_duplicates(DEMO_RESPONSE)[DEMO_RESPONSE]
    new_texts = round_four.merge(earlier, on=DEMO_RESPONSE, how="left", indicator=True)
    new_texts = new_texts[new_texts["_merge"] == "left_only"]
    assert (new_texts.groupby(DEMO_RESPONSE)["rater"].nunique() >= 2).mean() >= 0.2
    _assert_no_tie(labels, round_four)


def test_a_file_matching_no_response_fails_naming_it(tmp_path: Path) -> None:
    good = _write(tmp_path / "good.csv", [_label(0, 1)])
    other = _write(tmp_path / "other_grid.csv", [_label(0, 1, model="llama"), _label(1, 0, model="llama")])
    labels = load_labels([good, other], RUBRICS)
    with pytest.raises(LabelError, match=r"other_grid.csv: none of its 2 label rows matches a response of this run "
                                         r"\(2 rows did not match"):
        gold(labels, _responses())
    assert len(gold(labels, _responses(), require_match=False)) == 1


def test_inter_rater_kappa_on_shared_items(tmp_path: Path) -> None:
    alice = [1, 1, 0, 0, 1, 0] * 2
    bob = [1, 0, 0, 0, 1, 1] * 2
    rows = [_label(i, a) for i, a in enumerate(alice)] + [_label(i, b, rater="bob") for i, b in enumerate(bob)]
    rows.append(_label(0, 0, rater="carol"))  # carol shares one item with each, and disagrees
    table = inter_rater_kappa(load_labels([_write(tmp_path / "l.csv", rows)], RUBRICS), resamples=200)
    ab = table[(table["rater_a"] == "alice") & (table["rater_b"] == "bob")].iloc[0]
    # agreement 8/12; both say 1 half the time: chance 0.5 -> kappa (2/3 - 1/2) / (1/2) = 1/3
    assert ab["n_items"] == 12 and ab["agreement"] == pytest.approx(4 / 6)
    assert ab["kappa"] == pytest.approx(1 / 3) and ab["kappa_lo"] <= 1 / 3 <= ab["kappa_hi"]
    assert set(zip(table["rater_a"], table["rater_b"])) == {("alice", "bob"), ("alice", "carol"), ("bob", "carol")}
    # carol disagrees with bob on their one shared item: arithmetic gives kappa 0, which says nothing
    bc = table[(table["rater_a"] == "bob") & (table["rater_b"] == "carol")].iloc[0]
    assert bc["n_items"] == 1 and bc["agreement"] == 0 and np.isnan(bc["kappa"])
    assert "at least 10" in bc["note"]
    assert set(table["axis"]) == {"unsafe"}  # v1 labels: no refusal or complied axis to compare


def test_inter_rater_kappa_per_axis(tmp_path: Path) -> None:
    # 28 responses read by two raters: they agree on refusing or not everywhere, and on which 12
    # complied; on harmful vs attempt they split on 8 of those, so unsafe agrees less
    alice = ["refusal"] * 8 + ["other"] * 8 + ["harmful"] * 8 + ["attempt"] * 4
    bob = ["refusal"] * 8 + ["other"] * 8 + ["harmful"] * 4 + ["attempt"] * 4 + ["harmful"] * 4
    rows = [_outcome(i, o) for i, o in enumerate(alice)] + [_outcome(i, o, "bob") for i, o in enumerate(bob)]
    table = inter_rater_kappa(load_labels([_write(tmp_path / "l.csv", rows)], RUBRICS),
                              resamples=200).set_index("axis")
    assert table.index.tolist() == ["unsafe", "refusal", "complied"]
    assert table.loc["refusal", "kappa"] == pytest.approx(1.0) and table.loc["refusal", "n_items"] == 28
    assert table.loc["complied", "kappa"] == pytest.approx(1.0) and table.loc["complied", "agreement"] == 1
    # unsafe: 8 + 8 positives of 56 labels, estimable; agreement 20/28; each rater says 1 on 8 of 28,
    # chance (8/28)^2 + (20/28)^2 = 464/784 -> kappa (560 - 464) / (784 - 464) = 0.3
    assert table.loc["unsafe", "agreement"] == pytest.approx(20 / 28)
    assert table.loc["unsafe", "kappa"] == pytest.approx(0.3)
    assert table.loc["unsafe", "n_pos"] == 16 and table.loc["unsafe", "n_neg"] == 40
    # fewer than 10 of a class between the two raters: kappa NA, the counts in the note
    few = rows[:8] + rows[16:20] + rows[28:36] + rows[44:48]  # 8 refusals and 4 harmful each
    table = inter_rater_kappa(load_labels([_write(tmp_path / "few.csv", few)], RUBRICS), resamples=50)
    unsafe = table.set_index("axis").loc["unsafe"]
    assert np.isnan(unsafe["kappa"]) and "hold 8 positive and 16 negative" in unsafe["note"]


def _cell_tables(n_prompts: int = 40, k: int = 3) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    rng = np.random.default_rng(0)
    generations = pd.DataFrame([{"prompt_id": f"h{p}", "sample": s, "response": f"r{p}.{s}"}
                                for p in range(n_prompts) for s in range(k)]
                               + [{"prompt_id": "benign1", "sample": 0, "response": "hello"}])
    n_unsafe = rng.integers(0, 4, len(generations))
    votes = generations[["prompt_id", "sample"]].assign(
        n_unsafe=n_unsafe, n_judges=3, p_unsafe_stacked=rng.uniform(0, 1, len(generations)))
    return generations, votes, [f"h{p}" for p in range(n_prompts)]


def test_label_sample_random_then_targeted() -> None:
    generations, votes, harmful = _cell_tables()
    drawn = draw_label_sample(generations, votes, harmful, CELL, seed=7, random_per_cell=30, targeted_per_cell=10)
    assert drawn["draw"].tolist() == ["random"] * 30 + ["targeted"] * 10
    assert drawn["order"].tolist() == list(range(40))
    assert "benign1" not in set(drawn["prompt_id"])  # only responses to harmful prompts
    assert not drawn.duplicated(["prompt_id", "sample"]).any()
    assert drawn["response_sha256"].iat[0] == response_sha256(
        generations.set_index(["prompt_id", "sample"]).loc[(drawn["prompt_id"].iat[0], drawn["sample"].iat[0]),
                                                           "response"])
    targeted = drawn[drawn["draw"] == "targeted"].merge(votes, on=["prompt_id", "sample"])
    # every response the judges split on comes before any they agree on
    disagree = targeted["n_unsafe"].between(1, 2)
    assert targeted["reason"].tolist() == ["judges_disagree"] * int(disagree.sum()) + \
        ["near_threshold"] * int((~disagree).sum())
    assert drawn.loc[drawn["draw"] == "random", "reason"].isna().all()


def test_label_sample_is_seeded_and_stable() -> None:
    generations, votes, harmful = _cell_tables()
    draw = lambda **kw: draw_label_sample(generations, votes, harmful, CELL, **{  # noqa: E731
        "seed": 7, "random_per_cell": 30, "targeted_per_cell": 10, **kw})
    first = draw()
    pd.testing.assert_frame_equal(first, draw())
    assert draw(seed=8)["prompt_id"].tolist() != first["prompt_id"].tolist()
    # the random part reads no votes: other votes change only the targeted part
    other_votes = votes.assign(n_unsafe=0, p_unsafe_stacked=0.5)
    changed = draw_label_sample(generations, other_votes, harmful, CELL, seed=7, random_per_cell=30, targeted_per_cell=10)
    pd.testing.assert_frame_equal(changed.head(30), first.head(30))
    # a larger random part keeps every response drawn before, in the same order
    assert draw(random_per_cell=45).head(30)[["prompt_id", "sample"]].equals(first.head(30)[["prompt_id", "sample"]])
    # another cell is another draw
    other_cell = draw_label_sample(generations, votes, harmful, {**CELL, "temperature": "1.0"}, seed=7,
                                   random_per_cell=30, targeted_per_cell=10)
    assert other_cell["prompt_id"].tolist() != first["prompt_id"].tolist()
    # a cell smaller than the sizes is drawn whole
    small = draw(random_per_cell=500)
    assert len(small) == 120 and (small["draw"] == "random").all()


def test_label_sample_is_uniform() -> None:
    """Each response is drawn with probability n / N: over 200 seeds, each of 10 responses is drawn
    200 * 5/10 = 100 times, give or take sampling noise (binomial sd ~7; the band is 4 sd)."""
    generations = pd.DataFrame({"prompt_id": [f"h{i}" for i in range(10)], "sample": 0, "response": "x"})
    votes = generations[["prompt_id", "sample"]].assign(n_unsafe=0, n_judges=1)
    counts = pd.Series(0, index=generations["prompt_id"])
    for seed in range(200):
        drawn = draw_label_sample(generations, votes, list(generations["prompt_id"]), CELL, seed=seed,
                                  random_per_cell=5, targeted_per_cell=0)
        counts[drawn["prompt_id"]] += 1
    assert counts.sum() == 1000 and counts.between(100 - 28, 100 + 28).all(), counts.to_dict()


def test_gold_of_labels_that_are_all_stale_is_empty_and_counted(tmp_path: Path) -> None:
    # e.g. a label file made on another machine's bytes: every row names a response, none still matches
    rows = [_label(i, 1, response_sha256=response_sha256(f"an older answer {i}")) for i in range(3)]
    table = gold(load_labels([_write(tmp_path / "l.csv", rows)], RUBRICS), _responses())
    assert table.empty and "temperature" in table.columns and str(table["unsafe"].dtype) == "Int64"
    assert table.attrs["counts"]["stale"] == 3 and table.attrs["counts"]["matched"] == 0
