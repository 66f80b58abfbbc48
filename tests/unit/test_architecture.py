"""The package's shape, checked from its imports: no cycle, imports flow down the layers, and the
pure deciders reach no I/O. The layer order is written once, here (docs/architecture.md draws it).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "daemon"

# Bottom first. A module may import its own package and anything in a lower layer; packages that
# share a layer are peers and import nothing of each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("daemon.errors", "daemon.redact", "daemon.times", "daemon.clock", "daemon.logs"),
    ("daemon.model",),
    ("daemon.serving",),
    ("daemon.db",),
    ("daemon.pipedrive",),
    ("daemon.metrics",),
    ("daemon.payloads",),
    ("daemon.triggers",),
    ("daemon.config",),
    ("daemon.polling", "daemon.delivery", "daemon.actions", "daemon.instant"),
    ("daemon.status",),
    ("daemon.service",),
    ("daemon.dev",),
    ("daemon.cli",),
    ("daemon.__main__",),
)

# Pure deciders: table-tested without sockets or a database, so they must not reach I/O.
DECIDERS = (
    "daemon.polling.change_feed",
    "daemon.polling.schedule",
    "daemon.delivery.slots",
    "daemon.delivery.verdicts",
    "daemon.delivery.retry_policy",
    "daemon.pipedrive.token_budget",
    "daemon.triggers.filters",
    "daemon.instant.decide",
    "daemon.instant.coalesce",
    "daemon.instant.nudges",
)

# A module that imports one of these talks to the outside world.
IO_LIBRARIES = ("sqlalchemy", "httpx", "aiohttp", "starlette", "uvicorn", "socket", "subprocess")

MAX_TOP_LEVEL_MODULES = 12


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, ast.Module]:
    return {_name(path): ast.parse(path.read_text()) for path in PACKAGE.rglob("*.py")}


def _imported(tree: ast.Module) -> Iterator[str]:
    """Every module an import statement names, wherever it stands (functions and TYPE_CHECKING
    blocks included: a loop through them is still a loop). `from pkg import sub` names `sub`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in _modules() else node.module


@cache
def _graph() -> dict[str, frozenset[str]]:
    """Module -> the project's modules it imports. A module's own packages are left out: Python
    runs them first whatever the module says, so they are no edge of the module's making."""
    modules = _modules()
    return {
        name: frozenset(
            dep
            for dep in _imported(tree)
            if dep in modules and dep != name and not name.startswith(dep + ".")
        )
        for name, tree in modules.items()
    }


def _layer(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        if module != "daemon":
            _layer(module)


def test_no_import_cycle() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph[node]):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == [], f"import cycles: {cycles}"


def test_imports_flow_down_the_layers() -> None:
    wrong = [
        f"{module} (layer {_layer(module)}) imports {dep} (layer {_layer(dep)})"
        for module, deps in _graph().items()
        if module != "daemon"
        for dep in deps
        if dep != "daemon" and _package(dep) != _package(module) and _layer(dep) >= _layer(module)
    ]
    assert wrong == []


def _reach(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(_graph()[current])
    return seen


def _does_io(module: str) -> bool:
    return any(name.split(".")[0] in IO_LIBRARIES for name in _imported(_modules()[module]))


@pytest.mark.parametrize("decider", DECIDERS)
def test_pure_deciders_reach_no_io(decider: str) -> None:
    assert [module for module in sorted(_reach(decider)) if _does_io(module)] == []


def test_each_package_says_what_lives_there_and_what_it_may_import() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(docstring.split()) >= 12, f"{init}: docstring too thin: {docstring!r}"


def test_the_top_level_stays_small() -> None:
    top = [path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py"]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, sorted(top)
