"""MNIST from the four standard idx files, read with numpy only.

The files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each either plain or
gzipped with a ``.gz`` suffix (the plain file wins when both are there). idx is
raw bytes: a big-endian magic number (``0x00000803`` for the ``[N, 28, 28]``
uint8 images, ``0x00000801`` for the ``[N]`` uint8 labels), one big-endian
uint32 per dimension, then the data; the length must match the header exactly.
Nothing is ever downloaded.

The folder comes from the ``root`` option (CLI: ``--data-dir``) or the
``CLUSTERPRIOR_DATA_DIR`` environment variable. With ``<base>`` that folder, the
files are searched in ``<base>``, then ``<base>/MNIST/raw`` (torchvision's
layout), then ``<base>/mnist``; the first folder holding all four is used.

Registered set ``mnist`` (images ``[1, 28, 28]`` scaled to [0, 1]; default
normalisation: global scalar; no default augmentation):

- ``target="digit"``: 10 classes, no subclasses.
- ``target="binary"``: the thesis's 2-class MNIST (thesis §3.1): digits 0-4 are class 0,
  5-9 class 1; ``sub`` = the digit.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from clusterprior.data.base import Meta, Part, Raw
from clusterprior.data.registry import register
from clusterprior.errors import UserError

ENV_VAR = "CLUSTERPRIOR_DATA_DIR"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SUBFOLDERS = (".", "MNIST/raw", "mnist")
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
SIDE = 28
DIGITS = tuple(str(d) for d in range(10))
BINARY_NAMES = ("0-4", "5-9")
BINARY_OF_DIGIT = (0, 0, 0, 0, 0, 1, 1, 1, 1, 1)
_ALL_FILES = [f for pair in FILES.values() for f in pair]
_HINT = (
    f"put {', '.join(_ALL_FILES)} (each may end in .gz) in a folder and give it with "
    f"root=... (CLI: --data-dir) or {ENV_VAR}; nothing is downloaded"
)


def find_file(folder: Path, name: str) -> Path | None:
    """``folder/name``, else ``folder/name.gz``, else None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def locate(
    root: str | None,
    name: str = "mnist",
    subfolders: tuple[str, ...] = SUBFOLDERS,
    default: str | None = None,
    hint: str = _HINT,
) -> dict[str, Path]:
    """Path of each of the four files, from the first searched folder that holds them all.

    The base folder is ``root``, else ``$CLUSTERPRIOR_DATA_DIR``, else ``default``; each is
    searched with its ``subfolders``. When none holds the files, the error names those
    missing from the folder holding the most, and ``hint`` says where to get them.
    """
    bases = [root] if root else [b for b in (os.environ.get(ENV_VAR), default) if b]
    if not bases:
        raise UserError(f"{name}: no data folder given; {hint}")
    folders = [Path(base) / sub for base in bases for sub in subfolders]
    found = [{f: find_file(folder, f) for f in _ALL_FILES} for folder in folders]
    missing = [[f for f, path in paths.items() if path is None] for paths in found]
    best = min(range(len(folders)), key=lambda i: len(missing[i]))
    if missing[best]:
        looked = ", ".join(str(f) for f in folders)
        raise UserError(f"{name}: {', '.join(missing[best])} not found in {folders[best]} (looked in {looked}); {hint}")
    return {f: path for f, path in found[best].items() if path is not None}


def parse_idx(data: bytes, magic: int, name: str) -> np.ndarray:
    """Decode one idx buffer of unsigned bytes with the expected ``magic``; ``name`` is for errors."""
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{name}: truncated idx file ({len(data)} bytes, header needs {header})")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise UserError(f"{name}: not an idx file of this kind (magic 0x{found:08x}, expected 0x{magic:08x})")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    size = math.prod(dims)
    if len(data) - header != size:
        shape = "x".join(map(str, dims))
        raise UserError(f"{name}: header says {shape} = {size} bytes of data, file holds {len(data) - header}")
    return np.frombuffer(data, np.uint8, size, header).reshape(dims)


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: cannot read it ({e})") from None


@functools.lru_cache(maxsize=4)
def _read_idx(path: Path, magic: int, stamp: int) -> np.ndarray:
    """Read-only array of one idx file; cached per path and modification time."""
    return parse_idx(read_bytes(path), magic, str(path))


def read_split(files: dict[str, Path], split: str, name: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """``[N, 28, 28]`` uint8 images and ``[N]`` labels 0..9 of one split, checked."""
    images_path, labels_path = (files[f] for f in FILES[split])
    images = _read_idx(images_path, IMAGES_MAGIC, images_path.stat().st_mtime_ns)
    labels = _read_idx(labels_path, LABELS_MAGIC, labels_path.stat().st_mtime_ns)
    if images.shape[1:] != (SIDE, SIDE):
        raise UserError(f"{images_path}: images must be {SIDE}x{SIDE}, found {images.shape[1]}x{images.shape[2]}")
    if len(images) != len(labels):
        raise UserError(f"{name}: {images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise UserError(f"{labels_path}: labels must lie in 0..9, found {int(labels.max())}")
    return images, labels


def to_part(images: np.ndarray, digits: np.ndarray, target: str) -> Part:
    """Float32 ``[N, 1, 28, 28]`` in [0, 1] with the target (and ``sub``) of ``target``."""
    x = (images.astype(np.float32) / 255.0)[:, None]
    digits = digits.astype(np.int64)
    if target == "digit":
        return Part(x, digits, None)
    return Part(x, np.asarray(BINARY_OF_DIGIT, np.int64)[digits], digits)


@register("mnist", cache=False)
def mnist(root: str | None = None, target: str = "digit") -> Raw:
    if target not in ("digit", "binary"):
        raise UserError(f"mnist: target must be 'digit' or 'binary', got {target!r}")
    files = locate(root)
    train, test = (to_part(*read_split(files, split), target) for split in ("train", "test"))
    if target == "digit":
        meta = Meta("mnist", "image", DIGITS)
    else:
        meta = Meta("mnist", "image", BINARY_NAMES, subclass_names=DIGITS, superclass_of=BINARY_OF_DIGIT)
    return Raw(train, test, meta, normalize="global")
