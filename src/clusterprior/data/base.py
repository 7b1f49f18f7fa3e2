"""The types every data set returns, and the helpers they share.

A loader produces a :class:`Raw` pair of splits as numpy arrays; :func:`finish`
normalises both with statistics of the *training* split and wraps the requested
one in a :class:`Split` of torch tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch

from clusterprior.errors import UserError

Kind = Literal["vector", "signal", "image"]
NORMALIZE_MODES = ("global", "channel", "none")


@dataclass(frozen=True)
class Meta:
    """What a data set is: names, hierarchy and preprocessing.

    Parameters
    ----------
    name
        The data set's name.
    kind
        "vector", "signal" or "image": the shape family of its inputs.
    class_names
        One name per class (training target).
    subclass_names
        One name per global subclass id, or None when the set has no subclasses.
    superclass_of
        ``superclass_of[s]`` is the class (training target) that subclass ``s`` lies in;
        None when the set has no subclasses.
    normalization
        The statistics applied: ``x = (x_raw - mean) / std`` (keys ``mode``, ``mean``,
        ``std``, filled in when a split is finished).
    augment
        The default augmentation parameters for this data set
        (see :mod:`clusterprior.train.augment`).
    extra
        Set-specific facts (SynthClust's centroids, for instance).
    """

    name: str
    kind: Kind
    class_names: tuple[str, ...]
    subclass_names: tuple[str, ...] | None = None
    superclass_of: tuple[int, ...] | None = None
    normalization: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        """The number of classes, ``len(class_names)``."""
        return len(self.class_names)

    @property
    def n_subclasses(self) -> int | None:
        """The number of subclasses, or None when the set has no subclass names."""
        return None if self.subclass_names is None else len(self.subclass_names)


@dataclass(frozen=True)
class Split:
    """One split of a data set: inputs, training target, subclass id, metadata.

    ``len(split)`` is the number of examples.

    Parameters
    ----------
    x
        The inputs, float32 ``[N, *input_shape]``.
    y
        The training targets (class indices), int64 ``[N]``.
    sub
        The global subclass ids, int64 ``[N]``, or None when the set has none.
    meta
        What the data set is (:class:`Meta`).
    split
        Which split this is: "train" or "test".
    """

    x: torch.Tensor  # float32, [N, *input_shape]
    y: torch.Tensor  # int64, [N]
    sub: torch.Tensor | None  # int64, [N], global subclass ids, or None
    meta: Meta
    split: str = "train"

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, ``x.shape[1:]`` (without the batch axis)."""
        return tuple(self.x.shape[1:])

    @property
    def n_classes(self) -> int:
        """The number of classes of the data set, ``meta.n_classes``."""
        return self.meta.n_classes

    @property
    def subclasses(self) -> torch.Tensor:
        """``sub``, for what needs subclass labels.

        Raises
        ------
        UserError
            When the data set has no subclass labels (``sub`` is None).
        """
        if self.sub is None:
            raise UserError(f"{self.meta.name} has no subclass labels, and this needs them")
        return self.sub

    @property
    def superclass_of(self) -> tuple[int, ...]:
        """``meta.superclass_of``, for what needs the subclass-to-class map.

        Raises
        ------
        UserError
            When the data set has no subclasses (``meta.superclass_of`` is None).
        """
        if self.meta.superclass_of is None:
            raise UserError(f"{self.meta.name} has no subclass labels, and this needs them")
        return self.meta.superclass_of


@dataclass(frozen=True)
class Part:
    """Raw arrays of one split (any numeric dtype for ``x``)."""

    x: np.ndarray
    y: np.ndarray
    sub: np.ndarray | None


@dataclass(frozen=True)
class Raw:
    """What a loader returns before normalisation."""

    train: Part
    test: Part
    meta: Meta
    normalize: str = "global"  # default normalisation mode of this data set


def superclass_map(sub: np.ndarray, y: np.ndarray, n_sub: int) -> tuple[int, ...]:
    """Class of each subclass id ``0..n_sub-1``; every subclass must lie in one class."""
    pairs = np.unique(np.stack([sub, y], axis=1), axis=0)
    owners: dict[int, int] = {}
    for s, c in pairs.tolist():
        if s in owners:
            raise UserError(
                f"subclass {s} appears in classes {owners[s]} and {c}; each subclass must lie inside one class"
            )
        owners[s] = c
    missing = sorted(set(range(n_sub)) - owners.keys())
    if missing:
        raise UserError(
            f"subclass ids must be 0..{n_sub - 1} and all present in the training split; missing {missing[:5]}"
        )
    return tuple(owners[s] for s in range(n_sub))


def _reduce_axes(x: np.ndarray, mode: str) -> tuple[int, ...]:
    if mode == "global":
        return tuple(range(x.ndim))
    # per channel: axis 1 for [N, C, ...] inputs, per feature for [N, D] vectors
    return (0,) + tuple(range(2, x.ndim))


def normalization_stats(x: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the training inputs, over all entries ("global") or per channel.

    A constant input (std < 1e-12) keeps std 1 so that it is only centred.
    Mode "none" gives mean 0 and std 1.
    """
    if mode not in NORMALIZE_MODES:
        raise UserError(f"normalize must be one of {', '.join(NORMALIZE_MODES)}, got {mode!r}")
    if mode == "none":
        return np.zeros(1, np.float64), np.ones(1, np.float64)
    axes = _reduce_axes(x, mode)
    mean = x.mean(axis=axes, dtype=np.float64)
    std = x.std(axis=axes, dtype=np.float64)
    std = np.where(std < 1e-12, 1.0, std)
    return np.atleast_1d(mean), np.atleast_1d(std)


def _apply(x: np.ndarray, mean: np.ndarray, std: np.ndarray, mode: str) -> torch.Tensor:
    shape = [1] * x.ndim
    if mode == "channel":
        shape[1] = -1
    m = mean.reshape(shape).astype(np.float32)
    s = std.reshape(shape).astype(np.float32)
    out = (x.astype(np.float32) - m) / s
    return torch.from_numpy(np.ascontiguousarray(out))


def finish(raw: Raw, split: str, normalize: str | None) -> Split:
    """Normalise ``raw`` with training statistics and return ``split`` as tensors."""
    mode = raw.normalize if normalize is None else normalize
    mean, std = normalization_stats(raw.train.x, mode)
    part = raw.train if split == "train" else raw.test
    meta = replace(raw.meta, normalization={"mode": mode, "mean": mean.tolist(), "std": std.tolist()})
    sub = None if part.sub is None else torch.from_numpy(part.sub.astype(np.int64))
    return Split(
        x=_apply(part.x, mean, std, mode),
        y=torch.from_numpy(part.y.astype(np.int64)),
        sub=sub,
        meta=meta,
        split=split,
    )
