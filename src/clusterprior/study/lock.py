"""One live driver per study: ``DIR/driver.lock``, held with an exclusive lock for the
driver's whole life (``flock`` on POSIX, ``msvcrt.locking`` of one byte far past the text on
Windows). The operating system releases it when the process ends, however it ends, so a
dead driver's lock is taken over with no clean-up; the holder writes its pid, host and start
time into the file, for the line a second driver gets. Drivers on one host (neither lock is
reliable across the hosts of a network file system). The locking module is imported when a
lock is taken, so that importing the study package needs neither."""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clusterprior.errors import UserError

LOCK = "driver.lock"
WINDOWS_BYTE = 1 << 20  # msvcrt locks a byte range: one byte past any holder's line, which stays readable


HELD = (errno.EAGAIN, errno.EACCES, errno.EDEADLK)  # what a lock held by another process raises


def _lock(fd: int) -> None:
    """Lock ``fd`` exclusively without waiting; an OSError with an errno of :data:`HELD` when
    another process holds it (any other error is the system's, and raised as it is)."""
    try:
        import fcntl
    except ImportError:  # Windows
        try:
            import msvcrt
        except ImportError:
            raise UserError("no file locking on this system (neither fcntl nor msvcrt)") from None
        os.lseek(fd, WINDOWS_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]  # Windows only
        finally:
            os.lseek(fd, 0, os.SEEK_SET)  # the holder's line is read, or written, from the start
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


@contextmanager
def driver_lock(folder: Path) -> Iterator[None]:
    """Hold the study's driver lock for the block; a :class:`UserError` naming the holder
    when another live process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            _lock(fd)
        except OSError as e:
            if e.errno not in HELD:
                raise
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
