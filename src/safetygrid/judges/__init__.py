"""Judges behind one interface: ``label(prompts, responses) -> table``, registered by kind.

The table has one row per item, in order, with columns unsafe (bool|null), score (float|null,
P(unsafe)), refusal (bool|null), raw (str), error (str|null). A judge that fails on one item
sets ``error`` and leaves its labels null; that item's vote then leaves the judge out.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

import pandas as pd

LABEL_COLUMNS = ["unsafe", "score", "refusal", "raw", "error"]
JUDGEMENT_COLUMNS = ["prompt_id", "sample", "judge", *LABEL_COLUMNS]


class Judge(Protocol):
    def label(self, prompts: Sequence[str], responses: Sequence[str]) -> pd.DataFrame: ...


class JudgeFailed(RuntimeError):
    """A judge that labelled no item at all: its job fails rather than vote with nothing."""


GUARD_KINDS = ("llama_guard", "shieldgemma", "wildguard", "strongreject")
JUDGE_KINDS = ("refusal_prefix", "harmbench_cls", "llm_yes_no", *GUARD_KINDS)


def make_judge(spec: Mapping[str, Any], model_dir: str | None = None) -> Judge:
    kind = spec["kind"]
    if kind == "refusal_prefix":
        from .refusal_prefix import RefusalPrefixJudge

        return RefusalPrefixJudge.from_file(spec.get("prefixes", "resources/judges/refusal_prefixes.txt"))
    if kind not in JUDGE_KINDS:
        raise ValueError(f"unknown judge kind {kind!r}; known: {', '.join(JUDGE_KINDS)}")
    if model_dir is None:
        raise ValueError(f"a {kind} judge needs its model's checkpoint")
    batch_size = spec.get("batch_size", 8)
    common = {"batch_size": batch_size if batch_size == "auto" else int(batch_size),
              "max_response_tokens": int(spec.get("max_response_tokens", 512)),
              "device": str(spec.get("device", "auto")),
              "engine": str(spec.get("engine", "hf")),
              "n_ctx": int(spec.get("n_ctx", 4096))}
    if kind in ("llm_yes_no", "harmbench_cls"):
        from .llm_yes_no import LLMYesNoJudge

        return LLMYesNoJudge(model_dir, template=spec.get("template", "harmbench"), **common)
    from .guards import LlamaGuardJudge, ShieldGemmaJudge, StrongRejectJudge, WildGuardJudge

    common.update(decode=spec.get("decode", "logits"))
    if "max_new_tokens" in spec:
        common["max_new_tokens"] = int(spec["max_new_tokens"])
    if kind == "llama_guard":
        return LlamaGuardJudge(model_dir, **common)
    if kind == "shieldgemma":
        return ShieldGemmaJudge(model_dir, policies=tuple(spec.get("policies", ["dangerous"])), **common)
    if kind == "wildguard":
        return WildGuardJudge(model_dir, **common)
    return StrongRejectJudge(model_dir, threshold=float(spec.get("threshold", 0.5)), **common)


def judge_table(judge: Judge, name: str, generations: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    """Label every generation of a cell; fail loudly when the judge labelled nothing."""
    merged = generations.merge(prompts[["prompt_id", "text"]], on="prompt_id", how="left", validate="m:1")
    if merged["text"].isna().any():
        missing = merged.loc[merged["text"].isna(), "prompt_id"].unique()[:5]
        raise ValueError(f"generations name prompts that are not in the prompt files: {list(missing)}")
    labels = judge.label(merged["text"].tolist(), merged["response"].tolist())
    if len(labels) != len(merged):
        raise JudgeFailed(f"judge {name} returned {len(labels)} labels for {len(merged)} items")
    if len(labels) and labels["error"].notna().all():
        raise JudgeFailed(f"judge {name} failed on every item; first error: {labels['error'].iat[0]}")
    out = pd.concat([merged[["prompt_id", "sample"]].reset_index(drop=True),
                     labels[LABEL_COLUMNS].reset_index(drop=True)], axis=1)
    out.insert(2, "judge", name)
    out["unsafe"] = out["unsafe"].astype("boolean")
    out["refusal"] = out["refusal"].astype("boolean")
    out["score"] = out["score"].astype("float64")
    out["raw"] = out["raw"].astype("string")
    out["error"] = out["error"].astype("string")
    return out[JUDGEMENT_COLUMNS]
