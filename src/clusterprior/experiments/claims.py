"""The verdict rows every reproduction writes to its ``verdicts.csv``."""

from __future__ import annotations


def claim(text: str, value: str, ok: bool) -> dict[str, str]:
    """One row: the thesis's claim with the rule that decides it (``text``), the numbers the
    rule read (``value``) and "agrees" when ``ok`` (the rule holds), else "disagrees"."""
    return {"claim": text, "value": value, "verdict": "agrees" if ok else "disagrees"}
