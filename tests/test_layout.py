"""The source tree's layout: module file names are unique, the modules of recommender/ and
udfs/ import each other without cycles, the serving layer and the UDFs stay off the engine,
and the README's test command is the one CI runs.

Imports are read with `ast`, function-level ones included; imports under
`if TYPE_CHECKING:` are left out (they never run).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from recommender.config import PROJECT_ROOT

NAMED_PACKAGES = ("recommender", "udfs", "producers")  # file names unique across these
GRAPH_PACKAGES = ("recommender", "udfs")  # import graph of these
SHARED_NAMES = {"__init__.py", "__main__.py"}

# File names in more than one place already; a new clash (or a third copy) fails the test.
KNOWN_SAME_NAMES: dict[str, tuple[str, ...]] = {}

ALLOWED_CYCLES: list[set[str]] = []

ENGINE = "recommender.engine"
OFF_ENGINE = ("recommender.serving", "udfs")  # packages that must not import the engine


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of `packages` below `root`."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` except those under `if TYPE_CHECKING:`."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, ast.If) and _type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` that module `name` (at `path`) imports, at any level."""

    def known(dotted: str) -> str | None:
        # the module itself, or the nearest package above a name defined in it
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(filter(None, (known(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package
                for _ in range(node.level - 1):
                    up = up.rpartition(".")[0]
                base = f"{up}.{base}" if base else up
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in modules else known(base) or "")
    found.discard("")
    found.discard(name)
    return found


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    modules = module_files(root, packages)
    return {name: imports(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected parts of `graph` with more than one module (each holds a cycle)."""

    def reach(start: str) -> set[str]:
        seen, stack = {start}, [start]
        while stack:
            for nxt in graph.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    reachable = {name: reach(name) for name in graph}
    out: list[set[str]] = []
    for name in sorted(graph):
        part = {other for other in reachable[name] if name in reachable[other]}
        if len(part) > 1 and part not in out:
            out.append(part)
    return out


def cycle_path(graph: dict[str, set[str]], part: set[str]) -> list[str]:
    """One cycle through the modules of `part`, as a path that ends where it starts."""
    start = min(part)
    paths = {start: [start]}
    queue = [start]
    while queue:
        here = queue.pop(0)
        for nxt in sorted(graph[here] & part):
            if nxt == start:
                return [*paths[here], start]
            if nxt not in paths:
                paths[nxt] = [*paths[here], nxt]
                queue.append(nxt)
    return sorted(part)


def test_module_file_names_are_unique() -> None:
    places: dict[str, list[str]] = defaultdict(list)
    for path in module_files(PROJECT_ROOT, NAMED_PACKAGES).values():
        if path.name not in SHARED_NAMES:
            places[path.name].append(path.relative_to(PROJECT_ROOT).as_posix())
    clashes = {name: tuple(sorted(where)) for name, where in places.items() if len(where) > 1}
    new = {name: where for name, where in clashes.items() if KNOWN_SAME_NAMES.get(name) != where}
    assert not new, f"module file names used more than once (rename one): {new}"


def test_no_import_cycles() -> None:
    graph = import_graph(PROJECT_ROOT, GRAPH_PACKAGES)
    new = [part for part in cycles(graph) if part not in ALLOWED_CYCLES]
    assert not new, "import cycles: " + "; ".join(
        " -> ".join(cycle_path(graph, part)) for part in new)


def package_of(module: str) -> str:
    """The room a module stands in: its subpackage (recommender.engine, ...), or itself for
    a module at the top of a package (recommender.config, udfs.kernel)."""
    path = module_files(PROJECT_ROOT, GRAPH_PACKAGES)[module]
    parts = path.parent.relative_to(PROJECT_ROOT).parts
    return module if len(parts) == 1 else ".".join(parts)


def test_no_import_cycles_between_folders() -> None:
    """No subpackage imports, through any of its files, a module or subpackage that imports
    it back: the layers (top-level modules, engine, postgres, serving, commands...) stack one
    way."""
    graph = import_graph(PROJECT_ROOT, GRAPH_PACKAGES)
    folders: dict[str, set[str]] = {}
    for module, targets in graph.items():
        here = package_of(module)
        folders.setdefault(here, set()).update(
            package_of(t) for t in targets if package_of(t) != here)
    loops = [part for part in cycles(folders) if part not in ALLOWED_CYCLES]
    assert not loops, "folders that import each other: " + "; ".join(
        " -> ".join(cycle_path(folders, part)) for part in loops)


def test_serving_and_udfs_do_not_import_the_engine() -> None:
    graph = import_graph(PROJECT_ROOT, GRAPH_PACKAGES)
    wrong = sorted(
        (name, target)
        for name, targets in graph.items()
        if any(within(name, package) for package in OFF_ENGINE)
        for target in targets
        if within(target, ENGINE)
    )
    assert not wrong, f"imports of the engine from the serving layer or the UDFs: {wrong}"


def test_a_function_level_import_cycle_is_found(tmp_path: Path) -> None:
    """The checks above see cycles through imports inside functions and relative imports,
    and leave out imports under TYPE_CHECKING."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\n")
    (pkg / "e.py").write_text("from pkg.d import x\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.e"] == {"pkg.d"}
    assert cycles(graph) == [{"pkg.a", "pkg.sub.b", "pkg.c"}]
    assert cycle_path(graph, cycles(graph)[0]) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = re.search(r"Install and pass the tests.*?```bash\n(.*?)\n```", readme, re.S)
    assert block, "README.md has no test command block"
    ci = (PROJECT_ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == block.group(1).strip()


def test_tests_run_no_package_manager() -> None:
    """System packages (the dashboard test's browser) come from scripts/, never from a test."""
    here = Path(__file__).resolve()
    for path in sorted(here.parent.rglob("*.py")):
        if path != here:
            assert not re.search(r"""["'](apt-get|apt|dnf|yum|apk)["']""", path.read_text()), path
