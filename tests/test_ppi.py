"""Prediction-powered ASR (METRICS.md): hand-worked figures, the NA rule, the contrast against the
baseline, and a simulation in which the judges' error differs by cell: the corrected intervals cover
each cell's true ASR, the judge-only ones do not."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from safetygrid.analysis.metrics import cell_metrics
from safetygrid.analysis.ppi import (MIN_RANDOM_LABELS, cell_ppi, cluster_variance_of_mean, contrast_ppi,
                                     ppi_estimate)

Z95 = float(norm.ppf(0.975))


def test_cluster_variance_reduces_to_the_textbook_forms():
    values = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=float)
    # one response per prompt: s^2 / N
    singletons = cluster_variance_of_mean(values, np.arange(8))
    assert singletons == pytest.approx(values.var(ddof=1) / 8)
    # four prompts of two samples each: s^2 of the prompt means / G
    prompts = np.repeat(["a", "b", "c", "d"], 2)
    means = np.array([0.5, 1.0, 0.0, 0.5])
    assert cluster_variance_of_mean(values, prompts) == pytest.approx(means.var(ddof=1) / 4)
    assert math.isnan(cluster_variance_of_mean(values, np.zeros(8)))  # one cluster: nothing to estimate


def test_ppi_estimate_against_a_hand_worked_example():
    # judge says unsafe on 6 of 10 responses (one per prompt); 4 of them labelled by a person,
    # who disagrees on one: h - u = [0, -1, 0, 0]
    judge_all = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], dtype=float)
    out = ppi_estimate(judge_all, np.arange(10), np.array([1, 1, 0, 0.]), np.array([1, 0, 0, 0.]))
    assert out["asr_pp"] == pytest.approx(0.6 - 0.25)
    # Var(u)/N = (0.24 * 10/9)/10; Var(h-u)/n = (0.1875 * 4/3)/4
    se = math.sqrt(0.24 * 10 / 9 / 10 + 0.1875 * 4 / 3 / 4)
    assert out["asr_pp_se"] == pytest.approx(se)
    assert (out["asr_pp_lo"], out["asr_pp_hi"]) == pytest.approx((0.35 - Z95 * se, 0.35 + Z95 * se))


def _cell(model="m", precision="q", kv="fp", temperature="0.0", n_prompts=40, k=1, unsafe=None):
    frame = pd.DataFrame({"prompt_id": np.repeat([f"p{i}" for i in range(n_prompts)], k),
                          "sample": np.tile(np.arange(k), n_prompts)})
    frame["unsafe"] = pd.array(unsafe if unsafe is not None else [True] * len(frame), dtype="boolean")
    frame["refusal"] = pd.array(~frame["unsafe"].to_numpy(bool), dtype="boolean")
    return frame.assign(model=model, precision=precision, kv=kv, temperature=temperature)


def _gold(cell: pd.DataFrame, rows: list[int], human: list[int], draw: str = "random") -> pd.DataFrame:
    picked = cell.iloc[rows]
    return pd.DataFrame({"model": picked["model"], "precision": picked["precision"], "kv": picked["kv"],
                         "temperature": picked["temperature"].astype(float), "prompt_id": picked["prompt_id"],
                         "sample": picked["sample"], "human": human, "draw": draw, "n_raters": 1})


def test_cells_use_only_random_draws_on_harmful_prompts_and_say_why_when_na():
    votes = _cell()  # the judge calls every one of 40 answers unsafe
    harmful = {f"p{i}" for i in range(40)}
    random = _gold(votes, list(range(12)), [1, 0] * 6)  # people: half of 12
    targeted = _gold(votes, list(range(12, 20)), [0] * 8, draw="targeted")  # never counted
    table = cell_ppi(votes, pd.concat([random, targeted]), harmful)
    row = table.iloc[0]
    assert row["asr_pp_n"] == 12 and row["asr_pp"] == pytest.approx(1.0 - 0.5)
    # u is constant: only the correction's variance is left
    assert row["asr_pp_se"] == pytest.approx(math.sqrt(np.var([0, -1] * 6, ddof=1) / 12))
    few = cell_ppi(votes, random.head(MIN_RANDOM_LABELS - 1), harmful).iloc[0]
    assert math.isnan(few["asr_pp"]) and few["asr_pp_n"] == MIN_RANDOM_LABELS - 1
    assert "needs at least 10" in few["asr_pp_note"]
    # benign prompts never count: with them out of the harmful set, 6 random labels are left
    assert cell_ppi(votes, random, {f"p{i}" for i in range(6)}).iloc[0]["asr_pp_n"] == 6


def test_delta_pp_adds_the_two_variances_and_names_a_missing_baseline():
    harmful = {f"p{i}" for i in range(40)}
    base = _cell(precision="bf16", unsafe=[False] * 40)
    quant = _cell(precision="q4", unsafe=[True] * 40)
    gold = pd.concat([_gold(base, list(range(20)), [0, 1] + [0] * 18), _gold(quant, list(range(20)), [1] * 20)])
    cells = cell_ppi(pd.concat([base, quant]), gold, harmful)
    contrasts = pd.DataFrame({"model": ["m", "m"], "precision": ["bf16", "q4"], "kv": "fp",
                              "temperature": [0.0, 0.0], "delta": [0.0, 1.0]})
    out = contrast_ppi(contrasts, cells, {"precision": "bf16", "kv": "fp"}).set_index("precision")
    by = cells.set_index("precision")
    assert out.loc["q4", "delta_pp"] == pytest.approx(by.loc["q4", "asr_pp"] - by.loc["bf16", "asr_pp"])
    se = math.hypot(by.loc["q4", "asr_pp_se"], by.loc["bf16", "asr_pp_se"])
    assert out.loc["q4", "delta_pp_hi"] - out.loc["q4", "delta_pp"] == pytest.approx(Z95 * se)
    assert out.loc["bf16", "delta_pp"] == 0.0
    missing = contrast_ppi(contrasts, cells[cells["precision"] == "q4"], {"precision": "bf16", "kv": "fp"})
    assert missing["delta_pp"].isna().all()
    assert missing.set_index("precision").loc["q4", "delta_pp_note"] == "baseline: no prediction-powered ASR"


# (true ASR, judge TPR, judge FPR) of each cell: the judge is too eager on one cell, too lax on another
SIMULATED_CELLS = {"eager": (0.3, 0.95, 0.6), "lax": (0.5, 0.7, 0.05), "decent": (0.2, 0.9, 0.1)}


def test_simulation_ppi_covers_the_true_asr_where_judge_only_intervals_do_not():
    rng = np.random.default_rng(20260628)
    n_prompts, k, n_random, studies = 60, 5, 40, 120
    harmful = {f"p{i}" for i in range(n_prompts)}
    frames, golds, truth = [], [], {}
    for study in range(studies):  # each study is one model of the grid, so one call estimates them all
        for name, (asr, tpr, fpr) in SIMULATED_CELLS.items():
            p = rng.beta(asr * 4, (1 - asr) * 4, n_prompts)  # prompts differ, as real ones do
            human = (rng.random((n_prompts, k)) < p[:, None]).ravel()
            judge = np.where(human, rng.random(human.size) < tpr, rng.random(human.size) < fpr)
            cell = _cell(model=f"s{study}", precision=name, temperature="0.7", n_prompts=n_prompts, k=k,
                         unsafe=judge)
            truth[f"s{study}", name] = human.mean()  # the cell's ASR as people would count it
            picked = rng.choice(human.size, n_random, replace=False)  # the uniform random draw
            frames.append(cell)
            golds.append(_gold(cell, picked.tolist(), human[picked].astype(int).tolist()))
    votes = pd.concat(frames, ignore_index=True)
    pp = cell_ppi(votes, pd.concat(golds, ignore_index=True), harmful).set_index(["model", "precision"])
    judge_only, _ = cell_metrics(votes, pd.DataFrame({"prompt_id": sorted(harmful), "harmful": True}),
                                 seed=1, resamples=100)
    judge_only = judge_only.set_index(["model", "precision"])
    true = pd.Series(truth).reindex(pp.index)
    pp_covered = ((pp["asr_pp_lo"] <= true) & (true <= pp["asr_pp_hi"])).groupby(level="precision").mean()
    true = true.reindex(judge_only.index)
    judge_covered = ((judge_only["asr_lo"] <= true) & (true <= judge_only["asr_hi"])).groupby(level="precision").mean()
    assert len(pp) == len(judge_only) == studies * len(SIMULATED_CELLS)
    assert (pp_covered >= 0.9).all(), pp_covered.to_dict()
    assert judge_covered["eager"] <= 0.5 and judge_covered["lax"] <= 0.5, judge_covered.to_dict()


def test_aggregate_writes_the_corrected_figures_beside_the_judge_only_ones(tmp_path):
    """cells.parquet and contrasts.parquet from aggregate itself: asr_pp beside asr, delta_pp beside
    delta; without gold the columns are there and NA with the reason."""
    from types import SimpleNamespace

    from safetygrid.analysis.aggregate import TABLES, aggregate

    n = 40
    pd.DataFrame({"prompt_id": [f"p{i}" for i in range(n)], "promptset": "h", "text": "t", "category": "c",
                  "harmful": True, "source": "test"}).to_parquet(tmp_path / "prompts.parquet")
    votes, gens, timings, judgements, checkpoints, golds = [], [], [], [], [], []
    for precision, unsafe in (("fp32", [False] * n), ("q4", [True] * n)):
        (tmp_path / "models" / "m" / precision).mkdir(parents=True)
        (tmp_path / "models" / "m" / precision / "status.json").write_text('{"supported": true, "method": "none"}')
        checkpoints.append(str(tmp_path / "models" / "m" / precision))
        cell = _cell(precision=precision, n_prompts=n, unsafe=unsafe)
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
        golds.append(_gold(cell, list(range(20)), [0] * 20))  # people: every answer safe

    def run(gold):
        out = SimpleNamespace(**{t: str(tmp_path / "tables" / f"{t}.parquet") for t in TABLES})
        aggregate(checkpoints=checkpoints, prompts=[str(tmp_path / "prompts.parquet")], votes=votes,
                  generations=gens, timings=timings, quality=[], judges=["j"], judgements=judgements,
                  baseline={"precision": "fp32", "kv": "fp"}, seed=1, bootstrap={"resamples": 50}, out=out,
                  gold=gold)
        return (pd.read_parquet(out.cells).set_index("precision"),
                pd.read_parquet(out.contrasts).set_index("precision"))

    cells, contrasts = run(pd.concat(golds))
    assert cells.loc["q4", "asr"] == 1.0 and cells.loc["q4", "asr_pp"] == pytest.approx(0.0)
    assert cells.loc["fp32", "asr_pp_n"] == 20
    assert contrasts.loc["q4", "delta"] == 1.0 and contrasts.loc["q4", "delta_pp"] == pytest.approx(0.0)
    cells, contrasts = run(None)
    assert cells["asr_pp"].isna().all() and cells["asr_pp_note"].str.contains("0 randomly drawn").all()
    assert contrasts["delta_pp"].isna().all() and (cells["asr_pp_n"] == 0).all()
