"""Name -> ``module:Class`` registries whose classes are imported only when chosen (vLLM or
llama.cpp load only in the jobs that use them), with errors that name the closest known names."""

from __future__ import annotations

import difflib
from importlib import import_module
from typing import Any, Callable, Mapping


class UnknownName(ValueError):
    """A name no registry entry has; the message lists the closest ones."""


def resolve(registry: Mapping[str, str], name: str, what: str, package: str) -> Any:
    """The class registered as ``name``; ``package`` anchors the registry's relative module paths."""
    if name not in registry:
        close = difflib.get_close_matches(name, list(registry), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownName(f"unknown {what} {name!r}{hint} (known: {', '.join(sorted(registry))})")
    module, _, attribute = registry[name].partition(":")
    return getattr(import_module(module, package), attribute)


def lazy_attributes(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A package's module-level ``__getattr__``: each exported name is imported from its submodule
    (``exports``: name -> submodule) when first asked for, so a package loads its heavy modules
    (scipy, statsmodels, torch) only where a step uses them."""
    def attribute(name: str) -> Any:
        if name in exports:
            return getattr(import_module(f".{exports[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return attribute
