"""Judges behind one interface: ``label(prompts, responses) -> table``, registered by kind.

The table has one row per item, in order, with columns unsafe (bool|null), score (float|null,
P(unsafe)), refusal (bool|null), refusal_score (float|null, P(refusal): a judge that reads its
refusal verdict from token probabilities), raw (str), error (str|null). A judge that labels only
the refusal axis (kind refusal_lm; judge_axes.py) leaves unsafe and score null on every item: it
abstains on that axis. A judge that fails on one item sets ``error`` and leaves its labels null;
that item's vote then leaves the judge out. What counts
as a failure, and how many fail a job, is one rule for every kind (failures.py).

``safetygrid judge`` (judging any file of prompt and response rows outside the workflow) is file.py.
"""

from __future__ import annotations

import inspect
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from .failures import FailurePolicy, JudgeFailed, check_failed_share, screen_labels

__all__ = ["FailurePolicy", "Judge", "JudgeFailed", "judge_table", "label_items", "make_judge"]

LABEL_COLUMNS = ["unsafe", "score", "refusal", "refusal_score", "raw", "error"]
JUDGEMENT_COLUMNS = ["prompt_id", "sample", "judge", *LABEL_COLUMNS]


class Judge(Protocol):
    def label(self, prompts: Sequence[str], responses: Sequence[str]) -> pd.DataFrame: ...


# adding a judge kind: one module with a class that has ``from_spec(spec, model_dir)``, one line here
JUDGE_REGISTRY = {
    "refusal_prefix": ".refusal_prefix:RefusalPrefixJudge",
    "harmbench_cls": ".llm_yes_no:LLMYesNoJudge",
    "llm_yes_no": ".llm_yes_no:LLMYesNoJudge",
    "refusal_lm": ".llm_yes_no:RefusalLMJudge",
    "llama_guard": ".guards:LlamaGuardJudge",
    "shieldgemma": ".guards:ShieldGemmaJudge",
    "wildguard": ".guards:WildGuardJudge",
    "strongreject": ".guards:StrongRejectJudge",
}
GUARD_KINDS = ("llama_guard", "shieldgemma", "wildguard", "strongreject")
JUDGE_KINDS = tuple(JUDGE_REGISTRY)


def make_judge(spec: Mapping[str, Any], model_dir: str | None = None) -> Judge:
    """The judge a config entry describes; ``model_dir``: its model's folder, the fetched files or
    the precision of the grid the entry names (one whose status.json says unsupported fails). A spec
    whose ``protocol`` names a native protocol (config load resolves it from the judge model's
    source, native/) runs the guard checkpoint as its authors do; otherwise the kind's format is
    the user turn of the model's chat template."""
    from ..registry import resolve
    from .native import NATIVE_REGISTRY

    status_file = Path(model_dir) / "status.json" if model_dir else None
    status = json.loads(status_file.read_text()) if status_file is not None and status_file.is_file() else {}
    if not status.get("supported", True):
        raise ValueError(f"judge model {model_dir}: this precision could not be made for the model "
                         f"({status.get('reason')}); name another precision in the judge's entry, or none")
    protocol = spec.get("protocol")
    if protocol in NATIVE_REGISTRY:
        judge_class = resolve(NATIVE_REGISTRY, protocol, "native protocol", f"{__name__}.native")
    else:
        judge_class = resolve(JUDGE_REGISTRY, spec["kind"], "judge kind", __name__)
    try:
        return judge_class.from_spec(spec, model_dir)
    except ValueError as exc:
        # the judge cannot load (no verdict token, no usable chat template, ...): name its model
        where = f"judge model {Path(model_dir).name} ({model_dir})" if model_dir else f"a {spec['kind']} judge"
        raise ValueError(f"{where}: {exc}") from exc


@contextmanager
def loaded_judge(spec: Mapping[str, Any], model_dir: str | None = None) -> Iterator[Judge]:
    """``make_judge``'s judge for the length of a ``with`` block; its engine is freed on leaving it
    (LMJudge.close), not by a finaliser at interpreter exit, where llama-cpp-python's would print a
    traceback into the job's log."""
    judge = make_judge(spec, model_dir)
    try:
        yield judge
    finally:
        close = getattr(judge, "close", None)  # judges without a model have nothing to free
        if close is not None:
            close()


def label_items(judge: Judge, texts: Sequence[str], responses: Sequence[str],
                behaviors: Sequence[str] | None = None, contexts: Sequence[str | None] | None = None) -> pd.DataFrame:
    """``judge.label`` on what the model was sent (``texts``), or, for a judge that reads contexts
    (the HarmBench classifier's contextual prompt) when any item has one, on the bare behaviours
    and their contexts, as HarmBench's ``compute_results_classifier`` fills its prompt."""
    if contexts is not None and any(contexts) and "contexts" in inspect.signature(judge.label).parameters:
        return judge.label(behaviors if behaviors is not None else texts, responses,  # type: ignore[call-arg]
                           contexts=contexts)
    return judge.label(texts, responses)


def item_verdict_mass(judge: Judge, n_items: int) -> np.ndarray | None:
    """Per item, the smallest probability the verdict words held in any verdict the judge read from
    its next-token probabilities during its last labelling (None: it read none, e.g. a model-free
    judge or a generated answer without scores)."""
    masses = getattr(judge, "verdict_masses", None)
    if not masses:
        return None
    wrong = [len(m) for m in masses if len(m) != n_items]
    if wrong:
        raise RuntimeError(f"the judge read verdicts of {wrong[0]} sequences for {n_items} items; each verdict read "
                           "must cover every item once")
    return np.minimum.reduce([np.asarray(m, dtype=float) for m in masses])


def judge_table(judge: Judge | None, name: str, generations: pd.DataFrame, prompts: pd.DataFrame,
                policy: FailurePolicy | None = None) -> pd.DataFrame:
    """Label every generation of a cell. An item whose verdict could not be read is an error
    (failures.py); more failed items than ``policy`` allows (``FailurePolicy.from_spec`` of the
    judge's config entry; absent: the defaults) fail the job with JudgeFailed. With no generations
    there is nothing to ask, and ``judge`` may be None (a model need not be loaded for it)."""
    policy = policy or FailurePolicy()
    # a contextual HarmBench behaviour's text is its context, then the behaviour (prompts/sources.py);
    # `behavior` and `context` keep the two apart for the judges that read them separately
    columns = ["prompt_id", "text", *[c for c in ("behavior", "context") if c in prompts.columns]]
    merged = generations.merge(prompts[columns], on="prompt_id", how="left", validate="m:1")
    if merged["text"].isna().any():
        missing = merged.loc[merged["text"].isna(), "prompt_id"].unique()[:5]
        raise ValueError(f"generations name prompts that are not in the prompt files: {list(missing)}")
    contexts = [c if isinstance(c, str) and c else None for c in merged["context"]] if "context" in merged else None
    behaviors = merged["behavior"].fillna(merged["text"]).tolist() if "behavior" in merged else None
    if isinstance(getattr(judge, "verdict_masses", None), list):
        judge.verdict_masses.clear()  # type: ignore[attr-defined]
    if judge is None and len(merged):
        raise ValueError(f"judge {name}: {len(merged)} items to label but no judge was given")
    labels = (pd.DataFrame(columns=LABEL_COLUMNS) if judge is None else
              label_items(judge, merged["text"].tolist(), merged["response"].tolist(), behaviors, contexts))
    if len(labels) != len(merged):
        raise JudgeFailed(f"judge {name} returned {len(labels)} labels for {len(merged)} items")
    # a judge that gives no refusal score (most kinds) leaves the column empty
    labels = labels.reset_index(drop=True).reindex(columns=LABEL_COLUMNS)
    labels = screen_labels(labels, item_verdict_mass(judge, len(merged)),
                           policy.min_verdict_mass)
    item_names = [f"{p} sample {s}" for p, s in zip(merged["prompt_id"], merged["sample"])]
    check_failed_share(pd.Series(labels["error"].to_numpy(), index=item_names), name, policy.max_failed_share)
    out = pd.concat([merged[["prompt_id", "sample"]].reset_index(drop=True),
                     labels[LABEL_COLUMNS].reset_index(drop=True)], axis=1)
    out.insert(2, "judge", name)
    out["unsafe"] = out["unsafe"].astype("boolean")
    out["refusal"] = out["refusal"].astype("boolean")
    out["score"] = out["score"].astype("float64")
    out["refusal_score"] = out["refusal_score"].astype("float64")
    out["raw"] = out["raw"].astype("string")
    out["error"] = out["error"].astype("string")
    return out[JUDGEMENT_COLUMNS]
