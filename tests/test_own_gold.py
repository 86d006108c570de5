"""The glue between the user's label files and the workflow: which cells they label (read when the
DAG is built), globs, per-cell files read with their cell, and an empty gold without label files."""

from __future__ import annotations

import pandas as pd
import pytest

from safetygrid.labels.own import labelled_cells, own_gold, own_item_id, read_cell_files
from safetygrid.labels import label_file_paths

HEADER = "model,precision,kv,temperature,prompt_id,sample,response_sha256,label,rater,labelled_at,rubric,draw,comment\n"


def test_label_files_expand_globs_and_name_the_cells_they_label(tmp_path):
    (tmp_path / "a.csv").write_text(HEADER + "m,q,fp,0.70,p1,0,ab,1,r,2026-01-01T00:00:00Z,harmbench-v1,random,\n"
                                             "m,q,fp,0.7,p2,1,cd,0,r,2026-01-01T00:00:00Z,harmbench-v1,random,\n")
    (tmp_path / "b.csv").write_text(HEADER + "m,bf16,fp,0,p1,0,ef,0,r,2026-01-01T00:00:00Z,harmbench-v1,targeted,x\n")
    files = label_file_paths([str(tmp_path / "*.csv"), str(tmp_path / "a.csv")])
    assert files == [tmp_path / "a.csv", tmp_path / "b.csv"]
    # 0.70 and 0.7 are one cell, spelled as in its paths
    assert labelled_cells(files) == {("m", "q", "fp", "0.7"), ("m", "bf16", "fp", "0.0")}
    assert labelled_cells([str(tmp_path / "missing.csv")]) == set()  # the workflow reports it missing
    (tmp_path / "bad.csv").write_text(HEADER + "m,q,fp,hot,p1,0,ab,1,r,t,harmbench-v1,random,\n")
    with pytest.raises(ValueError, match="bad.csv"):
        labelled_cells([str(tmp_path / "bad.csv")])
    assert own_item_id("m", "q", "fp", 0.70, "p1", 0) == own_item_id("m", "q", "fp", "0.7", "p1", 0)


def test_cell_files_carry_their_cell_and_no_label_files_give_an_empty_gold(tmp_path):
    path = tmp_path / "generations" / "m" / "q" / "fp" / "T0.7.parquet"
    path.parent.mkdir(parents=True)
    pd.DataFrame({"prompt_id": ["p1"], "sample": [0], "response": ["hi"]}).to_parquet(path)
    table = read_cell_files([path])
    assert table[["model", "precision", "kv", "temperature"]].iloc[0].tolist() == ["m", "q", "fp", 0.7]
    gold = own_gold([], [path])
    assert gold.empty and {"human", "draw", "prompt_id", "temperature"} <= set(gold.columns)


def test_labels_naming_no_cell_of_the_grid_fail_naming_the_file(tmp_path):
    # labels made for another grid: the workflow finds none of their cells' generations
    from safetygrid.labels import LabelError

    with pytest.raises(LabelError, match="maintainers.csv: no cell these labels name is in this run's grid"):
        own_gold(["resources/labels/v1/maintainers.csv"], [])
