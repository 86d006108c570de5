"""Synthetic studies with a known truth, for checking the statistics (interval coverage) and for
timing the analysis at scale. Nothing here is used to produce results."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .metrics import cell_metrics


def synthetic_votes(rng: np.random.Generator, *, n_prompts: int, k: int, asr: float, spread: float = 5.0,
                    model: str = "m", precision: str = "q", kv: str = "fp", temperature: str = "0.7",
                    prompt_prefix: str = "p") -> pd.DataFrame:
    """One cell's votes: each prompt has its own unsafe probability, drawn from a Beta with mean
    `asr` (concentration `spread`), so the population ASR is `asr` and prompts differ as real ones do."""
    probabilities = rng.beta(asr * spread, (1 - asr) * spread, size=n_prompts)
    unsafe = rng.random((n_prompts, k)) < probabilities[:, None]
    return pd.DataFrame({
        "prompt_id": np.repeat([f"{prompt_prefix}{i}" for i in range(n_prompts)], k),
        "sample": np.tile(np.arange(k), n_prompts),
        "unsafe": unsafe.ravel(),
        "refusal": ~unsafe.ravel(),
        "model": model, "precision": precision, "kv": kv, "temperature": temperature,
    })


def harmful_prompts(n_prompts: int, prompt_prefix: str = "p") -> pd.DataFrame:
    return pd.DataFrame({"prompt_id": [f"{prompt_prefix}{i}" for i in range(n_prompts)], "harmful": True})


@dataclass
class Coverage:
    studies: int
    covered: int
    mean_width: float

    @property
    def rate(self) -> float:
        return self.covered / self.studies


def asr_interval_coverage(*, studies: int, n_prompts: int, k: int, asr: float, resamples: int,
                          seed: int = 0, level: float = 0.95) -> Coverage:
    """How often the ASR interval of cells.parquet, at ``level``, holds the true population ASR."""
    rng = np.random.default_rng(seed)
    prompts = harmful_prompts(n_prompts)
    covered, widths = 0, []
    for study in range(studies):
        votes = synthetic_votes(rng, n_prompts=n_prompts, k=k, asr=asr)
        cells, _ = cell_metrics(votes, prompts, seed=seed + study, resamples=resamples, level=level)
        lo, hi = float(cells["asr_lo"].iat[0]), float(cells["asr_hi"].iat[0])
        covered += lo <= asr <= hi
        widths.append(hi - lo)
    return Coverage(studies, covered, float(np.mean(widths)))
