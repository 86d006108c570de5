"""Which subject models are judged by a judge of their own family.

A judge built on the subject's own weights, or on a model of its family (config ``family`` keys of
``models`` and ``judge_models``), may share the subject's blind spots and favour its style of
answer; the report names every such (model, judge) pair so that the reader weighs those figures.
A judge without a model (refusal_prefix) is never flagged; a pair whose family is unknown on
either side is flagged only when the judge runs on the subject's own entry.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

SAME_FAMILY_COLUMNS = ["model", "family", "judge", "judge_model", "judge_family", "reason"]


def _family(entry: Mapping[str, Any]) -> str | None:
    family = str(entry.get("family") or "").strip().lower()
    return family or None


def same_family_judges(models: Mapping[str, Mapping[str, Any]], judges: Mapping[str, Mapping[str, Any]],
                       judge_models: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """One row per (subject model, judge) where the judge's model is the subject itself or shares
    its family; columns SAME_FAMILY_COLUMNS."""
    judge_models = judge_models or {}
    rows = []
    for model, entry in sorted(models.items()):
        family = _family(entry)
        for judge, spec in sorted(judges.items()):
            judge_model = spec.get("model")
            if not judge_model:
                continue
            judge_entry = judge_models.get(judge_model) or models.get(judge_model) or {}
            judge_family = _family(judge_entry)
            if judge_model == model:
                reason = "the judge runs on the subject's own weights" + (
                    f" (its {spec['precision']} precision)" if spec.get("precision") else "")
            elif family and family == judge_family:
                reason = f"the judge's model is of the subject's family ({family})"
            else:
                continue
            rows.append({"model": model, "family": family, "judge": judge, "judge_model": judge_model,
                         "judge_family": judge_family, "reason": reason})
    return pd.DataFrame(rows, columns=SAME_FAMILY_COLUMNS)
