"""No function of recommender/, udfs/ or producers/ is longer than 80 lines (from its `def`
line to its last line, nested functions counted with the one that holds them and also on
their own). Functions still over the limit are listed in ALLOWED with their length: a listed
function may shrink but not grow, and leaves the list once it fits."""

from __future__ import annotations

import ast
from pathlib import Path

from recommender.config import PROJECT_ROOT

PACKAGES = ("recommender", "udfs", "producers")
MAX_LINES = 80

# "path/to/module.py::Class.function" -> its length now; shrink it, then remove the entry.
ALLOWED: dict[str, int] = {}


def function_lengths(root: Path, packages: tuple[str, ...]) -> dict[str, int]:
    """'path::qualified.name' -> lines, for every function and method below `root`."""
    out: dict[str, int] = {}

    def visit(node: ast.AST, path: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                out[f"{path}::{name}"] = (child.end_lineno or child.lineno) - child.lineno + 1
                visit(child, path, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, path, prefix + child.name + ".")
            else:
                visit(child, path, prefix)

    for package in packages:
        for file in sorted((root / package).rglob("*.py")):
            if "__pycache__" not in file.parts:
                path = file.relative_to(root).as_posix()
                visit(ast.parse(file.read_text(), path), path, "")
    return out


def test_no_function_over_the_limit() -> None:
    lengths = function_lengths(PROJECT_ROOT, PACKAGES)
    too_long = {
        name: n for name, n in sorted(lengths.items()) if n > MAX_LINES and n > ALLOWED.get(name, 0)
    }
    assert not too_long, f"functions over {MAX_LINES} lines (split them): {too_long}"


def test_the_allow_list_only_holds_functions_still_over_the_limit() -> None:
    lengths = function_lengths(PROJECT_ROOT, PACKAGES)
    stale = sorted(name for name in ALLOWED if lengths.get(name, 0) <= MAX_LINES)
    assert not stale, f"remove from ALLOWED (gone or now short enough): {stale}"


def test_lengths_count_nested_and_async_functions(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"        x{i} = {i}" for i in range(90))
    (pkg / "m.py").write_text(
        "class A:\n"
        "    async def method(self):\n"
        "        def inner():\n"
        "            return 1\n"
        f"{body}\n"
    )
    lengths = function_lengths(tmp_path, ("pkg",))
    assert lengths == {"pkg/m.py::A.method": 93, "pkg/m.py::A.method.inner": 2}
