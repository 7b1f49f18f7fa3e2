"""What every benchmark records about the machine it ran on, and how busy the other processes
keep it (imported by the scripts here)."""

from __future__ import annotations

import os
import platform
import resource
import time
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


def busy_seconds() -> float:
    """CPU seconds the whole machine spent non-idle (from /proc/stat), or NaN."""
    try:
        ticks = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # user..steal, minus idle and iowait


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def others_share(seconds: float) -> float:
    """Share of the cores' time that other processes used over the next ``seconds`` (NaN if unknown)."""
    busy0, own0 = busy_seconds(), own_cpu_seconds()
    time.sleep(seconds)
    return (busy_seconds() - busy0 - (own_cpu_seconds() - own0)) / (seconds * (os.cpu_count() or 1))


def wait_idle(max_share: float, max_wait: float, probe: float = 3.0) -> float:
    """Sleep until other processes use at most ``max_share`` of the cores over ``probe`` seconds,
    or ``max_wait`` seconds passed (no wait at all for ``max_wait`` <= 0); the last share seen."""
    if max_wait <= 0:
        return float("nan")
    start = time.monotonic()
    while True:
        share = others_share(probe)
        waited = time.monotonic() - start
        if not share > max_share:  # also NaN: no /proc/stat
            if waited > probe + 1:
                print(f"# others use {share:.0%} of the cores after waiting {waited:.0f} s", flush=True)
            return share
        if waited >= max_wait:
            print(f"# others still use {share:.0%} of the cores after {waited:.0f} s; timing anyway", flush=True)
            return share
        print(f"# others use {share:.0%} of the cores > {max_share:.0%}; waiting ({waited:.0f} s so far)", flush=True)
        time.sleep(10)
