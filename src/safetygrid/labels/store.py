"""A label file written one answer at a time so that no saved answer is ever lost.

Every change rewrites the whole file to a temporary name beside it, flushes it to disk (fsync),
renames it over the file and syncs the folder: a session killed at any instant leaves either the
file before the answer or the file after it, never a torn one. Rows of other raters and sessions
are kept as they were read (as text); a v1 file gains an empty ``outcome`` column on its first new
row (empty reads as a v1 label).
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Mapping

from .files import LABEL_COLUMNS, OPTIONAL_COLUMNS, OUTCOMES, RUBRICS_DIR, LabelError, label_of_outcome, read_label_file


def response_key(row: Mapping[str, object]) -> tuple[str, ...]:
    """A response's identity in a label file, as text (temperature canonical, sample an int)."""
    from ..grid import canonical_temperature

    return (str(row["model"]), str(row["precision"]), str(row["kv"]), canonical_temperature(str(row["temperature"])),
            str(row["prompt_id"]), str(int(str(row["sample"]))), str(row["response_sha256"]))


class LabelStore:
    """The rows of one label file, in file order (the order they were saved)."""

    def __init__(self, path: str | Path, rubrics_dir: str | Path = RUBRICS_DIR) -> None:
        self.path = Path(path)
        self.columns = list(LABEL_COLUMNS)
        self.rows: list[dict[str, str]] = []
        if self.path.exists() and self.path.stat().st_size:
            read_label_file(self.path, rubrics_dir)  # a hand-edited row that is wrong fails here, named
            with self.path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                missing = [c for c in LABEL_COLUMNS if c not in OPTIONAL_COLUMNS and c not in (reader.fieldnames or [])]
                if missing:
                    raise LabelError(f"{self.path}: missing column(s) {missing}; a label file has {LABEL_COLUMNS}")
                self.columns += [c for c in reader.fieldnames or [] if c not in self.columns]
                self.rows = [dict(row) for row in reader]

    def labelled_by(self, rater: str) -> set[tuple[str, ...]]:
        return {response_key(row) for row in self.rows if row["rater"] == rater}

    def add(self, row: Mapping[str, object]) -> None:
        unknown = sorted(set(row) - set(self.columns))
        if unknown:
            raise LabelError(f"{self.path}: not a label column: {unknown}")
        if str(row["label"]) not in ("0", "1"):
            raise LabelError(f"{self.path}: label must be 0 or 1, got {row['label']!r}")
        outcome = str(row.get("outcome") or "")
        if outcome and outcome not in OUTCOMES:
            raise LabelError(f"{self.path}: outcome must be one of {list(OUTCOMES)}, got {outcome!r}")
        if outcome and str(label_of_outcome(outcome)) != str(row["label"]):
            raise LabelError(f"{self.path}: label {row['label']} does not match outcome {outcome!r}")
        self.rows.append({c: "" if row.get(c) is None else str(row.get(c)) for c in self.columns})
        self.save()

    def last_of(self, rater: str, keys: set[tuple[str, ...]]) -> int | None:
        """The position of ``rater``'s most recent row among responses ``keys``; None if none."""
        for i in range(len(self.rows) - 1, -1, -1):
            if self.rows[i]["rater"] == rater and response_key(self.rows[i]) in keys:
                return i
        return None

    def remove(self, position: int) -> dict[str, str]:
        row = self.rows.pop(position)
        self.save()
        return row

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.columns, lineterminator="\n")
                writer.writeheader()
                writer.writerows(self.rows)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

