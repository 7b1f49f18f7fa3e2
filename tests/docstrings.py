"""The docstring checker: every name a subpackage exports documents its parameters, returns
and raises in numpydoc sections, checked by pydoclint against the signature and the body.

Internals keep concise docstrings and are not checked; an exported function or class, and the
public methods of an exported class, are. ``python -m tests.docstrings`` prints each violation
as ``path:line: name: CODE message`` and exits 1 when there is one.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

from pydoclint.visitor import Visitor

PACKAGES = (
    "clusterprior",
    "clusterprior.cli",
    "clusterprior.data",
    "clusterprior.measures",
    "clusterprior.models",
    "clusterprior.probe",
    "clusterprior.report",
    "clusterprior.stats",
    "clusterprior.study",
    "clusterprior.train",
)


def exported() -> Iterator[tuple[str, object]]:
    """``(dotted name, object)`` of every function and class in a package's ``__all__`` that is
    defined in clusterprior (constants and re-exported third-party names are data, not code)."""
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith("clusterprior"):
                yield f"{package}.{name}", obj


def definition(obj: object) -> tuple[Path, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]:
    """The file and the top-level AST node that define ``obj`` (a decorated function's own,
    unwrapped), found by name: exported names are defined at a module's top level."""
    obj = inspect.unwrap(obj)  # type: ignore[arg-type]
    path = Path(inspect.getsourcefile(obj))  # type: ignore[arg-type]
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, kinds) and node.name == obj.__name__:  # type: ignore[attr-defined]
            return path, node
    raise LookupError(f"no top-level definition of {obj!r} in {path}")


def missing_docstrings(node: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, name)`` of the node, and of each public method of a class, without a docstring."""
    if ast.get_docstring(node) is None:  # type: ignore[arg-type]
        yield node.lineno, node.name  # type: ignore[attr-defined]
    if isinstance(node, ast.ClassDef):
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("_"):
                if ast.get_docstring(item) is None:
                    yield item.lineno, f"{node.name}.{item.name}"


def check(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> list[tuple[int, str]]:
    """pydoclint's violations of one definition (numpydoc style; types live in the signature,
    so the sections name parameters without repeating their types), with missing docstrings."""
    visitor = Visitor(
        style="numpy",
        argTypeHintsInDocstring=False,
        checkReturnTypes=False,
        checkYieldTypes=False,
        skipCheckingShortDocstrings=False,
        skipCheckingPrivateFunctions=True,
        checkClassAttributes=False,
    )
    visitor.visit(ast.Module(body=[node], type_ignores=[]))
    found = [(v.line, f"{v.fullErrorCode} {v.msg}") for v in visitor.violations]
    found += [(line, f"DOC000 {name} has no docstring") for line, name in missing_docstrings(node)]
    return sorted(found)


def violations() -> list[str]:
    """Every violation of every exported name, as ``path:line: name: CODE message``."""
    root = Path(__file__).resolve().parents[1]
    seen: set[tuple[Path, int]] = set()
    out: list[str] = []
    for name, obj in exported():
        path, node = definition(obj)
        if (path, node.lineno) in seen:
            continue
        seen.add((path, node.lineno))
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        out += [f"{shown}:{line}: {name}: {message}" for line, message in check(node)]
    return out


if __name__ == "__main__":
    found = violations()
    print("\n".join(found) or "every exported name documents its sections")
    sys.exit(1 if found else 0)
