"""Optional dependencies (pyproject's extras): every module imports without them, and what
needs one says which extra to install."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest

from recommender.config import PROJECT_ROOT
from recommender.extras import MissingExtra, require

# import names of the extras' packages
OPTIONAL = ("sklearn", "scipy", "matplotlib", "joblib", "kafka")

# Run in a fresh interpreter where the optional packages cannot be imported.
WITHOUT_EXTRAS = """
import importlib, sys
from pathlib import Path

BLOCKED = set(sys.argv[1].split(","))

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Block())
root = Path(sys.argv[2])
for package in ("recommender", "udfs", "producers"):
    for path in sorted((root / package).rglob("*.py")):
        if "__pycache__" in path.parts or path.name == "__main__.py":
            continue
        parts = path.relative_to(root).with_suffix("").parts
        importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))

from recommender.extras import MissingExtra
from recommender.experiment import report
from recommender.intent import train

for call, extra in ((lambda: train.algorithms(), "intent"),
                    (lambda: train.load_model(root), "intent"),
                    (lambda: report._plot(root / "x.png", {}, "mrr", ()), "experiment")):
    try:
        call()
    except MissingExtra as exc:
        assert f"pip install 'flashrec[{extra}]'" in str(exc), exc
    else:
        raise AssertionError("no MissingExtra")
print("ok")
"""


def test_require_names_the_extra() -> None:
    assert require("json", "intent").dumps([1]) == "[1]"
    with pytest.raises(MissingExtra, match=r"pip install 'flashrec\[intent\]'") as info:
        require("flashrec_no_such_module", "intent")
    assert isinstance(info.value, ImportError)  # callers catching ImportError still do
    assert "flashrec_no_such_module" in str(info.value)


def test_every_module_imports_without_the_extras() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, ",".join(OPTIONAL), str(PROJECT_ROOT)],
        capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_the_test_extra_installs_every_other_extra() -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    others = {name for name in extras if name != "test"}
    itself = [dep for dep in extras["test"] if dep.startswith("flashrec[")]
    assert len(itself) == 1 and set(itself[0][9:-1].split(",")) == others

    def package(dep: str) -> str:
        return re.split(r"[\[<>=~! ]", dep, maxsplit=1)[0]

    core = {package(dep) for dep in project["dependencies"]}
    for name in others:
        for dep in extras[name]:
            assert package(dep) not in core, f"{dep} is in [{name}] and in the dependencies"
