"""The house's import structure: every module of safetygrid imports in the core environment, and no
two modules, nor two stage packages, reach each other through imports.

The circle check reads the source with ``ast`` rather than watching Python import: an import moved
into a function hides a circle from the interpreter at load time (the usual workaround), but the two
modules still need each other, so a function-level import counts like a module-level one. Imports
under ``if TYPE_CHECKING:`` never run and are left out. Importing ``a.b.c`` also runs the ``__init__``
of ``a.b`` (unless the importer sits inside it, when it is already loading), so that is an edge too;
a name imported from a package that exports it lazily (``_EXPORTS`` in its ``__init__``) is an edge
to the module that defines it.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import safetygrid

PACKAGE = "safetygrid"
SOURCE = Path(safetygrid.__file__).resolve().parent


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__)."""
    out = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join([PACKAGE, *parts])] = path
    return out


MODULES = module_files()


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def lazy_exports(package: str) -> dict[str, str]:
    """A package's ``_EXPORTS`` (name -> submodule, imported by its ``__getattr__``), if it has one."""
    for node in ast.parse(MODULES[package].read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets):
            return {k: f"{package}.{v}" for k, v in ast.literal_eval(node.value).items()}
    return {}


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imported_modules(name: str) -> dict[str, int]:
    """The package's modules that ``name`` imports anywhere in its source, each with the line of its
    first import."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    base = name if is_package(name) else name.rpartition(".")[0]  # what a relative import is relative to
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        for module in [*ancestors(target), target]:
            if module in MODULES and module != name and module not in ancestors(name):
                found.setdefault(module, line)

    for node in ast.walk(tree):
        if _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                source = ".".join(anchor + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            add(source, node.lineno)
            exports = lazy_exports(source) if source in MODULES and is_package(source) else {}
            for alias in node.names:
                add(f"{source}.{alias.name}", node.lineno)  # `from package import submodule`
                if alias.name in exports:
                    add(exports[alias.name], node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    return {name: imported_modules(name) for name in MODULES}


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as one closed
    path through it: [a, b, ..., a]."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_closed_path(graph, set(c)) for c in components]


def _closed_path(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A shortest closed path from the component's first module back to itself (breadth first; the
    graph has no self-edges)."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target not in component:
                    continue
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no closed path through {sorted(component)}")


def describe(path: list[str], graph: dict[str, dict[str, int]]) -> str:
    steps = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in zip(path, path[1:])]
    return "; ".join(steps)


def test_no_module_reaches_itself_through_imports() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import circle(s), counting imports inside functions:\n" + "\n".join(
        describe(path, graph) for path in found)


def stage(module: str) -> str | None:
    """The stage package (``safetygrid.X``) a module belongs to; None for the root package and the
    loose modules beside the stages (config, io, ...), which every stage may use."""
    parts = module.split(".")
    top = ".".join(parts[:2])
    return top if len(parts) > 1 and is_package(top) else None


def package_graph(graph: dict[str, dict[str, int]]) -> tuple[dict[str, dict[str, int]], dict[tuple[str, str], str]]:
    """The graph between stage packages (X imports Y when any module under X imports one under Y)
    and, for each edge, the first module import that makes it ("module (line n) -> module")."""
    packages: dict[str, dict[str, int]] = {}
    witness: dict[tuple[str, str], str] = {}
    for module, targets in sorted(graph.items()):
        source = stage(module)
        if source is None:
            continue
        edges = packages.setdefault(source, {})
        for target, line in targets.items():
            if stage(target) not in (None, source):
                edges.setdefault(stage(target), line)
                witness.setdefault((source, stage(target)), f"{module} (line {line}) -> {target}")
    for edges in list(packages.values()):
        for target in edges:
            packages.setdefault(target, {})
    return packages, witness


def test_no_stage_package_reaches_itself_through_imports() -> None:
    """Stricter than the module check: two packages whose modules need each other (without a module
    circle) are one stage split in two, or a shared piece that belongs below both."""
    graph, witness = package_graph(import_graph())
    found = cycles(graph)
    assert not found, "package circle(s):\n" + "\n".join(
        "; ".join(witness[a, b] for a, b in zip(path, path[1:])) for path in found)


def test_the_circle_finder_finds_a_circle_and_names_it() -> None:
    graph = {"a": {"b": 3}, "b": {"c": 5}, "c": {"a": 7, "d": 1}, "d": {}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert describe(["a", "b", "c", "a"], graph) == "a (line 3) -> b; b (line 5) -> c; c (line 7) -> a"
    assert cycles({"a": {"b": 1}, "b": {}}) == []


def test_a_function_level_import_is_an_edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hidden circle the check exists for: a module-level import one way, a function-level one back."""
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from .sub.b import g\n")
    (tmp_path / "pkg" / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..c import h\n"
        "def g():\n    from ..a import f\n")
    (tmp_path / "pkg" / "c.py").write_text("")
    files = {"pkg": tmp_path / "pkg" / "__init__.py", "pkg.sub": tmp_path / "pkg" / "sub" / "__init__.py",
             "pkg.a": tmp_path / "pkg" / "a.py", "pkg.sub.b": tmp_path / "pkg" / "sub" / "b.py",
             "pkg.c": tmp_path / "pkg" / "c.py"}
    monkeypatch.setattr(sys.modules[__name__], "MODULES", files)
    graph = import_graph()
    assert graph["pkg.a"] == {"pkg.sub": 1, "pkg.sub.b": 1}
    assert graph["pkg.sub.b"] == {"pkg.a": 5}  # the TYPE_CHECKING import of pkg.c is no edge
    assert cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.a"]]


def test_no_lazy_face_exports_a_name_its_submodule_has() -> None:
    """A package whose ``__getattr__`` imports a name from submodule ``x`` must not export a name
    ``x``: importing the submodule binds ``x`` on the package, after which the package hands out the
    module instead of the name (which one depends on what was imported before)."""
    clashes = []
    for package in sorted(m for m in MODULES if is_package(m)):
        submodules = {m.rpartition(".")[2] for m in MODULES if m.rpartition(".")[0] == package}
        clashes += [f"{package}.{name}" for name in sorted(set(lazy_exports(package)) & submodules)]
    assert not clashes, f"lazily exported names that are also submodules: {clashes}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module: str) -> None:
    # no module is skipped: engines, judges and quantize import vLLM and llmcompressor (the optional
    # environments' packages) inside the functions that use them, so every module loads in the core env
    importlib.import_module(module)
