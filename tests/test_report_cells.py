"""The report's cell table shows what the cell table holds about lost labels."""

from __future__ import annotations

import pandas as pd


def test_the_reports_cell_table_shows_the_unlabelled_responses() -> None:
    from safetygrid.report.html import CELL_COLUMNS, _table

    cells = pd.DataFrame({"model": ["m"], "precision": ["q4"], "kv": ["fp"], "temperature": [0.7], "k": [5],
                          "n_prompts": [20], "n_unlabelled": [3], "asr": [0.25]})
    html = _table(cells, CELL_COLUMNS)
    header = [cell.strip() for cell in html.split("<th>")[1:]]
    assert [h.split("<")[0] for h in header] == ["model", "precision", "kv", "temperature", "k", "n_prompts",
                                                 "n_unlabelled", "asr"]
    assert "<td>3</td>" in html
