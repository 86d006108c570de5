"""Cells of the grid, canonical names in paths, and per-(prompt, sample) seeds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping


def canonical_temperature(value: float | str) -> str:
    """The one spelling of a temperature in paths: 0.7, 0.70 and '0.700' are all '0.7'; 0 is '0.0'."""
    t = float(value)
    if not 0.0 <= t <= 2.0:
        raise ValueError(f"temperature {value!r} is outside [0, 2]")
    return repr(round(t, 4) + 0.0)


def samples_for(temperature: float | str, config: Mapping[str, Any]) -> int:
    """k_c: samples per prompt in a cell (METRICS.md: 1 at T = 0 unless samples_at_greedy says otherwise)."""
    if float(temperature) == 0.0:
        return int(config.get("samples_at_greedy", 1))
    return int(config.get("samples_per_prompt", 5))


def sample_seed(seed: int, model: str, prompt_id: str, sample: int) -> int:
    """seed(p, s): the same prompt and sample get the same seed in every precision, kv and temperature."""
    digest = hashlib.sha256(f"{seed}\x1f{model}\x1f{prompt_id}\x1f{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # non-negative int64


@dataclass(frozen=True, order=True)
class Cell:
    model: str
    precision: str
    kv: str
    temperature: str  # canonical

    @property
    def path(self) -> str:
        return f"{self.model}/{self.precision}/{self.kv}/T{self.temperature}"

    def as_dict(self) -> dict[str, str]:
        return {"model": self.model, "precision": self.precision, "kv": self.kv, "temperature": self.temperature}


def temperatures(config: Mapping[str, Any]) -> list[str]:
    return sorted({canonical_temperature(t) for t in config["temperatures"]}, key=float)


def iter_cells(config: Mapping[str, Any],
               keep: Callable[[str, str], bool] = lambda model, precision: True) -> Iterator[Cell]:
    """Every cell the config asks for whose (model, precision) ``keep`` accepts."""
    for model in config["models"]:
        for precision in config["precisions"]:
            if not keep(model, precision):
                continue
            for kv in config["kv"]:
                for t in temperatures(config):
                    yield Cell(model, precision, kv, t)
