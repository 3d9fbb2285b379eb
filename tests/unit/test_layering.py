"""The import graph of sdfarm: which room may import which, and no cycles.

Every ``.py`` file under ``sdfarm/`` is parsed with :mod:`ast` (nothing is imported), and every
import it makes is collected: at module level and inside functions, ``import x`` and
``from x import y``, relative imports resolved against the file's package. Imports inside an
``if TYPE_CHECKING:`` block are ignored: they never run, they only name types for the checkers.
The modules are derived from the files, so a new module is checked without touching this file.

The rules:

a. The pure core (``sdfarm/__init__.py``; the top-level modules spec, samplers, errors, files,
   modelref, params, families, checkpoints, modeldetect and suggest; every module under
   ``sdfarm/scheduler/`` and ``sdfarm/metadata/``)
   imports no heavy or service library and nothing of sdfarm outside the pure core.
b. ``sdfarm/db/`` imports nothing of worker, cli, usecases, broker, grids or web.
c. ``sdfarm/worker/`` and ``sdfarm/grids/`` import nothing of cli, usecases or web;
   ``sdfarm/usecases/`` nothing of cli or web; ``sdfarm/web/`` nothing of cli.
d. Only ``sdfarm/cli/`` imports ``sdfarm.cli``.
e. No cycle between packages (scheduler, worker, db, cli, ...; the top-level modules together
   are "core").
f. No cycle between modules through module-level imports.

And at run time: importing and using the planning and metadata modules leaves those libraries
out of ``sys.modules``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "sdfarm"

#: What the pure core must never import (top-level distribution module names).
HEAVY = ("torch", "diffusers", "transformers", "huggingface_hub", "celery", "kombu", "redis",
         "sqlalchemy", "alembic", "PIL", "numpy", "click", "rich")
#: The one allowed exception: (module file, library) imported inside a function only.
#: modelref looks a hub model up in the huggingface_hub cache, lazily.
LAZY_EXCEPTIONS = {("modelref.py", "huggingface_hub")}

#: Path rules of the pure core: these files directly under sdfarm/, and every file in these
#: folders. ``sdfarm/__init__.py`` is in it because importing any sdfarm module runs it.
PURE_TOP_LEVEL_FILES = {"__init__.py", "spec.py", "samplers.py", "errors.py", "files.py",
                        "modelref.py", "params.py", "families.py", "checkpoints.py",
                        "modeldetect.py", "suggest.py", "processes.py"}
PURE_FOLDERS = {"scheduler", "metadata"}

#: The package of a top-level module (``sdfarm/spec.py`` ...) in the package graph.
CORE = "core"


# --- the checker ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    importer: str       # dotted module name of the file that imports
    target: str         # dotted name imported (resolved to a module where it is one of ours)
    path: str           # file, relative to the repository
    line: int
    in_function: bool   # inside a def (runs when called, not when the module is imported)

    def __str__(self) -> str:
        where = "inside a function" if self.in_function else "at module level"
        return f"{self.importer} imports {self.target} ({self.path}:{self.line}, {where})"


def module_name(path: Path, root: Path) -> str:
    """``root/sdfarm/db/jobs.py`` -> ``sdfarm.db.jobs``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of_source(source: str, module: str, *, is_package: bool, path: str,
                      known: Iterable[str] = ()) -> list[Import]:
    """Every import ``source`` (the text of ``module``) makes, outside ``if TYPE_CHECKING:``.

    ``from a import b`` imports ``a.b`` when that is one of the ``known`` modules, else ``a``.
    """
    known = set(known)
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def absolute(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = package.split(".")
        if node.level > 1:
            base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, *([node.module] if node.module else [])])

    def visit(nodes: Iterable[ast.stmt], in_function: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.append(Import(module, alias.name, path, node.lineno, in_function))
            elif isinstance(node, ast.ImportFrom):
                base = absolute(node)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    target = sub if sub in known else base
                    found.append(Import(module, target, path, node.lineno, in_function))
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                # Ignored: an ``if TYPE_CHECKING:`` body never runs, it only names types for
                # the type checkers, so it is no dependency (its ``else:`` does run).
                visit(node.orelse, in_function)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node.body, True)
            else:  # class bodies, try/with/for/if/match blocks, except handlers, match cases
                for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        visit([c for c in children if isinstance(c, ast.AST)], in_function)

    visit(ast.parse(source, filename=path).body, False)
    return found


@dataclass(frozen=True)
class Module:
    name: str
    path: Path      # the file
    rel: Path       # the file relative to sdfarm/

    @property
    def package(self) -> str:
        """The room: the first folder under sdfarm/, or ``core`` for a top-level module."""
        return self.rel.parts[0] if len(self.rel.parts) > 1 else CORE

    @property
    def pure(self) -> bool:
        if len(self.rel.parts) == 1:
            return self.rel.name in PURE_TOP_LEVEL_FILES
        return self.rel.parts[0] in PURE_FOLDERS


@cache
def modules() -> dict[str, Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path, REPO)
        found[name] = Module(name, path, path.relative_to(PACKAGE))
    return found


@cache
def all_imports() -> tuple[Import, ...]:
    known = set(modules())
    found: list[Import] = []
    for mod in modules().values():
        found += imports_of_source(mod.path.read_text(encoding="utf-8"), mod.name,
                                   is_package=mod.path.name == "__init__.py",
                                   path=str(mod.path.relative_to(REPO)), known=known)
    return tuple(found)


def ours(target: str) -> str | None:
    """The sdfarm module ``target`` names (the longest known prefix), or None for a library."""
    known = modules()
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in known:
            return name
    return None


def in_folder(name: str, folder: str) -> bool:
    return name == f"sdfarm.{folder}" or name.startswith(f"sdfarm.{folder}.")


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) through every strongly connected component of more than
    one node (Tarjan), sorted; self-loops are not cycles. Empty for an acyclic graph."""
    nodes = sorted(set(graph) | {m for targets in graph.values() for m in targets})
    succ = {n: sorted(set(graph.get(n, ())) - {n}) for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:  # recursion depth is bounded by the module count
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                strongconnect(w)
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
                components.append(sorted(component))

    for v in nodes:
        if v not in index:
            strongconnect(v)

    cycles = []
    for component in components:
        members = set(component)
        start = component[0]
        # Shortest path back to start within the component (breadth first).
        parents: dict[str, str] = {}
        frontier, seen, end = [start], {start}, None
        while frontier and end is None:
            nxt = []
            for v in frontier:
                for w in succ[v]:
                    if w == start:
                        end = v
                        break
                    if w in members and w not in seen:
                        seen.add(w)
                        parents[w] = v
                        nxt.append(w)
                if end is not None:
                    break
            frontier = nxt
        path = [end]
        while path[-1] != start:
            path.append(parents[path[-1]])
        cycles.append([*reversed(path), start])
    return sorted(cycles)


def describe_cycle(cycle: list[str], edges: Mapping[tuple[str, str], list[Import]]) -> str:
    lines = [" -> ".join(cycle)]
    for a, b in zip(cycle, cycle[1:]):
        lines += [f"    {text}" for text in sorted({str(imp) for imp in edges[(a, b)]})[:3]]
    return "\n".join(lines)


def violations(rule, imports: Iterable[Import]) -> list[str]:
    return sorted({str(imp) for imp in imports if rule(imp)})


# --- the checker checks itself ------------------------------------------------------------

def test_the_cycle_finder_finds_a_cycle_and_passes_a_graph_without_one():
    with_cycle = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"a", "e"}}
    assert find_cycles(with_cycle) == [["a", "b", "c", "a"]]
    without = {"a": {"b", "c"}, "b": {"c"}, "c": {"d"}, "e": {"a", "e"}}
    assert find_cycles(without) == []
    two = {"a": {"b"}, "b": {"a"}, "x": {"y"}, "y": {"z"}, "z": {"x"}}
    assert find_cycles(two) == [["a", "b", "a"], ["x", "y", "z", "x"]]


def test_the_collector_sees_every_kind_of_import_but_type_checking_ones():
    source = (
        "import os, torch.nn as nn\n"
        "from typing import TYPE_CHECKING\n"
        "from sdfarm.db import models\n"
        "from . import sibling\n"
        "from ..core import thing\n"
        "if TYPE_CHECKING:\n"
        "    from sdfarm.worker import render\n"
        "else:\n"
        "    import json\n"
        "try:\n"
        "    import numpy\n"
        "except ImportError:\n"
        "    import array\n"
        "class C:\n"
        "    import celery\n"
        "    def m(self):\n"
        "        import sqlalchemy\n"
        "async def f():\n"
        "    from PIL import Image\n"
    )
    found = imports_of_source(source, "sdfarm.pkg.mod", is_package=False, path="x.py",
                              known={"sdfarm.db.models", "sdfarm.pkg.sibling"})
    got = {(i.target, i.in_function) for i in found}
    assert got == {("os", False), ("torch.nn", False), ("typing", False),
                   ("sdfarm.db.models", False), ("sdfarm.pkg.sibling", False),
                   ("sdfarm.core", False), ("json", False), ("numpy", False), ("array", False),
                   ("celery", False), ("sqlalchemy", True), ("PIL", True)}
    # A package's relative imports are relative to the package itself
    (rel,) = imports_of_source("from .jobs import x\n", "sdfarm.db", is_package=True, path="y.py")
    assert rel.target == "sdfarm.db.jobs"


def test_the_rules_name_folders_and_modules_that_exist():
    # Rules about a folder that was renamed away would pass silently.
    packages = {m.package for m in modules().values()}
    assert {"scheduler", "metadata", "db", "worker", "cli", "usecases", "broker", "grids",
            "web", CORE} <= packages
    pure_files = {m.rel.name for m in modules().values() if m.pure and m.package == CORE}
    assert pure_files >= PURE_TOP_LEVEL_FILES - {"params.py"}
    assert len(all_imports()) > 100


# --- the rules ----------------------------------------------------------------------------

def test_the_pure_core_imports_no_heavy_library_and_nothing_of_sdfarm_outside_it():
    mods = modules()

    def bad(imp: Import) -> bool:
        importer = mods[imp.importer]
        if not importer.pure:
            return False
        mine = ours(imp.target)
        if mine is not None:
            return not mods[mine].pure
        top = imp.target.split(".")[0]
        if top not in HEAVY:
            return False
        return not (imp.in_function and (str(importer.rel), top) in LAZY_EXCEPTIONS)

    found = violations(bad, all_imports())
    assert not found, "the pure core must import only the standard library, pure libraries " \
                      "and the pure core:\n" + "\n".join(found)


@pytest.mark.parametrize("room, forbidden", [
    ("db", ("worker", "cli", "usecases", "broker", "grids", "web")),
    ("worker", ("cli", "usecases", "web")),
    ("grids", ("cli", "usecases", "web")),
    # The page and the CLI are two faces over the same use-cases: neither is below the other.
    ("usecases", ("cli", "web")),
    ("web", ("cli",)),
])
def test_a_lower_room_imports_nothing_of_the_rooms_above_it(room, forbidden):
    def bad(imp: Import) -> bool:
        mine = ours(imp.target)
        return (in_folder(imp.importer, room) and mine is not None
                and any(in_folder(mine, f) for f in forbidden))

    found = violations(bad, all_imports())
    assert not found, f"sdfarm/{room}/ must not import sdfarm.{{{', '.join(forbidden)}}}:\n" \
                      + "\n".join(found)


def test_only_the_cli_imports_the_cli():
    def bad(imp: Import) -> bool:
        mine = ours(imp.target)
        return mine is not None and in_folder(mine, "cli") and not in_folder(imp.importer, "cli")

    found = violations(bad, all_imports())
    assert not found, "only sdfarm/cli/ may import sdfarm.cli:\n" + "\n".join(found)


def test_no_cycle_between_packages():
    mods = modules()
    edges: dict[tuple[str, str], list[Import]] = {}
    for imp in all_imports():
        mine = ours(imp.target)
        if mine is None or mine == "sdfarm":  # the root package is a docstring and a version
            continue
        a, b = mods[imp.importer].package, mods[mine].package
        if a != b:
            edges.setdefault((a, b), []).append(imp)
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    cycles = find_cycles(graph)
    assert not cycles, "packages import each other in a cycle (imports inside functions " \
                       "count):\n" + "\n".join(describe_cycle(c, edges) for c in cycles)


def test_no_cycle_between_modules_through_module_level_imports():
    edges: dict[tuple[str, str], list[Import]] = {}
    for imp in all_imports():
        mine = ours(imp.target)
        if mine is None or imp.in_function or mine == imp.importer:
            continue
        edges.setdefault((imp.importer, mine), []).append(imp)
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    cycles = find_cycles(graph)
    assert not cycles, "modules import each other in a cycle at import time:\n" \
                       + "\n".join(describe_cycle(c, edges) for c in cycles)


# --- at run time ----------------------------------------------------------------------------

def test_planning_a_grid_and_reading_metadata_load_no_heavy_library():
    """Merged from the per-module purity tests (spec and plan, axes, prompts, search syntax,
    modelref):
    importing every pure module, then planning a grid with prompt variants, parsing axes,
    expanding prompts and reading an infotext and a search query, loads none of HEAVY."""
    pure = sorted(m.name for m in modules().values() if m.pure)
    code = (
        "import importlib, sys\n"
        f"for name in {pure!r} + ['sdfarm.db.fulltext']:\n"
        "    importlib.import_module(name)\n"
        "from sdfarm.scheduler.jobfile import parse_job_file\n"
        "from sdfarm.scheduler.plan import make_plan\n"
        "from sdfarm.scheduler.axes import parse_axes\n"
        "from sdfarm.scheduler.prompts import expand_prompts\n"
        "from sdfarm.metadata.a1111 import a1111_parameters\n"
        "from sdfarm.metadata.generation import generation_from_chunks\n"
        "from sdfarm.db.fulltext import parse_text_query, fts5_match\n"
        "job = parse_job_file('model = \"m\"\\nprompt = \"a {red|blue} cat\"\\n[axes]\\n'\n"
        "                     'x = { cfg = \"4-12 (+2)\" }\\ny = { sampler = \"Euler, DDIM\" }\\n', 'g.toml')\n"
        "plan = make_plan(job)\n"
        "assert plan.images == 20\n"
        "parse_axes({'x': {'seed': '1-3'}, 'y': {'sampler': 'DDIM'}}, lambda k, p: ValueError(p))\n"
        "expand_prompts('{a|b}', mode=3, seed=0, wildcard_dir=None, fail=ValueError)\n"
        "generation_from_chunks({'parameters': a1111_parameters(plan.specs[0])})\n"
        "fts5_match({'prompt': parse_text_query('light* -dark')})\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's sdfarm, not an installed one
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"loaded: {out.stdout.strip()}"
