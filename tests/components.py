"""Starting the expensive components (SLURM, vLLM, llama.cpp) from tests: skip locally, fail in CI."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def component_unavailable(reason: str) -> None:
    """An expensive component (SLURM, vLLM, llama.cpp) cannot start: locally the test skips with the
    reason; under CI=true it fails, so CI can never pass by skipping what it is meant to run."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)
