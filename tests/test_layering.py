"""The package's modules import one way, and never reach into each other's private names.

Read from the source (AST), in the spirit of httpx's ``tests/test_exported_members.py``: every
``import`` in every module of ``scaler_workbench`` counts, at the top or inside a function (a
lazy import still ties the two modules together), so

- no import cycle may join the package's modules, but for the pairs in :data:`ALLOWED`;
- no module may import a ``_private`` name of another module (``from x import _name``, or
  ``x._name`` after ``import x`` / ``from pkg import x``). Dunders are fine; ``_``-prefixed
  modules (package internals such as ``_secrets``) and the tests may reach in.

Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; those implied package edges
are not counted (every submodule of a package that re-exports its submodules would otherwise be
in a cycle with its own ``__init__``).
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest

import scaler_workbench

PACKAGE_ROOT = Path(scaler_workbench.__file__).parent


@dataclass(frozen=True)
class Allowed:
    """One import edge the cycle check ignores: ``importer`` imports ``imported`` in ``scope``."""

    importer: str
    imported: str
    scope: str  # "<module>" for the top level, else the enclosing function, e.g. "__getattr__"
    reason: str
    removal: str  # the release that removes the edge ("never" for a documented design choice)


#: The only import edges allowed to close a cycle. Each entry says why and until when.
ALLOWED: tuple[Allowed, ...] = (
    Allowed(
        "scaler_workbench._secrets",
        "scaler_workbench.exceptions",
        "secret_from_env",
        reason="exceptions redact their messages through _secrets; _secrets raises "
        "CredentialError for a missing variable (the one documented redaction pair)",
        removal="never",
    ),
    Allowed(
        "scaler_workbench.transform",
        "scaler_workbench.pipeline",
        "__getattr__",
        reason="transform.run_pipeline keeps working for one release: the module-level "
        "__getattr__ shim imports pipeline lazily and warns DeprecationWarning",
        removal="0.2.0 (with the shim)",
    ),
)


# -- the checker -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    scope: str
    line: int


@dataclass(frozen=True)
class ReachIn:
    importer: str
    module: str
    name: str
    line: int


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``root`` (the package folder)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = (package, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` inside ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, modules: dict[str, Path]) -> None:
        self.module, self.is_package, self.modules = module, is_package, modules
        self.scope: list[str] = []
        self.edges: list[Edge] = []
        self.reach_ins: list[ReachIn] = []
        self.aliases: dict[str, str] = {}  # local name -> package module it is bound to

    def _edge(self, imported: str, line: int) -> None:
        if imported in self.modules and imported != self.module:
            self.edges.append(Edge(self.module, imported, ".".join(self.scope) or "<module>", line))

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._edge(alias.name, node.lineno)
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                head = alias.name.split(".")[0]
                self.aliases[head] = head

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        source = _absolute(self.module, self.is_package, node.level, node.module)
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            if submodule in self.modules:  # from pkg import module
                self._edge(submodule, node.lineno)
                self.aliases[alias.asname or alias.name] = submodule
                continue
            self._edge(source, node.lineno)
            if source in self.modules and source != self.module and _is_private(alias.name):
                self.reach_ins.append(ReachIn(self.module, source, alias.name, node.lineno))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted, value = [], node.value
        while isinstance(value, ast.Attribute):
            dotted.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in self.aliases:
            owner = ".".join([self.aliases[value.id], *reversed(dotted)])
            if owner in self.modules and owner != self.module and _is_private(node.attr):
                self.reach_ins.append(ReachIn(self.module, owner, node.attr, node.lineno))
        self.generic_visit(node)


def scan(root: Path, package: str) -> tuple[dict[str, Path], list[Edge], list[ReachIn]]:
    """Every module under ``root``, every import edge between them, every private reach-in."""
    modules = module_names(root, package)
    edges: list[Edge] = []
    reach_ins: list[ReachIn] = []
    for name, path in modules.items():
        visitor = _Visitor(name, path.name == "__init__.py", modules)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        edges += visitor.edges
        last = name.split(".")[-1]
        if not (_is_private(last) and path.name != "__init__.py"):  # _modules may reach in
            reach_ins += visitor.reach_ins
    return modules, edges, reach_ins


def _strongly_connected(nodes: list[str], graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def _a_cycle(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One concrete cycle through the component's first module (breadth first: a short one)."""
    start = component[0]
    inside = set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & inside):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return [*component, start]  # pragma: no cover - a component always has a cycle


def cycle_problems(
    modules: dict[str, Path], edges: list[Edge], allowed: tuple[Allowed, ...] = ALLOWED
) -> list[str]:
    """One message per import cycle left after the allowed edges: the modules and where."""
    ok = {(a.importer, a.imported, a.scope) for a in allowed}
    kept = [e for e in edges if (e.importer, e.imported, e.scope) not in ok]
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in kept:
        graph[e.importer].add(e.imported)
    messages = []
    for component in _strongly_connected(sorted(modules), graph):
        cycle = _a_cycle(component, graph)
        where = []
        for a, b in itertools.pairwise(cycle):
            e = next(e for e in kept if (e.importer, e.imported) == (a, b))
            where.append(f"{a} imports {b} (line {e.line}, in {e.scope})")
        messages.append(
            f"import cycle among {', '.join(component)}: {' -> '.join(cycle)}; " + "; ".join(where)
        )
    return messages


def reach_in_problems(reach_ins: list[ReachIn]) -> list[str]:
    """One message per private name taken from another module."""
    return [
        f"{r.importer} (line {r.line}) uses private {r.module}.{r.name}"
        for r in sorted(reach_ins, key=lambda r: (r.importer, r.line, r.name))
    ]


def stale_allowances(
    modules: dict[str, Path], edges: list[Edge], allowed: tuple[Allowed, ...] = ALLOWED
) -> list[str]:
    """Allowed edges between existing modules that no import makes any more (remove them)."""
    present = {(e.importer, e.imported, e.scope) for e in edges}
    return [
        f"{a.importer} -> {a.imported} in {a.scope} is allowed but no longer imported"
        for a in allowed
        if a.importer in modules
        and a.imported in modules
        and (a.importer, a.imported, a.scope) not in present
    ]


# -- the package -------------------------------------------------------------------------------
def test_no_import_cycles_among_the_package_modules() -> None:
    modules, edges, _ = scan(PACKAGE_ROOT, "scaler_workbench")
    assert len(modules) > 30 and len(edges) > 100  # the scan sees the package
    problems = cycle_problems(modules, edges)
    assert problems == [], "\n".join(problems)


def test_no_module_imports_a_private_name_of_another() -> None:
    _, _, reach_ins = scan(PACKAGE_ROOT, "scaler_workbench")
    problems = reach_in_problems(reach_ins)
    assert problems == [], "\n".join(problems)


def test_every_allowance_is_still_needed_and_says_why() -> None:
    modules, edges, _ = scan(PACKAGE_ROOT, "scaler_workbench")
    assert stale_allowances(modules, edges) == []
    for a in ALLOWED:
        assert a.reason and a.removal, a


# -- the checker on planted packages ----------------------------------------------------------
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_checker_fails_on_a_planted_cycle_and_names_the_modules(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "a.py": "from pkg.b import f\n",
            "b.py": "def f():\n    from pkg import c\n    return c\n",  # lazy: still counts
            "c.py": "from . import a\n",  # relative imports count too
            "d.py": "import pkg.a\n",  # imports into the cycle, not part of it
        },
    )
    modules, edges, _ = scan(root, "pkg")
    problems = cycle_problems(modules, edges, allowed=())
    assert len(problems) == 1
    assert problems[0].startswith("import cycle among pkg.a, pkg.b, pkg.c: pkg.a -> pkg.b")
    assert "pkg.b imports pkg.c (line 2, in f)" in problems[0]
    assert "pkg.d" not in problems[0]


def test_an_allowance_covers_only_its_own_scope(tmp_path: Path) -> None:
    files = {
        "low.py": "def __getattr__(name):\n    from pkg import high\n    return high.x\n",
        "high.py": "from pkg import low\nx = 1\n",
    }
    modules, edges, _ = scan(_package(tmp_path / "one", files), "pkg")
    allow = (Allowed("pkg.low", "pkg.high", "__getattr__", reason="shim", removal="0.2.0"),)
    assert cycle_problems(modules, edges, allowed=()) != []
    assert cycle_problems(modules, edges, allowed=allow) == []
    assert stale_allowances(modules, edges, allowed=allow) == []

    moved = {**files, "low.py": "from pkg import high\n"}  # the same import at the top: not allowed
    modules, edges, _ = scan(_package(tmp_path / "two", moved), "pkg")
    assert "pkg.high, pkg.low" in cycle_problems(modules, edges, allowed=allow)[0]
    assert stale_allowances(modules, edges, allowed=allow) == [
        "pkg.low -> pkg.high in __getattr__ is allowed but no longer imported"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from pkg.lib import _hidden\n", "pkg.user (line 1) uses private pkg.lib._hidden"),
        ("from pkg import lib\nlib._hidden()\n", "pkg.user (line 2) uses private pkg.lib._hidden"),
        ("import pkg.lib\npkg.lib._hidden()\n", "pkg.user (line 2) uses private pkg.lib._hidden"),
        ("import pkg.lib as L\nL._hidden()\n", "pkg.user (line 2) uses private pkg.lib._hidden"),
        (
            "def f():\n    from .lib import _hidden\n",
            "pkg.user (line 2) uses private pkg.lib._hidden",
        ),
    ],
)
def test_checker_fails_on_a_planted_private_reach_in(
    tmp_path: Path, text: str, expected: str
) -> None:
    root = _package(tmp_path, {"lib.py": "def _hidden(): ...\n", "user.py": text})
    _, _, reach_ins = scan(root, "pkg")
    assert reach_in_problems(reach_ins) == [expected]


def test_checker_lets_dunders_private_modules_and_public_names_pass(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "lib.py": "__version__ = '1'\ndef _hidden(): ...\ndef shown(): ...\n",
            "_inner.py": "from pkg.lib import _hidden\n",  # a _module may reach in
            "user.py": (
                "from pkg import __version__, _inner\n"  # a dunder; a private *module*
                "from pkg.lib import shown as _shown\n"  # a public name, privately aliased
                "from pkg import lib\n"
                "lib.__name__\n"
            ),
        },
    )
    _, _, reach_ins = scan(root, "pkg")
    assert reach_in_problems(reach_ins) == []
