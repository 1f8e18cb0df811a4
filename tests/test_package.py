"""The package's shape: ``shmq/__init__.py`` is a face (every public name listed in
``__all__``) over modules that import each other without a cycle, and at the top only."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import shmq

PACKAGE = Path(shmq.__file__).resolve().parent


def test_all_lists_exactly_the_public_names() -> None:
    public = {n for n in dir(shmq) if not n.startswith("_") and not inspect.ismodule(getattr(shmq, n))}
    assert set(shmq.__all__) == public | {"__version__"}
    assert len(shmq.__all__) == len(set(shmq.__all__)), "a name is listed twice"


def test_star_import_gives_every_public_name() -> None:
    namespace: dict[str, object] = {}
    exec("from shmq import *", namespace)
    assert {n for n in namespace if n != "__builtins__"} == set(shmq.__all__)
    assert namespace["Queue"] is shmq.Queue


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


SOURCES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The shmq modules an import statement of ``module`` names (``from M import name`` counts
    as M, or as M.name where that is a module)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.split(".")[0] == "shmq"}
    base = (node.module or "").split(".") if node.level == 0 else module.split(".")
    if node.level:
        if not SOURCES[module].name == "__init__.py":
            base.pop()  # relative to the module's package
        base = base[: len(base) - (node.level - 1)] + ([node.module] if node.module else [])
    if base[0] != "shmq":
        return set()
    package = ".".join(base)
    return {f"{package}.{a.name}" if f"{package}.{a.name}" in SOURCES else package for a in node.names}


def _import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """shmq's modules -> the shmq modules each imports; and the imports made inside functions."""
    graph: dict[str, set[str]] = {}
    lazy: list[str] = []
    for module, path in SOURCES.items():
        tree = ast.parse(path.read_text(), str(path))
        in_functions = {
            id(inner)
            for f in ast.walk(tree)
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            for inner in ast.walk(f)
        }
        graph[module] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = _imported(module, node) - {module}
                if names and id(node) in in_functions:
                    lazy.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {', '.join(sorted(names))}")
                graph[module] |= names
    return graph, lazy


def test_imports_are_at_the_top() -> None:
    _, lazy = _import_graph()
    assert not lazy, "imports inside functions (usually hiding an import cycle): " + "; ".join(lazy)


def test_modules_import_each_other_without_a_cycle() -> None:
    graph, _ = _import_graph()
    assert {"shmq", "shmq._common", "shmq._queue", "shmq._broadcast"} <= set(graph)
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module) :] + [module]))
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
