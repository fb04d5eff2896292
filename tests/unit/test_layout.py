"""The layout's rules, checked by walking every module's imports with `ast`.

Rooms are the packages of pyproject's package-dir (`refstream.<room>`); the command-line
modules form a room of their own ("cli") wherever they live. Every import counts: module
level, inside functions and under `if TYPE_CHECKING` (a deferred import is still a
dependency, and the one that hides a cycle). The rules:

1. `streams/` (the Kafka runtime) imports nothing from `reports/`, `tools/` or the CLI;
   `deploy/` takes from `streams/` only its settings and topic specs.
2. The pure core (`schemas/ projections/ rewards/ fraud/` and persistence's pure codec
   module `persistence/records.py`) does no I/O, so that the core gives the same outputs
   for the same log wherever it runs. It imports none of:
   - brokers and network: kafka, aiokafka, confluent_kafka, faust, mode, socket, ssl, http,
     urllib, requests, httpx, starlette, uvicorn;
   - databases and stored files: duckdb, sqlite3, dbm, shelve, pyarrow (Parquet);
   - event loops, threads and processes: asyncio, threading, multiprocessing, concurrent,
     subprocess, signal, select, selectors;
   - the environment, the file system's mutations, the clock and chance: os, shutil,
     tempfile, time, random, secrets; and logging (a handler writes somewhere);
   - metrics: prometheus_client (a process-wide registry).
   It calls none of `datetime.now`/`utcnow`/`today`, `date.today`, `uuid.uuid1`/`uuid4`.
   Allowed and used: pathlib and importlib.resources, to read the package's own contracts
   once (the Avro schemas, the rules YAML a caller names); pickle, hashlib, hmac, uuid5:
   pure functions of their input.
   Of our own modules it imports only the pure core, as the design card's table says:
   schemas imports no other room, rewards and fraud only schemas, projections schemas,
   rewards and fraud; any of them may import the pure codec module.
3. No import cycle between rooms, except the ones listed in ALLOWED with a reason; a listed
   exception that no longer exists fails too, so the list shrinks with the code.
4. Every module has a docstring of at least two lines that says what it owns (not just
   the module's name).
"""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE_ROOMS = frozenset({"schemas", "projections", "rewards", "fraud"})
PURE_CODEC = "refstream.persistence.records"
# What each pure room may import of ours (the design card's table), besides the pure codec.
PURE_MAY_IMPORT: dict[str, frozenset[str]] = {
    "schemas": frozenset(),
    "rewards": frozenset({"schemas"}),
    "fraud": frozenset({"schemas"}),
    "projections": frozenset({"schemas", "rewards", "fraud"}),
}
CLI_ROOM = "cli"
# Command-line modules outside a room of their own (until they move into one).
CLI_MODULES: frozenset[str] = frozenset()
RUNTIME_MUST_NOT_IMPORT = frozenset({"reports", "tools", "jobs", CLI_ROOM})
DEPLOY_MAY_IMPORT_FROM_STREAMS = frozenset({"refstream.streams.settings",
                                            "refstream.streams.topics"})
FORBIDDEN_IN_PURE = frozenset({
    "kafka", "aiokafka", "confluent_kafka", "faust", "mode", "socket", "ssl", "http", "urllib",
    "requests", "httpx", "starlette", "uvicorn",
    "duckdb", "sqlite3", "dbm", "shelve", "pyarrow",
    "asyncio", "threading", "multiprocessing", "concurrent", "subprocess", "signal", "select",
    "selectors",
    "os", "shutil", "tempfile", "time", "random", "secrets", "logging",
    "prometheus_client",
})
FORBIDDEN_CALLS = frozenset({("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"),
                             ("date", "today"), ("uuid", "uuid1"), ("uuid", "uuid4")})

# (importing module, imported module): why the edge is there although a rule says no.
ALLOWED: dict[tuple[str, str], str] = {
    **{(f"refstream.{room}.__init__", "refstream.tools.native"):
       "the compiled-core loader: each core package puts its mypyc build ahead of its sources "
       "at import time when the build is current (tools/native.py); no logic of the core"
       for room in ("schemas", "projections", "rewards", "fraud")},
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def _package_dirs() -> dict[str, Path]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {package: ROOT / folder for package, folder in mapping.items()}


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package, folder in _package_dirs().items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            modules[".".join((package, *parts))] = path
    return modules


MODULES = _modules()


def room_of(module: str) -> str:
    if module in CLI_MODULES:
        return CLI_ROOM
    return module.split(".")[1]


def _is_pure(module: str) -> bool:
    return room_of(module) in PURE_ROOMS or module == PURE_CODEC


def _resolve(module: str, name: str) -> str:
    """Our module that `name` denotes: the longest known module name it starts with."""
    parts = name.split(".")
    for end in range(len(parts), 1, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
        if f"{candidate}.__init__" in MODULES:
            return f"{candidate}.__init__"
    return name


def _imports_of(module: str, tree: ast.Module) -> Iterator[tuple[str, int]]:
    """Every (absolute name, line) the module imports, `from a import b` as `a.b`."""
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            yield source, node.lineno
            for alias in node.names:
                yield f"{source}.{alias.name}", node.lineno


def _walk() -> tuple[list[Import], list[tuple[str, int, str]], dict[str, ast.Module]]:
    ours: set[Import] = set()
    foreign: list[tuple[str, int, str]] = []
    trees: dict[str, ast.Module] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        trees[module] = tree
        for name, line in _imports_of(module, tree):
            if name == "refstream" or name.startswith("refstream."):
                target = _resolve(module, name)
                if target in MODULES and target != module:
                    ours.add(Import(module, target, line))
            else:
                foreign.append((module, line, name))
    return sorted(ours, key=lambda i: (i.importer, i.line, i.imported)), foreign, trees


IMPORTS, FOREIGN, TREES = _walk()


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(ROOT)}:{line}"


def _violations(edges: list[Import], rule: str) -> list[str]:
    return [f"{_where(i.importer, i.line)} imports {i.imported}: {rule}" for i in edges
            if (i.importer, i.imported) not in ALLOWED]


def test_the_walk_sees_every_room_and_function_level_imports() -> None:
    rooms = {room_of(m) for m in MODULES}
    assert {"schemas", "projections", "rewards", "fraud", "streams", "replay", "persistence",
            "reports", "tools", "deploy", "web", CLI_ROOM} <= rooms
    # write_report imports the HTML report inside the function: the walk must see it.
    assert Import("refstream.reports.results", "refstream.reports.html_report",
                  next(i.line for i in IMPORTS if i.importer == "refstream.reports.results"
                       and i.imported == "refstream.reports.html_report")) in IMPORTS


def test_the_runtime_imports_no_reports_tools_or_cli() -> None:
    edges = [i for i in IMPORTS if room_of(i.importer) == "streams"
             and room_of(i.imported) in RUNTIME_MUST_NOT_IMPORT]
    assert not _violations(edges, "streams/ is the Kafka runtime; reports, tools and the "
                                  "command line build on it, never the other way round")


def test_deploy_takes_only_settings_and_topics_from_the_runtime() -> None:
    edges = [i for i in IMPORTS if room_of(i.importer) == "deploy"
             and room_of(i.imported) == "streams"
             and i.imported not in DEPLOY_MAY_IMPORT_FROM_STREAMS]
    assert not _violations(edges, "deploy/ may read the runtime's settings and topic specs "
                                  "only")


def test_the_pure_core_imports_no_io() -> None:
    problems = [f"{_where(m, line)} imports {name}: the pure core does no I/O"
                for m, line, name in FOREIGN
                if _is_pure(m) and name.split(".")[0] in FORBIDDEN_IN_PURE]
    for module, tree in TREES.items():
        if not _is_pure(module):
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and (node.value.id, node.attr) in FORBIDDEN_CALLS):
                problems.append(f"{_where(module, node.lineno)} reads "
                                f"{node.value.id}.{node.attr}: the core takes time and ids "
                                "from events")
    assert not problems


def test_the_pure_core_imports_only_the_core() -> None:
    edges = []
    for i in IMPORTS:
        if not _is_pure(i.importer) or i.imported == PURE_CODEC:
            continue
        allowed = ({room_of(i.importer)} | PURE_MAY_IMPORT[room_of(i.importer)]
                   if i.importer != PURE_CODEC else set())
        if room_of(i.imported) not in allowed:
            edges.append(i)
    assert not _violations(edges, "outside what the design card's table lets this pure "
                                  "folder import")


def _cycle_room_of(module: str) -> str:
    # The pure codec imports nothing of ours (rule 2), so it cannot close a cycle; counted
    # with the rest of persistence, the core's use of it would look like one.
    return module if module == PURE_CODEC else room_of(module)


def _room_cycles(edges: list[Import]) -> list[list[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for i in edges:
        if _cycle_room_of(i.importer) != _cycle_room_of(i.imported):
            graph[_cycle_room_of(i.importer)].add(_cycle_room_of(i.imported))
    cycles: list[list[str]] = []
    for start in sorted(graph):
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    cycles.append(path)
                elif nxt not in path and nxt > start:
                    stack.append((nxt, [*path, nxt]))
    return cycles


def test_no_import_cycle_between_rooms() -> None:
    edges = [i for i in IMPORTS if (i.importer, i.imported) not in ALLOWED]
    cycles = _room_cycles(edges)
    witnesses = []
    for cycle in cycles:
        ring = [*cycle, cycle[0]]
        witnesses.append(" -> ".join(ring) + ":")
        for a, b in pairwise(ring):
            first = next(i for i in edges if _cycle_room_of(i.importer) == a
                         and _cycle_room_of(i.imported) == b)
            witnesses.append(f"  {_where(first.importer, first.line)} imports {first.imported}")
    assert not witnesses, "\n".join(witnesses)


def test_every_allowed_exception_still_exists() -> None:
    present = {(i.importer, i.imported) for i in IMPORTS}
    stale = [f"{a} -> {b}" for a, b in ALLOWED if (a, b) not in present]
    assert not stale, f"these exceptions are gone from the code; delete them from ALLOWED: {stale}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    ring = [Import("refstream.streams.x", "refstream.reports.y", 1),
            Import("refstream.reports.y", "refstream.tools.z", 1),
            Import("refstream.tools.z", "refstream.streams.x", 1)]
    assert _room_cycles(ring) == [["reports", "tools", "streams"]]
    assert _room_cycles(ring[:2]) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_says_what_it_owns(module: str) -> None:
    doc = ast.get_docstring(TREES[module]) or ""
    lines = [line for line in doc.splitlines() if line.strip()]
    assert len(lines) >= 2, (f"{_where(module, 1)}: the module docstring says what it owns in "
                             "two lines")
    assert lines[0].strip(" .") not in {module, module.removesuffix(".__init__")}, (
        f"{_where(module, 1)}: the docstring names the module instead of saying what it owns")
