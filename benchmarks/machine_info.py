"""What every benchmark records about the machine it ran on (imported by the scripts here)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def machine(**versions: str) -> str:
    """CPU model, core count, Python, the given library versions, torch and its thread count."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libs = "".join(f"{name} {version}, " for name, version in versions.items())
    return (
        f"{cpu}, {os.cpu_count()} CPU cores; Python {platform.python_version()}, {libs}"
        f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}"
    )


def load_average() -> str:
    """The 1-minute load average, as text."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"
