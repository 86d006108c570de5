"""Engines and judge kinds are registries of ``module:Class``: every registered name imports, and a
wrong name gets the closest known ones."""

from __future__ import annotations

import pytest

from safetygrid.engines import ENGINE_REGISTRY, ENGINES, EngineUnavailable, make_engine
from safetygrid.judges import JUDGE_REGISTRY, make_judge
from safetygrid.registry import UnknownName, resolve


@pytest.mark.parametrize("registry, package", [(ENGINE_REGISTRY, "safetygrid.engines"),
                                               (JUDGE_REGISTRY, "safetygrid.judges")])
def test_every_registered_name_imports(registry, package):
    for name in registry:
        cls = resolve(registry, name, "entry", package)
        assert isinstance(cls, type), name
    assert tuple(ENGINE_REGISTRY) == ENGINES


def test_judge_classes_build_from_a_config_entry():
    for name in JUDGE_REGISTRY:
        assert callable(getattr(resolve(JUDGE_REGISTRY, name, "judge kind", "safetygrid.judges"), "from_spec")), name


def test_unknown_names_get_the_closest_known_ones():
    with pytest.raises(UnknownName, match=r"unknown judge kind 'llama_gaurd'; did you mean llama_guard"):
        make_judge({"kind": "llama_gaurd"})
    with pytest.raises(EngineUnavailable, match=r"unknown engine 'llamacpp'; did you mean llama_cpp"):
        make_engine("llamacpp", "unused")
