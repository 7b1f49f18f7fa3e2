"""``mnist1d-hier``: MNIST-1D signals grouped into 5 superclasses of two digits.

The signals are generated offline by ``mnist1d.data.make_dataset`` (never its
download path). Target ``y = digit // 2`` (superclasses {0,1}, {2,3}, {4,5},
{6,7}, {8,9}); subclass ``sub = digit``. Inputs have shape ``[1, 40]`` (one
channel). Default normalisation: one scalar mean/std of the training split.
"""

from __future__ import annotations

import random

import numpy as np

from clusterprior.data.base import Meta, Part, Raw, superclass_map
from clusterprior.data.registry import register
from clusterprior.errors import UserError

DIGITS = tuple(str(d) for d in range(10))
SUPERCLASSES = tuple(f"{2 * c}-{2 * c + 1}" for c in range(5))


def digits_to_hier(digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Target (superclass) and subclass of each digit label."""
    digits = digits.astype(np.int64)
    return digits // 2, digits


def hier_meta(name: str, kind: str, augment: dict) -> Meta:
    """Metadata shared by the digit-based hierarchical sets."""
    return Meta(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        class_names=SUPERCLASSES,
        subclass_names=DIGITS,
        superclass_of=superclass_map(np.arange(10), np.arange(10) // 2, 10),
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
def mnist1d_hier(n_train: int = 4000, n_test: int = 1000, seed: int = 42) -> Raw:
    """Generate ``n_train + n_test`` signals (balanced over digits) and split them."""
    if n_train < 10 or n_test < 10:
        raise UserError("mnist1d-hier: n_train and n_test must be at least 10")
    n_total = -(-(n_train + n_test) // 10) * 10  # make_dataset draws the same count per digit
    x, digits = _make_signals(n_total, seed)
    x = x[:, None, :]
    y, sub = digits_to_hier(digits)
    train = Part(x[:n_train], y[:n_train], sub[:n_train])
    test = Part(x[n_train : n_train + n_test], y[n_train : n_train + n_test], sub[n_train : n_train + n_test])
    meta = hier_meta("mnist1d-hier", "signal", {"shift": 4, "noise": 0.05})
    return Raw(train, test, meta, normalize="global")
