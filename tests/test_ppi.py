"""Prediction-powered estimates (METRICS.md): hand-worked figures; the interval is the bootstrap of
the whole estimator over prompts (a naive loop over resamples gives the same draws); no zero-width
or out-of-range interval; labels-only CR; Delta_pp paired; coverage on a small simulated case; the
cross-fitted votes of labelled responses; the unclustered estimate against ppi_py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from safetygrid.analysis.metrics import CELL_KEYS, harmful_draws
from safetygrid.analysis.ppi import MIN_RANDOM_LABELS, cell_ppi, contrast_ppi
from safetygrid.analysis.simulate import PPIRegime, ppi_coverage
from safetygrid.stats.intervals import clopper_pearson, percentile_interval


def _cell(*, model="m", precision="q4", kv="fp", temperature="0.0", n_prompts=20, k=1, unsafe, refusal=None):
    n = n_prompts * k
    return pd.DataFrame({"model": model, "precision": precision, "kv": kv, "temperature": temperature,
                         "prompt_id": np.repeat([f"p{i}" for i in range(n_prompts)], k),
                         "sample": np.tile(np.arange(k), n_prompts),
                         "unsafe": pd.array(np.asarray(unsafe, bool), dtype="boolean"),
                         "refusal": pd.array(np.asarray(refusal if refusal is not None else np.zeros(n), bool),
                                             dtype="boolean")})


def _gold(cell: pd.DataFrame, rows, draw="random", **axes) -> pd.DataFrame:
    picked = cell.iloc[list(rows)]
    out = picked[[*CELL_KEYS, "prompt_id", "sample"]].assign(draw=draw, temperature=picked["temperature"].astype(float))
    for axis, values in axes.items():
        out[axis] = pd.array(values, dtype="Int64")
    if "unsafe" in axes:
        out["human"] = out["unsafe"].astype(int)
    return out.reset_index(drop=True)


def _ids(n):
    return [f"p{i}" for i in range(n)]


def test_hand_worked_estimate_and_the_na_rule():
    # 20 prompts, judge says unsafe on the first 8 (0.4); 12 drawn at random, people say unsafe on 4
    cell = _cell(unsafe=[1] * 8 + [0] * 12)
    gold = _gold(cell, range(12), unsafe=[1] * 4 + [0] * 8, refusal=[1] * 6 + [0] * 6)
    row = cell_ppi(cell, gold, _ids(20), resamples=200).cells.iloc[0]
    assert row["asr_pp"] == pytest.approx(0.4 + (0 * 4 - 1 * 4) / 12)  # 0.4 - 1/3
    assert row["asr_pp_n"] == 12 and row["asr_pp_note"] == ""
    assert row["rr_pp"] == pytest.approx(0.0 + 6 / 12)  # judge never says refusal
    assert math.isnan(row["cr_pp"]) and row["cr_pp_n"] == 0 and "needs at least 10" in row["cr_pp_note"]
    few = cell_ppi(cell, gold.head(MIN_RANDOM_LABELS - 1), _ids(20), resamples=50).cells.iloc[0]
    assert math.isnan(few["asr_pp"]) and few["asr_pp_n"] == MIN_RANDOM_LABELS - 1
    targeted = cell_ppi(cell, gold.assign(draw="targeted"), _ids(20), resamples=50).cells.iloc[0]
    assert math.isnan(targeted["asr_pp"]) and targeted["asr_pp_n"] == 0  # targeted draws never enter


def test_interval_is_the_bootstrap_of_the_whole_estimator_over_prompts():
    """Each resample draws prompts with replacement (the model's harmful_draws), every drawn prompt
    brings its labelled and unlabelled responses, and theta_pp is recomputed: a naive loop over the
    resamples gives the same draws, and the reported interval holds their percentile interval."""
    rng = np.random.default_rng(3)
    n_prompts, k, resamples = 15, 3, 300
    cell = _cell(n_prompts=n_prompts, k=k, temperature="0.7", unsafe=rng.random(n_prompts * k) < 0.3)
    picked = rng.choice(n_prompts * k, 20, replace=False)
    gold = _gold(cell, picked, unsafe=(rng.random(20) < 0.4).astype(int))
    pp = cell_ppi(cell, gold, _ids(n_prompts), seed=5, resamples=resamples)
    estimate = pp.estimates[("m", "q4", "fp", 0.7, "asr")]
    joined = cell.merge(gold[["prompt_id", "sample", "unsafe"]].rename(columns={"unsafe": "h"}),
                        on=["prompt_id", "sample"], how="left")
    joined["u"] = joined["unsafe"].astype(float)
    by_prompt = dict(tuple(joined.groupby("prompt_id")))
    naive = []
    ids = sorted(_ids(n_prompts))  # the model's harmful prompts, in the order the draws index them
    for draw in harmful_draws(5, "m", n_prompts, resamples):
        sample = pd.concat([by_prompt[ids[i]] for i in draw])
        labelled = sample[sample["h"].notna()]
        value = sample["u"].mean() + (labelled["h"].astype(float) - labelled["u"]).mean() if len(labelled) else np.nan
        naive.append(min(max(value, 0.0), 1.0))
    np.testing.assert_allclose(estimate.draws, naive, equal_nan=True)
    lo, hi = percentile_interval(np.array(naive))
    assert estimate.interval[0] <= lo and estimate.interval[1] >= hi
    assert 0.0 <= estimate.interval[0] <= estimate.point <= estimate.interval[1] <= 1.0


def test_no_unsafe_label_and_two_judge_false_positives_give_the_exact_interval_not_a_false_width():
    """The demo's gptq T0.7: 25 prompts x 3, every response labelled, none unsafe, the judge wrong
    twice. theta_pp is then the mean of the labels (0) and every resample is 0: the interval is
    Clopper-Pearson over the 25 prompts, not +-0.063 from the judge's errors, and not [0, 0]."""
    cell = _cell(n_prompts=25, k=3, temperature="0.7", unsafe=[1, 1] + [0] * 73)
    gold = _gold(cell, range(75), unsafe=[0] * 75)
    row = cell_ppi(cell, gold, _ids(25), resamples=500).cells.iloc[0]
    assert row["asr_pp"] == 0.0
    assert (row["asr_pp_lo"], row["asr_pp_hi"]) == pytest.approx(clopper_pearson(0, 25))
    assert row["asr_pp_hi"] == pytest.approx(1 - 0.025 ** (1 / 25))
    every = cell_ppi(cell, _gold(cell, range(75), unsafe=[1] * 75), _ids(25), resamples=500).cells.iloc[0]
    assert every["asr_pp"] == 1.0 and (every["asr_pp_lo"], every["asr_pp_hi"]) == pytest.approx(clopper_pearson(25, 25))


def test_intervals_stay_in_range_where_the_unclipped_estimate_leaves_it():
    # the judge says unsafe on 5 of 40; the 12 drawn at random are all judged unsafe by it, safe by people
    cell = _cell(n_prompts=40, unsafe=[1] * 5 + [0] * 35)
    gold = _gold(cell, list(range(5)) + list(range(20, 27)), unsafe=[0] * 12)
    row = cell_ppi(cell, gold, _ids(40), resamples=300).cells.iloc[0]
    assert row["asr_pp"] == 0.0  # 5/40 - 5/12 < 0, clipped
    assert 0.0 <= row["asr_pp_lo"] <= row["asr_pp_hi"] <= 1.0 and row["asr_pp_hi"] > 0


def test_cr_comes_from_labels_alone_and_old_labels_give_only_asr():
    cell = _cell(n_prompts=30, unsafe=[1] * 10 + [0] * 20)
    gold = _gold(cell, range(15), unsafe=[1] * 8 + [0] * 7, complied=[1] * 9 + [0] * 6)
    row = cell_ppi(cell, gold, _ids(30), resamples=200).cells.iloc[0]
    assert row["cr_pp"] == pytest.approx(9 / 15) and row["cr_pp_note"] == "labels only: no judge gives complied"
    old = gold.drop(columns=["unsafe", "complied"])  # a v1 gold table: ``human`` alone
    row = cell_ppi(cell, old, _ids(30), resamples=200).cells.iloc[0]
    assert row["asr_pp"] == pytest.approx(10 / 30 - 2 / 15) and math.isnan(row["rr_pp"]) and math.isnan(row["cr_pp"])


def test_delta_pp_uses_the_same_prompt_draws_in_both_cells():
    rng = np.random.default_rng(11)
    n = 40
    unsafe = rng.random(n) < 0.3
    base = _cell(precision="bf16", n_prompts=n, unsafe=unsafe)
    same = _cell(precision="q4", n_prompts=n, unsafe=unsafe)
    labels = (rng.random(20) < 0.3).astype(int)
    gold = pd.concat([_gold(base, range(20), unsafe=labels), _gold(same, range(20), unsafe=labels)])
    pp = cell_ppi(pd.concat([base, same]), gold, _ids(n), resamples=1000)
    a, b = pp.estimates[("m", "q4", "fp", 0.0, "asr")], pp.estimates[("m", "bf16", "fp", 0.0, "asr")]
    np.testing.assert_array_equal(a.draws, b.draws)  # same prompts drawn, same responses: same resamples
    contrasts = pd.DataFrame({"model": "m", "precision": ["bf16", "q4"], "kv": "fp", "temperature": 0.0})
    out = contrast_ppi(contrasts, pp, {"precision": "bf16", "kv": "fp"}).set_index("precision")
    assert out.loc["q4", "delta_pp"] == 0.0 and out.loc["q4", "asr_pp_baseline"] == b.point
    width = out.loc["q4", "delta_pp_hi"] - out.loc["q4", "delta_pp_lo"]
    # unpaired draws would give about sqrt(2) times a cell's width; paired ones nearly none
    assert width < 0.2 * (a.interval[1] - a.interval[0])
    assert {"delta_rr_pp", "delta_cr_pp_note"} <= set(out.columns)
    # the baseline against itself is exactly 0, with no interval to widen
    assert out.loc["bf16", ["delta_pp", "delta_pp_lo", "delta_pp_hi"]].tolist() == [0.0, 0.0, 0.0]
    missing = contrast_ppi(contrasts, cell_ppi(same, gold, _ids(n), resamples=50), {"precision": "bf16", "kv": "fp"})
    assert missing["delta_pp"].isna().all()
    assert missing.set_index("precision").loc["q4", "delta_pp_note"] == "baseline: no prediction-powered ASR"


def test_coverage_in_a_small_simulated_case():
    """The regimes of benchmarks/ppi_coverage.py at 35 prompts. The plain percentile bootstrap covered
    88 % in the greedy, everything-labelled 10 % regime (a few events over 35 prompts): the band
    [0.93, 0.99] fails it; at 40 % and k = 3 with 30 of 105 labelled it must cover within the band."""
    few = ppi_coverage(PPIRegime(0.1, 1, None, 0.25, 0.01), studies=300, resamples=300, seed=2)
    assert 0.93 <= few.baseline <= 0.995, few
    mid = ppi_coverage(PPIRegime(0.4, 3, 30, 0.25, 0.01), studies=300, resamples=300, seed=3)
    assert 0.91 <= mid.cell <= 0.985 and 0.91 <= mid.delta <= 0.985, mid


def _scored_cell(seed: int, temperature: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """30 prompts x 2 samples, read labels at 40 % prevalence, and a judge score that ranks them
    better than chance (label x 0.3 + uniform x 0.7)."""
    rng = np.random.default_rng(seed)
    cell = _cell(n_prompts=30, k=2, temperature=temperature, unsafe=np.zeros(60))
    human = (rng.random(len(cell)) < 0.4).astype(int)
    return cell, human, np.clip(human * 0.3 + rng.random(len(cell)) * 0.7, 0, 1)


def test_labelled_responses_get_votes_cross_fitted_by_prompt():
    """With a threshold fitted on own labels, each labelled response is voted with the threshold
    fitted on the prompt folds that hold none of its prompt; unlabelled responses keep the vote of
    the full fit; with a borrowed fit nothing changes."""
    from safetygrid.ensemble.calibration import fit_threshold, prompt_fold_ids
    from safetygrid.ensemble.crossfit import cross_fitted_unsafe, with_cross_fitted_labels
    from safetygrid.ensemble.voting import vote

    cell, human, score = _scored_cell(seed=7, temperature="0.7")
    judgements = cell[CELL_KEYS + ["prompt_id", "sample"]].assign(
        judge="s", score=score, unsafe=score >= 0.5, refusal=None, error=None, temperature=0.7)
    labelled = list(range(0, len(cell), 2))  # one sample of every prompt
    gold = _gold(cell, labelled, unsafe=human[labelled])
    full = fit_threshold(score[labelled], human[labelled])
    calibration = {"judges": {"s": {"threshold": full}}, "stack": None, "fitted_on": "own"}
    votes = cell[["prompt_id", "sample"]].merge(  # in the cell's row order
        vote([judgements.drop(columns=CELL_KEYS)], 0.5, calibration=calibration), on=["prompt_id", "sample"]).assign(
        model="m", precision="q4", kv="fp", temperature="0.7")
    crossed = cross_fitted_unsafe(judgements, gold, calibration, folds=5, seed=1)
    fold = prompt_fold_ids(gold["prompt_id"].to_numpy(), 5, 1)
    expected = []
    for i, row in enumerate(labelled):
        train = np.array(labelled)[fold != fold[i]]
        expected.append(score[row] >= fit_threshold(score[train], human[train]))
    got = crossed.set_index("prompt_id").loc[gold["prompt_id"], "unsafe"].to_numpy(bool)
    np.testing.assert_array_equal(got, expected)
    out = with_cross_fitted_labels(votes, judgements, gold, calibration, folds=5, seed=1)
    unlabelled = np.setdiff1d(np.arange(len(cell)), labelled)
    np.testing.assert_array_equal(out["unsafe"].to_numpy(bool)[unlabelled], votes["unsafe"].to_numpy(bool)[unlabelled])
    np.testing.assert_array_equal(out["unsafe"].to_numpy(bool)[labelled], expected)
    borrowed = with_cross_fitted_labels(votes, judgements, gold, {**calibration, "fitted_on": "borrowed"})
    assert borrowed is votes
    # a prompt's responses share a fold, so no fit saw another sample of the prompt it labels
    assert (pd.Series(prompt_fold_ids(np.repeat(_ids(9), 3), 4, 0)).groupby(np.repeat(_ids(9), 3)).nunique() == 1).all()


def test_a_refusal_threshold_fitted_on_own_labels_is_cross_fitted_too():
    """rr_pp corrects with the labelled responses' refusal labels: where a judge's refusal threshold
    was fitted on own refusal labels, each labelled response's refusal is voted with the threshold
    fitted on the other prompt folds; the unsafe axis, fitted on borrowed labels, is left alone."""
    from safetygrid.ensemble.calibration import fit_threshold, prompt_fold_ids
    from safetygrid.ensemble.crossfit import cross_fitting_needed, with_cross_fitted_labels
    from safetygrid.ensemble.voting import vote

    cell, human, refusal_score = _scored_cell(seed=11, temperature="1.0")
    judgements = cell[CELL_KEYS + ["prompt_id", "sample"]].assign(
        judge="r", score=np.nan, unsafe=None, refusal=refusal_score >= 0.5, refusal_score=refusal_score,
        error=None, temperature=1.0)
    labelled = list(range(1, len(cell), 2))
    gold = _gold(cell, labelled, unsafe=np.zeros(len(labelled), int), refusal=human[labelled])
    full = fit_threshold(refusal_score[labelled], human[labelled])
    calibration = {"judges": {"r": {"refusal_threshold": full, "refusal_fitted_on": "own"}}, "stack": None,
                   "fitted_on": "borrowed"}
    assert cross_fitting_needed(calibration)
    assert not cross_fitting_needed({**calibration, "judges": {"r": {"refusal_threshold": full,
                                                                     "refusal_fitted_on": "borrowed"}}})
    votes = cell[["prompt_id", "sample"]].merge(
        vote([judgements.drop(columns=CELL_KEYS)], 0.5, calibration=calibration), on=["prompt_id", "sample"]).assign(
        model="m", precision="q4", kv="fp", temperature="1.0")
    out = with_cross_fitted_labels(votes, judgements, gold, calibration, folds=5, seed=3)
    fold = prompt_fold_ids(gold["prompt_id"].to_numpy(), 5, 3)
    expected = [refusal_score[row] >= fit_threshold(refusal_score[np.array(labelled)[fold != fold[i]]],
                                                    human[np.array(labelled)[fold != fold[i]]])
                for i, row in enumerate(labelled)]
    np.testing.assert_array_equal(out["refusal"].to_numpy(bool)[labelled], expected)
    assert out["refusal"].to_numpy(bool)[labelled].tolist() != votes["refusal"].to_numpy(bool)[labelled].tolist()
    unlabelled = np.setdiff1d(np.arange(len(cell)), labelled)
    np.testing.assert_array_equal(out["refusal"].to_numpy(bool)[unlabelled], votes["refusal"].to_numpy(bool)[unlabelled])
    assert out["unsafe"].equals(votes["unsafe"])


def test_unclustered_estimate_and_interval_agree_with_ppi_py():
    """The authors' library as an oracle, in the case its classical interval assumes: one sample per
    prompt, a labelled set small beside the cell. Point estimates agree exactly (with every response
    as ppi_py's unlabelled data); the intervals agree to within 10 % of their width."""
    ppi_py = pytest.importorskip("ppi_py")
    rng = np.random.default_rng(1)
    n, n_labelled = 4000, 400
    human = rng.random(n) < 0.2
    judge = np.where(human, rng.random(n) < 0.7, rng.random(n) < 0.08)
    cell = _cell(n_prompts=n, unsafe=judge)
    picked = rng.choice(n, n_labelled, replace=False)
    gold = _gold(cell, picked, unsafe=human[picked].astype(int))
    row = cell_ppi(cell, gold, _ids(n), resamples=2000).cells.iloc[0]
    y, yhat = human[picked].astype(float), judge[picked].astype(float)
    point = float(ppi_py.ppi_mean_pointestimate(y, yhat, judge.astype(float), lam=1)[0])
    lo, hi = (float(np.ravel(v)[0]) for v in ppi_py.ppi_mean_ci(y, yhat, judge.astype(float), alpha=0.05, lam=1))
    assert row["asr_pp"] == pytest.approx(point, abs=1e-12)
    width = hi - lo
    assert row["asr_pp_lo"] == pytest.approx(lo, abs=0.1 * width) and row["asr_pp_hi"] == pytest.approx(hi, abs=0.1 * width)


def test_aggregate_writes_the_corrected_figures_beside_the_judge_only_ones(tmp_path):
    """cells.parquet and contrasts.parquet from aggregate itself: asr_pp, rr_pp, cr_pp beside the
    judge-only figures, delta_pp beside delta, hidden danger saying which RR it used; without gold
    the columns are there and NA with the reason."""
    from types import SimpleNamespace

    from safetygrid.analysis.aggregate import TABLES, aggregate

    n = 40
    pd.DataFrame({"prompt_id": _ids(n), "promptset": "h", "text": "t", "category": "c",
                  "harmful": True, "source": "test"}).to_parquet(tmp_path / "prompts.parquet")
    votes, gens, timings, judgements, checkpoints, golds = [], [], [], [], [], []
    for precision, unsafe in (("fp32", [False] * n), ("q4", [True] * n)):
        (tmp_path / "models" / "m" / precision).mkdir(parents=True)
        (tmp_path / "models" / "m" / precision / "status.json").write_text('{"supported": true, "method": "none"}')
        checkpoints.append(str(tmp_path / "models" / "m" / precision))
        cell = _cell(precision=precision, n_prompts=n, unsafe=unsafe, refusal=[not u for u in unsafe])
        for kind, frame in (("votes", cell.assign(n_unsafe=0, n_judges=1, n_failed=0)),
                            ("generations", cell.assign(engine="hf", n_tokens=5, finish_reason="stop",
                                                        response="r")),
                            ("judgements/j", cell.assign(judge="j", score=np.nan, error=None))):
            path = tmp_path / kind / "m" / precision / "fp" / "T0.0.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.drop(columns=["model", "precision", "kv", "temperature"]).to_parquet(path)
            {"votes": votes, "generations": gens, "judgements/j": judgements}[kind].append(str(path))
        timing = tmp_path / "benchmarks" / "m" / precision / "fp" / "T0.0.tsv"
        timing.parent.mkdir(parents=True, exist_ok=True)
        timing.write_text("s\n1.0\n")
        timings.append(str(timing))
        # people: every answer safe, and a refusal
        golds.append(_gold(cell, range(20), unsafe=[0] * 20, refusal=[1] * 20, complied=[0] * 20))

    def run(gold):
        out = SimpleNamespace(**{t: str(tmp_path / "tables" / f"{t}.parquet") for t in TABLES})
        aggregate(checkpoints=checkpoints, prompts=[str(tmp_path / "prompts.parquet")], votes=votes,
                  generations=gens, timings=timings, quality=[], judges=["j"], judgements=judgements,
                  baseline={"precision": "fp32", "kv": "fp"}, seed=1, bootstrap={"resamples": 50}, out=out,
                  gold=gold)
        return (pd.read_parquet(out.cells).set_index("precision"),
                pd.read_parquet(out.contrasts).set_index("precision"),
                pd.read_parquet(out.hidden_danger))

    cells, contrasts, hidden = run(pd.concat(golds))
    assert cells.loc["q4", "asr"] == 1.0 and cells.loc["q4", "asr_pp"] == pytest.approx(0.0)
    assert (cells.loc["q4", "asr_pp_lo"], cells.loc["q4", "asr_pp_hi"]) == pytest.approx(clopper_pearson(0, n))
    assert cells.loc["q4", "rr"] == 0.0 and cells.loc["q4", "rr_pp"] == pytest.approx(1.0)
    assert cells.loc["fp32", "asr_pp_n"] == 20 and cells.loc["q4", "cr_pp"] == 0.0
    assert contrasts.loc["q4", "delta"] == 1.0 and contrasts.loc["q4", "delta_pp"] == pytest.approx(0.0)
    assert contrasts.loc["q4", "delta_rr_pp"] == pytest.approx(0.0)
    row = hidden.set_index("precision").loc["q4"]
    assert row["refusal_source"] == "corrected" and row["refusal_drop_pp"] == pytest.approx(0.0)
    from safetygrid.analysis.aggregate import labelled_judgements

    read = labelled_judgements(judgements, golds[1])  # what the cross-fitted votes read: labelled cells only
    assert set(read["precision"]) == {"q4"} and len(read) == n and read["temperature"].dtype == float
    cells, contrasts, hidden = run(None)
    assert cells["asr_pp"].isna().all() and cells["asr_pp_note"].str.contains("0 randomly drawn").all()
    assert contrasts["delta_pp"].isna().all() and (cells["asr_pp_n"] == 0).all()
    row = hidden.set_index("precision").loc["q4"]
    assert row["refusal_source"] == "judge-only" and row["refusal_drop_pp"] == pytest.approx(100.0)
