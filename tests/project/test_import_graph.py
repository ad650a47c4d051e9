"""The import graph of `components` and `flows`, read from the source with `ast` (nothing is imported): it has no
cycle, and `components/` imports neither Prefect nor DVC (README: Design; the flows own both).

Every `import` / `from … import` counts, those inside functions too (a deferred import is still a dependency).
`from pkg import name` is an import of `pkg.name` when that is a module, else of `pkg`. A package's `__init__`
importing its own submodules is no cycle worth reporting (the submodule needs the package imported first anyway).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("components", "flows")
FORBIDDEN_IN_COMPONENTS = ("prefect", "dvc")
# Cycles still allowed, each with the reason it is: none.
ALLOWED_CYCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    """Dotted module name → source file, for every .py file of the packages."""
    found = {}
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            parts = list(file.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = file
    return found


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _imports(name: str, file: Path, modules: dict[str, Path]) -> set[str]:
    """Every module (of any package: `torch`, `dvc.repo`, `components.io` …) that `file` imports, absolute names."""
    base = name if file.name == "__init__.py" else name.rpartition(".")[0]  # what `from . import` is relative to
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                target = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                child = f"{target}.{alias.name}"
                found.add(child if child in modules else target)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports (a package's own submodules left out of its `__init__`'s edges)."""
    modules = _modules()
    graph = {}
    for name, file in modules.items():
        edges = {target for target in _imports(name, file, modules) if target in modules and target != name}
        if _is_package(name, modules):
            edges = {target for target in edges if not target.startswith(f"{name}.")}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted, as import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_deferred_and_relative_imports(tmp_path):
    graph = import_graph()
    assert "components.stages.common" in graph["components.cli"]  # imported inside main()
    assert "components.models" in graph["components.stages.stage1"]  # `from components.models import build_model`
    assert "components.data.split" not in graph["components.data"]  # a package's own submodule: no edge
    file = tmp_path / "sources.py"
    file.write_text("def f():\n    from . import dataset\n    from .. import io\n    from .store import chunked\n")
    modules = {name: Path() for name in ("components.io", "components.data.dataset", "components.data.store")}
    assert _imports("components.data.sources", file, modules) == {
        "components.data.dataset", "components.io", "components.data.store"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_components_and_flows_import_no_cycle():
    found = [cycle for cycle in cycles(import_graph()) if frozenset(cycle) not in ALLOWED_CYCLES]
    assert not found, "import cycles: " + "; ".join(" ↔ ".join(cycle) for cycle in found)


def test_components_import_neither_prefect_nor_dvc():
    modules = _modules()
    offenders = sorted(
        f"{name} imports {target}"
        for name, file in modules.items() if name.startswith("components")
        for target in _imports(name, file, modules)
        if target.split(".")[0] in FORBIDDEN_IN_COMPONENTS
    )
    assert not offenders, "; ".join(offenders)
