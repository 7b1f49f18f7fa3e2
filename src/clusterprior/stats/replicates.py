"""Statistics of replicates: how much of a quantity repeats across the seeds of one configuration.

A study trains one model per (configuration, seed). ``hparams`` holds one record per model; the
keys in ``replicates`` (default ``("seed",)``) repeat a configuration and are no axis: two models
are of one *configuration* when they are equal on every other key (values compared as in
:func:`clusterprior.stats.correlation._group_key`, a key a record lacks reading as ``None``).

- :func:`reliability`: the intraclass correlation ICC(1) of a quantity over configurations;
- :func:`replicate_agreement`: the granulated Kendall psi that one seed's generalization reaches
  as a measure of another seed's: what knowing the configuration alone buys (no ceiling: a
  measure read off one model can follow that model's own accuracy);
- :func:`noise_floor`: how much of the seed-to-seed difference of test accuracy the test set's
  finite size alone explains.

Every interval is a percentile bootstrap that resamples configurations with replacement
(``n_boot`` draws from ``numpy.random.default_rng(seed)``); with ``n_boot == 0`` it is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from clusterprior.errors import UserError
from clusterprior.stats.correlation import (
    Hparams,
    _group_key,
    _groups,
    granulated_kendall,
    granulated_kendall_ci,
    total_score,
)

_CHUNK = 1 << 22  # bootstrap draws are computed in blocks of about this many (draw, configuration) cells


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its percentile bootstrap interval.

    Parameters
    ----------
    value
        The point estimate (NaN when undefined).
    lo
        The interval's lower end (NaN when ``n_boot == 0`` or the estimate is undefined).
    hi
        The interval's upper end (NaN likewise).
    n
        The configurations with at least 2 usable replicates that the estimate rests on.
    """

    value: float
    lo: float
    hi: float
    n: int


# --- input checks -------------------------------------------------------------------------


def _replicate_keys(replicates: Sequence[str] | str) -> tuple[str, ...]:
    keys = (replicates,) if isinstance(replicates, str) else tuple(replicates)
    if not all(isinstance(k, str) for k in keys):
        raise UserError(f"replicates must be hyperparameter names, got {replicates!r}")
    return keys


def _records(hparams: Hparams, n: int | None = None) -> list[Mapping[str, Any]]:
    if isinstance(hparams, Mapping) or not isinstance(hparams, Sequence):
        raise UserError("hparams must be a sequence of one dict per model")
    records = list(hparams)
    bad = next((i for i, h in enumerate(records) if not isinstance(h, Mapping)), None)
    if bad is not None:
        raise UserError(f"hparams[{bad}] is not a dict of hyperparameters")
    if n is not None and len(records) != n:
        raise UserError(f"{len(records)} hyperparameter records for {n} models")
    return records


def _values(a: Any, what: str) -> np.ndarray:
    """One float per model; NaN allowed (the model is left out), infinities are not."""
    try:
        v = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be numbers, one per model") from None
    if v.ndim != 1:
        raise UserError(f"{what} must be one value per model")
    if np.isinf(v).any():
        raise UserError(f"{what} holds infinite values")
    return v


def _bootstrap_options(n_boot: int, level: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise UserError(f"n_boot must be a whole number >= 0, got {n_boot!r}")
    if not 0 < level < 1:
        raise UserError(f"level must lie strictly between 0 and 1, got {level!r}")


# --- configurations -----------------------------------------------------------------------


def configurations(hparams: Hparams, replicates: Sequence[str] = ("seed",)) -> np.ndarray:
    """An int code per model (0, 1, ... in order of first appearance): equal codes for models
    equal on every key but the ``replicates``, i.e. the replicates of one configuration.

    Keys are the union of the records' keys; a record lacking a key reads as ``None``."""
    reps = _replicate_keys(replicates)
    records = _records(hparams)
    keys = [k for k in dict.fromkeys(k for h in records for k in h) if k not in reps]
    index: dict[tuple[Hashable, ...], int] = {}
    codes = [index.setdefault(tuple(_group_key(h.get(k)) for k in keys), len(index)) for h in records]
    return np.array(codes, dtype=np.int64)


def _usable(values: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The models with a non-NaN value in a configuration with at least 2 of them, and their
    configuration re-coded 0 .. a-1 (a = the usable configurations)."""
    finite = ~np.isnan(values)
    counts = np.bincount(codes[finite], minlength=int(codes.max(initial=-1)) + 1)
    keep = finite & (counts[codes] >= 2)
    _, dense = np.unique(codes[keep], return_inverse=True)
    return keep, dense.reshape(-1).astype(np.int64)


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    if draws.size == 0 or np.isnan(draws).all():
        return math.nan, math.nan
    q = (1 - level) / 2
    lo, hi = np.nanquantile(draws, [q, 1 - q])
    return float(lo), float(hi)


def _bootstrap(stat: Callable[[np.ndarray], np.ndarray], a: int, n_boot: int, seed: int) -> np.ndarray:
    """``stat`` of ``n_boot`` resamples of the ``a`` configurations with replacement: ``stat``
    takes an index array of shape (draws, a) and returns one value per draw."""
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // max(a, 1))
    out = [stat(rng.integers(0, a, size=(min(rows, n_boot - s), a))) for s in range(0, n_boot, rows)]
    return np.concatenate(out) if out else np.empty(0)


# --- reliability (ICC(1)) ------------------------------------------------------------------


def _icc(n: np.ndarray, mean: np.ndarray, ssw: np.ndarray) -> np.ndarray:
    """ICC(1) from per-configuration counts, means and within sums of squares, over the last
    axis (leading axes: bootstrap draws)."""
    a = n.shape[-1]
    total = n.sum(-1)
    grand = (n * mean).sum(-1) / total
    msb = (n * (mean - grand[..., None]) ** 2).sum(-1) / (a - 1)
    msw = ssw.sum(-1) / (total - a)
    k0 = (total - (n**2).sum(-1) / total) / (a - 1)
    denominator = msb + (k0 - 1) * msw
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, (msb - msw) / np.where(denominator > 0, denominator, 1.0), np.nan)


def reliability(
    values: Any,
    hparams: Hparams,
    replicates: Sequence[str] = ("seed",),
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """The share of a quantity's variance that repeats across the seeds of one configuration:
    the one-way random-effects intraclass correlation ICC(1) (Shrout & Fleiss 1979 "ICC(1,1)",
    McGraw & Wong 1996 "ICC(1)"), groups = configurations, members = replicates:

        ICC = (MSB - MSW) / (MSB + (k0 - 1) MSW),

    over the a configurations with n_i >= 2 non-NaN values (N = sum n_i, x_ij the j-th value
    of configuration i, xbar_i its mean, xbar the mean of all N values):

        MSB = sum_i n_i (xbar_i - xbar)^2 / (a - 1),
        MSW = sum_ij (x_ij - xbar_i)^2 / (N - a),
        k0  = (N - sum_i n_i^2 / N) / (a - 1)      (= k for k replicates each).

    Under value = a_c + e (a_c ~ N(0, s_a^2) per configuration, e ~ N(0, s_e^2) per model) it
    estimates s_a^2 / (s_a^2 + s_e^2). NaN values are dropped (a configuration left with fewer
    than 2 does not count); the estimate is **not** clipped at 0 and falls below 0 when the
    configurations' means differ less than their noise predicts. NaN (no error) when fewer than
    2 configurations are usable, or when every value is equal; ``n`` then still counts the
    usable configurations. Interval: percentile bootstrap resampling configurations.

    Parameters
    ----------
    values
        The quantity, one float per model (NaN allowed: the model is left out; infinities
        are not).
    hparams
        One record ``{hyperparameter: value}`` per model, in the order of ``values``.
    replicates
        The keys that repeat a configuration (see the module docstring).
    n_boot
        The number of bootstrap draws (0: no interval).
    level
        The interval's coverage, strictly between 0 and 1.
    seed
        Seed of the bootstrap's ``numpy.random.default_rng``.

    Returns
    -------
    Estimate
        ICC(1) with its interval and the number of usable configurations.
    """
    v = _values(values, "values")
    codes = configurations(_records(hparams, len(v)), replicates)
    _bootstrap_options(n_boot, level)
    keep, dense = _usable(v, codes)
    a = int(dense.max(initial=-1)) + 1
    if a < 2:
        return Estimate(math.nan, math.nan, math.nan, a)
    x = v[keep]
    n = np.bincount(dense, minlength=a).astype(np.float64)
    mean = np.bincount(dense, weights=x, minlength=a) / n
    ssw = np.bincount(dense, weights=(x - mean[dense]) ** 2, minlength=a)
    value = float(_icc(n, mean, ssw))
    if math.isnan(value):
        return Estimate(math.nan, math.nan, math.nan, a)
    draws = _bootstrap(lambda idx: _icc(n[idx], mean[idx], ssw[idx]), a, n_boot, seed)
    return Estimate(value, *_interval(draws, level), a)


# --- replicate agreement ---------------------------------------------------------------------


def _replicate_order(records: Sequence[Mapping[str, Any]], reps: tuple[str, ...]) -> np.ndarray:
    """Rank of each model's replicate values among those present (numbers by value; falls
    back to the order of ``repr`` when the values cannot be compared)."""
    keys = [tuple(_group_key(h.get(k)) for k in reps) for h in records]
    distinct = list(dict.fromkeys(keys))
    try:
        ordered = sorted(distinct)
    except TypeError:
        ordered = sorted(distinct, key=repr)
    rank = {key: i for i, key in enumerate(ordered)}
    return np.array([rank[key] for key in keys], dtype=np.int64)


def _partners(codes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Index of each model's partner: the next replicate (cyclically, in replicate order) of
    its configuration. Every configuration must hold >= 2 models with distinct replicates."""
    idx = np.lexsort((order, codes))
    c, r = codes[idx], order[idx]
    same = (c[1:] == c[:-1]) & (r[1:] == r[:-1])
    if same.any():
        i, j = sorted((int(idx[1:][same][0]), int(idx[:-1][same][0])))
        raise UserError(f"models {i} and {j} share their configuration and their replicate values")
    start = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    length = np.diff(np.r_[start, len(c)])
    run_start = np.repeat(start, length)
    position = np.arange(len(c)) - run_start
    nxt = run_start + (position + 1) % np.repeat(length, length)
    partner = np.empty_like(idx)
    partner[idx] = idx[nxt]
    return partner


def replicate_agreement(
    t: Any,
    hparams: Hparams,
    axes: Sequence[str] | None,
    replicates: Sequence[str] = ("seed",),
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Estimate]:
    """How well knowing a model's configuration predicts its generalization ``t``: the
    granulated Kendall psi that one seed's ``t`` reaches as a measure of another seed's.

    Each model i gets a partner value m_i = t of the next replicate of its configuration
    (cyclically, in sorted order of the replicate values present there); then

        psi_axis = granulated_kendall(m, t, hparams, axes)[axis],   "total" = mean of the defined axes,

    the replicate keys splitting the groups (each group holds models of one seed; with 2 seeds
    this is exactly "seed 0's t as a measure of seed 1's and vice versa"). Under t = a_c + e
    (a_c i.i.d. per configuration, e i.i.d. per model, both normal) each psi estimates
    (2 / pi) arcsin(rho) with rho = var(a) / (var(a) + var(e)): the score of a measure that
    knows the configuration and nothing of the model's own seed. Models with NaN ``t`` and
    configurations with a single (remaining) replicate are left out; two models of one
    configuration with equal replicate values are an error.
    ``axes``: keys of ``hparams``, none a replicate key (``None``: every other key).

    Intervals: :func:`granulated_kendall_ci` (same ``n_boot``, ``level``, ``seed``), which
    resamples each axis's groups by configuration of the other axes over all replicates.
    An axis with no group is NaN (with a warning from :func:`granulated_kendall`).

    Parameters
    ----------
    t
        Generalization, one float per model (NaN allowed: the model is left out).
    hparams
        One record ``{hyperparameter: value}`` per model, in the order of ``t``.
    axes
        Keys of ``hparams``, none a replicate key (a single key may be given as a string);
        ``None``: every other key.
    replicates
        The keys that repeat a configuration (see the module docstring).
    n_boot
        The number of bootstrap draws (0: no interval).
    level
        The intervals' coverage, strictly between 0 and 1.
    seed
        Seed of the bootstrap.

    Returns
    -------
    dict
        ``{axis: Estimate}`` for each axis and ``"total"``. ``n``: per axis, the
        configurations in a group of that axis; for the total, in any defined axis's. All
        NaN, with ``n`` 0, when no configuration has 2 usable replicates.

    Raises
    ------
    UserError
        When ``axes`` is empty, names a key that is not in ``hparams`` or a replicate key,
        or when no key but the replicates is left to correlate along.
    """
    v = _values(t, "t")
    records = _records(hparams, len(v))
    reps = _replicate_keys(replicates)
    _bootstrap_options(n_boot, level)
    keys = list(dict.fromkeys(k for h in records for k in h))
    if axes is None:
        chosen = [k for k in keys if k not in reps]
    else:
        chosen = [axes] if isinstance(axes, str) else list(axes)
        if not chosen:
            raise UserError("axes is empty")
        unknown = [a for a in chosen if a not in keys]
        if unknown:
            raise UserError(f"axis {unknown[0]!r} is not a hyperparameter of the models ({', '.join(keys)})")
        replicate_axes = [a for a in chosen if a in reps]
        if replicate_axes:
            raise UserError(f"axis {replicate_axes[0]!r} is a replicate key, not an axis")
    if not chosen:
        raise UserError("no hyperparameter but the replicates: nothing to correlate along")
    names = [*chosen, "total"]
    codes = configurations(records, reps)
    keep, dense = _usable(v, codes)
    if not keep.any():
        return {a: Estimate(math.nan, math.nan, math.nan, 0) for a in names}

    index = np.flatnonzero(keep)
    sub = [{k: records[i].get(k) for k in keys} for i in index]
    x = v[keep]
    partner = x[_partners(dense, _replicate_order(sub, reps))]
    psi = granulated_kendall(partner, x, sub, chosen)
    psi["total"] = total_score(psi)
    if n_boot > 0 and not math.isnan(psi["total"]):
        ci = granulated_kendall_ci(partner, x, sub, n_boot=n_boot, level=level, seed=seed, axes=chosen)
    else:
        ci = {a: (math.nan, math.nan) for a in names}

    used: dict[str, set[int]] = {}
    for a in chosen:
        used[a] = {int(dense[i]) for g in _groups(sub, keys, a) for i in g} if not math.isnan(psi[a]) else set()
    used["total"] = set().union(*used.values())
    return {a: Estimate(float(psi[a]), *ci[a], len(used[a])) for a in names}


# --- test-noise floor --------------------------------------------------------------------------


def _integers(n_test: Any, n: int) -> np.ndarray:
    arr = np.asarray(n_test)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.ndim != 1 or len(arr) != n:
        raise UserError(f"n_test must be one number or one per model ({n} models)")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise UserError("n_test must hold whole numbers of test examples")
    f = arr.astype(np.float64)
    if not (np.isfinite(f).all() and (f == np.round(f)).all() and (f >= 1).all()):
        raise UserError("n_test must hold whole numbers of test examples >= 1")
    return f


def noise_floor(
    t: Any,
    hparams: Hparams,
    n_test: Any,
    replicates: Sequence[str] = ("seed",),
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Estimate]:
    """The test-noise floor: how much of the seed-to-seed difference of test accuracy ``t``
    (a fraction in [0, 1]) the test set's finite size alone explains. Over the configurations
    c with at least 2 non-NaN accuracies (NaN dropped), with s_c^2 their variance (ddof = 1),
    p_c their mean and 1/n_c the mean of 1/n_test over their models:

        "observed" = sqrt(2 * mean_c s_c^2),                the RMS difference between two seeds;
        "floor"    = sqrt(2 * mean_c p_c (1 - p_c) / n_c),  the RMS difference binomial
                                                            sampling alone would give;
        "share"    = floor^2 / observed^2,                  its share of the seed-to-seed variance.

    The floor treats each model as scored on its own test set of n_test examples drawn at
    random (accuracy ~ Binomial(n_test, p_c) / n_test, variance p_c (1 - p_c) / n_test). When
    all seeds are scored on the *same* test examples their errors on them are correlated, the
    seed-to-seed difference due to the test set is smaller, and the floor is an upper bound.
    (p_c (1 - p_c) from the mean is low by a factor 1 - 1/sum n_test, negligible.) A share
    near 1 means the seeds differ no more than test noise; "share" is NaN when every
    configuration's accuracies are equal. Intervals: percentile bootstrap resampling
    configurations.

    Parameters
    ----------
    t
        Test accuracy, one fraction in [0, 1] per model (NaN allowed: the model is left
        out).
    hparams
        One record ``{hyperparameter: value}`` per model, in the order of ``t``.
    n_test
        The size of the test set: one whole number >= 1, or one per model.
    replicates
        The keys that repeat a configuration (see the module docstring).
    n_boot
        The number of bootstrap draws (0: no interval).
    level
        The intervals' coverage, strictly between 0 and 1.
    seed
        Seed of the bootstrap.

    Returns
    -------
    dict
        ``{"observed": ..., "floor": ..., "share": ...}``, each an :class:`Estimate` whose
        ``n`` is the number of usable configurations; all NaN, with ``n`` 0, when there is
        none.

    Raises
    ------
    UserError
        When ``t`` holds a value outside [0, 1] (e.g. percents).
    """
    v = _values(t, "t")
    records = _records(hparams, len(v))
    counts = _integers(n_test, len(v))
    if ((v < 0) | (v > 1)).any():
        raise UserError("t must be accuracies in [0, 1] (fractions, not percents)")
    codes = configurations(records, replicates)
    _bootstrap_options(n_boot, level)
    keep, dense = _usable(v, codes)
    a = int(dense.max(initial=-1)) + 1
    names = ("observed", "floor", "share")
    if a == 0:
        return {k: Estimate(math.nan, math.nan, math.nan, 0) for k in names}
    x = v[keep]
    n = np.bincount(dense, minlength=a).astype(np.float64)
    p = np.bincount(dense, weights=x, minlength=a) / n
    s2 = np.bincount(dense, weights=(x - p[dense]) ** 2, minlength=a) / (n - 1)
    inv = np.bincount(dense, weights=1.0 / counts[keep], minlength=a) / n
    binomial = p * (1 - p) * inv

    def stats(idx: np.ndarray | slice) -> np.ndarray:
        observed, floor = s2[idx].mean(-1), binomial[idx].mean(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(observed > 0, floor / np.where(observed > 0, observed, 1.0), np.nan)
        return np.stack([np.sqrt(2 * observed), np.sqrt(2 * floor), share], axis=-1)

    point = stats(slice(None))
    draws = _bootstrap(stats, a, n_boot, seed).reshape(-1, 3)
    return {k: Estimate(float(point[j]), *_interval(draws[:, j], level), a) for j, k in enumerate(names)}
