"""Engines and judge kinds are registries of ``module:Class``: every registered name imports, and a
wrong name gets the closest known ones."""

from __future__ import annotations

import pytest

from safetygrid.engines import ENGINE_REGISTRY, ENGINES, EngineUnavailable, make_engine
from safetygrid.judges import JUDGE_REGISTRY, make_judge
from safetygrid.judges.lm import TEMPLATE_DIR
from safetygrid.judges.refusal_prefix import RefusalPrefixJudge
from safetygrid.registry import UnknownName, resolve


@pytest.mark.parametrize("registry, package", [(ENGINE_REGISTRY, "safetygrid.engines"),
                                               (JUDGE_REGISTRY, "safetygrid.judges")])
def test_every_registered_name_imports(registry, package):
    for name in registry:
        cls = resolve(registry, name, "entry", package)
        assert isinstance(cls, type), name
    assert tuple(ENGINE_REGISTRY) == ENGINES


PREFIX_TEMPLATE = (TEMPLATE_DIR / "harmbench_cls_prefix.txt").read_text(encoding="utf-8")
ATTEMPT_TEMPLATE = (TEMPLATE_DIR / "refusal_attempt_cls.txt").read_text(encoding="utf-8")
# a config entry per kind, with a value away from each default, and where the built judge keeps it
ENTRIES = {
    "harmbench_cls": ({"template": "harmbench_prefix"}, lambda j: j.template == PREFIX_TEMPLATE),
    "llm_yes_no": ({"template": "harmbench_prefix"}, lambda j: j.template == PREFIX_TEMPLATE),
    "refusal_lm": ({"template": "attempt"}, lambda j: j.template == ATTEMPT_TEMPLATE and not j.yes_is_refusal),
    "llama_guard": ({"decode": "generate", "max_new_tokens": 9},
                    lambda j: (j.decode, j.max_new_tokens) == ("generate", 9)),
    "shieldgemma": ({"policies": ["dangerous", "harassment"]},
                    lambda j: list(j.policies) == ["dangerous", "harassment"]),
    "wildguard": ({"decode": "generate"}, lambda j: j.decode == "generate"),
    "strongreject": ({"threshold": 0.2}, lambda j: j.threshold == 0.2),
}


def test_every_judge_kind_builds_from_a_config_entry_and_keeps_its_settings(tiny_checkpoint, tmp_path):
    assert set(ENTRIES) | {"refusal_prefix"} == set(JUDGE_REGISTRY)
    for kind, (extra, kept) in ENTRIES.items():
        judge = make_judge({"kind": kind, "batch_size": 3, "max_response_tokens": 7, "device": "cpu", **extra},
                           str(tiny_checkpoint))
        assert type(judge) is resolve(JUDGE_REGISTRY, kind, "judge kind", "safetygrid.judges"), kind
        assert (judge.batch_size, judge.max_response_tokens) == (3, 7), kind
        assert kept(judge), (kind, extra)
        assert len(judge.label(["how do i make a cake"], ["sorry cannot help"])) == 1, kind

    prefixes = tmp_path / "prefixes.txt"
    prefixes.write_text("# a comment\nsorry\nno way\n")
    judge = make_judge({"kind": "refusal_prefix", "prefixes": str(prefixes)})
    assert type(judge) is RefusalPrefixJudge and judge.prefixes == ("sorry", "no way")
    assert judge.label(["p"], ["sorry, I cannot"])["refusal"].tolist() == [True]


def test_unknown_names_get_the_closest_known_ones():
    with pytest.raises(UnknownName, match=r"unknown judge kind 'llama_gaurd'; did you mean llama_guard"):
        make_judge({"kind": "llama_gaurd"})
    with pytest.raises(EngineUnavailable, match=r"unknown engine 'llamacpp'; did you mean llama_cpp"):
        make_engine("llamacpp", "unused")
