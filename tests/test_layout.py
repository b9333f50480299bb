"""The package's shape: no import cycle between its modules, and the seams hold.

The import graph is read from the source with :mod:`ast`, one node per module of
``src/layerhoist``. How an import statement becomes an edge:

- ``import layerhoist.x.y`` and ``from layerhoist.x import y`` where ``layerhoist.x.y`` is a
  module: an edge to ``layerhoist.x.y``; ``from layerhoist.x import name`` (a name defined in
  ``layerhoist.x``): an edge to ``layerhoist.x``.
- Imports inside functions count: they run when the function is called, so a cycle through
  them is a cycle of the running program, only deferred.
- Imports under ``if TYPE_CHECKING:`` do not count: they never run, and a cycle through them
  costs nothing but the quoting that ``from __future__ import annotations`` already does.
- The parent packages a module import executes first (``layerhoist/__init__.py`` before
  anything in it) are not edges: every package whose ``__init__`` re-exports its modules would
  otherwise sit in a cycle with each of them. What importing really loads is checked the honest
  way, in a fresh interpreter (the seam tests below).
"""

from __future__ import annotations

import ast
import functools
import itertools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import layerhoist

PACKAGE = "layerhoist"
#: The package directory the suite runs against (the subprocesses import the same one).
PACKAGE_DIR = Path(layerhoist.__file__).parent
#: The pipeline and its retry layer: written against protocols, they load no transport.
TRANSPORT_FREE = (
    "layerhoist.transfer.pipeline",
    "layerhoist.transfer.retry",
    "layerhoist.transfer.requeue",
    "layerhoist.transfer.verdicts",
)
#: What the transport-free modules must never load, at import or when a function runs.
AWS_SDK = ("botocore", "boto3", "aioboto3", "aiobotocore")
ECR_TRANSPORT = "layerhoist.destinations.ecr"
#: The client modules the embedded registry may use: leaves that import nothing themselves.
REGISTRY_MAY_USE = ("layerhoist.units", "layerhoist.exits", "layerhoist.version")


@dataclass(frozen=True)
class Import:
    """One import of a module: the module it names, where, and whether it only serves typing."""

    target: str
    line: int
    type_only: bool


def module_names(package_dir: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, modules: Iterable[str]) -> list[Import]:
    """The imports of module ``name`` anywhere in its file, resolved as the module docstring says.

    Targets outside the package keep the name written (``botocore.exceptions``).
    """
    known = set(modules)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        submodules = [f"{base}.{alias.name}" for alias in node.names]
        named = [module for module in submodules if module in known]
        return named + ([base] if len(named) < len(submodules) else [])

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                visit(statement, True)
            for statement in node.orelse:
                visit(statement, type_only)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.extend(Import(target, node.lineno, type_only) for target in targets(node))
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    return found


@functools.cache
def import_graph(package_dir: Path = PACKAGE_DIR) -> Mapping[str, list[Import]]:
    """Module name -> its imports (of the package's modules and of anything else); read once."""
    modules = module_names(package_dir)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def runtime_edges(graph: Mapping[str, list[Import]]) -> dict[str, dict[str, int]]:
    """Module -> {imported module of the package: line}: TYPE_CHECKING imports left out."""
    return {
        name: {
            edge.target: edge.line
            for edge in imports
            if not edge.type_only and edge.target in graph and edge.target != name
        }
        for name, imports in graph.items()
    }


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle of ``edges`` as the path ``[a, b, …, a]``, or ``None`` when there is none."""
    done: set[str] = set()
    for start in sorted(edges):
        if start in done:
            continue
        # Depth first, without recursion: ``path`` is the chain being explored, ``stack`` the
        # successors of each of its modules still to visit.
        path = [start]
        stack = [iter(sorted(edges[start]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                done.add(path.pop())
            elif following in path:
                return [*path[path.index(following) :], following]
            elif following not in done:
                path.append(following)
                stack.append(iter(sorted(edges.get(following, ()))))
    return None


def describe(cycle: list[str], edges: Mapping[str, Mapping[str, int]]) -> str:
    """Each hop of ``cycle`` with the file line of its import."""
    hops = [
        f"  {module} (line {edges[module][following]}) -> {following}"
        for module, following in itertools.pairwise(cycle)
    ]
    return "\n".join(hops)


def loaded_modules(script: str) -> list[str]:
    """Run ``script`` in a fresh interpreter over :data:`PACKAGE_DIR`; its ``sys.modules``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_DIR.parent), *sys.path])}
    report = "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script) + report],
        capture_output=True,
        check=True,
        env=env,
        text=True,
    )
    modules: list[str] = json.loads(done.stdout)
    return modules


def is_within(module: str, roots: Iterable[str]) -> bool:
    """Whether ``module`` is one of ``roots`` or inside one of them."""
    return any(module == root or module.startswith(f"{root}.") for root in roots)


# --- the analysis itself ---------------------------------------------------------------------


def test_find_cycle_reports_the_path_and_accepts_a_dag() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_the_graph_sees_function_level_and_type_only_imports() -> None:
    graph = import_graph()
    pipeline = {edge.target: edge for edge in graph["layerhoist.transfer.pipeline"]}
    assert not pipeline["layerhoist.destinations.base"].type_only
    assert "anyio" in pipeline
    base = {edge.target: edge for edge in graph["layerhoist.destinations.base"]}
    assert base["layerhoist.transfer.verdicts"].type_only
    destinations = {edge.target: edge for edge in graph["layerhoist.destinations"]}
    # A function-level import is not type-only: it runs when its function is called.
    assert not destinations["layerhoist.destinations.ecr.destination"].type_only


# --- no cycles -------------------------------------------------------------------------------


def test_no_runtime_import_cycle() -> None:
    edges = runtime_edges(import_graph())
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle:\n" + describe(cycle, edges)


# --- the seams -------------------------------------------------------------------------------


def test_the_pipeline_and_retry_layer_load_no_aws_sdk_and_no_ecr() -> None:
    loaded = loaded_modules(f"import {', '.join(TRANSPORT_FREE)}")
    assert set(TRANSPORT_FREE) <= set(loaded)
    assert [m for m in loaded if is_within(m, (*AWS_SDK, ECR_TRANSPORT))] == []


def test_nothing_the_pipeline_may_call_imports_the_aws_sdk_or_ecr() -> None:
    # The subprocess sees import time only; a function-level import runs when its function
    # is called, so the static closure over runtime edges covers those.
    graph = import_graph()
    edges = runtime_edges(graph)
    reached, pending = set(), list(TRANSPORT_FREE)
    while pending:
        module = pending.pop()
        if module not in reached:
            reached.add(module)
            pending.extend(edges[module])
    external = {edge.target for module in reached for edge in graph[module] if not edge.type_only}
    assert sorted(m for m in reached if is_within(m, (ECR_TRANSPORT,))) == []
    assert sorted(m for m in external if is_within(m, AWS_SDK)) == []


REGISTRY_IMPORTS = """
    import importlib, pkgutil, sys, types

    {root}
    import layerhoist.registry

    for info in pkgutil.walk_packages(layerhoist.registry.__path__, "layerhoist.registry."):
        if not info.name.endswith(".__main__"):  # that one runs the server
            importlib.import_module(info.name)
"""
#: An empty stand-in for ``layerhoist/__init__.py``, so only the registry's own imports load.
STUB_ROOT = (
    "root = types.ModuleType('layerhoist'); root.__path__ = [{path!r}]; "
    "sys.modules['layerhoist'] = root"
)


def client_modules(loaded: Iterable[str]) -> list[str]:
    """The modules of ``loaded`` that belong to the client (not the registry, not a leaf)."""
    return [
        module
        for module in loaded
        if is_within(module, (PACKAGE,))
        and module != PACKAGE
        and not is_within(module, ("layerhoist.registry", *REGISTRY_MAY_USE))
    ]


def test_the_registry_imports_no_client_module() -> None:
    stub = STUB_ROOT.format(path=str(PACKAGE_DIR))
    loaded = loaded_modules(REGISTRY_IMPORTS.format(root=stub))
    assert "layerhoist.registry.server" in loaded
    assert client_modules(loaded) == []
    assert [m for m in loaded if is_within(m, AWS_SDK)] == []


def test_importing_the_registry_loads_no_client_module_through_the_package_root() -> None:
    loaded = loaded_modules(REGISTRY_IMPORTS.format(root=""))
    assert client_modules(loaded) == []
