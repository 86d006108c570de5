"""The files a job reads besides its other jobs' outputs, from its own config entry alone.

The workflow lists them as the job's inputs, so editing a judge template, the refusal prefixes or the
calibration text reruns exactly the jobs that read it; config load checks that each exists, naming
the key that points at it. Paths are relative to the working directory, as the jobs read them.

The judges' lists mirror what each judge class opens when it loads (judges/lm.py, judges/guards.py,
judges/native/): tests/test_resource_files.py loads every kind and protocol and compares the files
it read with these lists. Kept apart from the judge classes so config load imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

JUDGES_DIR = "resources/judges"
NATIVE_DIR = f"{JUDGES_DIR}/native"
DEFAULT_REFUSAL_PREFIXES = f"{JUDGES_DIR}/refusal_prefixes.txt"
DEFAULT_CALIBRATION_TEXT = "resources/calibration.txt"
BENIGN_PROMPTS = "resources/prompts/benign.csv"

# the instruct protocol: the kind's format (judges/llm_yes_no.TEMPLATES, the guards' template_name)
YES_NO_TEMPLATES = {"harmbench": "harmbench_cls", "harmbench_prefix": "harmbench_cls_prefix"}
REFUSAL_TEMPLATES = {"refusal": "refusal_cls", "attempt": "refusal_attempt_cls"}
INSTRUCT_FILES = {
    "llama_guard": ("llama_guard.txt",),
    "shieldgemma": ("shieldgemma.txt", "shieldgemma_policies.yaml"),
    "wildguard": ("wildguard.txt",),
    "strongreject": ("strongreject.txt",),
}
# the native protocols' verbatim prompts (llama_guard_3's prompt is the checkpoint's own chat template)
NATIVE_FILES = {
    "harmbench_llama2": ("harmbench_llama2.txt", "harmbench_llama2_contextual.txt"),
    "harmbench_mistral": ("harmbench_mistral.txt", "harmbench_mistral_contextual.txt"),
    "llama_guard_3": (),
    "shieldgemma": ("shieldgemma_policies.yaml", "shieldgemma_prompt_response.txt"),
    "wildguard": ("wildguard.txt",),
    "strongreject_15k": ("strongreject_15k.txt",),
}


def judge_files(spec: Mapping[str, Any]) -> list[str]:
    """The resource files a judge reads: its refusal strings, its template or its native prompts.
    ``spec`` is the judge's entry after config load (a native judge's ``protocol`` resolved)."""
    kind = spec["kind"]
    if kind == "refusal_prefix":
        return [str(spec.get("prefixes", DEFAULT_REFUSAL_PREFIXES))]
    protocol = spec.get("protocol")
    if protocol in NATIVE_FILES:
        return [f"{NATIVE_DIR}/{name}" for name in NATIVE_FILES[protocol]]
    if kind in ("llm_yes_no", "harmbench_cls"):
        return [f"{JUDGES_DIR}/{YES_NO_TEMPLATES[spec.get('template', 'harmbench')]}.txt"]
    if kind == "refusal_lm":
        return [f"{JUDGES_DIR}/{REFUSAL_TEMPLATES[spec.get('template', 'refusal')]}.txt"]
    return [f"{JUDGES_DIR}/{name}" for name in INSTRUCT_FILES[kind]]


def precision_files(spec: Mapping[str, Any]) -> list[str]:
    """The resource files a quantize job reads: the calibration text of a GPTQ or AWQ precision."""
    if spec["method"] in ("gptq", "awq"):
        return [str(spec.get("calibration_text", DEFAULT_CALIBRATION_TEXT))]
    return []


def promptset_files(promptset: str) -> list[str]:
    """The resource files a prompt set is read from (the wheel-borne sets are pinned by version)."""
    return [BENIGN_PROMPTS] if promptset == "benign_local" else []


def configured_files(config: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(key, path, "file" or "folder") of every resource the config makes a job read."""
    for role, pick in config["prompts"].items():
        for path in promptset_files(pick["promptset"]):
            yield f"prompts.{role}.promptset", path, "file"
    for name, spec in config["precisions"].items():
        for path in precision_files(spec):
            yield f"precisions.{name}.calibration_text", path, "file"
    for name, spec in config["judges"].items():
        key = {"refusal_prefix": "prefixes", "llm_yes_no": "template", "harmbench_cls": "template",
               "refusal_lm": "template"}.get(spec["kind"])
        if spec.get("protocol"):
            key = "protocol"
        for path in judge_files(spec):
            yield f"judges.{name}" + (f".{key}" if key else ""), path, "file"
    quality = config.get("quality", {})
    if "text" in quality:
        yield "quality.text", str(quality["text"]), "file"
    for i, folder in enumerate(quality.get("task_paths", [])):
        yield f"quality.task_paths.{i}", str(folder), "folder"
    for i, path in enumerate(config.get("validation", {}).get("labelled", [])):
        yield f"validation.labelled.{i}", str(path), "file"
    gold = config.get("adjudication", {}).get("gold")
    if gold:
        yield "adjudication.gold", str(gold), "file"


def missing_files(config: Mapping[str, Any], root: str | Path = ".") -> list[str]:
    """One line per resource the config points at that is not there, naming the key."""
    problems = []
    for key, path, what in configured_files(config):
        target = Path(root) / path
        present = target.is_dir() if what == "folder" else target.is_file()
        if not present:
            problems.append(f"  {key}: the {what} {path} does not exist (paths are relative to the "
                            f"working directory, {Path(root).resolve()})")
    return problems
