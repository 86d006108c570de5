"""The label sample of one cell (METRICS.md, label sample): which of its responses a person labels.

Columns of ``results/labels/sample/{model}/{precision}/{kv}/T{temperature}.parquet``
(SAMPLE_COLUMNS): model, precision, kv, temperature (float), prompt_id, sample, response_sha256,
draw (``random`` | ``targeted``), reason (targeted: ``judges_disagree`` or ``near_threshold``;
random: null), order (the labelling order within the cell: the random part first).

- The **random** part is a uniform draw without replacement from the cell's responses to harmful
  prompts: responses are ranked by sha256(seed, cell, prompt_id, sample) and the first
  ``random_per_cell`` taken (all of them when the cell has fewer). The ranking reads nothing but
  the seed and the cell's own responses, so growing the grid never changes an earlier cell's draw,
  and raising ``random_per_cell`` keeps every response drawn before.
- The **targeted** part (calibration only; never in the unbiased estimates) is drawn from the
  responses left: first those the judges disagree on (the larger the minority share, the earlier;
  then the ensemble's probability nearest 0.5), then those whose ensemble probability
  (p_unsafe_stacked, else p_unsafe_ds) is nearest 0.5, up to ``targeted_per_cell``; ties by the
  same hash rank.
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..grid import canonical_temperature
from .files import CELL_COLUMNS, response_sha256

SAMPLE_COLUMNS = [*CELL_COLUMNS, "prompt_id", "sample", "response_sha256", "draw", "reason", "order"]


def draw_rank(seed: int, cell: Mapping[str, str], prompt_id: str, sample: int) -> str:
    cell_path = f"{cell['model']}/{cell['precision']}/{cell['kv']}/T{canonical_temperature(cell['temperature'])}"
    return hashlib.sha256(f"{seed}\x1f{cell_path}\x1f{prompt_id}\x1f{int(sample)}".encode()).hexdigest()


def _ensemble_probability(votes: pd.DataFrame) -> pd.Series:
    probability = pd.Series(np.nan, index=votes.index, dtype=float)
    for column in ("p_unsafe_ds", "p_unsafe_stacked"):  # the stacked one wins where both exist
        if column in votes.columns:
            values = votes[column].astype("Float64").astype(float)
            probability = values.where(values.notna(), probability)
    return probability


def draw_label_sample(generations: pd.DataFrame, votes: pd.DataFrame, harmful_prompt_ids: Sequence[str],
                      cell: Mapping[str, str], *, seed: int, random_per_cell: int,
                      targeted_per_cell: int) -> pd.DataFrame:
    """``generations``: the cell's prompt_id, sample, response; ``votes``: the cell's vote rows."""
    if random_per_cell < 0 or targeted_per_cell < 0:
        raise ValueError("labels.random_per_cell and labels.targeted_per_cell must be >= 0")
    harmful = set(map(str, harmful_prompt_ids))
    responses = generations[generations["prompt_id"].astype(str).isin(harmful)][["prompt_id", "sample", "response"]]
    responses = responses.assign(prompt_id=responses["prompt_id"].astype(str),
                                 sample=responses["sample"].astype("int64"))
    responses["rank"] = [draw_rank(seed, cell, p, s) for p, s in zip(responses["prompt_id"], responses["sample"])]
    responses = responses.sort_values("rank").reset_index(drop=True)
    random_part = responses.head(random_per_cell).assign(draw="random", reason=None)

    rest = responses.iloc[len(random_part):]
    voted = votes.assign(prompt_id=votes["prompt_id"].astype(str), sample=votes["sample"].astype("int64"))
    voted = voted.assign(probability=_ensemble_probability(voted))
    rest = rest.merge(voted[["prompt_id", "sample", "n_unsafe", "n_judges", "probability"]],
                      on=["prompt_id", "sample"], how="left", validate="1:1")
    minority = np.minimum(rest["n_unsafe"], rest["n_judges"] - rest["n_unsafe"]) / rest["n_judges"].where(
        rest["n_judges"] > 0)
    rest = rest.assign(minority=minority.fillna(0.0).astype(float),
                       margin=(rest["probability"] - 0.5).abs())
    disagree = rest[rest["minority"] > 0].sort_values(["minority", "margin", "rank"], ascending=[False, True, True],
                                                      na_position="last").assign(reason="judges_disagree")
    near = rest[(rest["minority"] == 0) & rest["margin"].notna()].sort_values(["margin", "rank"]).assign(
        reason="near_threshold")
    targeted_part = pd.concat([disagree, near]).head(targeted_per_cell).assign(draw="targeted")

    drawn = pd.concat([random_part, targeted_part], ignore_index=True)
    drawn["order"] = np.arange(len(drawn), dtype="int64")
    for column in ("model", "precision", "kv"):
        drawn[column] = cell[column]
    drawn["temperature"] = float(canonical_temperature(cell["temperature"]))
    drawn["response_sha256"] = drawn["response"].map(response_sha256)
    drawn["reason"] = drawn["reason"].astype("string")
    return drawn[SAMPLE_COLUMNS].reset_index(drop=True)


def write_label_sample(*, generations: str, votes: str, prompts: Sequence[str], cell: Mapping[str, str],
                       seed: int, random_per_cell: int, targeted_per_cell: int, out: str) -> pd.DataFrame:
    """The ``label_sample`` job: read the cell's files, draw, write the parquet atomically."""
    from ..io import write_parquet
    from ..prompts import read_prompts

    prompt_table = read_prompts(list(prompts))
    harmful = prompt_table.loc[prompt_table["harmful"].astype(bool), "prompt_id"].tolist()
    drawn = draw_label_sample(pd.read_parquet(generations, columns=["prompt_id", "sample", "response"]),
                              pd.read_parquet(votes), harmful, cell, seed=seed, random_per_cell=random_per_cell,
                              targeted_per_cell=targeted_per_cell)
    write_parquet(drawn, out)
    return drawn
