"""Two file habits shared by every layer: atomic writes and content fingerprints.

Every file the project writes goes through :func:`atomic_path` (or :func:`write_text`,
:func:`write_csv`, :func:`save_figure`, which use it): the content is written to a unique
temporary file beside the target, flushed to disk (fsync), renamed over the target, and the
folder's entry flushed too. A reader, a crash or a power cut then finds the old file or the
new one, never a torn or empty one, and two writers of one file never share a temporary name
(the last rename wins, whole).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)  # read once (umask can only be read by setting it), at import
os.umask(_UMASK)


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a folder's entries) to disk; folders cannot be opened on
    Windows, where the rename is already durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # a folder on a file system that cannot sync one
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A unique temporary path beside ``path`` (ending in the same suffix, so that writers
    that add or read one see it) to write to; on a clean exit it is flushed to disk and
    renamed over ``path``, and the folder flushed: the old file or the new one, whole, even
    after a crash or a power cut. The temporary file is removed when the block raises; a
    writer killed mid-write leaves one, hidden (``.NAME.*.tmpSUFFIX``), never the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's file is private (0600): give it a new file's mode
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """``text`` to ``path`` through :func:`atomic_path`: the old file or the new one, never half."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(path: str | Path, frame: Any, **options: Any) -> None:
    """A pandas frame (or series) to CSV at ``path`` through :func:`atomic_path`; ``options``
    go to ``to_csv``."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **options)


def save_figure(path: str | Path, figure: Any, **options: Any) -> None:
    """A matplotlib figure to ``path`` (format from its suffix) through :func:`atomic_path`;
    ``options`` go to ``savefig``."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=Path(path).suffix.lstrip(".") or None, **options)


def fingerprint(value: Any) -> str:
    """16 hex digits of the SHA-256 of ``value`` as canonical JSON (sorted keys; values
    JSON cannot hold are written as ``str``)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
