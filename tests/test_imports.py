"""The layout of the two packages: no import cycles, leek stands alone, modules stay small.

Imports are read from the source with ``ast``, all of them: at module level, inside
functions and under ``if TYPE_CHECKING:``, since a cycle hidden in a function is still a
cycle. ``leek`` lives in ``client/``, ``leekd`` in ``leekd/``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"leek": ROOT / "client", "leekd": ROOT / "leekd"}
MAX_LINES = 400

BY_PACKAGE = pytest.mark.parametrize("package", ["leek", "leekd"])
PARTS = ("leekd.net", "leekd.engine", "leekd.store", "leekd.cluster")  # meet in leekd.app


@cache
def modules() -> dict[str, Path]:
    """Every project module by dotted name: ``leek.client`` → ``client/client.py``."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def _owner(name: str) -> str | None:
    """The project module that importing ``name`` runs last: its longest known prefix."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules():
            return candidate
        parts.pop()
    return None


def imports_of(name: str) -> set[str]:
    """The project modules that module ``name`` imports, anywhere in its source."""
    tree = ast.parse(modules()[name].read_text(), str(modules()[name]))
    package = name if _is_package(name) else name.rpartition(".")[0]
    targets: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(_owner(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules() else _owner(base))
    targets.discard(None)
    targets.discard(name)
    return {t for t in targets if t is not None}


@cache
def graph() -> dict[str, frozenset[str]]:
    return {name: frozenset(imports_of(name)) for name in modules()}


def cycles() -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _in(package: str, name: str) -> bool:
    return name == package or name.startswith(package + ".")


def _describe(component: list[str]) -> str:
    members = set(component)
    links = [f"    {a} -> {b}" for a in component for b in sorted(graph()[a] & members) if a != b]
    return ", ".join(component) + "\n" + "\n".join(links)


def test_the_walk_sees_relative_and_function_level_imports():
    assert "leek.protocol" in graph()["leek.client"]
    assert "leek.client" in graph()["leek"]  # from .client import ...
    assert "leek" in graph()["leekd.cli.ping"]  # from leek import Client, inside a function
    assert {"leek.events", "leek.frames"} <= graph()["leek.protocol"]


@BY_PACKAGE
def test_no_import_cycles(package):
    bad = [c for c in cycles() if any(_in(package, m) for m in c)]
    assert not bad, "import cycles:\n" + "\n".join(_describe(c) for c in bad)


def test_leek_does_not_import_leekd():
    bad = sorted(
        f"{name} -> {target}"
        for name, targets in graph().items()
        if _in("leek", name)
        for target in targets
        if _in("leekd", target)
    )
    assert not bad, "leek must stand without leekd:\n" + "\n".join(bad)


def test_importing_leek_loads_neither_leekd_nor_django():
    code = (
        "import sys, leek\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('leekd', 'django'))\n"
        "print(' '.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert not out, f"importing leek loaded: {out}"


def test_the_embedded_daemon_leaves_djangos_url_and_mail_machinery_unloaded(tmp_path):
    # What leekd loads for its built-in settings stays resident for its whole life.
    code = (
        "import sys\n"
        "from leekd.bootstrap import configure_embedded\n"
        "configure_embedded(sys.argv[1], migrate_in_child=True)\n"
        "import leekd.app, leekd.runner\n"
        "from leekd.models import QueuedTask\n"
        "assert QueuedTask.objects.count() == 0\n"
        "print(' '.join(sorted(m for m in ('django.urls', 'django.http', 'django.utils.log')"
        " if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "leek.sqlite3")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=120,
    ).stdout.strip()
    assert not out, f"the embedded daemon loaded: {out}"


@BY_PACKAGE
def test_no_module_is_too_long(package):
    too_long = {}
    for name, path in modules().items():
        if not _in(package, name) or "migrations" in path.relative_to(ROOT).parts:
            continue
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            too_long[str(path.relative_to(ROOT))] = lines
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def _part(module: str) -> str | None:
    return next((p for p in PARTS if module == p or module.startswith(p + ".")), None)


def test_net_engine_and_store_do_not_import_each_other():
    crossings = [
        f"{src} -> {dst}"
        for src, targets in graph().items()
        for dst in targets
        if _part(src) and _part(dst) and _part(src) != _part(dst)
    ]
    assert not crossings, "the parts meet only in leekd.app:\n" + "\n".join(sorted(crossings))


def test_nothing_imports_the_command_line_faces():
    faces = ("leekd.cli", "leekd.management", "leekd.__main__")
    wrong = [
        f"{src} -> {dst}"
        for src, targets in graph().items()
        for dst in targets
        if (dst == "leekd.cli" or dst.startswith("leekd.cli."))
        and not any(src == f or src.startswith(f + ".") for f in faces)
    ]
    assert not wrong, "\n".join(sorted(wrong))
