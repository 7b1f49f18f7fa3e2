"""DESIGN.md's layering, checked on the source: presets -> data -> models -> train -> probe -> measures
-> stats -> study -> report. A package imports only itself, the packages before it and the
shared leaves (errors, files, options, registry); experiments and cli sit on top and may import anything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "clusterprior"
ORDER = ["presets", "data", "models", "train", "probe", "measures", "stats", "study", "report"]
LEAVES = {"errors", "files", "options", "registry"}


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


FILE_IO = {  # calls that read, write, list or remove files
    "open", "write_text", "write_bytes", "read_text", "read_bytes", "to_csv", "read_csv", "to_json", "read_json",
    "savez", "savez_compressed", "savefig", "save_figure", "write_csv", "atomic_path",
    "glob", "rglob", "iterdir", "listdir", "scandir", "walk", "mkdir", "unlink", "rmtree", "rename", "replace_file",
}  # fmt: skip
SERIALIZERS = {"np", "numpy", "torch", "json", "pickle", "pd", "yaml"}  # their load, save and dump touch files
# (data.load and the like go through the data layer, which does the reading)


def file_io_calls(path: Path) -> list[str]:
    """The calls of a module that do file I/O (:data:`FILE_IO`, as a name or a method; a
    serializer's load, save or dump; any object's save), and its imports of the files
    helpers, as "line: name", in line order."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            serializer = name in ("load", "save", "dump") and (owner in SERIALIZERS or not owner)
            if name in FILE_IO or serializer or (isinstance(func, ast.Attribute) and name == "save"):
                found.append(f"{node.lineno}: {name}")
        elif isinstance(node, ast.ImportFrom) and node.module in ("clusterprior.files", "shutil", "glob"):
            found.append(f"{node.lineno}: from {node.module}")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "clusterprior"
            and any(a.name == "files" for a in node.names)
        ):
            found.append(f"{node.lineno}: from clusterprior import files")
    return sorted(found, key=lambda line: (int(line.split(":")[0]), line))


def test_no_experiment_does_file_io():
    """ARCHITECTURE.md: an experiment returns plain data and the engine (the study, the
    commands) reads and writes every file; figures are drawn, never saved, there."""
    wrong = {str(p.relative_to(SRC)): file_io_calls(p) for p in (SRC / "experiments").rglob("*.py")}
    assert not {k: v for k, v in wrong.items() if v}


def test_the_study_layer_names_experiments_without_importing_them():
    """The engine finds an experiment by its module's name at run time (study/experiment.py):
    no module of the layers below imports clusterprior.experiments."""
    for path in SRC.rglob("*.py"):
        if path.parent.name not in ("experiments", "cli"):
            assert "experiments" not in imported_packages(path), path


def test_the_file_io_checker_sees_calls_and_imports(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text(
        "import json\nfrom clusterprior.files import write_csv\nfrom pathlib import Path\n"
        "def f(t, p):\n    t.to_csv(p)\n    json.dump({}, open(p, 'w'))\n    Path(p).write_text('x')\n"
        "    fig = draw(t)\n    return fig\n"
    )
    assert file_io_calls(module) == ["2: from clusterprior.files", "5: to_csv", "6: dump", "6: open", "7: write_text"]


def test_the_named_internals_stay_in_their_modules():
    """What users do not call is not exported by its subpackage (it stays importable from its
    module): the training loop's helpers, the models' attribute name and loaders."""
    from clusterprior import models, train

    for name in ("steps_per_epoch", "resolve_device", "make_optimizer", "per_example_loss"):
        assert name not in train.__all__ and not hasattr(train, name), name
    for name in ("CONFIG_ATTR", "import_factory", "device_of"):
        assert name not in models.__all__, name
