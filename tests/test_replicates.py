"""Replicate statistics: ICC(1) reliability, replicate agreement, the test-noise floor.

The planted tests state their generative model and derive each tolerance as 4 sampling
standard deviations of the estimate (fixed random seeds, so they are deterministic)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from clusterprior import UserError, stats
from clusterprior.stats.replicates import configurations


def seeded(n_configs: int, n_seeds: int = 2) -> list[dict]:
    """One record per (configuration, seed), seeds outermost: model index = seed * n_configs + c."""
    return [{"cfg": c, "seed": s} for s in range(n_seeds) for c in range(n_configs)]


# --- configurations --------------------------------------------------------------------------


def test_configurations_ignore_the_replicate_keys_and_compare_values():
    hp = [
        {"lr": 0.1, "bs": 32, "seed": 0},
        {"lr": 0.1, "bs": 32.0, "seed": 1},  # 32 == 32.0: same configuration
        {"lr": 0.1, "bs": np.int64(32), "seed": 2, "run": 0},  # "run" missing elsewhere: a new configuration
        {"lr": 0.2, "bs": 32, "seed": 0},
        {"lr": 0.1, "bs": True, "seed": 0},  # a flag is not the count 1
        {"lr": 0.1, "bs": 1, "seed": 0},
    ]
    codes = configurations(hp)
    assert codes.tolist() == [0, 0, 1, 2, 3, 4]
    assert configurations(hp, replicates=("seed", "run")).tolist() == [0, 0, 0, 1, 2, 3]
    assert configurations(hp, replicates="seed").tolist() == codes.tolist()


# --- reliability ---------------------------------------------------------------------------------


def direct_icc(groups: list[list[float]]) -> float:
    """One-way ANOVA by explicit loops (Shrout & Fleiss ICC(1,1) with the unbalanced k0)."""
    a = len(groups)
    big_n = sum(len(g) for g in groups)
    grand = sum(sum(g) for g in groups) / big_n
    ssb = ssw = 0.0
    for g in groups:
        mean = sum(g) / len(g)
        ssb += len(g) * (mean - grand) ** 2
        for x in g:
            ssw += (x - mean) ** 2
    msb, msw = ssb / (a - 1), ssw / (big_n - a)
    k0 = (big_n - sum(len(g) ** 2 for g in groups) / big_n) / (a - 1)
    return (msb - msw) / (msb + (k0 - 1) * msw)


def test_icc_matches_a_direct_anova_on_an_unbalanced_case():
    groups = {0: [1.0, 2.0], 1: [4.0, 5.5, 5.0], 2: [0.5, 2.5, 1.0, 3.0], 3: [2.0, 2.2]}
    hp, values = [], []
    for c, g in groups.items():
        for s, x in enumerate(g):
            hp.append({"cfg": c, "seed": s})
            values.append(x)
    # a NaN in a usable configuration and a configuration left with a single value: both dropped
    hp += [{"cfg": 1, "seed": 9}, {"cfg": 5, "seed": 0}, {"cfg": 5, "seed": 1}]
    values += [math.nan, 7.0, math.nan]
    est = stats.reliability(values, hp, n_boot=200)
    assert est.value == pytest.approx(direct_icc(list(groups.values())), rel=1e-12)
    assert est.n == 4
    assert est.lo <= est.hi


def test_icc_constant_within_configuration_is_one_and_noise_is_about_zero():
    rng = np.random.default_rng(0)
    a = 2000
    level = np.repeat(rng.normal(size=a)[None, :], 3, axis=0).ravel()  # seed-major, like seeded()
    est = stats.reliability(level, seeded(a, 3), n_boot=0)
    assert est.value == pytest.approx(1.0)
    assert math.isnan(est.lo) and math.isnan(est.hi) and est.n == a
    # pure noise: rho = 0; sampling sd of ICC(1) ~ (1 + (k-1) rho)(1 - rho) sqrt(2 / (k (k-1) (a-1))),
    # 1/sqrt(a-1) for k = 2
    noise = stats.reliability(rng.normal(size=2 * a), seeded(a), n_boot=0)
    assert abs(noise.value) < 4 / math.sqrt(a - 1)  # 0.089; got about -0.02


@pytest.mark.parametrize("rho", [0.2, 0.5, 0.8])
def test_reliability_recovers_a_planted_variance_share(rho):
    """value = a_c + e, a_c ~ N(0, rho) per configuration, e ~ N(0, 1 - rho) per model, 2 seeds,
    a = 2000 configurations: ICC(1) -> rho. Large-sample sd (Fisher) for k = 2 replicates:
    (1 - rho)(1 + rho) / sqrt(a - 1); tolerance 4 sd (0.086, 0.067, 0.032). Got 0.200, 0.468, 0.805."""
    rng = np.random.default_rng(int(rho * 10))
    a = 2000
    effect = rng.normal(size=a) * math.sqrt(rho)
    values = np.tile(effect, 2) + rng.normal(size=2 * a) * math.sqrt(1 - rho)
    est = stats.reliability(values, seeded(a), n_boot=1000)
    sd = (1 - rho) * (1 + rho) / math.sqrt(a - 1)
    assert abs(est.value - rho) < 4 * sd
    assert est.lo < rho < est.hi
    assert est.n == a


def test_reliability_is_not_clipped_at_zero():
    """Configuration means closer than their noise predicts give a negative ICC."""
    values = [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    est = stats.reliability(values, seeded(3), n_boot=0)
    assert est.value == pytest.approx(direct_icc([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]))
    est = stats.reliability([0.0, 1.0, 0.5, 1.0, 0.0, 0.5], seeded(3), n_boot=0)
    assert est.value < 0


# --- replicate agreement -----------------------------------------------------------------------


BLOCKS = 200


def planted_grid(rho: float, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """lr, wd in {0, 1}, aug in {False, True}, depth in {0, 1, 2} and a non-axis 'block' of
    BLOCKS values: 24 * BLOCKS configurations, 2 seeds. t = a_c + e, a_c ~ N(0, rho) i.i.d. per
    configuration, e ~ N(0, 1 - rho) per model."""
    confs = list(itertools.product(range(2), range(2), (False, True), range(3), range(BLOCKS)))
    effect = rng.normal(size=len(confs)) * math.sqrt(rho)
    hp = [
        {"lr": lr, "wd": wd, "aug": aug, "depth": d, "block": b, "seed": s}
        for s in range(2)
        for (lr, wd, aug, d, b) in confs
    ]
    t = np.tile(effect, 2) + rng.normal(size=len(hp)) * math.sqrt(1 - rho)
    return t, hp


AXES = ["lr", "wd", "aug", "depth"]
# Sampling sd of the total, bounded above: a group's tau-a has variance <= 1 - tau^2; the groups
# of one axis (over distinct configurations) are independent, 12 * BLOCKS per binary axis and
# 8 * BLOCKS for depth (seed 1's groups repeat seed 0's taus); the sd of a mean of the 4 axes is
# at most the mean of their sds.


def total_sd_bound(tau: float) -> float:
    var = 1 - tau**2
    return (3 * math.sqrt(var / (12 * BLOCKS)) + math.sqrt(var / (8 * BLOCKS))) / 4


@pytest.mark.parametrize("rho", [0.5, 0.0])
def test_replicate_agreement_recovers_the_planted_ceiling(rho):
    """Each pair inside a group compares (a_i - a_j + e_i - e_j) across two seeds: bivariate
    normal with correlation rho, so E[sign * sign] = (2/pi) arcsin(rho) (1/3 for rho = 0.5,
    0 for rho = 0), and tau-a is unbiased for it. Tolerance 4 * total_sd_bound (0.081 and
    0.086); got 0.328 and -0.012."""
    t, hp = planted_grid(rho, np.random.default_rng(1))
    res = stats.replicate_agreement(t, hp, AXES, n_boot=300)
    truth = 2 / math.pi * math.asin(rho)
    assert set(res) == {*AXES, "total"}
    assert abs(res["total"].value - truth) < 4 * total_sd_bound(truth)
    assert res["total"].lo < truth < res["total"].hi
    assert res["total"].n == 24 * BLOCKS and all(res[a].n == 24 * BLOCKS for a in AXES)


def test_two_seeds_is_each_seed_as_a_measure_of_the_other():
    rng = np.random.default_rng(2)
    hp0 = [{"a": a, "b": b, "c": c} for a, b, c in itertools.product(range(3), range(2), range(4))]
    t0, t1 = rng.normal(size=len(hp0)), rng.normal(size=len(hp0))
    hp = [{**h, "seed": 10} for h in hp0] + [{**h, "seed": 3} for h in hp0]
    res = stats.replicate_agreement(np.r_[t0, t1], hp, ["a", "b"], n_boot=0)
    direct = stats.granulated_kendall(t1, t0, hp0, ["a", "b"])  # seed 10 as a measure of seed 3: the same taus
    for axis in ("a", "b"):
        assert res[axis].value == pytest.approx(direct[axis])
        assert math.isnan(res[axis].lo) and math.isnan(res[axis].hi)
    assert res["total"].value == pytest.approx(stats.total_score(direct))
    # axes=None: every key but the replicates
    assert set(stats.replicate_agreement(np.r_[t0, t1], hp, None, n_boot=0)) == {"a", "b", "c", "total"}


def test_partners_are_the_next_seed_cyclically():
    """Three seeds of two configurations along one axis: the partner of seed 0 is seed 1, of
    seed 1 seed 2, of seed 2 seed 0, whatever the order of the models."""
    hp = [{"x": x, "seed": s} for s in (2, 0, 1) for x in (0, 1)]
    by = {(h["x"], h["seed"]): i for i, h in enumerate(hp)}
    t = np.zeros(6)
    t[[by[0, 0], by[1, 0]]] = [0, 1]  # seed 0 rises with x
    t[[by[0, 1], by[1, 1]]] = [1, 0]  # seed 1 falls
    t[[by[0, 2], by[1, 2]]] = [0, 1]  # seed 2 rises
    res = stats.replicate_agreement(t, hp, ["x"], n_boot=0)
    # groups (m = next seed, t = own seed): seed 0 (1 vs 0): -1; seed 1 (2 vs 1): -1; seed 2 (0 vs 2): +1
    assert res["x"].value == pytest.approx(-1 / 3)


# --- noise floor -------------------------------------------------------------------------------


def binomial_study(rng, a: int, n_test: int, seed_sd: float) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """p_c ~ U(0.6, 0.95) per configuration, 2 seeds; t = Binomial(n_test, p_c) / n_test + N(0, seed_sd^2)."""
    p = rng.uniform(0.6, 0.95, size=a)
    t = rng.binomial(n_test, np.tile(p, 2)) / n_test + rng.normal(size=2 * a) * seed_sd
    return t, seeded(a), p


def share_tolerance(var_c: np.ndarray, share: float) -> float:
    """4 sd of floor^2 / observed^2 when only the observed part is noisy: with 2 seeds
    s_c^2 ~ var_c * chi2_1, so sd(mean_c s_c^2) = sqrt(2 sum var_c^2) / a."""
    return 4 * share * math.sqrt(2 * (var_c**2).sum()) / len(var_c) / var_c.mean()


def test_noise_floor_explains_pure_binomial_noise():
    """No seed effect: the seeds differ by test-set noise only, share -> 1. Tolerance 0.134; got 0.984."""
    rng = np.random.default_rng(3)
    a, n_test = 2000, 1000
    t, hp, p = binomial_study(rng, a, n_test, 0.0)
    res = stats.noise_floor(t, hp, n_test, n_boot=500)
    assert abs(res["share"].value - 1) < share_tolerance(p * (1 - p) / n_test, 1.0)
    assert res["share"].lo < 1 < res["share"].hi
    assert res["floor"].value == pytest.approx(math.sqrt(2 * (p * (1 - p)).mean() / n_test), rel=0.01)
    assert res["observed"].n == res["floor"].n == res["share"].n == a
    # one n_test per model gives the same as one for all
    same = stats.noise_floor(t, hp, np.full(2 * a, n_test), n_boot=0)
    assert same["share"].value == pytest.approx(res["share"].value)


def test_noise_floor_share_with_a_seed_effect():
    """A seed effect of sd sigma with sigma^2 = mean_c p_c (1 - p_c) / n_test: the expected share is
    E[binomial var] / (E[binomial var] + sigma^2) = 1/2. Tolerance 0.064; got 0.483."""
    rng = np.random.default_rng(4)
    a, n_test = 2000, 1000
    p = rng.uniform(0.6, 0.95, size=a)
    sigma2 = (p * (1 - p)).mean() / n_test
    t = rng.binomial(n_test, np.tile(p, 2)) / n_test + rng.normal(size=2 * a) * math.sqrt(sigma2)
    res = stats.noise_floor(t, seeded(a), n_test, n_boot=500)
    var_c = p * (1 - p) / n_test + sigma2
    assert abs(res["share"].value - 0.5) < share_tolerance(var_c, 0.5)
    assert res["share"].lo < 0.5 < res["share"].hi
    assert res["observed"].value == pytest.approx(math.sqrt(2 * var_c.mean()), rel=0.05)


# --- edge cases --------------------------------------------------------------------------------


def test_a_single_seed_gives_nan_without_error():
    hp = [{"x": x, "seed": 0} for x in range(5)]
    t = np.linspace(0.5, 0.9, 5)
    est = stats.reliability(t, hp)
    assert math.isnan(est.value) and math.isnan(est.lo) and est.n == 0
    agreement = stats.replicate_agreement(t, hp, ["x"])
    assert set(agreement) == {"x", "total"}
    assert all(math.isnan(e.value) and e.n == 0 for e in agreement.values())
    floor = stats.noise_floor(t, hp, 100)
    assert all(math.isnan(e.value) and e.n == 0 for e in floor.values())
    # one configuration with 2 seeds: the ICC needs 2 configurations
    est = stats.reliability([1.0, 2.0], [{"x": 0, "seed": 0}, {"x": 0, "seed": 1}])
    assert math.isnan(est.value) and est.n == 1


def test_nan_values_are_dropped():
    rng = np.random.default_rng(5)
    a = 50
    hp = seeded(a, 3)
    t = rng.uniform(0.5, 0.9, size=3 * a)
    t_nan = t.copy()
    t_nan[[0, 1, a]] = math.nan  # configuration 0 keeps one value, configuration 1 two
    keep = ~np.isnan(t_nan)
    kept_hp = [h for h, k in zip(hp, keep, strict=True) if k]
    # (the same up to rounding: dropping models renumbers the configurations, so sums run in another order)
    est, ref = stats.reliability(t_nan, hp, n_boot=0), stats.reliability(t[keep], kept_hp, n_boot=0)
    assert est.value == pytest.approx(ref.value, rel=1e-12) and est.n == ref.n == a - 1
    floor, ref_floor = stats.noise_floor(t_nan, hp, 500, n_boot=0), stats.noise_floor(t[keep], kept_hp, 500, n_boot=0)
    for k in ("observed", "floor", "share"):
        assert floor[k].value == pytest.approx(ref_floor[k].value, rel=1e-12) and floor[k].n == ref_floor[k].n == a - 1
    grid = [{"x": x, "y": y, "seed": s} for s in range(2) for x in range(3) for y in range(4)]
    g = rng.normal(size=24)
    g_nan = g.copy()
    g_nan[[0, 13]] = math.nan
    res = stats.replicate_agreement(g_nan, grid, ["x", "y"], n_boot=0)
    # models of configuration (0, 0) and (0, 1) lose their partner: left out
    keep = np.ones(24, dtype=bool)
    keep[[0, 12, 1, 13]] = False
    ref = stats.replicate_agreement(g[keep], [h for h, k in zip(grid, keep, strict=True) if k], ["x", "y"], n_boot=0)
    assert {k: e.value for k, e in res.items()} == pytest.approx({k: e.value for k, e in ref.items()})
    assert {k: e.n for k, e in res.items()} == {k: e.n for k, e in ref.items()}
    assert res["total"].n == 10


def test_bad_input_is_a_user_error():
    hp = seeded(3)
    t = [0.5, 0.6, 0.7, 0.5, 0.6, 0.7]
    for call in (
        lambda: stats.reliability(t[:5], hp),
        lambda: stats.replicate_agreement(t[:5], hp, ["cfg"]),
        lambda: stats.noise_floor(t[:5], hp, 100),
        lambda: stats.noise_floor(t, hp, [100] * 5),
        lambda: stats.noise_floor(t, hp, 0),
        lambda: stats.noise_floor(t, hp, 10.5),
        lambda: stats.noise_floor([x * 100 for x in t], hp, 100),
        lambda: stats.reliability([0.5, math.inf, 0.7, 0.5, 0.6, 0.7], hp),
        lambda: stats.reliability(t, hp, n_boot=-1),
        lambda: stats.reliability(t, hp, level=1.0),
        lambda: stats.reliability(t, {"cfg": 0}),
        lambda: stats.replicate_agreement(t, hp, ["seed"]),
        lambda: stats.replicate_agreement(t, hp, ["nope"]),
        lambda: stats.replicate_agreement(t, [{"cfg": c % 3, "seed": 0} for c in range(6)], ["cfg"]),
    ):
        with pytest.raises(UserError):
            call()


def test_zero_draws_give_a_nan_interval():
    rng = np.random.default_rng(6)
    t = rng.uniform(0.5, 0.9, size=40)
    hp = seeded(20)
    for est in (stats.reliability(t, hp, n_boot=0), *stats.noise_floor(t, hp, 100, n_boot=0).values()):
        assert not math.isnan(est.value) and math.isnan(est.lo) and math.isnan(est.hi)
    est = stats.reliability(t, hp, n_boot=100, level=0.9)
    assert est.lo <= est.value <= est.hi
    assert stats.reliability(t, hp, n_boot=100, seed=1) != est  # the seed drives the draws
