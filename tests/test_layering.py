"""DESIGN.md's layering, checked on the source: data -> models -> train -> probe -> measures
-> stats -> study -> report. A package imports only itself, the packages before it and the
shared leaves (errors, files); experiments and cli sit on top and may import anything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "clusterprior"
ORDER = ["data", "models", "train", "probe", "measures", "stats", "study", "report"]
LEAVES = {"errors", "files"}


def imported_packages(path: Path) -> set[str]:
    """The clusterprior packages a module imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("clusterprior"):
            parts = node.module.split(".")
            found.add(parts[1] if len(parts) > 1 else None)
            if len(parts) == 1:  # from clusterprior import data, models
                found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("clusterprior.")}
    return found - {None}


@pytest.mark.parametrize("package", ORDER)
def test_each_package_imports_only_the_ones_before_it(package: str):
    allowed = set(ORDER[: ORDER.index(package) + 1]) | LEAVES
    wrong = {
        f"{path.relative_to(SRC)} imports {sorted(imported_packages(path) - allowed)}"
        for path in (SRC / package).rglob("*.py")
        if imported_packages(path) - allowed
    }
    assert not wrong, wrong


def test_the_report_reads_the_database_only_through_study():
    for path in (SRC / "report").rglob("*.py"):
        assert "sqlite3" not in path.read_text() and "study.db" not in path.read_text(), path


def test_the_checker_sees_imports(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text(
        "from clusterprior import data, models\nimport clusterprior.stats.correlation\n"
        "def f():\n    from clusterprior.measures.rotation import step_tangent\n"
    )
    assert imported_packages(module) == {"data", "models", "stats", "measures"}
