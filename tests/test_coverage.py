"""The bootstrap interval of ASR holds the true ASR as often as its level says (a fast simulation;
benchmarks/coverage.py runs the full one)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safetygrid.analysis.simulate import asr_interval_coverage, synthetic_votes


def test_synthetic_cells_have_the_asked_population_asr() -> None:
    votes = synthetic_votes(np.random.default_rng(0), n_prompts=20000, k=3, asr=0.3)
    assert abs(votes["unsafe"].mean() - 0.3) < 0.01
    per_prompt = votes.groupby("prompt_id")["unsafe"].mean()
    assert per_prompt.std() > 0.2  # prompts differ, as real ones do: the bootstrap must see clusters


@pytest.mark.parametrize("level", [0.95, 0.9])
def test_bootstrap_interval_covers_the_true_asr_at_its_level(level: float) -> None:
    studies = 400
    result = asr_interval_coverage(studies=studies, n_prompts=60, k=5, asr=0.3, resamples=400, seed=1, level=level)
    print(f"level {level}: coverage {result.rate:.3f} over {result.studies} studies, width {result.mean_width:.3f}")
    # The band is 2.5 binomial standard deviations either side of the level over 400 studies: 2.7
    # points at 95 % (0.923-0.977), 3.75 at 90 % (0.863-0.938), so an interval at a level 5 points
    # off fails it (a 90 % interval in the 95 % test, an 85 % or 95 % one in the 90 % test). Seeded:
    # one fixed draw (measured: 0.948 and 0.892).
    half_width = 2.5 * math.sqrt(level * (1 - level) / studies)
    assert level - half_width <= result.rate <= level + half_width

    if level == 0.95:
        # an interval that ignored the prompt clusters (treating 300 answers as independent) would
        # cover far less
        rng = np.random.default_rng(2)
        naive_hits = 0
        for _ in range(300):
            u = synthetic_votes(rng, n_prompts=60, k=5, asr=0.3)["unsafe"].to_numpy(float)
            half = 1.96 * np.sqrt(u.mean() * (1 - u.mean()) / len(u))
            naive_hits += u.mean() - half <= 0.3 <= u.mean() + half
        assert naive_hits / 300 < level - half_width
