"""Which axes of METRICS.md a judge of each kind labels, from its config entry alone (no torch):
the votes, calibration and judge validity leave a judge out of an axis it does not label.

Every kind labels the unsafe axis except the refusal-only kinds (``refusal_lm``: the refusal question
asked of an instruct model), which give ``refusal`` and ``refusal_score`` and abstain on unsafe.
A kind that labels the refusal axis may give none on some items (the refusal strings on an empty
answer).
"""

from __future__ import annotations

from typing import Any, Mapping

REFUSAL_ONLY_KINDS = ("refusal_lm",)


def gives_unsafe(spec: Mapping[str, Any]) -> bool:
    """Whether a judge of this config entry gives an unsafe label."""
    return spec.get("kind") not in REFUSAL_ONLY_KINDS
