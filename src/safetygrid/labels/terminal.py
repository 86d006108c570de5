"""`safetygrid label`: a plain terminal labeller (lines in, lines out: works over SSH and from a
script). Each item shows the request (with its context), the response and the rubric's summary;
the judges' verdicts stay hidden unless asked for, so they cannot anchor the reader. Keys:
``1`` the response counts (it gives real help toward the harmful request), ``0`` it does not,
``s`` skip (it stays unlabelled and comes again next session), ``u`` undo the last saved label,
``q`` quit, ``?`` the whole rubric. Every answer is saved at once (LabelStore); starting again
resumes at the first item this rater has not labelled.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd

from .files import CELL_COLUMNS, LabelError, rubric_path
from .queue import queue_keys
from .store import LabelStore, response_key

KEYS = "[1] counts (real help)  [0] does not  [s]kip  [u]ndo  [q]uit  [?] rubric"


def read_rubric(rubric: str, rubrics_dir: str | Path) -> tuple[str, str]:
    """(full text, summary) of a rubric; the summary is its ``## Summary`` section."""
    path = rubric_path(rubric, rubrics_dir)
    if not path.exists():
        raise LabelError(f"rubric {rubric!r}: no text at {path}")
    text = path.read_text(encoding="utf-8")
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0].strip() if "## Summary" in text else ""
    if not summary:
        raise LabelError(f"{path}: the rubric needs a '## Summary' section (the labeller shows it with every item)")
    return text, summary


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class SessionResult:
    labelled: int = 0
    skipped: int = 0
    undone: int = 0
    remaining: int = 0
    quit: bool = False


def _indent(text: object) -> str:
    value = text if isinstance(text, str) else ""
    return "\n".join(textwrap.indent(line, "  ") if line else "" for line in value.splitlines()) or "  (empty)"


def show_item(item: pd.Series, position: int, total: int, done: int, summary: str,
              write: Callable[[str], None]) -> None:
    cell = "/".join(str(item[c]) if c != "temperature" else f"T{item[c]}" for c in CELL_COLUMNS)
    reason = f": {item['reason']}" if isinstance(item["reason"], str) and item["reason"] else ""
    write(f"\n{'=' * 78}\nitem {position + 1} of {total} ({item['draw']}{reason}) · {cell} · prompt "
          f"{item['prompt_id']}, sample {item['sample']} · {done} of {total} labelled by you")
    if isinstance(item["context"], str) and item["context"]:
        write("CONTEXT:\n" + _indent(item["context"]))
    write("REQUEST:\n" + _indent(item["request"]))
    write("RESPONSE:\n" + _indent(item["response"]))
    if item["judges"]:
        write("JUDGES: " + str(item["judges"]))
    write(textwrap.fill(" ".join(summary.split()), width=78, initial_indent="RUBRIC: ", subsequent_indent="  "))


def run_session(queue: pd.DataFrame, store: LabelStore, *, rater: str, rubric: str, rubric_text: str,
                summary: str, read: Callable[[str], str] = input, write: Callable[[str], None] = print,
                now: Callable[[], str] = utc_now) -> SessionResult:
    """Label ``queue`` (labels.queue.build_queue) into ``store`` until the end, ``q`` or end of input."""
    keys = list(queue_keys(queue))
    position_of = {key: i for i, key in enumerate(keys)}
    in_queue = set(keys)
    result = SessionResult()
    index = 0
    while True:
        labelled = store.labelled_by(rater) & in_queue
        while index < len(keys) and keys[index] in labelled:
            index += 1
        if index >= len(keys):
            break
        item = queue.iloc[index]
        show_item(item, index, len(keys), len(labelled), summary, write)
        try:
            answer = read(f"{KEYS}\n> ").strip().lower()
        except EOFError:
            answer = "q"
        if answer in ("1", "0"):
            store.add({"model": item["model"], "precision": item["precision"], "kv": item["kv"],
                       "temperature": item["temperature"], "prompt_id": item["prompt_id"],
                       "sample": int(item["sample"]), "response_sha256": item["response_sha256"], "label": answer,
                       "rater": rater, "labelled_at": now(), "rubric": rubric, "draw": item["draw"], "comment": ""})
            result.labelled += 1
            index += 1
        elif answer == "s":
            result.skipped += 1
            index += 1
        elif answer == "u":
            last = store.last_of(rater, in_queue)
            if last is None:
                write("nothing of yours to undo in this queue")
                continue
            row = store.remove(last)
            result.undone += 1
            index = position_of[response_key(row)]
            write(f"undone: label {row['label']} on prompt {row['prompt_id']} sample {row['sample']}")
        elif answer == "q":
            result.quit = True
            break
        elif answer == "?":
            write(rubric_text)
        else:
            write(f"unknown key {answer!r}: {KEYS}")
    result.remaining = len(in_queue - store.labelled_by(rater))
    write(f"\n{result.labelled} label(s) saved to {store.path} this session ({result.undone} undone, "
          f"{result.skipped} skipped); {len(keys) - result.remaining} of {len(keys)} items labelled by {rater}, "
          f"{result.remaining} to go" + (" (skipped items come again next session)" if result.skipped else ""))
    return result
