"""Judge agreement (Fleiss' and Cohen's kappa) on hand-made labels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from safetygrid.analysis.agreement import judge_agreement, kappa_matrix
from safetygrid.stats.kappa import cohen, fleiss

CELL = {"model": "m", "precision": "fp", "kv": "fp", "temperature": "0.0"}


def test_cohen_kappa_by_hand() -> None:
    # 10 items: both unsafe 4, both safe 3, a-only 2, b-only 1 -> po = 0.7,
    # pe = 0.6 * 0.5 + 0.4 * 0.5 = 0.5, kappa = (0.7 - 0.5) / 0.5 = 0.4
    a = np.array([1, 1, 1, 1, 0, 0, 0, 1, 1, 0], float)
    b = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1], float)
    kappa, agreement, n, note = cohen(a, b)
    assert (kappa, agreement, n, note) == (pytest.approx(0.4), pytest.approx(0.7), 10, "")
    a_missing = a.copy()
    a_missing[0] = np.nan
    assert cohen(a_missing, b)[2] == 9  # an item one of them failed on is left out
    kappa, agreement, _, note = cohen(np.ones(4), np.ones(4))
    assert math.isnan(kappa) and agreement == 1.0 and "chance agreement is 1" in note


def test_fleiss_kappa_by_hand() -> None:
    # 3 raters, 4 items with 3, 2, 1, 0 unsafe votes:
    # P_i = (n1(n1-1) + n0(n0-1)) / 6 = 1, 1/3, 1/3, 1 -> P-bar = 2/3
    # p_unsafe = 6/12 = 0.5 -> Pe = 0.5; kappa = (2/3 - 1/2) / (1/2) = 1/3
    labels = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0]], float)
    kappa, agreement, n, note = fleiss(labels)
    assert kappa == pytest.approx(1 / 3) and agreement == pytest.approx(2 / 3) and n == 4 and note == ""
    assert math.isnan(fleiss(np.ones((3, 3)))[0])
    assert math.isnan(fleiss(labels[:, :1])[0])


def _rows(judge: str, labels: list[float | None], errors: list[int] = ()) -> pd.DataFrame:
    return pd.DataFrame([{**CELL, "prompt_id": f"p{i}", "sample": 0, "judge": judge,
                          "unsafe": None if v is None else bool(v), "error": "boom" if i in errors else None}
                         for i, v in enumerate(labels)])


def test_agreement_table_leaves_failed_items_out() -> None:
    judgements = pd.concat([_rows("a", [1, 1, 0, 0, 1]), _rows("b", [1, 0, 0, 0, 1]),
                            _rows("c", [1, 1, 0, 1, 0], errors=[4])], ignore_index=True)
    votes = pd.DataFrame([{**CELL, "prompt_id": f"p{i}", "sample": 0, "unsafe": v}
                          for i, v in enumerate([True, True, False, False, True])])
    table = judge_agreement(judgements, votes)
    cell = table[(table["scope"] == "cell") & (table["statistic"] == "fleiss_kappa")].iloc[0]
    assert cell["n_items"] == 4  # judge c failed on p4
    expected = fleiss(np.array([[1, 1, 1], [1, 0, 1], [0, 0, 0], [0, 0, 1]], float))[0]
    assert cell["kappa"] == pytest.approx(expected)
    pairs = table[table["statistic"] == "cohen_kappa"].set_index(["judge", "against"])
    assert pairs.loc[("a", "ensemble"), "kappa"] == pytest.approx(1.0)  # a agrees with the vote on every item
    assert pairs.loc[("c", "ensemble"), "n_items"] == 4
    matrix = kappa_matrix(table)
    assert list(matrix.index) == ["a", "b", "c", "ensemble"]
    assert matrix.loc["b", "a"] == matrix.loc["a", "b"] == pytest.approx(cohen(np.array([1, 1, 0, 0, 1.]),
                                                                                 np.array([1, 0, 0, 0, 1.]))[0])


def test_dawid_skene_confusion_rides_on_each_judges_ensemble_row() -> None:
    rng = np.random.default_rng(11)
    truth = rng.random(800) < 0.5
    labels = {"careful": np.where(rng.random(800) < 0.95, truth, ~truth),
              "lenient": truth & (rng.random(800) < 0.6),  # misses 40 % of unsafe answers, never cries wolf
              "steady": np.where(rng.random(800) < 0.9, truth, ~truth)}
    judgements = pd.concat([_rows(name, list(map(float, values))) for name, values in labels.items()],
                           ignore_index=True)
    votes = pd.DataFrame([{**CELL, "prompt_id": f"p{i}", "sample": 0, "unsafe": bool(v)} for i, v in enumerate(truth)])
    rows = judge_agreement(judgements, votes).set_index(["judge", "against"])
    lenient = rows.loc[("lenient", "ensemble")]
    assert lenient["ds_sensitivity"] == pytest.approx(0.6, abs=0.06)
    assert lenient["ds_specificity"] == pytest.approx(1.0, abs=0.02)
    assert rows.loc[("careful", "ensemble"), "ds_sensitivity"] == pytest.approx(0.95, abs=0.03)
    assert rows.loc[("careful", "steady"), ["ds_sensitivity", "ds_specificity"]].isna().all()
