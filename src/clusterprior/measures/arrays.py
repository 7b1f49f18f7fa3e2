"""Array plumbing shared by the measures: input checks, label groups, percentiles,
top-k means and per-group moments. Everything is torch, on the arrays' device."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from clusterprior.errors import UserError

EPS = 1e-7
ArrayLike = np.ndarray | torch.Tensor
LayerArrays = Sequence[ArrayLike] | Mapping[str, ArrayLike]
LayerKey = str | int


def as_layers(layers: LayerArrays, n: int) -> tuple[list[LayerKey], list[torch.Tensor]]:
    """Names (dict keys, or list positions) and float64 ``[n, C_l]`` tensors; NaN refused."""
    items = list(layers.items()) if isinstance(layers, Mapping) else list(enumerate(layers))
    if not items:
        raise UserError("no layers given")
    names, arrays = [], []
    for name, a in items:
        t = torch.as_tensor(a).to(torch.float64)
        if t.ndim != 2 or t.shape[0] != n:
            raise UserError(f"layer {name!r}: expected a [{n}, neurons] array, got shape {list(t.shape)}")
        if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):  # one cheap pass first
            raise UserError(f"layer {name!r} holds NaN or infinite activations")
        names.append(name)
        arrays.append(t)
    return names, arrays


def as_labels(a: ArrayLike, what: str, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(a)
    if t.ndim != 1 or t.is_floating_point():
        raise UserError(f"{what} must be a 1-D integer array, got {t.dtype} of shape {list(t.shape)}")
    return t.to(device=device, dtype=torch.int64)


def check_k(k: int) -> int:
    if int(k) != k or k < 1:
        raise UserError(f"k must be a positive integer, got {k}")
    return int(k)


def percentile(t: torch.Tensor, q: float, dim: int = 0) -> torch.Tensor:
    """numpy's default ("linear") percentile ``q`` in [0, 100] along ``dim``: the order
    statistics ``lo = floor(pos)`` and ``lo + 1`` around ``pos = q/100 (n-1)``, linearly
    interpolated. They come from a partial ``topk`` on the shorter side, not a full sort
    (and ``torch.quantile`` refuses inputs above 2**24 elements)."""
    n = t.shape[dim]
    lo, hi, frac = percentile_ranks(q, n)
    if lo >= n // 2:  # the n - lo largest values hold ranks lo..n-1; the two smallest of them, lo and hi
        part = t.topk(n - lo, dim=dim, sorted=False).values
        ends = part.topk(min(2, n - lo), dim=dim, largest=False).values
        a, b = ends.select(dim, 0), ends.select(dim, hi - lo)
    else:  # the hi + 1 smallest hold ranks 0..hi; the two largest of them, hi and lo
        part = t.topk(hi + 1, dim=dim, largest=False, sorted=False).values
        ends = part.topk(min(2, hi + 1), dim=dim).values
        b, a = ends.select(dim, 0), ends.select(dim, hi - lo)
    return a + frac * (b - a)


def percentile_ranks(q: float, n: int) -> tuple[int, int, float]:
    """numpy's linear percentile ``q`` of ``n`` values lies between the order statistics
    ``lo = floor(pos)`` and ``hi = min(lo + 1, n - 1)`` (0-based), ``frac = pos - lo`` of
    the way, with ``pos = q/100 (n-1)``."""
    pos = q / 100.0 * (n - 1)
    lo = math.floor(pos)
    return lo, min(lo + 1, n - 1), pos - lo


def mean(t: torch.Tensor) -> float:
    return float(t.mean())


def warn_dead(dead: Sequence[LayerKey]) -> None:
    """The one warning for layers without a live neuron, which are left out."""
    if dead:
        warnings.warn(f"layers {list(dead)} have no live neuron and are left out", stacklevel=4)


def median(t: torch.Tensor) -> float:
    """numpy's median (mean of the two middle values for an even count)."""
    return float(percentile(t.flatten(), 50.0))


def topk_mean(scores: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    """Mean of the ``k`` largest values along ``dim``; ``k`` is clipped to the size of ``dim``."""
    return scores.topk(min(k, scores.shape[dim]), dim=dim).values.mean(dim)


def group_sums(z: torch.Tensor, groups: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Counts ``[G]``, sums ``[G, M]`` and sums of squares ``[G, M]`` of ``z`` per group.
    ``z`` should be centred (e.g. on its global mean) to keep the moments accurate."""
    counts = torch.bincount(groups, minlength=n_groups).to(z.dtype)
    s1 = torch.zeros(n_groups, z.shape[1], dtype=z.dtype, device=z.device).index_add_(0, groups, z)
    s2 = torch.zeros_like(s1).index_add_(0, groups, z * z)
    return counts, s1, s2


def moments(counts: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std (ddof 0) from group sums."""
    n = counts[:, None]
    mean = s1 / n
    return mean, (s2 / n - mean * mean).clamp_min(0.0).sqrt()


def live_neurons(z: torch.Tensor) -> torch.Tensor:
    """Neurons with a positive pre-activation on at least one sample (the others are dead)."""
    return (z > 0).any(dim=0)


def unit_rows(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows scaled to unit norm (all-zero rows stay zero) and a mask of the zero rows."""
    norms = z.norm(dim=1)
    zero = norms == 0
    return z / torch.where(zero, torch.ones_like(norms), norms)[:, None], zero


@dataclass
class Groups:
    """The classes present in the labels, as dense indices: ``class_index[j]`` is the class
    of sample ``j``, ``class_ids`` the labels of the classes."""

    class_ids: torch.Tensor
    class_index: torch.Tensor

    @property
    def n_classes(self) -> int:
        return len(self.class_ids)


@dataclass
class Subgroups(Groups):
    """Classes and subclasses: ``sub_index[j]`` is the subclass of sample ``j``;
    ``owner[s]``: class index of subclass ``s``; ``valid[s]``: the subclass shares its
    class with at least one other subclass (c0-c2 compare a subclass with the rest of
    its class, so subclasses alone in their class are left out, with a warning)."""

    sub_ids: torch.Tensor
    sub_index: torch.Tensor
    owner: torch.Tensor
    valid: torch.Tensor

    @property
    def n_subclasses(self) -> int:
        return len(self.sub_ids)


def _check_sizes(ids: torch.Tensor, counts: torch.Tensor, what: str) -> None:
    small = counts < 2
    if bool(small.any()):
        i = int(small.nonzero()[0])
        raise UserError(f"{what} {int(ids[i])} has {int(counts[i])} sample(s); every {what} needs at least 2")


def groups(y: ArrayLike, n: int, device: torch.device) -> Groups:
    """Index the classes of ``y``; checks their sizes."""
    y_t = as_labels(y, "y", device)
    if len(y_t) != n:
        raise UserError(f"y has {len(y_t)} labels for {n} samples")
    class_ids, class_index = torch.unique(y_t, return_inverse=True)
    _check_sizes(class_ids, torch.bincount(class_index), "class")
    return Groups(class_ids, class_index)


def subgroups(y: ArrayLike, n: int, device: torch.device, sub: ArrayLike) -> Subgroups:
    """Index the classes of ``y`` and the subclasses of ``sub``; checks sizes and nesting."""
    class_ids, class_index = (g := groups(y, n, device)).class_ids, g.class_index
    s_t = as_labels(sub, "sub", device)
    if len(s_t) != n:
        raise UserError(f"sub has {len(s_t)} labels for {n} samples")
    sub_ids, sub_index = torch.unique(s_t, return_inverse=True)
    _check_sizes(sub_ids, torch.bincount(sub_index), "subclass")
    lo = torch.full((len(sub_ids),), n, device=device).scatter_reduce(0, sub_index, class_index, "amin")
    hi = torch.full((len(sub_ids),), -1, device=device).scatter_reduce(0, sub_index, class_index, "amax")
    if bool((lo != hi).any()):
        s = int((lo != hi).nonzero()[0])
        raise UserError(f"subclass {int(sub_ids[s])} spans several classes; each subclass must lie inside one class")
    per_class = torch.bincount(lo, minlength=len(class_ids))
    valid = per_class[lo] >= 2
    if not bool(valid.any()):
        raise UserError("no class has two or more subclasses; the subclass measures (c0-c2) need them")
    if not bool(valid.all()):
        alone = [int(sub_ids[s]) for s in (~valid).nonzero().flatten()[:5]]
        warnings.warn(f"subclasses {alone} are alone in their class and are left out of c0-c2", stacklevel=3)
    return Subgroups(class_ids, class_index, sub_ids, sub_index, lo, valid)
