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
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk, where the system can: a folder cannot be
    opened on Windows, nor synced on some file systems."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sync_file(path: Path) -> None:
    """Flush a file's content to disk; a failure raises (the target is then left as it was)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_temporary(path: Path) -> Path:
    """A new, empty, hidden file beside ``path`` under a name no other writer takes, with a new
    file's mode (the umask applies)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:  # pragma: no cover (2**48 names)
            continue


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A unique temporary path beside ``path`` to write to; on a clean exit it is flushed to
    disk and renamed over ``path``, and the folder flushed: the old file or the new one,
    whole, even after a crash or a power cut. The temporary file is removed when the block
    raises; a writer killed mid-write leaves one behind, hidden (``.NAME.XXXXXXXXXXXX.tmp``),
    never a torn target. Its name does not end in ``path``'s suffix: give writers that read
    the format from the name (``savefig``) the format, and those that add a suffix
    (``np.savez``) an open file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
    try:
        yield tmp
        _sync_file(tmp)
        os.replace(tmp, path)
        _sync_folder(path.parent)
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
