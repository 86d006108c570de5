"""From votes to findings: every per-cell metric and contrast with its interval, the hypothesis
tests, judge agreement, hidden danger, the deployment card, the adjudication queue, and the
aggregate step that writes results/tables/. The votes themselves are safetygrid.ensemble; the
estimators both use (intervals, kappa, Dawid-Skene) are safetygrid.stats.

Names are imported when first used (statsmodels and scipy load only where a step needs them):
``from safetygrid.analysis import cell_metrics`` works, and so does
``safetygrid.analysis.metrics.cell_metrics``. A function named like its module (aggregate)
is imported from the module: importing the module binds its name on the package.
"""

from __future__ import annotations

from ..registry import lazy_attributes

_EXPORTS = {
    "cell_metrics": "metrics", "contrasts": "metrics",
    "significance_table": "significance",
    "judge_agreement": "agreement", "kappa_matrix": "agreement",
    "hidden_danger_table": "hidden_danger", "direction_split": "hidden_danger",
    "deployment_card": "deployment", "top_categories": "deployment", "category_metrics": "categories",
    "TABLES": "aggregate", "read_cells": "aggregate",
    "adjudicate": "adjudication", "gold_agreement": "adjudication",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
