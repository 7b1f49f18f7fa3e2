from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from clusterprior import UserError, stats


def test_kendall_equals_scipy_without_ties():
    rng = np.random.default_rng(0)
    for n in (2, 5, 40):
        m, t = rng.normal(size=n), rng.normal(size=n)
        assert stats.kendall(m, t) == pytest.approx(kendalltau(m, t).statistic)


def test_kendall_with_ties_matches_a_double_loop():
    rng = np.random.default_rng(1)
    m, t = rng.integers(0, 3, size=25).astype(float), rng.integers(0, 4, size=25).astype(float)
    n = len(m)
    direct = sum(np.sign(m[i] - m[j]) * np.sign(t[i] - t[j]) for i in range(n) for j in range(n) if i != j) / (
        n * (n - 1)
    )
    assert stats.kendall(m, t) == pytest.approx(direct)
    assert stats.kendall([1, 1, 1], [1, 2, 3]) == 0.0
    with pytest.raises(UserError):
        stats.kendall([1.0], [2.0])
    with pytest.raises(UserError, match="NaN"):
        stats.kendall([1.0, math.nan], [2.0, 1.0])


def grid():
    """a in {0,1,2}, b in {0,1}, c constant; t rises with a and falls with b; m rises with
    a and with b (right about a, wrong about b)."""
    hp = [{"a": a, "b": b, "c": 7} for a, b in itertools.product(range(3), range(2))]
    t = np.array([h["a"] - 0.5 * h["b"] for h in hp], dtype=float)
    m = np.array([h["a"] + 0.5 * h["b"] for h in hp], dtype=float)
    return m, t, hp


def test_granulated_kendall_per_axis_and_total():
    m, t, hp = grid()
    with pytest.warns(UserWarning, match="c"):
        psi = stats.granulated_kendall(m, t, hp)
    assert psi["a"] == pytest.approx(1.0) and psi["b"] == pytest.approx(-1.0) and math.isnan(psi["c"])
    assert stats.total_score(psi) == pytest.approx(0.0)
    # a group with 3 models: tau inside the group, then the mean over groups
    hp2 = [{"a": a, "b": 0} for a in range(3)] + [{"a": a, "b": 1} for a in range(3)]
    t2 = np.array([0, 1, 2, 0, 1, 2.0])
    m2 = np.array([0, 1, 2, 2, 1, 0.0])
    assert stats.granulated_kendall(m2, t2, hp2)["a"] == pytest.approx(0.0)


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    hp = [{"a": a, "b": b} for a in range(4) for b in range(6)]
    t = np.array([h["a"] + rng.normal() for h in hp])
    m = t + rng.normal(scale=1.0, size=len(t))
    psi = stats.granulated_kendall(m, t, hp)
    ci = stats.granulated_kendall_ci(m, t, hp, n_boot=500)
    for key, value in [*psi.items(), ("total", stats.total_score(psi))]:
        lo, hi = ci[key]
        assert lo <= value + 1e-9 and value - 1e-9 <= hi and -1 <= lo <= hi <= 1


def test_conditional_mi_score():
    rng = np.random.default_rng(0)
    hp = [{"a": a, "b": b} for a in range(4) for b in range(5) for _ in range(2)]
    g = rng.normal(size=len(hp))
    assert stats.conditional_mi_score(g, g, hp) == pytest.approx(1.0)
    assert stats.conditional_mi_score(-g, g, hp) == pytest.approx(1.0), "the sign does not matter"
    assert stats.conditional_mi_score(rng.normal(size=len(hp)), g, hp) < 0.1
    only_a = np.array([h["a"] for h in hp], float)
    g_a = only_a + 0.01 * rng.normal(size=len(hp))
    m_a = only_a + 0.01 * rng.normal(size=len(hp))
    assert stats.conditional_mi_score(m_a, g_a, hp, max_set=0) > 0.2
    assert stats.conditional_mi_score(m_a, g_a, hp) < 0.1, "informative only through hyperparameter a"
    assert stats.conditional_mi_score(np.ones(len(hp)), g, hp) == 0.0, "a constant measure carries no information"
    noisy = g + rng.normal(size=len(hp))
    order = rng.permutation(len(hp))
    assert stats.conditional_mi_score(noisy[order], g[order], [hp[i] for i in order]) == pytest.approx(
        stats.conditional_mi_score(noisy, g, hp)
    ), "the order of the models does not matter"
    with pytest.warns(UserWarning, match="undefined"):
        assert math.isnan(stats.conditional_mi_score(g, np.ones(len(hp)), hp))


def test_replicate_keys_split_groups_but_are_no_axis():
    """Seeds as replicates: each seed's models form their own groups, and no seed axis."""
    hparams = [{"lr": lr, "seed": s} for s in (0, 1) for lr in (0.1, 0.2, 0.3)]
    t = np.array([1.0, 2.0, 3.0, 3.0, 2.0, 1.0])  # seed 0 rises with lr, seed 1 falls
    m = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    psi = stats.granulated_kendall(m, t, hparams, axes=["lr"])
    assert list(psi) == ["lr"] and psi["lr"] == pytest.approx(0.0)  # mean of +1 (seed 0) and -1 (seed 1)
    ci = stats.granulated_kendall_ci(m, t, hparams, axes=["lr"], n_boot=200)
    assert set(ci) == {"lr", "total"}
    assert ci["lr"] == pytest.approx((0.0, 0.0)), "one configuration: its two seeds are resampled together"
    with pytest.raises(UserError, match="'depth' is not a hyperparameter"):
        stats.granulated_kendall(m, t, hparams, axes=["depth"])


def test_bootstrap_resamples_a_configuration_over_all_its_seeds_together():
    """Two seeds that agree exactly: clustering them leaves the interval as wide as one seed's,
    where resampling the groups independently would narrow it (twice the groups)."""
    rng = np.random.default_rng(3)
    configs = [{"lr": lr, "bs": bs} for lr in (1, 2) for bs in range(12)]
    one = [dict(c, seed=0) for c in configs]
    t1, m1 = rng.normal(size=len(one)), rng.normal(size=len(one))
    two = one + [dict(c, seed=1) for c in configs]
    t2, m2 = np.concatenate([t1, t1]), np.concatenate([m1, m1])
    single = stats.granulated_kendall_ci(m1, t1, one, axes=["lr", "bs"], n_boot=400)["lr"]
    paired = stats.granulated_kendall_ci(m2, t2, two, axes=["lr", "bs"], n_boot=400)["lr"]
    assert paired == pytest.approx(single)
    naive = stats.granulated_kendall_ci(
        m2, t2, [dict(h, seed=0, copy=h["seed"]) for h in two], n_boot=400, axes=["lr", "bs", "copy"]
    )["lr"]
    assert naive[1] - naive[0] < single[1] - single[0]


def test_groups_compare_hyperparameters_by_value_not_repr():
    """32, 32.0 and np.int64(32) are one setting: mixing them loses no group, in psi, the
    bootstrap and the CMI score alike; a boolean stays apart from 1 and 0."""
    rng = np.random.default_rng(4)
    ints = [{"bs": bs, "lr": lr, "wd": wd} for bs in (32, 64) for lr in (1, 2, 3) for wd in (0, 5)]
    t, m = rng.normal(size=len(ints)), rng.normal(size=len(ints))
    kinds = [float, np.int64, np.float32, int]
    mixed = [{k: kinds[(i + j) % 4](v) for j, (k, v) in enumerate(h.items())} for i, h in enumerate(ints)]
    assert {type(h["bs"]) for h in mixed} == set(kinds)
    psi_int, psi_mixed = stats.granulated_kendall(m, t, ints), stats.granulated_kendall(m, t, mixed)
    assert psi_mixed == pytest.approx(psi_int) and not any(math.isnan(v) for v in psi_int.values())
    assert stats.total_score(psi_mixed) == pytest.approx(stats.total_score(psi_int))
    ci_int, ci_mixed = (stats.granulated_kendall_ci(m, t, h, n_boot=200) for h in (ints, mixed))
    assert set(ci_mixed) == set(ci_int) and all(ci_mixed[k] == pytest.approx(ci_int[k]) for k in ci_int)
    assert stats.conditional_mi_score(m, t, mixed) == pytest.approx(stats.conditional_mi_score(m, t, ints))
    # a flag is not a count: wd as True/False at lr 1 but 1/0 at lr 2 leaves no lr group
    two = [i for i, h in enumerate(ints) if h["lr"] < 3]
    flags = [dict(ints[i], wd=(bool if ints[i]["lr"] == 1 else int)(ints[i]["wd"] > 0)) for i in two]
    assert stats.granulated_kendall(m[two], t[two], [dict(h, wd=int(h["wd"])) for h in flags])["lr"] == pytest.approx(
        stats.granulated_kendall(m[two], t[two], [ints[i] for i in two])["lr"]
    )
    with pytest.warns(UserWarning, match="lr"):
        assert math.isnan(stats.granulated_kendall(m[two], t[two], flags)["lr"])
