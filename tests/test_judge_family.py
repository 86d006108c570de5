"""A subject model judged by a judge of its own family (or its own weights) is flagged."""

from __future__ import annotations

from pathlib import Path

from safetygrid.judges.family import SAME_FAMILY_COLUMNS, same_family_judges

ROOT = Path(__file__).resolve().parents[1]


def test_same_family_and_same_weights_are_flagged_and_nothing_else() -> None:
    models = {"llama-a": {"family": "Llama"}, "qwen-b": {"family": "qwen"}, "mystery": {}}
    judge_models = {"llama-judge": {"family": "llama"}, "anon-judge": {}}
    judges = {"strings": {"kind": "refusal_prefix"}, "by_llama": {"kind": "harmbench_cls", "model": "llama-judge"},
              "by_anon": {"kind": "harmbench_cls", "model": "anon-judge"},
              "by_qwen_itself": {"kind": "llm_yes_no", "model": "qwen-b"},
              "by_mystery_itself": {"kind": "llm_yes_no", "model": "mystery", "precision": "fp32"}}
    table = same_family_judges(models, judges, judge_models)
    assert list(table.columns) == SAME_FAMILY_COLUMNS
    got = {(r.model, r.judge): r.reason for r in table.itertuples()}
    assert got == {
        ("llama-a", "by_llama"): "the judge's model is of the subject's family (llama)",  # case-insensitive
        ("qwen-b", "by_qwen_itself"): "the judge runs on the subject's own weights",
        # family unknown; the judge reads a precision of the grid
        ("mystery", "by_mystery_itself"): "the judge runs on the subject's own weights (its fp32 precision)",
    }
    # an unknown family never matches another unknown one
    assert same_family_judges({"x": {}}, {"j": {"model": "anon"}}, {"anon": {}}).empty


def test_the_ladder_grid_flags_qwen_judged_by_itself_and_not_smollm2() -> None:
    from safetygrid.config import load

    config = load(ROOT / "config" / "ladder.yaml")
    table = same_family_judges(config["models"], config["judges"], config.get("judge_models", {}))
    assert table[["model", "judge"]].values.tolist() == [["qwen2.5-coder-0.5b", "harmbench_qwen05"]]
    assert set(config["models"]) == {"smollm2-135m", "qwen2.5-coder-0.5b"}
