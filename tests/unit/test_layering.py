"""The layering is a tested fact (as click's `test_imports`): the pure core imports no SDK,
adapter, service or I/O module; no module reaches into another's underscore names; no import
cycle; modules a reader takes in one sitting. Read from the source with `ast`, so nothing here
depends on what happens to be imported at test time."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGES = ("shared", "emulator", "bench", "tests")
TOP_MODULES = ("function_app",)

# What the pure core may not import: Azure SDKs and HTTP clients, the adapters, the services,
# the command line, logging/telemetry, and the standard library's I/O modules.
CORE = "shared.core"
CORE_FORBIDDEN = (
    "azure", "requests", "urllib3", "aiohttp", "opentelemetry",
    "shared.azure", "shared.storage", "shared.services", "shared.cli", "shared.observability",
    "os", "io", "sys", "pathlib", "socket", "ssl", "subprocess", "shutil", "tempfile", "glob",
    "http", "urllib.request", "logging", "sqlite3", "asyncio", "concurrent", "signal",
)

MAX_MODULE_LINES = 400
# The one module allowed to be longer: a tokenizer + parser + compiler for KQL, one evaluator.
LONG_MODULES = {"emulator.graph.kql"}
MAX_FUNCTION_LINES = 60


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: int
    imports: list[tuple[str, int]] = field(default_factory=list)  # (module imported, line)
    # (module, name, line) for every `from module import _name`
    private_imports: list[tuple[str, str, int]] = field(default_factory=list)
    # (module, name, line) for every `alias._name` where alias is an imported module
    private_attributes: list[tuple[str, str, int]] = field(default_factory=list)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Module]:
    paths = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    paths += [ROOT / f"{m}.py" for m in TOP_MODULES]
    found = {}
    for path in paths:
        text = path.read_text(encoding="utf-8")
        found[_module_name(path)] = Module(_module_name(path), path, ast.parse(text),
                                           len(text.splitlines()))
    for mod in found.values():
        _read_imports(mod, found)
    return found


def _resolve(mod: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.name.split(".")
    if mod.path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _read_imports(mod: Module, known: dict[str, Module]) -> None:
    module_aliases: dict[str, str] = {}
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                mod.imports.append((alias.name, node.lineno))
                if alias.name in known:
                    module_aliases[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(mod, node)
            if target == "__future__":
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                if full in known:
                    mod.imports.append((full, node.lineno))
                    module_aliases[alias.asname or alias.name] = full
                else:
                    mod.imports.append((target, node.lineno))
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        mod.private_imports.append((target, alias.name, node.lineno))
    for node in ast.walk(mod.tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            mod.private_attributes.append((module_aliases[node.value.id], node.attr,
                                           node.lineno))


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_core_imports_no_sdk_adapter_service_or_io_module():
    wrong = [f"{m.name}:{line} imports {target}"
             for m in modules().values() if _within(m.name, CORE)
             for target, line in m.imports
             if any(_within(target, bad) for bad in CORE_FORBIDDEN)]
    assert wrong == []


def test_no_module_imports_another_modules_underscore_names():
    wrong = [f"{m.name}:{line} uses {target}.{name}"
             for m in modules().values()
             for target, name, line in m.private_imports + m.private_attributes
             if target != m.name]
    assert wrong == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    known = modules()
    graph: dict[str, set[str]] = {}
    for m in known.values():
        edges = set()
        for target, _ in m.imports:
            # a package's submodule importing its own package's __init__ is not a cycle of
            # interest (Python runs the __init__ first); every other edge counts, including
            # imports inside functions and under TYPE_CHECKING.
            if target in known and target != m.name and not _within(m.name, target):
                edges.add(target)
        graph[m.name] = edges
    assert _cycles(graph) == []


def _source_modules() -> list[Module]:
    return [m for m in modules().values() if not _within(m.name, "tests")]


def test_modules_are_short_enough_to_read_in_one_sitting():
    long = sorted(f"{m.name}: {m.lines} lines" for m in _source_modules()
                  if m.lines > MAX_MODULE_LINES and m.name not in LONG_MODULES)
    assert long == []


def test_functions_are_short():
    long = []
    for m in _source_modules():
        if m.name in LONG_MODULES:
            continue
        for node in ast.walk(m.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{m.name}.{node.name}: {size} lines")
    assert sorted(long) == []


@pytest.mark.parametrize("rule", ["cycle", "private"])
def test_the_checks_catch_what_they_are_for(rule):
    """The checks themselves, on a made-up graph and module, so a broken check cannot pass."""
    if rule == "cycle":
        assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
        assert _cycles({"a": {"b"}, "b": set()}) == []
    else:
        tree = ast.parse("from shared.core import arm_ids\nfrom x import _y\narm_ids._rule('vm')\n")
        mod = Module("probe", ROOT / "probe.py", tree, 3)
        _read_imports(mod, {"shared.core.arm_ids": mod})
        assert mod.private_imports == [("x", "_y", 2)]
        assert mod.private_attributes == [("shared.core.arm_ids", "_rule", 3)]
