"""CIFAR-10 / CIFAR-100 from the standard python-pickle archives, read safely.

The archives (``cifar-10-batches-py/`` and ``cifar-100-python/``, as distributed
by the CIFAR authors) are pickles; they are read with :class:`SafeUnpickler`,
which accepts only the globals that a plain numpy array needs, so loading a file
never runs code from it. The folder comes from the ``root`` option (CLI:
``--data-dir``) or the ``CLUSTERPRIOR_DATA_DIR`` environment variable; ``root``
may be the archive folder itself or its parent.

Registered sets (images ``[3, 32, 32]``; default normalisation: per-channel
mean/std of the training split; default augmentation: random crop with 4-pixel
padding and horizontal flip, i.e. augment shift=4, hflip=True):

- ``cifar10``: 10 classes, no subclasses.
- ``cifar10-hier``: target = 5 superclasses, ``sub`` = the CIFAR-10 class:
  {airplane, ship} "aircraft-ship", {automobile, truck} "road-vehicle",
  {bird, frog} "small-animal", {cat, dog} "pet", {deer, horse} "hoofed".
- ``cifar100``: ``target="fine"`` (100 classes, no subclasses) or
  ``target="coarse"`` (20 superclasses, ``sub`` = fine label).
"""

from __future__ import annotations

import functools
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from clusterprior.data.base import Meta, Part, Raw, superclass_map
from clusterprior.data.registry import register
from clusterprior.errors import UserError

ENV_VAR = "CLUSTERPRIOR_DATA_DIR"
AUGMENT = {"shift": 4, "hflip": True}
CIFAR10_HIER = {  # superclass name -> CIFAR-10 class ids
    "aircraft-ship": (0, 8),
    "road-vehicle": (1, 9),
    "small-animal": (2, 6),
    "pet": (3, 5),
    "hoofed": (4, 7),
}
_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta"),
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR archives: dicts, lists, bytes, numbers and numpy arrays only."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # bytes under protocol 2 written by Python 3
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def read_archive(path: Path) -> dict[str, Any]:
    """Read one archive file into a dict with ``str`` keys, refusing anything but data."""
    try:
        with open(path, "rb") as f:
            obj = SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise UserError(f"{path}: not a plain CIFAR archive, refused to load it ({e})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: not a CIFAR archive (expected a dict, found {type(obj).__name__})")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _names(values: Any) -> tuple[str, ...]:
    return tuple(v.decode("latin1") if isinstance(v, bytes) else str(v) for v in values)


def _folder(name: str, root: str | None) -> Path:
    subdir, train, test, meta = _LAYOUT[name]
    base = root or os.environ.get(ENV_VAR)
    expected = ", ".join([*train, *test, meta])
    hint = f"give the folder with root=... (CLI: --data-dir) or {ENV_VAR}"
    if not base:
        raise UserError(f"{name}: no data folder given; expected {expected} in <folder>/{subdir}; {hint}")
    for folder in (Path(base) / subdir, Path(base)):
        if all((folder / f).is_file() for f in [*train, *test, meta]):
            return folder
    raise UserError(f"{name}: data not found: expected {expected} in {Path(base) / subdir}; {hint}")


def _images(archive: dict[str, Any], path: Path, label_keys: tuple[str, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    data = archive.get("data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(f"{path}: 'data' must be a uint8 array of shape [N, 3072]")
    labels = []
    for key in label_keys:
        if key not in archive:
            raise UserError(f"{path}: missing key {key!r}")
        lab = np.asarray(archive[key])
        if lab.shape != (len(data),) or not np.issubdtype(lab.dtype, np.integer):
            raise UserError(f"{path}: {key!r} must hold {len(data)} integer labels")
        labels.append(lab.astype(np.int64))
    return data.reshape(-1, 3, 32, 32), labels


def _read_split(folder: Path, files: list[str], label_keys: tuple[str, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    stamps = tuple((folder / f).stat().st_mtime_ns for f in files)
    return _read_split_cached(folder, tuple(files), label_keys, stamps)


@functools.lru_cache(maxsize=4)
def _read_split_cached(
    folder: Path, files: tuple[str, ...], label_keys: tuple[str, ...], stamps: tuple[int, ...]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Read and validate one split; cached per folder, files and modification times."""
    chunks = [_images(read_archive(folder / f), folder / f, label_keys) for f in files]
    x = np.concatenate([c[0] for c in chunks])
    labels = [np.concatenate([c[1][i] for c in chunks]) for i in range(len(label_keys))]
    return x, labels


def _check_range(labels: np.ndarray, n: int, what: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        raise UserError(f"{what}: labels must lie in 0..{n - 1}")


def _cifar10_arrays(root: str | None) -> tuple[tuple[str, ...], Part, Part]:
    folder = _folder("cifar10", root)
    _, train_files, test_files, meta_file = _LAYOUT["cifar10"]
    names = _names(read_archive(folder / meta_file).get("label_names", [str(i) for i in range(10)]))
    parts = []
    for files in (train_files, test_files):
        x, (y,) = _read_split(folder, files, ("labels",))
        _check_range(y, 10, "cifar10")
        parts.append(Part(x, y, None))
    return names, parts[0], parts[1]


@register("cifar10", cache=False)
def cifar10(root: str | None = None) -> Raw:
    names, train, test = _cifar10_arrays(root)
    return Raw(train, test, Meta("cifar10", "image", names, augment=AUGMENT), normalize="channel")


@register("cifar10-hier", cache=False)
def cifar10_hier(root: str | None = None) -> Raw:
    names, train, test = _cifar10_arrays(root)
    to_super = np.zeros(10, np.int64)
    for s, members in enumerate(CIFAR10_HIER.values()):
        to_super[list(members)] = s
    parts = [Part(p.x, to_super[p.y], p.y) for p in (train, test)]
    meta = Meta(
        "cifar10-hier",
        "image",
        tuple(CIFAR10_HIER),
        subclass_names=names,
        superclass_of=tuple(int(s) for s in to_super),
        augment=AUGMENT,
    )
    return Raw(parts[0], parts[1], meta, normalize="channel")


@register("cifar100", cache=False)
def cifar100(root: str | None = None, target: str = "fine") -> Raw:
    if target not in ("fine", "coarse"):
        raise UserError(f"cifar100: target must be 'fine' or 'coarse', got {target!r}")
    folder = _folder("cifar100", root)
    _, train_files, test_files, meta_file = _LAYOUT["cifar100"]
    meta_archive = read_archive(folder / meta_file)
    fine_names = _names(meta_archive.get("fine_label_names", [str(i) for i in range(100)]))
    coarse_names = _names(meta_archive.get("coarse_label_names", [str(i) for i in range(20)]))
    parts = []
    for files in (train_files, test_files):
        x, (fine, coarse) = _read_split(folder, files, ("fine_labels", "coarse_labels"))
        _check_range(fine, 100, "cifar100 fine_labels")
        _check_range(coarse, 20, "cifar100 coarse_labels")
        parts.append(Part(x, fine, None) if target == "fine" else Part(x, coarse, fine))
    if target == "fine":
        meta = Meta("cifar100", "image", fine_names, augment=AUGMENT)
    else:
        train = parts[0]
        assert train.sub is not None  # target "coarse": the fine labels are the subclasses
        meta = Meta(
            "cifar100",
            "image",
            coarse_names,
            subclass_names=fine_names,
            superclass_of=superclass_map(train.sub, train.y, 100),
            augment=AUGMENT,
        )
    return Raw(parts[0], parts[1], meta, normalize="channel")
