"""Reading a passage of a documentation page, for the tests that recompute its numbers from the
committed results."""

from __future__ import annotations

import re
from pathlib import Path


def passage(page: Path, start: str, end: str) -> str:
    """The text of ``page`` from the pattern ``start`` to the pattern ``end``, its whitespace
    collapsed to single spaces (so that a sentence may wrap anywhere)."""
    text = " ".join(page.read_text().split())
    found = re.search(f"{start}(.*?){end}", text)
    assert found, f"no passage from {start!r} to {end!r} in {page.name}"
    return found.group(1)


def missing(fragments: list[str], text: str) -> list[str]:
    """The fragments that ``text`` does not hold."""
    return [f for f in fragments if f not in text]
