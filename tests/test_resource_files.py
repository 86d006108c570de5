"""resource_files.judge_files against what each judge really reads: every kind and protocol is loaded
and run on one item while reads under resources/ are recorded. A judge that starts reading another
file fails here until the list (and with it the workflow's inputs) names it."""

from __future__ import annotations

import builtins
import pathlib
from pathlib import Path
from typing import Any

import pytest
from test_native_judges import BEHAVIOR, FIXTURES, RESPONSE, byte_tokenizer, spec, tiny_guard

from safetygrid.judges import make_judge
from safetygrid.resource_files import judge_files, precision_files

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = ROOT / "resources"


def reads_under_resources(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The set (filled as files are read) of paths under resources/, relative to the repository."""
    seen: set[str] = set()

    def note(path: Any) -> None:
        try:
            resolved = Path(path).resolve()
        except TypeError:
            return  # a file descriptor
        if RESOURCES in resolved.parents:
            seen.add(resolved.relative_to(ROOT).as_posix())

    real_open, real_text, real_bytes = builtins.open, pathlib.Path.read_text, pathlib.Path.read_bytes
    monkeypatch.setattr(builtins, "open", lambda file, *a, **k: (note(file), real_open(file, *a, **k))[1])
    monkeypatch.setattr(pathlib.Path, "read_text", lambda self, *a, **k: (note(self), real_text(self, *a, **k))[1])
    monkeypatch.setattr(pathlib.Path, "read_bytes", lambda self, *a, **k: (note(self), real_bytes(self, *a, **k))[1])
    return seen


INSTRUCT = [
    {"kind": "refusal_prefix"},
    {"kind": "llm_yes_no", "template": "harmbench"},
    {"kind": "harmbench_cls", "template": "harmbench_prefix"},
    {"kind": "refusal_lm", "template": "refusal"},
    {"kind": "refusal_lm", "template": "attempt"},
    {"kind": "llama_guard"},
    {"kind": "shieldgemma", "policies": ["dangerous", "hate"]},
    {"kind": "wildguard"},
    {"kind": "strongreject"},
]


@pytest.mark.parametrize("entry", INSTRUCT, ids=lambda e: f"{e['kind']}-{e.get('template', '')}")
def test_instruct_judges_read_exactly_their_listed_files(entry, tiny_checkpoint, monkeypatch):
    judge_spec = {**entry, "device": "cpu", "batch_size": 2, "max_response_tokens": 32}
    if entry["kind"] != "refusal_prefix":
        judge_spec["model"] = "tiny"
    seen = reads_under_resources(monkeypatch)
    judge = make_judge(judge_spec, None if entry["kind"] == "refusal_prefix" else str(tiny_checkpoint))
    judge.label(["how do i make a cake"], ["sorry i cannot help"])
    assert seen == set(judge_files(judge_spec)) != set()


NATIVE = [
    ("harmbench_cls", "harmbench_llama2", "llama2", None),
    ("llm_yes_no", "harmbench_mistral", "llama2", None),
    ("llama_guard", "llama_guard_3", "llama3", "llama_guard_3_8b.jinja"),
    ("shieldgemma", "shieldgemma", "gemma", None),
    ("wildguard", "wildguard", "llama2", None),
    ("strongreject", "strongreject_15k", "gemma", None),
]


@pytest.mark.parametrize("kind, protocol, family, template", NATIVE, ids=[p for _, p, _, _ in NATIVE])
def test_native_protocols_read_exactly_their_listed_files(kind, protocol, family, template, tmp_path, monkeypatch):
    chat_template = (FIXTURES / template).read_text(encoding="utf-8") if template else None
    checkpoint = tiny_guard(tmp_path, byte_tokenizer(family, chat_template=chat_template))
    judge_spec = spec(kind, protocol)
    seen = reads_under_resources(monkeypatch)
    judge = make_judge(judge_spec, checkpoint)
    judge.label([BEHAVIOR], [RESPONSE])
    assert seen == set(judge_files(judge_spec))


def test_every_listed_judge_file_exists():
    listed = {path for entry in INSTRUCT for path in judge_files(entry)}
    listed |= {path for kind, protocol, _, _ in NATIVE for path in judge_files(spec(kind, protocol))}
    assert [path for path in sorted(listed) if not (ROOT / path).is_file()] == []


def test_only_calibrated_methods_read_the_calibration_text():
    assert precision_files({"method": "gptq", "bits": 4}) == ["resources/calibration.txt"]
    assert precision_files({"method": "awq", "bits": 4, "calibration_text": "mine.txt"}) == ["mine.txt"]
    assert precision_files({"method": "gguf", "type": "Q8_0"}) == precision_files({"method": "none"}) == []
