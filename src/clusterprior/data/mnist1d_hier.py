"""``mnist1d-hier``: MNIST-1D signals grouped into superclasses of digits.

The signals are generated offline by ``mnist1d.data.make_dataset`` (never its
download path). The subclass is the digit, ``sub = digit``; the target is its
superclass under ``grouping`` (:data:`GROUPINGS`):

- ``"pairs"`` (default): 5 superclasses of two digits, {0,1}, {2,3}, ..., {8,9}, ``y = digit // 2``;
- ``"halves"``: 2 superclasses of five digits, {0..4} and {5..9}, ``y = digit // 5``
  (the thesis's 2-class MNIST; several subclasses per class, as its 5 per CIFAR-100 superclass).

Inputs have shape ``[1, 40]`` (one channel). Default normalisation: one scalar
mean/std of the training split.
"""

from __future__ import annotations

import random

import numpy as np

from clusterprior.data.base import Kind, Meta, Part, Raw, superclass_map
from clusterprior.data.registry import register
from clusterprior.errors import UserError

DIGITS = tuple(str(d) for d in range(10))
GROUPINGS = {"pairs": 2, "halves": 5}  # digits per superclass: y = digit // size


def _group_size(grouping: str, name: str) -> int:
    if grouping not in GROUPINGS:
        raise UserError(f"{name}: grouping must be one of {', '.join(GROUPINGS)}, got {grouping!r}")
    return GROUPINGS[grouping]


def digits_to_hier(
    digits: np.ndarray, grouping: str = "pairs", name: str = "mnist1d-hier"
) -> tuple[np.ndarray, np.ndarray]:
    """Target (superclass ``digit // size`` of ``grouping``) and subclass (the digit) of each label."""
    digits = digits.astype(np.int64)
    return digits // _group_size(grouping, name), digits


def hier_meta(name: str, kind: Kind, augment: dict, grouping: str = "pairs") -> Meta:
    """Metadata shared by the digit-based hierarchical sets."""
    size = _group_size(grouping, name)
    return Meta(
        name=name,
        kind=kind,
        class_names=tuple(f"{size * c}-{size * c + size - 1}" for c in range(10 // size)),
        subclass_names=DIGITS,
        superclass_of=superclass_map(np.arange(10), np.arange(10) // size, 10),
        augment=augment,
    )


def _make_signals(n_total: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``make_dataset`` with its global RNG use isolated from the caller's."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = n_total
    args.train_split = 1.0
    args.seed = seed
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        ds = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return ds["x"].astype(np.float32), ds["y"].astype(np.int64)


@register("mnist1d-hier")
def mnist1d_hier(n_train: int = 4000, n_test: int = 1000, seed: int = 42, grouping: str = "pairs") -> Raw:
    """Generate ``n_train + n_test`` signals (balanced over digits) and split them."""
    if n_train < 10 or n_test < 10:
        raise UserError("mnist1d-hier: n_train and n_test must be at least 10")
    _group_size(grouping, "mnist1d-hier")
    n_total = -(-(n_train + n_test) // 10) * 10  # make_dataset draws the same count per digit
    x, digits = _make_signals(n_total, seed)
    x = x[:, None, :]
    y, sub = digits_to_hier(digits, grouping)
    train = Part(x[:n_train], y[:n_train], sub[:n_train])
    test = Part(x[n_train : n_train + n_test], y[n_train : n_train + n_test], sub[n_train : n_train + n_test])
    meta = hier_meta("mnist1d-hier", "signal", {"shift": 4, "noise": 0.05}, grouping)
    return Raw(train, test, meta, normalize="global")
