"""Helpers of the tests that kill a study's driver midway: wait until its database counts
finished runs, kill its process group."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path


def done_runs(folder: Path) -> int:
    """How many runs the study in ``folder`` has finished (0 while its database is not there
    or is locked by the driver's write)."""
    if not (folder / "study.db").exists():
        return 0
    try:
        with sqlite3.connect(folder / "study.db", timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def wait_for_done(folder: Path, n: int, deadline: float, proc: subprocess.Popen | None = None) -> int:
    """Poll until the study in ``folder`` has finished ``n`` runs, ``deadline`` (a
    ``time.time()``) passes or the driver ``proc`` exits; the count of finished runs."""
    done = 0
    while time.time() < deadline and done < n and (proc is None or proc.poll() is None):
        time.sleep(0.2)
        done = done_runs(folder)
    return done


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the driver started with ``start_new_session=True`` and its workers, no clean-up."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
