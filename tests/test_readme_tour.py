"""The README's Python tour runs as written: every ```python block, in order, in one namespace."""

from __future__ import annotations

import linecache
import re
import traceback
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line, code)`` of every ```python block, in order; ``line`` is the 1-based README line
    of the block's first line of code."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def test_readme_has_a_tour():
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 6


@pytest.mark.slow  # about 15 s on 2 CPU cores
def test_readme_python_blocks_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)  # the report's figures, without a display
    monkeypatch.chdir(tmp_path)  # files the tour writes land here
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 6, f"README.md has {len(blocks)} python blocks; the tour needs at least 6"
    namespace: dict = {"__name__": "__main__"}  # as a script would run it
    for i, (line, code) in enumerate(blocks, 1):
        # leading newlines keep the traceback's line numbers equal to README.md's
        source = "\n" * (line - 1) + code
        name = f"README.md block {i} (line {line})"
        linecache.cache[name] = (len(source), None, source.splitlines(keepends=True), name)  # code in tracebacks
        try:
            exec(compile(source, name, "exec"), namespace)
        except Exception as e:
            failure = (
                f"README.md python block {i} (starting at line {line}) failed: {type(e).__name__}: {e}\n"
                f"{traceback.format_exc()}"
            )
        else:
            continue
        pytest.fail(failure, pytrace=False)
