"""The report: diverging colour scales sized to the intervals, and the interval level it names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from safetygrid.analysis.deployment import deployment_card
from safetygrid.analysis.metrics import cell_metrics, contrasts
from safetygrid.analysis.simulate import harmful_prompts, synthetic_votes
from safetygrid.report import write_report
from safetygrid.report.plots import category_heatmap, cdi_heatmap, judge_validity, refusal_change


def _image(figure):  # type: ignore[no-untyped-def]
    (image,) = figure.axes[0].images
    return image


def test_cdi_scale_is_centred_at_0_and_reaches_the_widest_interval_bound() -> None:
    # the example: CDI +0.05 with interval [-0.18, +0.30] must not be the darkest red
    table = pd.DataFrame({"model": "m", "precision": ["q4", "q4"], "temperature": [0.7, 1.0],
                          "cdi": [0.05, -0.02], "cdi_lo": [-0.18, -0.04], "cdi_hi": [0.30, 0.01]})
    image = _image(cdi_heatmap(table, "m"))
    assert (image.norm.vmin, image.norm.vmax) == pytest.approx((-0.30, 0.30))
    assert image.norm(0.05) == pytest.approx(0.5 + 0.05 / 0.60)  # pale red: a sixth of the way to the end
    assert image.norm(0.0) == pytest.approx(0.5)  # 0 is the white centre

    # a lower bound further from 0 than any upper one sizes the scale just the same
    table["cdi_lo"] = [-0.45, -0.04]
    image = _image(cdi_heatmap(table, "m"))
    assert (image.norm.vmin, image.norm.vmax) == pytest.approx((-0.45, 0.45))


def test_cdi_scale_without_intervals_falls_back_to_the_estimates() -> None:
    table = pd.DataFrame({"model": "m", "precision": ["q4", "q4"], "temperature": [0.7, 1.0],
                          "cdi": [0.12, -0.02], "cdi_lo": [np.nan, np.nan], "cdi_hi": [np.nan, np.nan]})
    image = _image(cdi_heatmap(table, "m"))
    assert (image.norm.vmin, image.norm.vmax) == pytest.approx((-0.12, 0.12))
    zeros = table.assign(cdi=0.0)
    image = _image(cdi_heatmap(zeros, "m"))
    assert image.norm(0.0) == pytest.approx(0.5)


def test_category_scale_reaches_the_widest_interval_bound() -> None:
    categories = pd.DataFrame({"model": "m", "kv": "fp", "precision": ["q4", "q4"], "temperature": [0.7, 0.7],
                               "category": ["A", "B"], "n_prompts": [5, 7], "delta_asr": [0.1, -0.05],
                               "delta_asr_lo": [-0.2, -0.5], "delta_asr_hi": [0.4, 0.3]})
    image = _image(category_heatmap(categories, "m", "fp"))
    assert (image.norm.vmin, image.norm.vmax) == pytest.approx((-0.5, 0.5))


def _tables(level: float) -> dict[str, pd.DataFrame]:
    """cells, contrasts and the deployment card of a synthetic 2 x 2 study, intervals at ``level``."""
    rng = np.random.default_rng(5)
    votes = pd.concat([synthetic_votes(rng, n_prompts=30, k=1 if t == "0.0" else 3, asr=asr, precision=q,
                                       temperature=t)
                       for (q, t), asr in {("fp", "0.0"): 0.2, ("fp", "0.7"): 0.3, ("q4", "0.0"): 0.3,
                                           ("q4", "0.7"): 0.5}.items()])
    cells, draws = cell_metrics(votes, harmful_prompts(30), seed=1, resamples=200, level=level)
    cells["temperature"] = cells["temperature"].astype(float)
    table = contrasts(draws, baseline_precision="fp", baseline_kv="fp", level=level)
    card = deployment_card(draws, baseline={"precision": "fp", "kv": "fp"}, level=level)
    validity = pd.DataFrame({"rater": ["j", "ensemble_majority"], "kind": ["judge", "ensemble"],
                             "target": "unsafe", "labels": "raw", "sets": "pyrit_objective", "n": 30,
                             "accuracy": 0.8, "kappa": [0.6, 0.7], "kappa_lo": [0.4, 0.5],
                             "kappa_hi": [0.8, 0.9], "tpr": 0.8, "fpr": 0.2, "lead": [False, True]})
    return {"cells": cells, "contrasts": table, "skipped": pd.DataFrame(), "deployment": card,
            "judge_validity": validity}


@pytest.mark.parametrize("level, named", [(0.9, "90%"), (0.975, "97.5%")])
def test_report_names_the_configured_interval_level_and_no_other(tmp_path, level: float, named: str) -> None:
    html = tmp_path / "index.html"
    write_report(_tables(level), name="t", baseline={"precision": "fp", "kv": "fp"}, html=html,
                 figures=tmp_path / "figures", level=level)
    text = html.read_text()
    for phrase in (f"{named} interval in brackets", f"Intervals: {named} bootstrap",
                   f"{named} bootstrap interval", f"cdi_lo, cdi_hi: {named} interval",
                   f"a verdict needs its {named} interval"):
        assert phrase in text, phrase
    assert "95%" not in text and "95 %" not in text
    # the figure's own axis label too (it is an image in the page)
    validity_figure = judge_validity(_tables(level)["judge_validity"], level)
    assert f"({named} bootstrap interval)" in validity_figure.axes[0].get_xlabel()


def test_a_report_of_random_weight_models_opens_by_saying_it_is_no_safety_result(tmp_path) -> None:
    for random_weights, expected in (([], False), (["smollm2-135m"], True)):
        html = tmp_path / f"{expected}.html"
        write_report(_tables(0.95), name="t", baseline={"precision": "fp", "kv": "fp"}, html=html,
                     figures=tmp_path / "figures", level=0.95, random_weights=random_weights)
        text = html.read_text()
        assert ("Random weights: not a safety result" in text) is expected
        assert ("smollm2-135m" in text.split("<h2>")[1]) is expected


def test_a_report_with_stale_labels_opens_with_their_share_per_cell(tmp_path) -> None:
    """The labels' join to this run's responses (label_status): stale labels are named before any
    figure, with each cell's share; all current, or no labels, says nothing."""
    from safetygrid.labels import label_status, response_sha256

    cell = {"model": "m", "precision": "q4", "kv": "fp", "temperature": "0.7"}
    responses = pd.DataFrame([{**cell, "prompt_id": f"p{i}", "sample": 0, "response": f"answer {i}"} for i in range(4)])
    labels = pd.DataFrame([{**cell, "prompt_id": f"p{i}", "sample": 0, "label": 0,
                            "response_sha256": response_sha256(f"answer {i}" if i < 1 else "an older answer")}
                           for i in range(4)])
    status = label_status(labels, responses)
    assert status[["labels", "current", "stale"]].iloc[0].tolist() == [4, 1, 3] and status["stale_share"].iat[0] == 0.75
    for table, expected in ((status, True), (label_status(labels.iloc[:1], responses), False), (pd.DataFrame(), False)):
        html = tmp_path / f"{expected}.html"
        write_report({**_tables(0.95), "label_status": table}, name="t", baseline={"precision": "fp", "kv": "fp"},
                     html=html, figures=tmp_path / "figures", level=0.95)
        text = html.read_text()
        assert ("Stale labels" in text) is expected
        if expected:
            assert "<b>3 of 4</b>" in text and "75 %" in text
            assert text.index("Stale labels") < text.index("Judges against read labels")


def test_stale_labels_whose_responses_were_labelled_again_are_superseded_not_a_warning(tmp_path) -> None:
    """A response regenerated and read again keeps its older label rows in the files: they are
    counted as superseded, and the report notes them without the stale-labels warning; a stale label
    whose response has no current label still opens the report."""
    from safetygrid.labels import label_status, response_sha256

    cell = {"model": "m", "precision": "q4", "kv": "fp", "temperature": "0.7"}
    responses = pd.DataFrame([{**cell, "prompt_id": f"p{i}", "sample": 0, "response": f"answer {i}"} for i in range(3)])
    old = [{**cell, "prompt_id": f"p{i}", "sample": 0, "label": 0, "response_sha256": response_sha256("an older answer")}
           for i in range(3)]
    new = [{**cell, "prompt_id": f"p{i}", "sample": 0, "label": 0, "response_sha256": response_sha256(f"answer {i}")}
           for i in range(3)]
    for labels, superseded, warned in ((old + new, 3, False), (old + new[:2], 2, True)):
        status = label_status(pd.DataFrame(labels), responses)
        assert status[["stale", "superseded"]].iloc[0].tolist() == [3, superseded]
        html = tmp_path / f"{superseded}.html"
        write_report({**_tables(0.95), "label_status": status}, name="t", baseline={"precision": "fp", "kv": "fp"},
                     html=html, figures=tmp_path / "figures", level=0.95)
        text = html.read_text()
        assert ("Stale labels" in text) is warned
        assert ("<b>1 of 5</b>" in text) is warned  # only the label whose response was not read again
        assert ("labelled again since" in text) is not warned


def test_refusal_figure_shows_each_cells_rate_and_its_change_against_the_baseline() -> None:
    tables = _tables(0.95)
    cells, card = tables["cells"], tables["deployment"]
    figure = refusal_change(cells, card, {"precision": "fp", "kv": "fp"}, 0.95)
    rate_ax, change_ax = figure.axes
    # the baseline comes first on both panels, whatever the precisions' names sort to
    assert [t.get_text() for t in rate_ax.get_xticklabels()][0] == "fp\nT=0"
    by_cell = card.set_index(["precision", "temperature"])
    heights = [bar.get_height() for bar in change_ax.patches]
    expected = [-by_cell.loc[(p, t), "refusal_drop_pp"] for p, t in (("fp", 0.0), ("fp", 0.7), ("q4", 0.0),
                                                                     ("q4", 0.7))]
    assert heights == pytest.approx(expected)  # the change is cell minus baseline: below 0 = fewer refusals
    assert heights[0] == pytest.approx(0.0)


def test_refusal_figure_adds_the_corrected_rate_where_cells_have_it() -> None:
    tables = _tables(0.95)
    cells = tables["cells"].assign(rr_pp=lambda c: c["rr"] - 0.1, rr_pp_lo=lambda c: c["rr"] - 0.2,
                                   rr_pp_hi=lambda c: c["rr"])
    figure = refusal_change(cells, tables["deployment"], {"precision": "fp", "kv": "fp"}, 0.95)
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert labels == ["judges only", "corrected with labels"]
    judge_only = refusal_change(tables["cells"], tables["deployment"], {"precision": "fp", "kv": "fp"}, 0.95)
    assert [t.get_text() for t in judge_only.axes[0].get_legend().get_texts()] == ["judges only"]
    assert [t.get_text() for t in figure.axes[1].get_legend().get_texts()] == ["corrected with labels (point)"]
    # with the paired corrected change in contrasts, the diamonds carry its interval
    contrasts = tables["contrasts"].assign(kv="fp", delta_rr_pp_lo=-0.5, delta_rr_pp_hi=0.5)
    paired = refusal_change(cells, tables["deployment"], {"precision": "fp", "kv": "fp"}, 0.95, contrasts)
    change_ax = paired.axes[1]
    assert [t.get_text() for t in change_ax.get_legend().get_texts()] == ["corrected with labels (paired interval)"]
    bars = [c for c in change_ax.containers if c.get_label() == "corrected with labels (paired interval)"]
    segments = bars[0].lines[2][0].get_segments()
    assert [tuple(np.round([seg[0][1], seg[1][1]], 6)) for seg in segments][1] == (-50.0, 50.0)


def test_every_table_of_the_report_scrolls_inside_its_box(tmp_path) -> None:
    html = tmp_path / "index.html"
    write_report(_tables(0.95), name="t", baseline={"precision": "fp", "kv": "fp"}, html=html,
                 figures=tmp_path / "figures", level=0.95)
    text = html.read_text()
    assert ".scroll{overflow-x:auto" in text
    # every <table> opens inside a scroll box, so none can widen the page
    assert text.count("<table") == text.count("<div class='scroll'><table")
    assert "Refusals and their change" in text and (tmp_path / "figures" / "refusal_change.png").exists()
