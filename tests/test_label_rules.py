"""The label_sample rule on a finished run's files (made here, no model run): one job per cell, and
growing the grid adds a job for the new cell only and leaves every finished draw as it was."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_support import copy_workflow, scheduled_jobs, snakemake

from safetygrid.io import write_parquet

MODEL = "tiny"
CONFIG = {
    "name": "labels", "seed": 11,
    "prompts": {"harmful": {"promptset": "harmbench_behaviors", "n": 8}, "benign": {"promptset": "benign_local", "n": 2}},
    "models": {MODEL: {"source": "local/none", "engine": "hf"}},
    "precisions": {"fp32": {"method": "none", "dtype": "float32"}},
    "kv": {"fp": {}}, "temperatures": [0.0, 0.7], "samples_per_prompt": 3,
    "judges": {"refusal_prefix": {"kind": "refusal_prefix"}},
    "labels": {"random_per_cell": 5, "targeted_per_cell": 2},
    "baseline": {"precision": "fp32", "kv": "fp"},
}
ALLOWED = ["--allowed-rules", "label_sample", "label_samples"]  # everything upstream is given, not made


def _cell_files(workdir: Path, temperature: str, k: int) -> None:
    """A cell's generations and votes as the generate and vote jobs write them."""
    ids = [f"h{i}" for i in range(8)] + ["b0", "b1"]
    generations = pd.DataFrame([{"prompt_id": p, "sample": s, "seed": 0, "temperature": float(temperature),
                                 "engine": "hf", "response": f"{p}/{s} at {temperature}", "n_prompt_tokens": 3,
                                 "n_tokens": 4, "finish_reason": "length"} for p in ids for s in range(k)])
    cell = f"{MODEL}/fp32/fp/T{temperature}.parquet"
    write_parquet(generations, workdir / "results" / "generations" / cell)
    write_parquet(generations[["prompt_id", "sample"]].assign(unsafe=True, refusal=False, n_unsafe=1, n_judges=1,
                                                             n_failed=0, p_unsafe_stacked=0.6),
                  workdir / "results" / "votes" / cell)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("labels"))
    (workdir / "config" / "labels.yaml").write_text(yaml.safe_dump(CONFIG))
    results = workdir / "results"
    prompts = [("harmbench_behaviors", [f"h{i}" for i in range(8)], True), ("benign_local", ["b0", "b1"], False)]
    for promptset, ids, harmful in prompts:
        write_parquet(pd.DataFrame({"prompt_id": ids, "promptset": promptset, "text": ids, "category": None,
                                    "harmful": harmful, "source": "test"}), results / "prompts" / f"{promptset}.parquet")
    (results / "sources" / MODEL).mkdir(parents=True)
    (results / "models" / MODEL / "fp32").mkdir(parents=True)
    (results / "models" / MODEL / "fp32" / "status.json").write_text(json.dumps({"supported": True, "method": "none"}))
    _cell_files(workdir, "0.0", 1)
    _cell_files(workdir, "0.7", 3)
    return workdir


def test_one_draw_per_cell_and_growing_the_grid_keeps_them(run: Path) -> None:
    config = "config/labels.yaml"
    jobs = scheduled_jobs(snakemake(run, "label_samples", *ALLOWED, configfile=config))
    assert jobs == Counter(label_sample=2, label_samples=1)
    sample_dir = run / "results" / "labels" / "sample" / MODEL / "fp32" / "fp"
    greedy = pd.read_parquet(sample_dir / "T0.0.parquet")
    # 8 harmful prompts x 1 sample at T = 0: 5 random, then 2 of the 3 left (targeted)
    assert greedy["draw"].tolist() == ["random"] * 5 + ["targeted"] * 2
    assert set(greedy["prompt_id"]) <= {f"h{i}" for i in range(8)}
    first = {path.name: path.read_bytes() for path in sample_dir.glob("*.parquet")}
    assert scheduled_jobs(snakemake(run, "-n", "label_samples", *ALLOWED, configfile=config)) == Counter()

    grown = {**CONFIG, "temperatures": [0.0, 0.7, 1.0]}
    (run / "config" / "grown_labels.yaml").write_text(yaml.safe_dump(grown))
    _cell_files(run, "1.0", 3)
    jobs = scheduled_jobs(snakemake(run, "label_samples", *ALLOWED, configfile="config/grown_labels.yaml"))
    assert jobs == Counter(label_sample=1, label_samples=1)  # the new cell's draw only
    assert {name: (sample_dir / name).read_bytes() for name in first} == first  # earlier draws byte-identical
    assert len(pd.read_parquet(sample_dir / "T1.0.parquet")) == 7

    # a bigger random part is a new draw for every cell (its params changed)
    bigger = {**grown, "labels": {"random_per_cell": 6, "targeted_per_cell": 2}}
    (run / "config" / "bigger_labels.yaml").write_text(yaml.safe_dump(bigger))
    jobs = scheduled_jobs(snakemake(run, "-n", "label_samples", *ALLOWED, configfile="config/bigger_labels.yaml"))
    assert jobs == Counter(label_sample=3, label_samples=1)
