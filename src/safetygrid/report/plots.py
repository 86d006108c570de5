"""Figures of the report (matplotlib, PNG + SVG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def save(fig: plt.Figure, directory: Path, stem: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    png = directory / f"{stem}.png"
    fig.savefig(png, dpi=120, bbox_inches="tight")
    fig.savefig(directory / f"{stem}.svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return png


def asr_heatmap(cells: pd.DataFrame, model: str, kv: str) -> plt.Figure:
    """ASR of each precision x temperature at one kv setting, with its interval in each square."""
    sub = cells[(cells["model"] == model) & (cells["kv"] == kv)]
    grid = sub.pivot(index="precision", columns="temperature", values="asr")
    lo = sub.pivot(index="precision", columns="temperature", values="asr_lo")
    hi = sub.pivot(index="precision", columns="temperature", values="asr_hi")
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * grid.shape[1], 1.2 + 0.7 * grid.shape[0]))
    image = ax.imshow(grid.to_numpy(float), cmap="Reds", vmin=0, vmax=1, aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            value = grid.iat[i, j]
            if np.isnan(value):
                continue
            ax.text(j, i, f"{value:.2f}\n[{lo.iat[i, j]:.2f}, {hi.iat[i, j]:.2f}]", ha="center", va="center",
                    fontsize=8, color="white" if value > 0.6 else "black")
    ax.set_xticks(range(grid.shape[1]), [f"T={t:g}" for t in grid.columns])
    ax.set_yticks(range(grid.shape[0]), grid.index)
    ax.set_title(f"{model}: attack success rate (kv={kv})")
    fig.colorbar(image, ax=ax, label="ASR")
    return fig


def stability_by_temperature(cells: pd.DataFrame, model: str, kv: str) -> plt.Figure:
    """Decision-flip rate and safety stability index against temperature, one line per precision,
    with intervals (both need k >= 2 samples, so T = 0 with one sample has no point)."""
    sub = cells[(cells["model"] == model) & (cells["kv"] == kv) & cells["dfr"].notna()]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, metric, label, limits in ((axes[0], "dfr", "decision-flip rate", (-0.02, 1.02)),
                                      (axes[1], "ssi", "safety stability index", (0.48, 1.02))):
        for precision, rows in sub.groupby("precision"):
            rows = rows.sort_values("temperature")
            err = np.vstack([rows[metric] - rows[f"{metric}_lo"], rows[f"{metric}_hi"] - rows[metric]])
            ax.errorbar(rows["temperature"], rows[metric], yerr=np.clip(err, 0, None), marker="o", capsize=3,
                        label=precision)
        ax.set_xlabel("temperature")
        ax.set_ylabel(label)
        ax.set_ylim(*limits)
        ax.set_xlim(-0.05, max([1.0, *sub["temperature"]]) + 0.05)  # the whole range, even with one T > 0
        if len(sub):
            ax.legend(title="precision", fontsize=8)
    axes[0].set_title(f"{model}: samples that disagree (kv={kv})")
    axes[1].set_title("1 = every prompt decided alike in all samples")
    fig.tight_layout()
    return fig


def diverging_limit(grid: pd.DataFrame, lo: pd.DataFrame, hi: pd.DataFrame) -> float:
    """Half-width of a diverging colour scale centred on 0: the largest |estimate| or |interval
    bound| of the grid. Sized to the intervals, a square's colour shows its estimate against the
    uncertainty of the whole figure (a +0.05 whose interval reaches +0.30 is pale); sized to the
    estimates alone, or clipped at a fixed width, the same square would be the darkest red."""
    values = np.abs(np.concatenate([frame.to_numpy(float).ravel() for frame in (grid, lo, hi)]))
    finite = values[np.isfinite(values)]
    largest = float(finite.max()) if finite.size else 0.0
    return largest if largest > 0 else 1.0  # all zero: any symmetric scale draws them white


def diverging_cells(ax: plt.Axes, grid: pd.DataFrame, lo: pd.DataFrame, hi: pd.DataFrame, fontsize: int,
                    label: Callable[[float, bool, float, float], str]) -> Any:
    """A grid of changes on a red-blue scale centred on 0 and reaching the largest interval bound
    (``diverging_limit``), each square labelled by ``label(value, interval excludes 0, lo, hi)``;
    returns the image for a colour bar."""
    limit = diverging_limit(grid, lo, hi)
    image = ax.imshow(grid.to_numpy(float), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            value = grid.iat[i, j]
            if np.isnan(value):
                continue
            sure = bool(lo.iat[i, j] > 0 or hi.iat[i, j] < 0)
            ax.text(j, i, label(value, sure, lo.iat[i, j], hi.iat[i, j]), ha="center", va="center",
                    fontsize=fontsize, color="white" if abs(value) > 0.6 * limit else "black")
    return image


def cdi_heatmap(contrasts: pd.DataFrame, model: str) -> plt.Figure:
    """CDI of each non-baseline precision x T > 0 on a diverging scale centred on 0: red squares
    compound (worse together than apart), blue ones are sub-additive; an interval that excludes 0
    is marked with *."""
    sub = contrasts[(contrasts["model"] == model) & contrasts["cdi"].notna()]
    grid = sub.pivot(index="precision", columns="temperature", values="cdi")
    lo = sub.pivot(index="precision", columns="temperature", values="cdi_lo")
    hi = sub.pivot(index="precision", columns="temperature", values="cdi_hi")
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * max(grid.shape[1], 1), 1.2 + 0.7 * max(grid.shape[0], 1)))
    if grid.empty:
        ax.text(0.5, 0.5, "no CDI: needs a second precision and T > 0", ha="center", va="center")
        ax.set_axis_off()
        return fig
    image = diverging_cells(ax, grid, lo, hi, 8,
                            lambda v, sure, a, b: f"{v:+.2f}{'*' if sure else ''}\n[{a:+.2f}, {b:+.2f}]")
    ax.set_xticks(range(grid.shape[1]), [f"T={t:g}" for t in grid.columns])
    ax.set_yticks(range(grid.shape[0]), grid.index)
    ax.set_title(f"{model}: compound degradation index")
    fig.colorbar(image, ax=ax, label="CDI (> 0: compounding); scale: the largest interval bound")
    return fig


def category_heatmap(categories: pd.DataFrame, model: str, kv: str) -> plt.Figure:
    """The change in ASR against the model's baseline of each harm category (rows) in each
    precision and temperature (columns) at one kv setting, on a diverging scale centred on 0: red
    squares are categories that became less safe; * marks a paired-bootstrap interval that excludes 0."""
    sub = categories[(categories["model"] == model) & (categories["kv"] == kv)].copy()
    sub["column"] = [f"{p}\nT={t:g}" for p, t in zip(sub["precision"], sub["temperature"])]
    order = sub.sort_values(["precision", "temperature"])["column"].drop_duplicates().tolist()
    grid = sub.pivot(index="category", columns="column", values="delta_asr").reindex(columns=order)
    lo = sub.pivot(index="category", columns="column", values="delta_asr_lo").reindex(columns=order)
    hi = sub.pivot(index="category", columns="column", values="delta_asr_hi").reindex(columns=order)
    n = sub.groupby("category")["n_prompts"].max()
    fig, ax = plt.subplots(figsize=(2.8 + 1.1 * max(grid.shape[1], 1), 1.2 + 0.45 * max(grid.shape[0], 1)))
    if grid.empty or grid.isna().all().all():
        ax.text(0.5, 0.5, "no change to show: needs a baseline cell and harmful prompts", ha="center", va="center")
        ax.set_axis_off()
        return fig
    image = diverging_cells(ax, grid, lo, hi, 7, lambda v, sure, a, b: f"{100 * v:+.0f}{'*' if sure else ''}")
    ax.set_xticks(range(grid.shape[1]), grid.columns, fontsize=7)
    ax.set_yticks(range(grid.shape[0]), [f"{c} (n={n.get(c, 0)})" for c in grid.index], fontsize=8)
    ax.set_title(f"{model} (kv={kv}): ASR change by category, pp")
    fig.colorbar(image, ax=ax, label="ASR change (> 0: less safe); scale: the largest interval bound")
    return fig


def quality_vs_safety(hidden: pd.DataFrame, thresholds: dict[str, float]) -> plt.Figure:
    """Perplexity ratio against refusal drop for every comparison of hidden_danger.parquet; the
    hidden-danger region (refusals fell, perplexity did not move) is shaded."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    tolerance = thresholds.get("ppl_tolerance", 0.05)
    drop, near = thresholds.get("refusal_drop_pp", 10.0), thresholds.get("near_drop_pp", 5.0)
    rows = hidden.dropna(subset=["perplexity_ratio", "refusal_drop_pp"])
    top = max(drop * 2, float(rows["refusal_drop_pp"].max()) + 5 if len(rows) else 0)
    ratios = rows["perplexity_ratio"].to_numpy(float)
    left = min(0.95, float(ratios.min()) - 0.05) if len(rows) else 0.95
    right = max(1 + 2 * tolerance, float(ratios.max()) + 0.05) if len(rows) else 1 + 2 * tolerance
    ax.fill_between([left, 1 + tolerance], drop, top, color="tab:red", alpha=0.15, label="hidden danger")
    ax.fill_between([left, 1 + tolerance], near, drop, color="tab:orange", alpha=0.12, label="near hidden danger")
    ax.set_xlim(left, right)
    for row in rows.itertuples():
        marker = "o" if row.comparison == "precision" else "s"
        ax.scatter(row.perplexity_ratio, row.refusal_drop_pp, marker=marker, color="black", zorder=3)
        label = f"{row.model}/{row.precision}" + (f"/kv={row.kv}" if row.comparison == "kv" else "")
        ax.annotate(label, (row.perplexity_ratio, row.refusal_drop_pp), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(1, color="grey", lw=0.8)
    ax.set_xlabel("perplexity ratio to the reference (1 = unchanged)")
    ax.set_ylabel("refusal drop at T = 0 (percentage points)")
    ax.set_ylim(min(-5, float(rows["refusal_drop_pp"].min()) - 5 if len(rows) else -5), top)
    ax.set_title("Quality against safety (circles: precision, squares: KV cache)")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def quality_change_vs_refusal(cells: pd.DataFrame, quality: pd.DataFrame, split: pd.DataFrame,
                              baseline: dict[str, str]) -> plt.Figure:
    """One panel per precision q != q0: for each model and quality metric, the quality change from
    the baseline precision (x: perplexity in %, a task's accuracy in points) against the refusal
    change at T = 0 (y, points). Filled red marks: the (metric, rr) pair splits across models at
    this precision (direction_split.parquet); black: the models agree."""
    from ..analysis.hidden_danger import quality_changes, safety_changes

    dq = quality_changes(cells, quality, baseline=baseline)
    ds = safety_changes(cells, baseline=baseline)
    rr = ds[(ds["safety_metric"] == "rr") & (ds["temperature"].astype(float) == 0.0)]
    points = dq.merge(rr[["model", "precision", "change"]].rename(columns={"change": "rr_change"}),
                      on=["model", "precision"])
    precisions = sorted(set(cells.loc[cells["precision"] != baseline["precision"], "precision"]))
    fig, axes = plt.subplots(1, max(1, len(precisions)), figsize=(4.2 * max(1, len(precisions)), 3.8),
                             squeeze=False)
    splits = set()
    if len(split):
        at0 = split[(split["temperature"].astype(float) == 0.0) & (split["safety_metric"] == "rr") & split["split"]]
        splits = {(r.precision, r.quality_metric) for r in at0.itertuples()}
    metrics = sorted(set(points["metric"]), key=lambda m: (m != "perplexity", m))
    markers = dict(zip(metrics, "o^sDvP*Xh<>"))
    for ax, precision in zip(axes[0], precisions):
        here = points[points["precision"] == precision]
        for row in here.itertuples():
            # perplexity: relative change in %; a task: accuracy change in points
            x = (100 * row.change / row.reference if row.metric == "perplexity" and row.reference
                 else 100 * row.change)
            color = "tab:red" if (precision, row.metric) in splits else "black"
            ax.scatter(x, 100 * row.rr_change, marker=markers.get(row.metric, "o"), color=color, zorder=3)
            ax.annotate(f"{row.model} ({row.metric})", (x, 100 * row.rr_change), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(f"{precision} vs {baseline['precision']}", fontsize=9)
        ax.set_xlabel("quality change (perplexity %, accuracy pp)", fontsize=8)
        ax.set_ylabel("refusal change at T = 0 (pp)", fontsize=8)
    handles = [plt.Line2D([], [], marker=markers[m], ls="", color="grey", label=m) for m in metrics]
    handles.append(plt.Line2D([], [], marker="o", ls="", color="tab:red", label="direction splits across models"))
    axes[0][-1].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def kv_retention(hidden: pd.DataFrame) -> plt.Figure:
    """Refusal retention (RR with the quantized KV cache / RR with the full one, at T = 0) of each
    model, precision and KV setting, labelled with the perplexity ratio of the same change."""
    rows = hidden[hidden["comparison"] == "kv"].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * max(len(rows), 1), 3.5))
    labels = [f"{r.model}\n{r.precision}\nkv={r.kv}" for r in rows.itertuples()]
    values = rows["refusal_retention"].to_numpy(float)
    bars = ax.bar(range(len(rows)), np.nan_to_num(values), color=["tab:red" if v < 0.9 else "tab:blue"
                                                                   for v in values])
    for bar, value, ratio in zip(bars, values, rows["perplexity_ratio"].to_numpy(float)):
        text = ("NA" if np.isnan(value) else f"{value:.2f}") + ("" if np.isnan(ratio) else f"\nppl x{ratio:.3f}")
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.02, text, ha="center", fontsize=7)
    ax.axhline(1, color="grey", lw=0.8)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylim(0, max(1.3, float(np.nanmax(values)) + 0.2 if len(rows) and not np.isnan(values).all() else 1.3))
    ax.set_ylabel("refusal retention")
    ax.set_title("Refusals kept under KV-cache quantization (red: below 0.9)")
    return fig


def agreement_matrix(matrix: pd.DataFrame) -> plt.Figure:
    """Cohen kappa of every pair of judges and of each judge with the ensemble."""
    n = len(matrix)
    fig, ax = plt.subplots(figsize=(1.8 + 0.9 * n, 1.2 + 0.8 * n))
    image = ax.imshow(matrix.to_numpy(float), cmap="RdBu", vmin=-1, vmax=1)
    for i in range(n):
        for j in range(n):
            value = matrix.iat[i, j]
            ax.text(j, i, "NA" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(n), matrix.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(n), matrix.index, fontsize=8)
    ax.set_title("Judge agreement (Cohen kappa)")
    fig.colorbar(image, ax=ax, label="kappa")
    return fig


def judge_validity(validity: pd.DataFrame, level: float) -> plt.Figure:
    """Cohen kappa against the labels (unsafe: own or borrowed), with its bootstrap interval at ``level``, per judge
    and ensemble."""
    rows = validity[(validity["target"] == "unsafe") & (validity["n"] > 0)].reset_index(drop=True)
    where = rows["measured_on"] if "measured_on" in rows else pd.Series("borrowed", index=rows.index)
    labels = [f"{r.rater} ({r.labels}, {w})" for r, w in zip(rows.itertuples(), where)]
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.35 * max(len(rows), 1)))
    y = np.arange(len(rows))
    kappa = rows["kappa"].to_numpy(float)
    err = np.vstack([kappa - rows["kappa_lo"].to_numpy(float), rows["kappa_hi"].to_numpy(float) - kappa])
    colours = ["#c62828" if lead else ("#555" if kind == "ensemble" else "#1f77b4")
               for lead, kind in zip(rows["lead"], rows["kind"])]
    ax.errorbar(kappa, y, xerr=np.nan_to_num(err), fmt="none", ecolor="#999", capsize=3)
    ax.scatter(kappa, y, c=colours, zorder=3)
    ax.set_ylim(len(rows) - 0.5, -1.1)  # top to bottom, with a line of room above for the labels
    # the ratings are citable when the lower end of the counted label's interval reaches 0.4
    for value, kind, align in ((0.4, "lower end below 0.4: not citable", "right"), (0.6, "target 0.6", "left")):
        ax.axvline(value, color="#bbb", linestyle="--", linewidth=1)
        ax.text(value, -0.75, f" {kind} " if align == "left" else f"{kind} ", fontsize=7, color="#777",
                ha=align, va="center")
    ax.axvline(0, color="#333", linewidth=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(-0.4, 1)
    ax.set_xlabel(f"Cohen kappa against labels of the responses ({100 * level:g}% bootstrap interval)")
    ax.set_title("Judges against read labels (red: the label the tables count)", fontsize=10)
    fig.tight_layout()
    return fig


def asr_corrected(cells: pd.DataFrame, model: str, level: float, metric: str = "asr") -> plt.Figure:
    """Per cell of one model, the judge-only rate (``metric``: asr, rr or cr) beside the
    prediction-powered one (the judges' count corrected with the cell's randomly drawn labels), each
    with its interval: where they part, the judges' error on that cell's responses is what the
    judge-only figure measures. CR has no judge-only figure (no judge gives it)."""
    sub = cells[cells["model"] == model].sort_values(["precision", "kv", "temperature"]).reset_index(drop=True)
    names = [f"{p}\n{kv}, T={t:g}" for p, kv, t in zip(sub["precision"], sub["kv"], sub["temperature"])]
    x = np.arange(len(sub))
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(sub), 3.4))
    for offset, column, colour, label in ((-0.12, metric, "#9e9e9e", f"judges only ({metric})"),
                                          (0.12, f"{metric}_pp", "#c62828", f"corrected with labels ({metric}_pp)")):
        if column not in sub:
            continue
        value = sub[column].to_numpy(float)
        lo, hi = sub[f"{column}_lo"].to_numpy(float), sub[f"{column}_hi"].to_numpy(float)
        shown = ~np.isnan(value)
        # a bootstrap bound can sit a rounding error past its estimate (0 against 1e-17)
        below, above = np.clip(value - lo, 0, None), np.clip(hi - value, 0, None)
        ax.errorbar(x[shown] + offset, value[shown], yerr=[below[shown], above[shown]], fmt="o", color=colour,
                    capsize=3, label=label)
    title = {"asr": "attack success rate", "rr": "refusal rate", "cr": "compliance rate"}[metric]
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel(f"{metric.upper()} ({100 * level:g}% interval)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_title(f"{model}: {title}, judges only and corrected", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return fig


def _paired_rr_pp(contrasts: pd.DataFrame | None, model: str, kv: str, cells: pd.DataFrame) -> np.ndarray | None:
    """Per cell of ``cells`` (in its order) the corrected refusal change's interval (delta_rr_pp_lo,
    delta_rr_pp_hi) from contrasts.parquet; None without them."""
    if contrasts is None or not len(contrasts) or "delta_rr_pp_lo" not in contrasts:
        return None
    table = contrasts[(contrasts["model"] == model) & (contrasts.get("kv", kv) == kv)].copy()
    table["temperature"] = table["temperature"].astype(float)
    table = table.drop_duplicates(["precision", "temperature"]).set_index(["precision", "temperature"])
    keys = list(zip(cells["precision"], cells["temperature"].astype(float)))
    return np.array([[table.loc[k, "delta_rr_pp_lo"], table.loc[k, "delta_rr_pp_hi"]] if k in table.index
                     else [np.nan, np.nan] for k in keys], dtype=float)


def refusal_change(cells: pd.DataFrame, card: pd.DataFrame, baseline: dict[str, str], level: float,
                   contrasts: pd.DataFrame | None = None) -> plt.Figure:
    """The figure a reader of the seeds looks for first: per model (one row each), left the refusal
    rate of every cell with its interval, the baseline's as a dashed line; right the change of each
    cell against the baseline in points with its paired interval (deployment.parquet's judge-only
    refusal_drop_judges_pp). Judges only in
    grey; corrected with labels of the run's own responses (rr_pp, prediction-powered) in red, where
    cells.parquet has it, the corrected change with its paired interval where ``contrasts`` has
    delta_rr_pp. Cells ordered by precision (baseline first), then temperature."""
    models = sorted(cells["model"].unique())
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 3.3 * len(models)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1]})
    for row, model in enumerate(models):
        sub = cells[(cells["model"] == model) & (cells["kv"] == baseline["kv"])].copy()
        sub["first"] = sub["precision"] != baseline["precision"]
        sub = sub.sort_values(["first", "precision", "temperature"]).reset_index(drop=True)
        names = [f"{p}\nT={t:g}" for p, t in zip(sub["precision"], sub["temperature"])]
        x = np.arange(len(sub))
        rate_ax, change_ax = axes[row]
        base = sub[(sub["precision"] == baseline["precision"]) & (sub["temperature"] == 0.0)]
        for offset, column, colour, label in ((-0.12, "rr", "#757575", "judges only"),
                                              (0.12, "rr_pp", "#c62828", "corrected with labels")):
            if column not in sub or sub[column].isna().all():
                continue
            value = sub[column].to_numpy(float)
            lo = sub.get(f"{column}_lo", sub[column]).to_numpy(float)
            hi = sub.get(f"{column}_hi", sub[column]).to_numpy(float)
            shown = ~np.isnan(value)
            rate_ax.errorbar(x[shown] + offset, value[shown],
                             yerr=[np.clip(value - lo, 0, None)[shown], np.clip(hi - value, 0, None)[shown]],
                             fmt="o", color=colour, capsize=3, label=label)
            if len(base) and not np.isnan(float(base[column].iat[0])):
                rate_ax.axhline(float(base[column].iat[0]), color=colour, linestyle="--", linewidth=0.8)
        rate_ax.set_xticks(x, names, fontsize=8)
        rate_ax.set_ylim(-0.02, 1.02)
        rate_ax.set_ylabel(f"refusal rate ({100 * level:g}% interval)")
        rate_ax.set_title(f"{model}: refusals per cell (dashed: baseline)", fontsize=10)
        rate_ax.legend(fontsize=8, loc="upper right")

        rated = card[card["model"] == model].set_index(["precision", "kv", "temperature"]) if len(card) else None
        changes = []
        for p, t in zip(sub["precision"], sub["temperature"]):
            key = (p, baseline["kv"], float(t))
            if rated is None or key not in rated.index:
                changes.append((np.nan, np.nan, np.nan))
                continue
            r = rated.loc[key]
            # the bars are judge-only (the card rates on the corrected drop where there is one; a card
            # from before it did keeps the judge-only drop under the plain name). The card holds the
            # drop (baseline minus cell); the figure shows the change (cell minus baseline)
            drop = "refusal_drop_judges_pp" if "refusal_drop_judges_pp" in r.index else "refusal_drop_pp"
            changes.append((-r[drop], -r[f"{drop}_hi"], -r[f"{drop}_lo"]))
        change = np.array(changes, dtype=float).reshape(-1, 3)
        shown = ~np.isnan(change[:, 0])
        colours = ["#c62828" if c < 0 else "#1565c0" for c in change[shown, 0]]
        change_ax.bar(x[shown], change[shown, 0], color=colours, alpha=0.6)
        change_ax.errorbar(x[shown], change[shown, 0],
                           yerr=[np.clip(change[shown, 0] - change[shown, 1], 0, None),
                                 np.clip(change[shown, 2] - change[shown, 0], 0, None)],
                           fmt="none", color="black", capsize=3)
        for xi, value in zip(x[shown], change[shown, 0]):
            # round first: a change of -0.3 points (or -0.0) is labelled 0, not "-0"
            change_ax.annotate(f"{round(value) + 0.0:+.0f}", (xi, value), textcoords="offset points",
                               xytext=(0, 4 if value >= 0 else -11), ha="center", fontsize=8)
        if "rr_pp" in sub and len(base) and not np.isnan(float(base["rr_pp"].iat[0])):
            corrected = 100 * (sub["rr_pp"].to_numpy(float) - float(base["rr_pp"].iat[0]))
            has = ~np.isnan(corrected)
            paired = _paired_rr_pp(contrasts, model, baseline["kv"], sub)
            if paired is not None and np.isfinite(paired).any():
                # contrasts' delta_rr_pp: the corrected change with its paired prompt-cluster interval
                lo, hi = 100 * paired[:, 0], 100 * paired[:, 1]
                change_ax.errorbar(x[has], corrected[has], yerr=[np.nan_to_num(np.clip(corrected - lo, 0, None))[has],
                                                                 np.nan_to_num(np.clip(hi - corrected, 0, None))[has]],
                                   fmt="D", color="#c62828", capsize=3, label="corrected with labels (paired interval)")
            else:
                change_ax.plot(x[has], corrected[has], "D", color="#c62828", label="corrected with labels (point)")
            change_ax.legend(fontsize=8, loc="lower left")
        change_ax.axhline(0, color="black", linewidth=0.6)
        change_ax.set_xticks(x, names, fontsize=8)
        change_ax.set_ylabel("refusal change vs baseline (pp)")
        change_ax.set_title(f"{model}: refusals gained (+) or lost (-), judges only, paired {100 * level:g}% "
                            "interval", fontsize=10)
    fig.tight_layout()
    return fig
