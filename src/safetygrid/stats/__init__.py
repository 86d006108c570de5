"""The estimators under both the votes (safetygrid.ensemble) and the findings
(safetygrid.analysis): Wilson and percentile-bootstrap intervals (``intervals``), Cohen's and Fleiss'
kappa (``kappa``) and the Dawid-Skene model of judges without gold labels (``dawid_skene``). This
package imports no other stage package, so the two above it depend on it and never on each other.

Names are imported when first used: ``from safetygrid.stats import wilson`` works, and so does
``safetygrid.stats.intervals.wilson``. The function ``dawid_skene`` is imported from its module
(importing the module binds its name on the package).
"""

from __future__ import annotations

from ..registry import lazy_attributes

_EXPORTS = {
    "wilson": "intervals", "bootstrap_indices": "intervals", "bootstrap_means": "intervals",
    "percentile_interval": "intervals", "clopper_pearson": "intervals", "proportion_interval": "intervals",
    "bootstrap_counts": "intervals",
    "cohen": "kappa", "fleiss": "kappa",
    "MIN_JUDGES": "dawid_skene", "DawidSkene": "dawid_skene",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
