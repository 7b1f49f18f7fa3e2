"""User data from an ``.npz`` file.

Keys: ``x`` (numeric, ``[N, D]`` vectors, ``[N, C, L]`` signals or
``[N, C, H, W]`` images), ``y`` (integer targets ``0..C-1``) and optionally
``sub`` (global subclass ids ``0..S-1``, each inside one class), ``class_names``,
``subclass_names``, and a test split as ``x_test``/``y_test``/``sub_test``. Without
a test split, a fixed stratified split takes ``test_fraction`` of each class.
The file is read with ``allow_pickle=False``: object arrays are refused. Default
normalisation: one scalar mean/std of the training split.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from clusterprior.data.base import Kind, Meta, Part, Raw, superclass_map
from clusterprior.data.registry import register
from clusterprior.errors import UserError

KINDS: dict[int, Kind] = {2: "vector", 3: "signal", 4: "image"}
AUGMENT: dict[str, dict[str, Any]] = {
    "vector": {"noise": 0.1},
    "signal": {"shift": 4, "noise": 0.05},
    "image": {"shift": 4, "hflip": False},
}


def _read(path: str) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except ValueError as e:
        raise UserError(f"{path}: refused: the file holds Python objects ({e})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable .npz file ({e})") from None


def _part(arrays: dict[str, np.ndarray], suffix: str, path: str) -> Part:
    x, y, sub = arrays.get("x" + suffix), arrays.get("y" + suffix), arrays.get("sub" + suffix)
    if x is None or y is None:
        raise UserError(f"{path}: needs arrays 'x{suffix}' and 'y{suffix}'")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or x.ndim not in KINDS:
        raise UserError(f"{path}: 'x{suffix}' must be numeric with 2, 3 or 4 dimensions, got {x.dtype} {x.shape}")
    for key, arr in (("y", y), ("sub", sub)):
        if arr is not None and (arr.shape != (len(x),) or not np.issubdtype(arr.dtype, np.integer)):
            raise UserError(f"{path}: '{key}{suffix}' must be {len(x)} integers, got {arr.dtype} {arr.shape}")
    if not np.isfinite(x).all():
        raise UserError(f"{path}: 'x{suffix}' holds NaN or infinite values")
    return Part(x, y.astype(np.int64), None if sub is None else sub.astype(np.int64))


def _split(part: Part, test_fraction: float, seed: int) -> tuple[Part, Part]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(part.y))
    try:
        tr, te = train_test_split(idx, test_size=test_fraction, stratify=part.y, random_state=seed)
    except ValueError as e:
        raise UserError(f"cannot split the .npz into train/test ({e}); add x_test and y_test to the file") from None
    train, test = (Part(part.x[i], part.y[i], None if part.sub is None else part.sub[i]) for i in (tr, te))
    return train, test


@register("npz", cache=False)
def npz(path: str = "", test_fraction: float = 0.2, seed: int = 0) -> Raw:
    arrays = _read(path)
    if "x_test" in arrays:
        train, test = _part(arrays, "", path), _part(arrays, "_test", path)
    else:
        if not 0.0 < test_fraction < 1.0:
            raise UserError(f"npz: test_fraction must be in (0, 1), got {test_fraction}")
        train, test = _split(_part(arrays, "", path), test_fraction, seed)
    if train.x.shape[1:] != test.x.shape[1:] or (train.sub is None) != (test.sub is None):
        raise UserError(f"{path}: train and test splits differ in input shape or in having 'sub'")
    n_classes = int(train.y.max()) + 1
    for part in (train, test):
        if part.y.min() < 0 or part.y.max() >= n_classes:
            raise UserError(f"{path}: targets must be 0..{n_classes - 1} (test labels must occur in train)")
    n_sub, superclass_of = None, None
    if train.sub is not None and test.sub is not None:
        n_sub = int(train.sub.max()) + 1
        superclass_of = superclass_map(train.sub, train.y, n_sub)
        if test.sub.min() < 0 or test.sub.max() >= n_sub:
            raise UserError(f"{path}: test subclass ids must occur in train")
    names = arrays.get("class_names")
    sub_names = arrays.get("subclass_names")
    kind = KINDS[train.x.ndim]
    meta = Meta(
        name=Path(path).name,
        kind=kind,
        class_names=tuple(map(str, names)) if names is not None else tuple(str(c) for c in range(n_classes)),
        subclass_names=None
        if n_sub is None
        else (tuple(map(str, sub_names)) if sub_names is not None else tuple(str(s) for s in range(n_sub))),
        superclass_of=superclass_of,
        augment=AUGMENT[kind],
    )
    return Raw(train, test, meta, normalize="global")
