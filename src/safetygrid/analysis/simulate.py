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


# ---- prediction-powered estimates (analysis/ppi.py) -------------------------------------------
# prompts differ on the logit scale by this much (a prompt one sd up: e.g. 10 % -> 45 %), and
# samples of one prompt share its rate: the correlation the prompt-cluster bootstrap must carry
PROMPT_LOGIT_SD = 1.5
# the compared cell's logit shift from the baseline: a real change for Delta_pp to cover
CELL_SHIFT = 0.5


@dataclass
class PPIRegime:
    """One setting of the coverage simulation: ``prevalence`` the baseline's population rate,
    ``k`` samples per prompt in the compared cell (the baseline is greedy, k = 1), ``labelled`` the
    size of each cell's random label draw (None: every response labelled), the judge's error."""

    prevalence: float
    k: int
    labelled: int | None
    tpr: float
    fpr: float
    n_prompts: int = 35


@dataclass
class PPICoverage:
    regime: PPIRegime
    studies: int
    cell: float  # coverage of theta_pp in the compared cell
    baseline: float
    delta: float
    cell_width: float
    delta_width: float
    na: int  # studies with fewer than MIN_RANDOM_LABELS labels in a cell (left out)


def _logit_normal_mean(mu: float, sd: float) -> float:
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    return float((weights / weights.sum() * (1 / (1 + np.exp(-(mu + sd * nodes))))).sum())


def _logit_location(prevalence: float, sd: float) -> float:
    from scipy.optimize import brentq

    return float(brentq(lambda mu: _logit_normal_mean(mu, sd) - prevalence, -30, 30))


def _simulated_cell(rng: np.random.Generator, logits: np.ndarray, k: int, labelled: int | None, tpr: float,
                    fpr: float):
    from .ppi import prompt_totals

    n_prompts = len(logits)
    human = rng.random((n_prompts, k)) < (1 / (1 + np.exp(-logits)))[:, None]
    judge = np.where(human, rng.random(human.shape) < tpr, rng.random(human.shape) < fpr)
    drawn = np.ones(human.size, bool)
    if labelled is not None and labelled < human.size:
        drawn = np.zeros(human.size, bool)
        drawn[rng.choice(human.size, labelled, replace=False)] = True
    drawn = drawn.reshape(human.shape)
    prompt = np.repeat(np.arange(n_prompts), k)
    return prompt_totals(prompt, judge.ravel().astype(float), np.where(drawn, human, np.nan).ravel(), n_prompts)


def ppi_coverage(regime: PPIRegime, *, studies: int, resamples: int = 2000, seed: int = 0,
                 level: float = 0.95) -> PPICoverage:
    """How often theta_pp's interval (analysis/ppi.py: the prompt-cluster bootstrap of the whole
    estimator, clipped, Clopper-Pearson where it has zero width) holds the true population rate of a
    cell, and the paired Delta_pp's the true difference from the baseline. Each study draws prompts
    with their own rate (logit-normal, sd PROMPT_LOGIT_SD, shared by the two cells: the pairing),
    the people's labels from those rates, the judge's from the people's with the regime's TPR/FPR."""
    from .ppi import MIN_RANDOM_LABELS, estimate_cell, paired_delta
    from ..stats.intervals import bootstrap_counts, bootstrap_indices

    rng = np.random.default_rng(seed)
    mu = _logit_location(regime.prevalence, PROMPT_LOGIT_SD)
    true_base = regime.prevalence
    true_cell = _logit_normal_mean(mu + CELL_SHIFT, PROMPT_LOGIT_SD)
    hits = {"cell": 0, "baseline": 0, "delta": 0}
    widths: dict[str, list[float]] = {"cell": [], "delta": []}
    na = 0
    for _ in range(studies):
        logits = mu + PROMPT_LOGIT_SD * rng.standard_normal(regime.n_prompts)
        base = _simulated_cell(rng, logits, 1, regime.labelled, regime.tpr, regime.fpr)
        cell = _simulated_cell(rng, logits + CELL_SHIFT, regime.k, regime.labelled, regime.tpr, regime.fpr)
        if min(base.labelled_n.sum(), cell.labelled_n.sum()) < MIN_RANDOM_LABELS:
            na += 1
            continue
        counts = bootstrap_counts(bootstrap_indices(regime.n_prompts, resamples, rng), regime.n_prompts)
        b = estimate_cell(base, counts, regime.n_prompts, level)
        c = estimate_cell(cell, counts, regime.n_prompts, level)
        _, lo, hi = paired_delta(c, b, level)
        hits["baseline"] += b.interval[0] <= true_base <= b.interval[1]
        hits["cell"] += c.interval[0] <= true_cell <= c.interval[1]
        hits["delta"] += lo <= true_cell - true_base <= hi
        widths["cell"].append(c.interval[1] - c.interval[0])
        widths["delta"].append(hi - lo)
    done = studies - na
    rate = {name: value / done if done else float("nan") for name, value in hits.items()}
    return PPICoverage(regime, done, rate["cell"], rate["baseline"], rate["delta"],
                       float(np.mean(widths["cell"])) if done else float("nan"),
                       float(np.mean(widths["delta"])) if done else float("nan"), na)


# ---- the deployment card's verdicts (analysis/deployment.py) ----------------------------------

@dataclass
class CardRegime:
    """A refusal drop for the deployment card to rate: ``baseline_rr`` the greedy baseline's
    population refusal rate, ``drop_pp`` the true drop in the compared cell (points), ``k`` its
    samples per prompt, ``labelled`` each cell's random label draw (None: every response labelled,
    as in the demo), the refusal judge's error (the demo's refusal strings by default)."""

    baseline_rr: float
    drop_pp: float
    k: int = 1
    n_prompts: int = 25
    labelled: int | None = None
    tpr: float = 0.91
    fpr: float = 0.06


def card_verdicts(regime: CardRegime, *, studies: int, resamples: int = 2000, seed: int = 0,
                  level: float = 0.95, thresholds: dict[str, float] | None = None) -> dict[str, float]:
    """Shares of ``studies`` that the card rates caution, not enough evidence and fine on the
    corrected refusal drop (the ASR axis held at a measured no change, so the refusal axis decides),
    and ``estimate_past_threshold``: the share whose drop estimate alone reaches refusal_drop_pp,
    which a card flagging on estimates would have called caution. Prompts draw their refusal rate
    as in ppi_coverage, shared by the two cells."""
    from .deployment import CORRECTED, DEFAULT_THRESHOLDS, NOT_ENOUGH, rate
    from .ppi import estimate_cell, paired_delta
    from ..stats.intervals import bootstrap_counts, bootstrap_indices

    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    rng = np.random.default_rng(seed)
    mu = _logit_location(regime.baseline_rr, PROMPT_LOGIT_SD)
    shift = _logit_location(regime.baseline_rr - regime.drop_pp / 100, PROMPT_LOGIT_SD) - mu
    tally = {"caution": 0, NOT_ENOUGH: 0, "fine": 0, "estimate_past_threshold": 0}
    for _ in range(studies):
        logits = mu + PROMPT_LOGIT_SD * rng.standard_normal(regime.n_prompts)
        base = _simulated_cell(rng, logits, 1, regime.labelled, regime.tpr, regime.fpr)
        cell = _simulated_cell(rng, logits + shift, regime.k, regime.labelled, regime.tpr, regime.fpr)
        counts = bootstrap_counts(bootstrap_indices(regime.n_prompts, resamples, rng), regime.n_prompts)
        change, lo, hi = paired_delta(estimate_cell(cell, counts, regime.n_prompts, level),
                                      estimate_cell(base, counts, regime.n_prompts, level), level)
        drop, drop_lo, drop_hi = -100 * change, -100 * hi, -100 * lo
        rating, _ = rate(0.0, 0.0, drop, limits, rise_hi=0.0, drop_lo=drop_lo, drop_hi=drop_hi,
                         evidence=CORRECTED, refusal_evidence=CORRECTED)
        tally[rating] += 1
        tally["estimate_past_threshold"] += drop >= limits["refusal_drop_pp"]
    return {name: count / studies for name, count in tally.items()}
