"""Send a step's logging, warnings and stderr to its Snakemake log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any


def to_file(path: str | Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(path, "a", buffering=1, encoding="utf-8")
        sys.stderr = stream
        handlers = [logging.StreamHandler(stream)]
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)


def progress(total: int, desc: str) -> Any:
    """A progress bar (tqdm: done/total, rate, time left) on stderr, which to_file sends into the job's
    log; redrawn at most every 10 s so a log file holds a readable trail, not thousands of bars."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, mininterval=10, ascii=True, ncols=100)
