"""The ensemble of judges: the label of each response voted from its judges' labels, and the models
fitted on human labels that the vote can use, with their validity.

Layered one way (each module imports only those before it): ``calibration`` (a judge's threshold
fitted on human labels, cross-fitting) and ``stack`` (the stacked logistic model) <- ``voting`` (the
votes: majority, Dawid-Skene, stacked; calibrated thresholds applied) <- ``judge_validity`` (every
judge and ensemble label scored against human labels; the calibration the workflow applies) and
``crossfit`` (the labelled responses re-voted with calibrations fitted on other prompt folds, for the
prediction-powered estimates).

Names are imported when first used (scipy and statsmodels load only where a step needs them):
``from safetygrid.ensemble import vote`` works, and so does ``safetygrid.ensemble.voting.vote``. No
module is named like a name it exports, so a lazily imported module never shadows that name.
"""

from __future__ import annotations

from ..registry import lazy_attributes

_EXPORTS = {
    "kappa": "calibration", "fit_threshold": "calibration", "fold_ids": "calibration", "cross_fit": "calibration",
    "Stack": "stack", "fit_stack": "stack", "judge_features": "stack", "scoreless": "stack",
    "stack_probability": "stack",
    "vote": "voting", "votes_needed": "voting", "refusal_majority": "voting", "apply_thresholds": "voting",
    "VOTE_COLUMNS": "voting", "LEAD_COLUMNS": "voting",
    "validity": "judge_validity", "binary_validity": "judge_validity", "auc": "judge_validity",
    "ENSEMBLES": "judge_validity", "METRICS": "judge_validity", "TRUST_KAPPA": "judge_validity",
    "VALIDITY_COLUMNS": "judge_validity",
    "prompt_fold_ids": "calibration", "cross_fitting_needed": "crossfit", "cross_fitted_unsafe": "crossfit",
    "with_cross_fitted_labels": "crossfit",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
