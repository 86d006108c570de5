"""One cell's generations: requests with their seeds, one engine call, rows in a fixed order."""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from . import Request, Settings, make_engine
from ..grid import sample_seed


def build_requests(prompts: pd.DataFrame, model: str, seed: int, k: int) -> list[Request]:
    return [Request(row.prompt_id, s, sample_seed(seed, model, row.prompt_id, s), row.text)
            for row in prompts.itertuples() for s in range(k)]


def _batch_size(value: Any) -> int | str | None:
    return value if value in (None, "auto") else int(value)


def _token_budget(value: Any) -> int | str:
    return "auto" if value in (None, "auto") else int(value)


def cell_settings(generation: Mapping[str, Any], precision: Mapping[str, Any], kv: Mapping[str, Any],
                  temperature: float, batch_divisor: int = 1) -> Settings:
    """The engine settings of a cell from its own config entries."""
    return Settings(
        temperature=float(temperature),
        max_new_tokens=int(generation["max_new_tokens"]),
        top_p=float(generation.get("top_p", 1.0)),
        repetition_penalty=float(generation.get("repetition_penalty", 1.0)),
        batch_size=_batch_size(generation.get("batch_size")),
        token_budget=_token_budget(generation.get("token_budget")),
        batch_divisor=batch_divisor,
        compile=bool(generation.get("compile", False)),
        cuda_graphs=None if generation.get("cuda_graphs") is None else bool(generation["cuda_graphs"]),
        device=str(generation.get("device", "auto")),
        system_prompt=generation.get("system_prompt"),
        dtype=precision.get("dtype"),
        kv=dict(kv),
    )


def generate_cell(checkpoint: str, prompts: pd.DataFrame, *, model: str, engine: str, temperature: float,
                  k: int, seed: int, generation: Mapping[str, Any], precision: Mapping[str, Any],
                  kv: Mapping[str, Any], engine_options: Mapping[str, Any] | None = None,
                  batch_divisor: int = 1) -> pd.DataFrame:
    settings = cell_settings(generation, precision, kv, temperature, batch_divisor)
    requests = build_requests(prompts, model, seed, k)
    table = make_engine(engine, checkpoint, engine_options).generate(requests, settings)
    return table.sort_values(["prompt_id", "sample"], kind="stable").reset_index(drop=True)
