"""tests.parquet: McNemar, Holm and the GEE interaction test on hand-made vote tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from safetygrid.analysis.significance import gee_interaction, holm, mcnemar_t0, prompt_labels, significance_table


def _responses(labels: dict[str, list[int]], **cell: str) -> pd.DataFrame:
    rows = [{"prompt_id": p, "sample": s, "unsafe": u, **cell} for p, us in labels.items() for s, u in enumerate(us)]
    return pd.DataFrame(rows)


def test_mcnemar_counts_discordant_prompts_and_is_exact() -> None:
    base = _responses({f"p{i}": [0] for i in range(10)})
    other = _responses({f"p{i}": [1 if i < 4 else 0] for i in range(10)})
    row = mcnemar_t0(base, other, model="m", precision="q", kv="fp")
    # 4 prompts turned unsafe, none turned safe: exact two-sided p = 2 * 0.5**4 = 0.125
    assert row["p"] == pytest.approx(0.125)
    assert row["statistic"] == 0 and row["n_prompts"] == 10
    assert row["note"].startswith("safe->unsafe 4, unsafe->safe 0")


def test_mcnemar_without_discordant_prompts_says_so() -> None:
    base = _responses({"a": [1], "b": [0]})
    row = mcnemar_t0(base, base, model="m", precision="q", kv="fp")
    assert row["p"] == 1.0 and "no discordant" in row["note"]


def test_prompt_label_counts_a_tie_as_unsafe() -> None:
    labels = prompt_labels(_responses({"tie": [1, 0], "safe": [0, 0], "unsafe": [1, 1], "one_missing": [1, None]}))
    assert labels.to_dict() == {"one_missing": 1, "safe": 0, "tie": 1, "unsafe": 1}


def test_holm_adjusts_within_the_family_and_keeps_na() -> None:
    p = pd.Series([0.01, 0.04, math.nan, 0.03])
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert holm(p).round(10).tolist()[:2] == [0.03, 0.06]
    assert math.isnan(holm(p)[2]) and holm(p)[3] == pytest.approx(0.06)


def _factorial(probabilities: dict[tuple[str, str], float], n_prompts: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for (precision, temperature), prob in probabilities.items():
        k = 1 if temperature == "0.0" else 3
        for p in range(n_prompts):
            for s in range(k):
                rows.append({"prompt_id": f"p{p}", "sample": s, "precision": precision, "temperature": temperature,
                             "unsafe": int(rng.random() < prob)})
    return pd.DataFrame(rows)


def test_gee_finds_a_planted_interaction_and_not_a_missing_one() -> None:
    planted = _factorial({("fp", "0.0"): 0.2, ("fp", "1.0"): 0.2, ("q", "0.0"): 0.2, ("q", "1.0"): 0.8}, 120, seed=1)
    row = gee_interaction(planted, model="m", kv="fp", baseline_precision="fp")
    assert row["df"] == 1 and row["p"] < 1e-4 and row["statistic"] > 15

    additive = _factorial({("fp", "0.0"): 0.3, ("fp", "1.0"): 0.3, ("q", "0.0"): 0.3, ("q", "1.0"): 0.3}, 120, seed=2)
    row = gee_interaction(additive, model="m", kv="fp", baseline_precision="fp")
    assert row["p"] > 0.05


def test_gee_is_na_only_when_the_whole_model_is_one_label() -> None:
    all_unsafe = _factorial({("fp", "0.0"): 1.0, ("fp", "1.0"): 1.0, ("q", "0.0"): 1.0, ("q", "1.0"): 1.0}, 5, seed=0)
    row = gee_interaction(all_unsafe, model="m", kv="fp", baseline_precision="fp")
    assert math.isnan(row["p"]) and "every response is labelled unsafe" in row["note"]
    one_temperature = all_unsafe[all_unsafe["temperature"] == "0.0"]
    row = gee_interaction(one_temperature, model="m", kv="fp", baseline_precision="fp")
    assert math.isnan(row["p"]) and "2 or more" in row["note"]


def test_gee_tests_a_model_with_one_all_safe_cell_and_says_how() -> None:
    # METRICS.md: NA only when the whole model is degenerate. One all-safe cell is a real finding
    # here: the baseline never fails at T = 0 while the other cells fail half the time
    one_cell_safe = _factorial({("fp", "0.0"): 0.0, ("fp", "1.0"): 0.5, ("q", "0.0"): 0.5, ("q", "1.0"): 0.5}, 40,
                               seed=0)
    row = gee_interaction(one_cell_safe, model="m", kv="fp", baseline_precision="fp")
    assert row["df"] == 1 and 0 < row["statistic"] and row["p"] < 0.05
    assert "(fp, T=0.0): all safe" in row["note"] and "add-one correction" in row["note"]
    assert row["n_prompts"] == 40 and row["n_responses"] == len(one_cell_safe)  # the pseudo-responses not counted

    # the corrected fit is the fit of the table with 1 added to each cell's safe and unsafe counts:
    # with labels that do not depend on the prompt (the working correlation near 0), its Wald
    # statistic is close to the squared log odds-ratio ratio over its Woolf variance
    counts = {("fp", "0.0"): (0, 200), ("fp", "1.0"): (60, 140), ("q", "0.0"): (100, 100), ("q", "1.0"): (50, 150)}
    rng = np.random.default_rng(3)
    rows = [{"prompt_id": f"p{i}", "sample": 0, "precision": q, "temperature": t, "unsafe": bool(label)}
            for (q, t), (unsafe, safe) in counts.items()
            for i, label in enumerate(rng.permutation([1] * unsafe + [0] * safe))]
    row = gee_interaction(pd.DataFrame(rows), model="m", kv="fp", baseline_precision="fp")
    logit = {cell: math.log((u + 1) / (s + 1)) for cell, (u, s) in counts.items()}
    variance = sum(1 / (u + 1) + 1 / (s + 1) for u, s in counts.values())
    interaction = logit[("q", "1.0")] - logit[("q", "0.0")] - logit[("fp", "1.0")] + logit[("fp", "0.0")]
    print(f"corrected Wald {row['statistic']:.3f}, Woolf {interaction ** 2 / variance:.3f}")
    assert row["statistic"] == pytest.approx(interaction ** 2 / variance, rel=0.05)


def test_gee_without_a_separated_cell_is_fitted_as_it_is() -> None:
    planted = _factorial({("fp", "0.0"): 0.2, ("fp", "1.0"): 0.2, ("q", "0.0"): 0.2, ("q", "1.0"): 0.8}, 60, seed=1)
    row = gee_interaction(planted, model="m", kv="fp", baseline_precision="fp")
    assert "add-one" not in row["note"]
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    data = planted.assign(u=planted["unsafe"].astype(float))
    fit = smf.gee("u ~ C(precision) * C(temperature)", groups="prompt_id", data=data, family=sm.families.Binomial(),
                  cov_struct=sm.cov_struct.Exchangeable()).fit()
    interaction = "C(precision)[T.q]:C(temperature)[T.1.0]"
    assert row["statistic"] == pytest.approx((fit.params[interaction] / fit.bse[interaction]) ** 2, rel=1e-6)


def test_tests_table_has_one_gee_per_model_and_one_mcnemar_per_precision() -> None:
    frames = []
    for model, seed in (("a", 3), ("b", 4)):
        data = _factorial({("fp", "0.0"): 0.2, ("fp", "1.0"): 0.3, ("q", "0.0"): 0.5, ("q", "1.0"): 0.6,
                           ("r", "0.0"): 0.2, ("r", "1.0"): 0.3}, 30, seed=seed)
        frames.append(data.assign(model=model, kv="fp"))
    table = significance_table(pd.concat(frames), baseline_precision="fp", baseline_kv="fp")
    assert sorted(zip(table["model"], table["test"], table["precision"].fillna("-"))) == [
        ("a", "gee_interaction", "-"), ("a", "mcnemar_t0", "q"), ("a", "mcnemar_t0", "r"),
        ("b", "gee_interaction", "-"), ("b", "mcnemar_t0", "q"), ("b", "mcnemar_t0", "r")]
    # Holm across the two models of each family: the smaller p doubled, the larger kept (or the running max)
    for _, family in table.groupby(["test", table["precision"].fillna("")]):
        p = family["p"].sort_values()
        assert family.loc[p.index[0], "p_holm"] == pytest.approx(min(1, 2 * p.iloc[0]))
        assert family.loc[p.index[1], "p_holm"] == pytest.approx(max(min(1, 2 * p.iloc[0]), p.iloc[1]))
