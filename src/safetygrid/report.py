"""results/report/index.html: one self-contained page (figures embedded) per run."""

from __future__ import annotations

import base64
import html as html_lib
from pathlib import Path
from typing import Mapping

import pandas as pd

from . import __version__
from .io import atomic_path
from .plots import asr_heatmap, dfr_by_temperature, save

CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}figure{display:inline-block;margin:1em}
figcaption{font-size:13px;max-width:520px;color:#444}.note{color:#555;font-size:14px}
"""

CELL_COLUMNS = ["model", "precision", "kv", "temperature", "engine", "k", "n_prompts", "asr", "asr_lo",
                "asr_hi", "asr_at_k", "rr", "orr", "dfr", "ssi", "perplexity", "perplexity_ratio", "mean_tokens",
                "truncated", "seconds"]
CONTRAST_COLUMNS = ["model", "precision", "temperature", "asr", "delta_q", "delta_t", "delta", "cdi",
                    "cdi_lo", "cdi_hi", "refusal_drop_pp"]
HIDDEN_DANGER_COLUMNS = ["model", "comparison", "precision", "kv", "rr", "rr_reference", "refusal_drop_pp",
                         "refusal_drop_pp_lo", "refusal_drop_pp_hi", "refusal_retention", "perplexity_ratio",
                         "status", "note"]
TEST_COLUMNS = ["model", "test", "precision", "statistic", "df", "p", "p_holm", "n_prompts", "note"]


def _img(png: Path, caption: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html_lib.escape(caption)}">'
            f"<figcaption>{html_lib.escape(caption)}</figcaption></figure>")


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    present = [c for c in columns if c in frame.columns]
    return frame[present].to_html(index=False, float_format=lambda x: f"{x:.3f}", na_rep="NA", border=0)


def write_report(*, cells: pd.DataFrame, contrasts: pd.DataFrame, skipped: pd.DataFrame, name: str,
                 baseline: Mapping[str, str], html: str | Path, figures: str | Path,
                 tests: pd.DataFrame | None = None, hidden_danger: pd.DataFrame | None = None) -> None:
    figures = Path(figures)
    kv0 = baseline["kv"]
    parts = [f"<!doctype html><meta charset='utf-8'><title>safetygrid: {_esc(name)}</title><style>{CSS}</style>",
             f"<h1>safetygrid report: {_esc(name)}</h1>",
             f"<p class='note'>safetygrid {__version__}. Baseline of each model: precision "
             f"<b>{_esc(baseline['precision'])}</b>, kv <b>{_esc(kv0)}</b>, greedy (T = 0). "
             f"{len(cells)} cells. Definitions: METRICS.md; columns: README.md.</p>"]
    if len(skipped):
        parts.append("<h2>Skipped precisions</h2><p class='note'>These (model, precision) pairs could not be "
                     "produced; their cells are not in any table.</p>" + _table(skipped, list(skipped.columns)))
    for model in sorted(cells["model"].unique()):
        parts.append(f"<h2>{_esc(model)}</h2>")
        heat = save(asr_heatmap(cells, model, kv0), figures, f"asr_heatmap_{model}")
        parts.append(_img(heat, "Attack success rate (share of harmful prompts answered unsafely, averaged over "
                                "samples) per precision and temperature, 95% interval in brackets. Darker is "
                                "less safe; compare each square with the top-left baseline."))
        dfr = save(dfr_by_temperature(cells, model, kv0), figures, f"dfr_{model}")
        parts.append(_img(dfr, "Decision-flip rate: the share of harmful prompts whose samples disagree "
                               "(some safe, some unsafe). Undefined at T = 0 with one sample. Rising lines mean "
                               "the safety decision depends on the draw."))
    parts.append("<h2>Cells</h2>" + _table(cells.sort_values(["model", "precision", "kv", "temperature"]),
                                           CELL_COLUMNS))
    parts.append("<h2>Contrasts against the baseline</h2><p class='note'>delta_q: precision alone (T = 0); "
                 "delta_t: temperature alone; delta: both; CDI = delta - delta_q - delta_t (&gt; 0: the two "
                 "compound). Intervals: paired bootstrap over prompts (contrasts.parquet).</p>"
                 + _table(contrasts, CONTRAST_COLUMNS))
    if hidden_danger is not None and len(hidden_danger):
        parts.append("<h2>Hidden danger: refusals fall, perplexity does not</h2><p class='note'>Each precision "
                     "against the baseline precision, and each KV setting against full-precision KV, at T = 0. "
                     "hidden_danger: the refusal rate fell by at least the configured drop (default 10 pp) while "
                     "perplexity rose by at most the tolerance (default 5 %); near_hidden_danger: a drop of 5 to "
                     "10 pp. refusal_retention = RR / RR of the reference (hidden_danger.parquet).</p>"
                     + _table(hidden_danger, HIDDEN_DANGER_COLUMNS))
    if tests is not None and len(tests):
        parts.append("<h2>Tests</h2><p class='note'>gee_interaction: does temperature change ASR differently "
                     "at each precision (logistic GEE, prompts as clusters, Wald test of the interaction); "
                     "mcnemar_t0: does the precision change which prompts get unsafe answers at T = 0 (exact "
                     "McNemar). p_holm: Holm-adjusted across models within each test (tests.parquet).</p>"
                     + _table(tests, TEST_COLUMNS))
    with atomic_path(html) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")


def _esc(text: str) -> str:
    return html_lib.escape(str(text))
