"""One live driver per study: ``DIR/driver.lock``, held with an exclusive ``flock`` for the
driver's whole life. The operating system releases it when the process ends, however it
ends, so a dead driver's lock is taken over with no clean-up; the holder writes its pid,
host and start time into the file, for the line a second driver gets. Drivers on one host
(``flock`` is not reliable across the hosts of a network file system)."""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clusterprior.errors import UserError

LOCK = "driver.lock"


@contextmanager
def driver_lock(folder: Path) -> Iterator[None]:
    """Hold the study's driver lock for the block; a :class:`UserError` naming the holder
    when another live process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 500).decode(errors="replace").strip() or "another process"
            raise UserError(
                f"{folder}: another driver is running this study ({holder}); let it finish or stop it, then run again"
            ) from None
        os.ftruncate(fd, 0)
        os.write(
            fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode()
        )
        yield
    finally:
        os.close(fd)  # closing the file releases the lock
