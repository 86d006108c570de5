"""Figures of the report (matplotlib, PNG + SVG)."""

from __future__ import annotations

from pathlib import Path

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


def dfr_by_temperature(cells: pd.DataFrame, model: str, kv: str) -> plt.Figure:
    """Decision-flip rate against temperature, one line per precision, with intervals."""
    sub = cells[(cells["model"] == model) & (cells["kv"] == kv) & cells["dfr"].notna()]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for precision, rows in sub.groupby("precision"):
        rows = rows.sort_values("temperature")
        err = np.vstack([rows["dfr"] - rows["dfr_lo"], rows["dfr_hi"] - rows["dfr"]])
        ax.errorbar(rows["temperature"], rows["dfr"], yerr=np.clip(err, 0, None), marker="o", capsize=3,
                    label=precision)
    ax.set_xlabel("temperature")
    ax.set_ylabel("decision-flip rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(-0.05, max([1.0, *sub["temperature"]]) + 0.05)  # the whole range, even with one T > 0
    ax.set_title(f"{model}: samples that disagree (kv={kv})")
    if len(sub):
        ax.legend(title="precision", fontsize=8)
    return fig
