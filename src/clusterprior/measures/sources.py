"""Where a measurement's samples come from when they are not all in memory: a data set,
a data loader or any re-iterable of ``(x, y)`` / ``(x, y, sub)`` batches, run through
the model's probe one batch at a time (:class:`Stream`), and random access to the inputs
for c0 (:func:`samples_of`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from clusterprior.data import Meta, Split
from clusterprior.data.base import Kind
from clusterprior.errors import UserError
from clusterprior.measures.intraclass import ArraySamples, Samples
from clusterprior.measures.streaming import Batch

Triple = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def _split_batches(split: Split, batch_size: int) -> Iterator[Triple]:
    for start in range(0, len(split), batch_size):
        sl = slice(start, start + batch_size)
        yield split.x[sl], split.y[sl], None if split.sub is None else split.sub[sl]


def _triple(item: Any) -> Triple:
    """``(x, y)`` or ``(x, y, sub)``; subclass labels all negative (an image folder without
    subclasses) count as none."""
    if not isinstance(item, tuple | list) or len(item) not in (2, 3):
        raise UserError(f"a batch must be (x, y) or (x, y, sub), got {type(item).__name__}")
    x, y = torch.as_tensor(item[0]), torch.as_tensor(item[1])
    sub = torch.as_tensor(item[2]) if len(item) == 3 else None
    if sub is not None and bool((sub < 0).all()):
        sub = None
    return x, y, sub


KINDS: dict[int, Kind] = {2: "vector", 3: "signal", 4: "image"}  # by the inputs' number of dimensions


def arrays_of(data: Any) -> Any:
    """``(x, y)`` or ``(x, y, sub)`` given as arrays in memory (torch tensors or numpy arrays:
    the first call one writes) as one in-memory :class:`Split`, which every measure reads;
    other data (a Split, a data set, a loader, a list of batches) as it is. Classes and
    subclasses are named by their ids."""
    arrays = (torch.Tensor, np.ndarray)
    if not (isinstance(data, tuple | list) and len(data) in (2, 3) and all(isinstance(t, arrays) for t in data)):
        return data
    lengths = [len(t) for t in data]
    if len(set(lengths)) != 1:
        raise UserError(f"x, y (and sub) must hold one entry per sample, got lengths {lengths}")
    x = torch.as_tensor(data[0]).float()
    if x.dim() not in KINDS:
        raise UserError(f"x must be [N, features], [N, C, L] or [N, C, H, W], got shape {tuple(x.shape)}")
    y = torch.as_tensor(data[1]).long()
    sub = torch.as_tensor(data[2]).long() if len(data) == 3 else None
    meta = Meta(
        "arrays",
        KINDS[x.dim()],
        tuple(str(c) for c in range(int(y.max()) + 1)),
        None if sub is None else tuple(str(s) for s in range(int(sub.max()) + 1)),
    )
    return Split(x, y, sub, meta, split="arrays")


def loader_of(data: Any, batch_size: int) -> Iterable[Any]:
    """A re-iterable of batches: a :class:`Split` in slices, a map-style ``Dataset`` through a
    ``DataLoader`` (no shuffling), a ``DataLoader`` or a re-iterable as they are."""
    if isinstance(data, Split):
        return _Reiterable(lambda: _split_batches(data, batch_size))
    if isinstance(data, DataLoader):
        if isinstance(data.sampler, RandomSampler):
            raise UserError("the DataLoader shuffles; streaming needs the same order every pass (shuffle=False)")
        return data
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        return DataLoader(data, batch_size=batch_size, shuffle=False)
    if not isinstance(data, Iterable):
        raise UserError(f"data must be a Split, a Dataset, a DataLoader or an iterable of batches, got {type(data)}")
    if iter(data) is data:
        raise UserError(
            "the data is a one-shot iterator; the measures take several passes: pass a DataLoader, a list "
            "of batches or a Dataset"
        )
    return data


class _Reiterable:
    def __init__(self, make: Any) -> None:
        self.make = make

    def __iter__(self) -> Iterator[Any]:
        return iter(self.make())


class Stream:
    """The probe's pre- and post-activations of ``model`` over ``data``, a batch at a time;
    each call is a fresh pass (:data:`~.streaming.Batches`)."""

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        batch_size: int = 512,
        layers: Sequence[str] | None = None,
        activations: Sequence[str] | None = None,
        tokens: str = "max",
    ) -> None:
        from clusterprior.probe import Probe

        self.data = data
        self.loader = loader_of(data, batch_size)
        self.probe = Probe(model, layers=layers, activations=activations, tokens=tokens)
        self.names = self.probe.names
        self.batch_size = batch_size

    def triples(self) -> Iterator[Triple]:
        """The data's ``(x, y, sub)`` batches, without running the model."""
        if isinstance(self.loader, _Reiterable):
            yield from self.loader
            return
        for item in self.loader:
            yield _triple(item)

    def __call__(self) -> Iterator[Batch]:
        for x, y, sub in self.triples():
            pre, post = self.probe(x)
            yield Batch(pre, post, y, sub)

    def has_subclasses(self) -> bool:
        """Whether the batches carry subclass labels (read from the first batch)."""
        if isinstance(self.data, Split):
            return self.data.sub is not None
        first = next(self.triples(), None)
        if first is None:
            raise UserError("the data has no samples")
        return first[2] is not None


def _dataset(data: Any) -> Any:
    if isinstance(data, DataLoader):
        return data.dataset
    return data


class DatasetSamples:
    """:class:`~.intraclass.Samples` of a map-style data set whose items are ``(x, y[, sub])``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def take(self, index: np.ndarray) -> torch.Tensor:
        return torch.stack([torch.as_tensor(_triple(self.dataset[int(i)])[0]) for i in index])

    def labels(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every sample's ``(y, sub)`` in the data set's order: its ``y``/``sub`` attributes when
        it has them (an image folder), else one pass over it."""
        if hasattr(self.dataset, "y"):
            return torch.as_tensor(self.dataset.y), getattr(self.dataset, "sub", None)
        triples = [_triple(item) for item in DataLoader(self.dataset, batch_size=batch_size, shuffle=False)]
        subs = [t[2] for t in triples]
        sub = None if any(s is None for s in subs) else torch.cat([s for s in subs if s is not None])
        return torch.cat([t[1] for t in triples]), sub


def samples_of(data: Any, batch_size: int) -> tuple[Samples, torch.Tensor, torch.Tensor | None]:
    """Random access to the inputs of ``data`` and every sample's labels ``(samples, y, sub)``,
    for c0; a stream without random access gets a :class:`UserError`."""
    if isinstance(data, Split):
        return ArraySamples(data.x), data.y, data.sub
    dataset = _dataset(data)
    if not (isinstance(dataset, Dataset) and hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise UserError("c0 needs random access to the samples: pass a map-style Dataset (or a DataLoader over one)")
    samples = DatasetSamples(dataset)
    y, sub = samples.labels(batch_size)
    return samples, y, sub
