"""Rank statistics of a measure ``m`` against generalization ``t`` over a set of models.

Sign convention: ``t`` is oriented so that larger means better generalization (test
accuracy, or minus the generalization gap); a positive coefficient then means "higher
measure, better generalization".

Hyperparameter values are compared by value wherever models are grouped (granulated Kendall,
its bootstrap, the conditional-MI score): see :func:`_group_key`.
"""

from __future__ import annotations

import itertools
import math
import numbers
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from clusterprior.errors import UserError

Hparams = Sequence[Mapping[str, Any]]


def _vector(a: Any, what: str) -> np.ndarray:
    v = np.asarray(a, dtype=np.float64)
    if v.ndim != 1:
        raise UserError(f"{what} must be one value per model")
    if not np.isfinite(v).all():
        raise UserError(f"{what} holds NaN or infinite values")
    return v


def kendall(m: Any, t: Any) -> float:
    """Kendall's tau-a (Jiang et al. 2020), with sign(0) = 0:

    tau = 1 / (n (n-1)) * sum over ordered pairs i != j of sign(m_i - m_j) sign(t_i - t_j).

    Ties count 0 (and still count in the denominator). Vectorised over the n x n pairs.

    Parameters
    ----------
    m
        The measure, one finite value per model (1-D).
    t
        Generalization, one finite value per model, oriented so that larger is better.

    Returns
    -------
    float
        tau, in [-1, 1].

    Raises
    ------
    UserError
        When ``m`` and ``t`` differ in length, or hold fewer than 2 models.
    """
    m, t = _vector(m, "m"), _vector(t, "t")
    if len(m) != len(t):
        raise UserError(f"m has {len(m)} values and t {len(t)}")
    n = len(m)
    if n < 2:
        raise UserError("Kendall's tau needs at least 2 models")
    s = np.sign(m[:, None] - m[None, :]) * np.sign(t[:, None] - t[None, :])
    return float(s.sum() / (n * (n - 1)))


def _group_key(value: Any) -> Hashable:
    """A hyperparameter value as a grouping key, equal for equal settings.

    - Numbers compare by value: ``32``, ``32.0``, ``np.int64(32)`` and ``np.float32(32)`` are
      one key (a float is compared exactly, so ``0.1`` and ``np.float32(0.1)`` are not); NaN
      equals NaN.
    - Booleans (``bool`` or ``np.bool_``) are a kind of their own: ``True`` is not ``1`` and
      ``False`` is not ``0``, since a flag and a count are different settings.
    - Strings, ``None`` and anything else keep their identity (``"32"`` is not ``32``); lists
      and tuples compare item by item; a value that is none of these compares by ``repr``.
    """
    if isinstance(value, (bool, np.bool_)):
        return ("bool", bool(value))
    if isinstance(value, numbers.Integral):
        return ("number", int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return ("number", "nan")
        return ("number", int(v) if v.is_integer() else v)
    if value is None or isinstance(value, str):
        return ("value", value)
    if isinstance(value, (list, tuple)):
        return ("sequence", tuple(_group_key(v) for v in value))
    return ("repr", repr(value))


def _keys(hparams: Hparams, n: int) -> list[str]:
    if len(hparams) != n:
        raise UserError(f"{len(hparams)} hyperparameter records for {n} models")
    keys = list(dict.fromkeys(k for h in hparams for k in h))
    if not keys:
        raise UserError("no hyperparameters given")
    return keys


def _groups(hparams: Hparams, keys: list[str], axis: str) -> list[np.ndarray]:
    """Indices of the models equal on every key but ``axis``; only groups of 2 or more."""
    buckets: dict[tuple, list[int]] = {}
    for i, h in enumerate(hparams):
        buckets.setdefault(tuple(_group_key(h.get(k)) for k in keys if k != axis), []).append(i)
    return [np.array(b) for b in buckets.values() if len(b) >= 2]


def _psi(m: np.ndarray, t: np.ndarray, groups: list[np.ndarray]) -> float:
    return float(np.mean([kendall(m[g], t[g]) for g in groups])) if groups else math.nan


def _axes(keys: list[str], axes: Sequence[str] | None) -> list[str]:
    if axes is None:
        return keys
    unknown = [a for a in axes if a not in keys]
    if unknown:
        raise UserError(f"axis {unknown[0]!r} is not a hyperparameter of the models ({', '.join(keys)})")
    return list(axes)


def granulated_kendall(m: Any, t: Any, hparams: Hparams, axes: Sequence[str] | None = None) -> dict[str, float]:
    """psi_axis = mean over groups of models equal on every other key of tau inside the group
    (groups of at least 2 models; :func:`kendall`'s tau).

    A key of ``hparams`` that is not an axis only splits the groups: with ``axes`` leaving
    out ``"seed"``, seeds are replicates, each seed's models form groups of their own, and a
    seed never counts as a hyperparameter that "changes generalization".

    Parameters
    ----------
    m
        The measure, one finite value per model (1-D).
    t
        Generalization, one finite value per model, oriented so that larger is better.
    hparams
        One record ``{hyperparameter: value}`` per model, in the order of ``m``; the keys
        are the union of the records' keys, a key a record lacks reading as ``None``.
    axes
        The keys to correlate along; ``None``: every key.

    Returns
    -------
    dict
        ``{axis: psi}``; an axis with no group is NaN (with a warning) and
        :func:`total_score` leaves it out.
    """
    m, t = _vector(m, "m"), _vector(t, "t")
    keys = _keys(hparams, len(m))
    result = {axis: _psi(m, t, _groups(hparams, keys, axis)) for axis in _axes(keys, axes)}
    empty = [a for a, v in result.items() if math.isnan(v)]
    if empty:
        warnings.warn(f"no group of models varies only {empty}; left out of the total", stacklevel=2)
    return result


def total_score(psi: Mapping[str, float]) -> float:
    """Psi = mean of the per-axis coefficients that are defined (NaN if none is).

    Parameters
    ----------
    psi
        ``{axis: psi}``, as :func:`granulated_kendall` returns it.

    Returns
    -------
    float
        The mean of the non-NaN values; NaN when every value is NaN or there is none.
    """
    values = [v for v in psi.values() if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def _clustered_taus(
    m: np.ndarray, t: np.ndarray, hparams: Hparams, keys: list[str], axis: str, axes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster of ``axis``'s groups: the sum of their taus and their count. A cluster holds
    the groups equal on every other *axis*, i.e. one configuration's groups over all replicates."""
    sums: dict[tuple, float] = {}
    counts: dict[tuple, int] = {}
    for g in _groups(hparams, keys, axis):
        cluster = tuple(_group_key(hparams[g[0]].get(k)) for k in axes if k != axis)
        sums[cluster] = sums.get(cluster, 0.0) + kendall(m[g], t[g])
        counts[cluster] = counts.get(cluster, 0) + 1
    return np.array(list(sums.values())), np.array(list(counts.values()), dtype=np.float64)


def granulated_kendall_ci(
    m: Any,
    t: Any,
    hparams: Hparams,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    axes: Sequence[str] | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals for each psi and the total (``n_boot`` draws). Keys: the
    axes and ``"total"``; ``axes`` as in :func:`granulated_kendall`.

    Each axis's groups are resampled with replacement by cluster: the groups of one
    configuration of the other axes over every replicate (seed) go together, since they
    share that configuration's effect; without replicates a cluster is one group. The axes
    are resampled independently and the total is the mean of their draws, which ignores that
    every psi reads the same models.

    Parameters
    ----------
    m
        The measure, one finite value per model (1-D).
    t
        Generalization, one finite value per model, oriented so that larger is better.
    hparams
        One record ``{hyperparameter: value}`` per model, as in :func:`granulated_kendall`.
    n_boot
        The number of bootstrap draws.
    level
        The intervals' coverage, e.g. 0.95: the ``(1 - level) / 2`` and
        ``(1 + level) / 2`` quantiles of the draws.
    seed
        Seed of the resampling (``numpy.random.default_rng``).
    axes
        The keys to correlate along; ``None``: every key.

    Returns
    -------
    dict
        ``{axis: (lo, hi)}`` for each axis and ``"total"``; ``(nan, nan)`` for an axis with
        no group, and for the total when no axis has one.
    """
    m, t = _vector(m, "m"), _vector(t, "t")
    keys = _keys(hparams, len(m))
    chosen = _axes(keys, axes)
    rng = np.random.default_rng(seed)
    draws = {}
    for a in chosen:
        sums, counts = _clustered_taus(m, t, hparams, keys, a, chosen)
        if len(sums):
            idx = rng.integers(0, len(sums), size=(n_boot, len(sums)))
            draws[a] = sums[idx].sum(1) / counts[idx].sum(1)
        else:
            draws[a] = np.full(n_boot, np.nan)
    defined = [d for d in draws.values() if not np.isnan(d).all()]
    draws["total"] = np.mean(defined, axis=0) if defined else np.full(n_boot, np.nan)
    q = (1 - level) / 2
    return {
        a: (float(np.quantile(d, q)), float(np.quantile(d, 1 - q))) if not np.isnan(d).all() else (math.nan, math.nan)
        for a, d in draws.items()
    }


def _codes(values: list[Any]) -> np.ndarray:
    """0, 1, ... per distinct :func:`_group_key`, numbered in the order of the ``repr`` of each
    key's first value (the order of the CMI's cells, so its sums run in a fixed order)."""
    first: dict[Hashable, Any] = {}
    for v in values:
        first.setdefault(_group_key(v), v)
    index = {key: i for i, key in enumerate(sorted(first, key=lambda key: repr(first[key])))}
    return np.array([index[_group_key(v)] for v in values], dtype=np.int64)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _cmi_ratio(vm: np.ndarray, vg: np.ndarray, cells: np.ndarray) -> float:
    """I(V_m; V_g | U) / H(V_g | U) with U the cell of each pair (p(u)-weighted)."""
    mi = h = 0.0
    total = len(vg)
    for cell in np.unique(cells):
        sel = cells == cell
        w = sel.sum() / total
        joint = np.zeros((3, 2))  # V_m in {-1, 0, +1} (ties allowed), V_g in {-1, +1}
        np.add.at(joint, ((vm[sel] + 1).astype(int), (vg[sel] > 0).astype(int)), 1)
        joint /= joint.sum()
        hg = _entropy(joint.sum(0))
        mi += w * (_entropy(joint.sum(1)) + hg - _entropy(joint.ravel()))
        h += w * hg
    return mi / h if h > 0 else math.nan


def conditional_mi_score(m: Any, g: Any, hparams: Hparams, max_set: int = 2) -> float:
    """Jiang et al.'s conditional-independence score K(m) = min over sets S of at most
    ``max_set`` hyperparameters of I(V_m; V_g | U_S) / H(V_g | U_S).

    Over ordered pairs of models (so that the result does not depend on their order):
    V_m = sign(m_i - m_j), V_g = sign(g_i - g_j) and U_S the pair's values of S (both
    models'). Pairs tied in ``g`` are left out (ties in ``m`` are a third value of V_m, so a
    constant measure scores 0); the conditional quantities weight each cell u by its share of
    pairs. NaN (with a warning) if no pair differs in ``g``. In [0, 1]; high only
    if the measure stays informative about the generalization ordering after conditioning
    on any (pair of) hyperparameter(s). The sign of ``m`` does not matter.

    Parameters
    ----------
    m
        The measure, one finite value per model (1-D).
    g
        Generalization, one finite value per model.
    hparams
        One record ``{hyperparameter: value}`` per model; the conditioning sets S are drawn
        from the union of their keys (values compared as in :func:`granulated_kendall`).
    max_set
        The largest conditioning set; sets of size 0 (no conditioning) to ``max_set`` are
        tried.

    Returns
    -------
    float
        K(m), in [0, 1]; NaN when no pair differs in ``g`` or no set gives a defined ratio.
    """
    m, g = _vector(m, "m"), _vector(g, "g")
    keys = _keys(hparams, len(m))
    i, j = np.nonzero(~np.eye(len(m), dtype=bool))  # ordered pairs: the cells (a, b) and (b, a) both seen
    vm, vg = np.sign(m[i] - m[j]), np.sign(g[i] - g[j])
    keep = vg != 0
    if not keep.any():
        warnings.warn("no pair of models differs in generalization; the CMI score is undefined", stacklevel=2)
        return math.nan
    codes = {k: _codes([h.get(k) for h in hparams]) for k in keys}
    scores = []
    for size in range(0, max_set + 1):
        for subset in itertools.combinations(keys, size):
            cell = np.zeros(len(i), dtype=np.int64)
            for k in subset:
                base = codes[k].max() + 1
                cell = (cell * base + codes[k][i]) * base + codes[k][j]
            scores.append(_cmi_ratio(vm[keep], vg[keep], cell[keep]))
    defined = [s for s in scores if not math.isnan(s)]
    return float(min(defined)) if defined else math.nan
