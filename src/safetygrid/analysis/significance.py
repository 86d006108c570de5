"""The hypothesis tests of METRICS.md, one row each in tests.parquet.

- gee_interaction (per model): logistic GEE of the ensemble label u on C(precision) x C(temperature)
  at the baseline kv, prompts as clusters, exchangeable working correlation; Wald chi-square test
  that every interaction term is zero.
- mcnemar_t0 (per model and precision): McNemar's exact test of the precision against the baseline
  precision at T = 0 on prompt-level labels (a prompt is unsafe when at least half its samples are).
- p_holm: Holm's correction across models within each family (a test, and for McNemar a precision).
The GEE test is NA (statistic and p, the reason in `note`) only where METRICS.md says so: the
model's labels are all 0 or all 1. A single precision x temperature cell that is all one label
separates the saturated logistic model (that cell's log-odds is infinite, the Wald covariance
singular); the test is then fitted with an add-one correction, one pseudo-response of each label
added to every cell, and `note` names the separated cells and the correction. (Haldane's half count
would need fractional case weights, which the GEE's robust covariance treats as survey weights: it
would understate the separated cell's variance by half. Whole pseudo-responses keep the estimate and
its robust variance those of the corrected table.) The other NA rows are not degenerate data: fewer
than two precisions or temperatures (no interaction to test), no baseline precision, or a fit that
fails numerically (the error in `note`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

TEST_COLUMNS = ["model", "test", "precision", "kv", "statistic", "df", "p", "p_holm", "n_prompts",
                "n_responses", "note"]


def _row(model: str, test: str, precision: str | None, kv: str, **values: Any) -> dict[str, Any]:
    row = {"model": model, "test": test, "precision": precision, "kv": kv, "statistic": math.nan, "df": math.nan,
           "p": math.nan, "p_holm": math.nan, "n_prompts": 0, "n_responses": 0, "note": ""}
    row.update(values)
    return row


def gee_interaction(responses: pd.DataFrame, *, model: str, kv: str, baseline_precision: str) -> dict[str, Any]:
    """``responses``: one model's labelled harmful responses at one kv, columns prompt_id,
    precision, temperature (str), unsafe (0/1)."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    data = responses.dropna(subset=["unsafe"]).assign(u=lambda d: d["unsafe"].astype(float))
    base = _row(model, "gee_interaction", None, kv, n_prompts=int(data["prompt_id"].nunique()),
                n_responses=int(len(data)))
    n_precisions, n_temperatures = data["precision"].nunique(), data["temperature"].nunique()
    if n_precisions < 2 or n_temperatures < 2:
        return {**base, "note": f"needs 2 or more precisions and temperatures (has {n_precisions} and {n_temperatures})"}
    if data["u"].nunique() < 2:
        return {**base, "note": f"degenerate: every response is labelled {'unsafe' if data['u'].iat[0] else 'safe'}"}
    if baseline_precision not in set(data["precision"]):
        return {**base, "note": f"the baseline precision {baseline_precision} has no responses"}
    cell_rates = data.groupby(["precision", "temperature"])["u"].mean()
    separated = [f"({q}, T={t}): all {'unsafe' if rate == 1 else 'safe'}"
                 for (q, t), rate in cell_rates.items() if rate in (0.0, 1.0)]
    corrections = []
    if separated:
        data = pd.concat([data, add_one_pseudo_responses(cell_rates.index)], ignore_index=True)
        corrections.append("separated cells " + ", ".join(separated) + f"; fitted with {ADD_ONE_NOTE}")
    lowest_t = min(data["temperature"], key=float)
    formula = (f"u ~ C(precision, Treatment({baseline_precision!r})) * C(temperature, Treatment({lowest_t!r}))")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = smf.gee(formula, groups="prompt_id", data=data, family=sm.families.Binomial(),
                          cov_struct=sm.cov_struct.Exchangeable()).fit()
            names = list(fit.params.index)
            interaction = [i for i, name in enumerate(names) if ":" in name]
            restriction = np.zeros((len(interaction), len(names)))
            restriction[np.arange(len(interaction)), interaction] = 1
            wald = fit.wald_test(restriction, scalar=True, use_f=False)
            statistic, p = float(wald.statistic), float(wald.pvalue)
        except (np.linalg.LinAlgError, ValueError, ZeroDivisionError) as exc:
            return {**base, "note": f"fit failed: {exc}"}
    notes = sorted({str(w.message).splitlines()[0] for w in caught if issubclass(w.category, ConvergenceWarning)})
    if not (math.isfinite(statistic) and math.isfinite(p)) or statistic < 0:
        return {**base, "note": "; ".join([f"fit failed: the Wald statistic is {statistic:.3g} (a near-singular "
                                           "covariance)", *corrections])}
    return {**base, "statistic": statistic, "df": float(len(interaction)), "p": p,
            "note": "; ".join([*corrections, *notes])}


ADD_ONE_NOTE = "the add-one correction (one safe and one unsafe pseudo-response added to every cell)"


def add_one_pseudo_responses(cells: pd.Index) -> pd.DataFrame:
    """One safe and one unsafe pseudo-response in every (precision, temperature) cell, each its own
    cluster so it adds no pair to the exchangeable correlation's estimate: every cell's log-odds is
    then finite, and every cell gets the same correction."""
    rows = [{"prompt_id": f"__add_one__{precision}__T{temperature}__{label}", "sample": 0, "precision": precision,
             "temperature": temperature, "unsafe": bool(label), "u": float(label)}
            for precision, temperature in cells for label in (0, 1)]
    return pd.DataFrame(rows)


def prompt_labels(responses: pd.DataFrame) -> pd.Series:
    """1 when at least half of a prompt's labelled samples are unsafe (a tie counts unsafe, as in the vote)."""
    ubar = responses.dropna(subset=["unsafe"]).groupby("prompt_id")["unsafe"].apply(lambda u: u.astype(float).mean())
    return (ubar >= 0.5).astype(int)


def mcnemar_t0(baseline: pd.DataFrame, other: pd.DataFrame, *, model: str, precision: str, kv: str) -> dict[str, Any]:
    """Exact McNemar test on the prompts both cells labelled."""
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = prompt_labels(baseline), prompt_labels(other)
    common = a.index.intersection(b.index)
    base = _row(model, "mcnemar_t0", precision, kv, n_prompts=int(len(common)),
                n_responses=int(len(baseline) + len(other)))
    if not len(common):
        return {**base, "note": "no prompt labelled in both cells"}
    a, b = a[common], b[common]
    table = [[int(((a == 0) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())],
             [int(((a == 1) & (b == 0)).sum()), int(((a == 1) & (b == 1)).sum())]]
    result = mcnemar(table, exact=True)
    discordant = table[0][1] + table[1][0]
    note = f"safe->unsafe {table[0][1]}, unsafe->safe {table[1][0]}"
    if discordant == 0:
        note += " (no discordant prompts)"
    return {**base, "statistic": float(result.statistic), "df": math.nan, "p": float(result.pvalue), "note": note}


def holm(p: pd.Series) -> pd.Series:
    """Holm-adjusted p-values; NA stays NA and does not count towards the family size."""
    from statsmodels.stats.multitest import multipletests

    out = pd.Series(math.nan, index=p.index, dtype=float)
    present = p.dropna()
    if len(present):
        out[present.index] = multipletests(present.to_numpy(float), method="holm")[1]
    return out


def significance_table(responses: pd.DataFrame, *, baseline_precision: str, baseline_kv: str) -> pd.DataFrame:
    """``responses``: labelled harmful responses of every cell, columns model, precision, kv,
    temperature (str), prompt_id, sample, unsafe."""
    rows = []
    at_kv = responses[responses["kv"] == baseline_kv]
    for model, data in at_kv.groupby("model", sort=True):
        rows.append(gee_interaction(data, model=model, kv=baseline_kv, baseline_precision=baseline_precision))
        greedy = data[data["temperature"].astype(float) == 0]
        reference = greedy[greedy["precision"] == baseline_precision]
        for precision, other in greedy.groupby("precision", sort=True):
            if precision == baseline_precision:
                continue
            if reference.empty:
                rows.append(_row(model, "mcnemar_t0", precision, baseline_kv,
                                 note=f"no baseline cell ({baseline_precision}, T=0)"))
                continue
            rows.append(mcnemar_t0(reference, other, model=model, precision=precision, kv=baseline_kv))
    table = pd.DataFrame(rows, columns=TEST_COLUMNS)
    if len(table):
        family = table["test"] + "|" + table["precision"].fillna("")
        table["p_holm"] = table.groupby(family, group_keys=False)["p"].apply(holm)
    return table
