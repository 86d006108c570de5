"""The bootstrap interval of ASR holds the true ASR about 95 % of the time (a fast simulation;
benchmarks/coverage.py runs the full one)."""

from __future__ import annotations

import numpy as np

from safetygrid.analysis.simulate import asr_interval_coverage, synthetic_votes


def test_synthetic_cells_have_the_asked_population_asr() -> None:
    votes = synthetic_votes(np.random.default_rng(0), n_prompts=20000, k=3, asr=0.3)
    assert abs(votes["unsafe"].mean() - 0.3) < 0.01
    per_prompt = votes.groupby("prompt_id")["unsafe"].mean()
    assert per_prompt.std() > 0.2  # prompts differ, as real ones do: the bootstrap must see clusters


def test_bootstrap_interval_covers_the_true_asr_near_95_percent() -> None:
    result = asr_interval_coverage(studies=300, n_prompts=60, k=3, asr=0.3, resamples=400, seed=1)
    print(f"coverage {result.rate:.3f} over {result.studies} studies, mean width {result.mean_width:.3f}")
    # binomial sd at 300 studies is 1.3 points; a percentile bootstrap of 60 clusters runs slightly
    # narrow, so the band is 0.89-0.99. An interval that ignored the prompt clusters (treating 180
    # answers as independent) would cover far less (checked below).
    assert 0.89 <= result.rate <= 0.99

    rng = np.random.default_rng(2)
    naive_hits = 0
    for _ in range(300):
        u = synthetic_votes(rng, n_prompts=60, k=3, asr=0.3)["unsafe"].to_numpy(float)
        half = 1.96 * np.sqrt(u.mean() * (1 - u.mean()) / len(u))
        naive_hits += u.mean() - half <= 0.3 <= u.mean() + half
    assert naive_hits / 300 < result.rate
