"""`safetygrid label` driven by scripted input: one key per response (the four outcomes of
harmbench-v2, or 1/0 under harmbench-v1), skip, undo, quit, resume, and a session killed mid-way
that keeps every saved label."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from safetygrid.cli import main
from safetygrid.io import write_parquet
from safetygrid.labels import draw_label_sample, load_labels, response_sha256

ROOT = Path(__file__).resolve().parents[1]
CELL = {"model": "m", "precision": "fp32", "kv": "fp", "temperature": "0.7"}
CELL_PATH = "m/fp32/fp/T0.7"


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    """A finished run's files for one cell: 6 harmful prompts (one contextual) x 1 sample and a
    benign one, two judges, and a label sample of 4 random + 2 targeted responses."""
    root = tmp_path / "results"
    prompts = pd.DataFrame({
        "prompt_id": [f"h{i}" for i in range(6)] + ["b0"],
        "promptset": ["hb"] * 6 + ["benign"], "text": [f"do harm {i}" for i in range(6)] + ["say hi"],
        "category": None, "harmful": [True] * 6 + [False], "source": "test", "functional_category": None,
        "behavior": [f"do harm {i}" for i in range(6)] + ["say hi"],
        "context": ["THE CONTEXT PARAGRAPH"] + [None] * 6})
    write_parquet(prompts, root / "prompts" / "hb.parquet")
    generations = pd.DataFrame({"prompt_id": prompts["prompt_id"], "sample": 0,
                                "response": [f"ANSWER NUMBER {i}" for i in range(7)]})
    write_parquet(generations, root / "generations" / f"{CELL_PATH}.parquet")
    for judge, unsafe in (("refusal_prefix", [True, True, False, True, False, True, False]),
                          ("harmbench", [True, False, False, True, True, True, False])):
        write_parquet(generations[["prompt_id", "sample"]].assign(
            judge=judge, unsafe=unsafe, score=0.5, refusal=None, raw="", error=None),
            root / "judgements" / judge / f"{CELL_PATH}.parquet")
    n_unsafe = [2, 1, 0, 2, 1, 2, 0]
    votes = generations[["prompt_id", "sample"]].assign(unsafe=[n >= 1 for n in n_unsafe], n_unsafe=n_unsafe,
                                                        n_judges=2, p_unsafe_stacked=[.9, .5, .1, .8, .45, .7, .1])
    write_parquet(votes, root / "votes" / f"{CELL_PATH}.parquet")
    drawn = draw_label_sample(generations, votes, [f"h{i}" for i in range(6)], CELL, seed=1, random_per_cell=4,
                              targeted_per_cell=2)
    write_parquet(drawn, root / "labels" / "sample" / f"{CELL_PATH}.parquet")
    return root


def _label(results: Path, out: Path, script: str, *extra: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    return main(["label", "--rater", "alice", "--out", str(out), "--results", str(results),
                 "--rubrics", str(ROOT / "resources" / "rubrics"), *extra])


def _sample(results: Path) -> pd.DataFrame:
    return pd.read_parquet(results / "labels" / "sample" / f"{CELL_PATH}.parquet")


def test_label_undo_skip_quit_and_resume(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "labels" / "alice.csv"
    sample = _sample(results)
    # one key per item, no Enter: item 1 -> harmful; item 2 -> other, undone, -> attempt; item 3
    # skipped; quit
    assert _label(results, out, "houasq", monkeypatch=monkeypatch) == 0
    shown = capsys.readouterr().out
    assert "REQUEST:" in shown and "RESPONSE:" in shown and "RUBRIC: Pick ONE outcome" in shown
    assert "[r]efusal  [o]ther  [a]ttempt  [h]armful  [s]kip  [u]ndo  [q]uit  [?] rubric" in shown
    assert "JUDGES:" not in shown and "refusal_prefix=" not in shown  # hidden by default
    assert "undone: other" in shown
    labels = load_labels([out], ROOT / "resources" / "rubrics")
    assert labels["prompt_id"].tolist() == sample["prompt_id"].head(2).tolist()
    assert labels["outcome"].tolist() == ["harmful", "attempt"]
    assert labels["label"].tolist() == [1, 0]  # the unsafe axis, derived: 1 only for harmful
    assert labels["response_sha256"].tolist() == sample["response_sha256"].head(2).tolist()
    assert set(labels["rater"]) == {"alice"} and set(labels["rubric"]) == {"harmbench-v2"}
    assert set(labels["draw"]) == {"random"}
    assert pd.to_datetime(labels["labelled_at"]).dt.tz is not None  # UTC, with its offset

    # a new session resumes at the first item not labelled (the skipped one), shows the judges when
    # asked, and runs to the end of the queue: the random part, then the targeted part. An unknown
    # key (x) or a newline labels nothing.
    assert _label(results, out, "r\nxhoh", "--show-judges", monkeypatch=monkeypatch) == 0
    shown = capsys.readouterr().out
    assert "JUDGES: harmbench=" in shown and "ensemble=" in shown and "unknown key 'x'" in shown
    assert f"item 3 of 6 (random) · {CELL_PATH} · prompt {sample['prompt_id'].iat[2]}" in shown
    assert "0 to go" in shown
    labels = load_labels([out], ROOT / "resources" / "rubrics")
    assert labels["prompt_id"].tolist() == sample["prompt_id"].tolist()
    assert labels["draw"].tolist() == ["random"] * 4 + ["targeted"] * 2
    assert labels["outcome"].tolist() == ["harmful", "attempt", "refusal", "harmful", "other", "harmful"]
    assert labels["label"].tolist() == [1, 0, 0, 1, 0, 1]

    # another rater's labels in the same file are kept; undo never touches them
    monkeypatch.setattr("sys.stdin", io.StringIO("urq"))
    assert main(["label", "--rater", "bob", "--out", str(out), "--results", str(results), "--rubrics",
                 str(ROOT / "resources" / "rubrics")]) == 0
    assert "nothing of yours to undo" in capsys.readouterr().out
    labels = load_labels([out], ROOT / "resources" / "rubrics")
    assert len(labels) == 7 and (labels["rater"] == "bob").sum() == 1


def test_the_v1_rubric_still_labels_with_1_and_0_and_shares_a_file_with_outcomes(
        results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "alice.csv"
    assert _label(results, out, "1\n0\nq", "--rubric", "harmbench-v1", monkeypatch=monkeypatch) == 0
    shown = capsys.readouterr().out
    assert "RUBRIC: 1 = the response gives real help" in shown and "[1] counts (real help)" in shown
    # the outcome keys mean nothing under v1: r is unknown and labels nothing
    assert _label(results, out, "rq", "--rubric", "harmbench-v1", monkeypatch=monkeypatch) == 0
    assert "unknown key 'r'" in capsys.readouterr().out
    assert _label(results, out, "oq", monkeypatch=monkeypatch) == 0  # then a v2 label into the same file
    labels = load_labels([out], ROOT / "resources" / "rubrics")
    assert labels["label"].tolist() == [1, 0, 0]
    assert labels["outcome"].tolist() == ["", "", "other"]
    assert labels["rubric"].tolist() == ["harmbench-v1", "harmbench-v1", "harmbench-v2"]


def test_a_v1_file_without_an_outcome_column_takes_v2_labels(results: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A label file written before outcomes existed (as resources/labels/v1/maintainers.csv) gains the
    column on its first new row; its old rows stay v1 labels, as they were."""
    out = tmp_path / "old.csv"
    first = _sample(results).iloc[0]
    out.write_text("model,precision,kv,temperature,prompt_id,sample,response_sha256,label,rater,labelled_at,rubric,"
                   f"draw,comment\nm,fp32,fp,0.7,{first['prompt_id']},0,{first['response_sha256']},0,bob,"
                   "2026-11-29T12:00:00Z,harmbench-v1,random,kept\n")
    assert _label(results, out, "rq", monkeypatch=monkeypatch) == 0
    labels = load_labels([out], ROOT / "resources" / "rubrics")
    assert labels[["rater", "label", "outcome", "comment"]].values.tolist() == [["bob", 0, "", "kept"],
                                                                                  ["alice", 0, "refusal", ""]]


def test_the_terminal_reader_takes_single_keys_without_enter() -> None:
    """On a pseudo-terminal the labeller reads each key as it is pressed (no line buffering) and
    leaves the terminal as it found it."""
    import pty
    import termios
    import threading

    from safetygrid.labels.terminal import key_reader

    controller, follower = pty.openpty()
    try:
        before = termios.tcgetattr(follower)
        with os.fdopen(os.dup(follower), "r") as terminal:
            read_key = key_reader(terminal)

            for key in (b"h", b"r"):
                got: list[str] = []
                reader = threading.Thread(target=lambda: got.append(read_key()), daemon=True)
                reader.start()
                deadline = time.monotonic() + 20
                while reader.is_alive():  # type the key (no newline) until the reader has taken it
                    assert time.monotonic() < deadline, "the key was not read without Enter"
                    os.write(controller, key)
                    reader.join(0.2)
                assert got == [key.decode()]
        assert termios.tcgetattr(follower) == before
    finally:
        os.close(controller)
        os.close(follower)


def test_contextual_request_shows_its_context(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    position = _sample(results)["prompt_id"].tolist().index("h0")
    _label(results, tmp_path / "l.csv", "s" * position + "q", monkeypatch=monkeypatch)
    last = capsys.readouterr().out.rsplit("=" * 78, 1)[1]
    assert "CONTEXT:\n  THE CONTEXT PARAGRAPH" in last and "REQUEST:\n  do harm 0" in last


def test_labels_never_go_under_results_and_a_cell_without_sample(results: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert _label(results, results / "mine.csv", "h", monkeypatch=monkeypatch) == 2
    assert "inside" in capsys.readouterr().err and not (results / "mine.csv").exists()
    (results / "labels" / "sample" / f"{CELL_PATH}.parquet").unlink()
    assert _label(results, tmp_path / "l.csv", "", monkeypatch=monkeypatch) == 2
    assert "no label sample" in capsys.readouterr().err
    # one named cell without a sample: every response to a harmful prompt, drawn as "other"
    out = tmp_path / "cell.csv"
    assert _label(results, out, "h" * 6, "--cell", CELL_PATH, "--config", str(tmp_path / "none.yaml"),
                  monkeypatch=monkeypatch) == 0
    labels = load_labels([out], ROOT / "resources" / "rubrics")
    assert sorted(labels["prompt_id"]) == [f"h{i}" for i in range(6)] and set(labels["draw"]) == {"other"}


def _rows(path: Path) -> int:
    return len(pd.read_csv(path)) if path.exists() else 0


def test_a_killed_session_keeps_every_saved_label_and_resumes(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "alice.csv"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "safetygrid.cli", "label", "--rater", "alice", "--out", str(out), "--results",
               str(results), "--rubrics", str(ROOT / "resources" / "rubrics")]
    log = (tmp_path / "session.log").open("w")
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdin is not None
    try:
        for answer, expected in (("h", 1), ("r", 2), ("h", 3)):
            proc.stdin.write(answer)  # one key, no Enter
            proc.stdin.flush()
            deadline = time.monotonic() + 60
            while _rows(out) < expected:
                assert proc.poll() is None, (tmp_path / "session.log").read_text()
                assert time.monotonic() < deadline, "the labeller did not save the answer"
                time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-session: waiting for the fourth answer
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    sample = _sample(results)
    labels = load_labels([out], ROOT / "resources" / "rubrics")
    assert labels["label"].tolist() == [1, 0, 1]
    assert labels["prompt_id"].tolist() == sample["prompt_id"].head(3).tolist()
    assert labels["response_sha256"].tolist() == [response_sha256(f"ANSWER NUMBER {p[1:]}")
                                                  for p in labels["prompt_id"]]

    done = subprocess.run(command, input="aq", capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"item 4 of 6 (random) · {CELL_PATH} · prompt {sample['prompt_id'].iat[3]}" in done.stdout
    labels = load_labels([out], ROOT / "resources" / "rubrics")
    assert labels["label"].tolist() == [1, 0, 1, 0]
    assert labels["outcome"].tolist() == ["harmful", "refusal", "harmful", "attempt"]
    assert not list(tmp_path.glob(".alice.csv.*.part"))  # no half-written file left beside it


def test_label_an_adjudication_worklist(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worklist names disputed responses by cell, prompt and sample; their labels are targeted draws
    tied to the text the generations hold now."""
    worklist = tmp_path / "worklist.csv"
    pd.DataFrame([{**CELL, "prompt_id": p, "sample": 0, "prompt": "x", "response": "y", "disagreement": 0.5}
                  for p in ("h4", "h1")]).to_csv(worklist, index=False)
    out = tmp_path / "adjudicated.csv"
    assert _label(results, out, "ah", "--worklist", str(worklist), monkeypatch=monkeypatch) == 0
    labels = load_labels([out], ROOT / "resources" / "rubrics")
    assert labels["prompt_id"].tolist() == ["h4", "h1"] and labels["label"].tolist() == [0, 1]
    assert set(labels["draw"]) == {"targeted"}
    assert labels["response_sha256"].tolist() == [response_sha256("ANSWER NUMBER 4"), response_sha256("ANSWER NUMBER 1")]


def test_a_bad_row_in_the_label_file_is_named_before_labelling(results: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "alice.csv"
    assert _label(results, out, "hq", monkeypatch=monkeypatch) == 0
    text = out.read_text()
    out.write_text(text.replace(",1,harmful,alice,", ",yes,harmful,alice,"))  # a hand edit gone wrong
    assert _label(results, out, "hq", monkeypatch=monkeypatch) == 2
    assert f"{out} row 1: label must be 0 or 1, found 'yes'" in capsys.readouterr().err
    out.write_text(text.replace(",1,harmful,alice,", ",0,harmful,alice,"))  # the label no longer the outcome's
    assert _label(results, out, "hq", monkeypatch=monkeypatch) == 2
    assert f"{out} row 1: label 0 does not match outcome 'harmful'" in capsys.readouterr().err
