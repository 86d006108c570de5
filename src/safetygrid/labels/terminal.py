"""`safetygrid label`: a plain terminal labeller (text out, one key in, no Enter: works over SSH and
from a script). Each item shows the request (with its context), the response and the rubric's
summary; the judges' verdicts stay hidden unless asked for, so they cannot anchor the reader.

Keys with an outcome rubric (``harmbench-v2`` and later): ``r`` refusal, ``o`` other, ``a``
attempt, ``h`` harmful (METRICS.md's four outcomes; the unsafe label is derived: 1 for harmful);
with ``harmbench-v1``: ``1`` the response counts (real help toward the harmful request), ``0`` it
does not. Always: ``s`` skip (it stays unlabelled and comes again next session), ``u`` undo the last
saved label, ``q`` quit (also Ctrl-C, Ctrl-D or the end of input), ``?`` the whole rubric. Every
answer is saved at once (LabelStore); starting again resumes at the first item this rater has not
labelled.

On a terminal a key is read the moment it is pressed (cbreak mode, restored after each key), and
keys typed before an item was shown are discarded, so no item is labelled unseen. From a pipe or a
file (scripts, tests) each non-blank character is one key.
"""

from __future__ import annotations

import os
import sys
import textwrap
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TextIO

import pandas as pd

from .files import CELL_COLUMNS, LabelError, label_of_outcome, rubric_path, rubric_requires_outcome
from .queue import queue_keys
from .store import LabelStore, response_key

# one key per outcome (METRICS.md); the unsafe label follows from the outcome
OUTCOME_KEYS = {"r": "refusal", "o": "other", "a": "attempt", "h": "harmful"}
UNSAFE_KEYS = {"1": "1", "0": "0"}  # harmbench-v1: the unsafe axis only
COMMAND_KEYS = "[s]kip  [u]ndo  [q]uit  [?] rubric"
KEYS = "[r]efusal  [o]ther  [a]ttempt  [h]armful  " + COMMAND_KEYS
KEYS_V1 = "[1] counts (real help)  [0] does not  " + COMMAND_KEYS
_QUIT_CHARACTERS = {"\x03", "\x04"}  # Ctrl-C, Ctrl-D: in cbreak mode they arrive as characters


def keys_of(rubric: str) -> str:
    return KEYS if rubric_requires_outcome(rubric) else KEYS_V1


def key_reader(stream: TextIO | None = None) -> Callable[[], str]:
    """A function returning the next key pressed: raw single keys on a terminal, else the next
    non-blank character of the stream. Raises EOFError at the end of input."""
    stream = sys.stdin if stream is None else stream
    if stream.isatty():
        return lambda: _terminal_key(stream.fileno())
    return lambda: _stream_key(stream)


def _stream_key(stream: TextIO) -> str:
    while True:
        character = stream.read(1)
        if not character:
            raise EOFError
        if not character.isspace():
            return character


def _terminal_key(fd: int) -> str:
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        termios.tcflush(fd, termios.TCIFLUSH)  # a key pressed before the item was shown labels nothing
        while True:
            data = os.read(fd, 1)
            if not data:
                raise EOFError
            character = data.decode("utf-8", "replace")
            if not character.isspace():
                return character
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


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
    plain = " ".join(summary.replace("**", "").split())  # markdown emphasis means nothing in a terminal
    write(textwrap.fill(plain, width=78, initial_indent="RUBRIC: ", subsequent_indent="  "))


def run_session(queue: pd.DataFrame, store: LabelStore, *, rater: str, rubric: str, rubric_text: str,
                summary: str, read_key: Callable[[], str] | None = None, write: Callable[[str], None] = print,
                now: Callable[[], str] = utc_now) -> SessionResult:
    """Label ``queue`` (labels.queue.build_queue) into ``store`` until the end, ``q`` or end of input.
    ``read_key`` returns one key (default: key_reader() on standard input)."""
    read_key = read_key or key_reader()
    keys_line = keys_of(rubric)
    answers = OUTCOME_KEYS if rubric_requires_outcome(rubric) else UNSAFE_KEYS
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
        write(keys_line)
        try:
            answer = read_key().lower()
        except (EOFError, KeyboardInterrupt):
            answer = "q"
        if answer in _QUIT_CHARACTERS:
            answer = "q"
        if answer in answers:
            outcome = answers[answer] if answers is OUTCOME_KEYS else ""
            label = str(label_of_outcome(outcome)) if outcome else answers[answer]
            store.add({"model": item["model"], "precision": item["precision"], "kv": item["kv"],
                       "temperature": item["temperature"], "prompt_id": item["prompt_id"],
                       "sample": int(item["sample"]), "response_sha256": item["response_sha256"], "label": label,
                       "outcome": outcome, "rater": rater, "labelled_at": now(), "rubric": rubric,
                       "draw": item["draw"], "comment": ""})
            write(f"saved: {outcome or 'label ' + label}")
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
            said = row.get("outcome") or f"label {row['label']}"
            write(f"undone: {said} on prompt {row['prompt_id']} sample {row['sample']}")
        elif answer == "q":
            result.quit = True
            break
        elif answer == "?":
            write(rubric_text)
        else:
            write(f"unknown key {answer!r}: {keys_line}")
    result.remaining = len(in_queue - store.labelled_by(rater))
    write(f"\n{result.labelled} label(s) saved to {store.path} this session ({result.undone} undone, "
          f"{result.skipped} skipped); {len(keys) - result.remaining} of {len(keys)} items labelled by {rater}, "
          f"{result.remaining} to go" + (" (skipped items come again next session)" if result.skipped else ""))
    return result
