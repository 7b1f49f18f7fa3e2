"""The pre-registered reading of the Chapter 2 deciding study: each verdict by its rule, the
patterns in order, and the whole decision on arms with planted structure."""

from __future__ import annotations

import itertools
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clusterprior import stats
from clusterprior.cli import main
from clusterprior.errors import UserError
from clusterprior.report import decision, readme
from clusterprior.report.tables import replicate_statistics

ROOT = Path(__file__).resolve().parents[1]
AXES = ["lr", "batch_size", "dropout"]
MEASURES = ["c0", "c1", "c2", "c3", "c4", "sigma_prime", "sigma_second", "layer_rotation"]


@pytest.mark.parametrize(
    ("total", "lo", "hi", "baselines", "expected"),
    [
        (0.5, 0.2, 0.8, [0.1, 0.3], decision.REPRODUCES),
        (0.5, 0.2, 0.8, [0.1, 0.6], decision.POSITIVE),
        (0.5, 0.2, 0.8, [0.5, 0.1], decision.POSITIVE),  # equal is not above
        (0.5, 0.2, 0.8, [], decision.REPRODUCES),
        (0.1, -0.1, 0.3, [-0.5, -0.5], decision.NULL),
        (0.1, 0.0, 0.3, [-0.5, -0.5], decision.NULL),  # an interval touching 0 contains it
        (-0.4, -0.6, -0.1, [-0.9, -0.9], decision.CONTRADICTS),
        (math.nan, math.nan, math.nan, [0.0, 0.0], decision.UNDEFINED),
    ],
)
def test_a_measure_s_verdict_follows_the_rule(total, lo, hi, baselines, expected):
    assert decision.verdict(total, lo, hi, baselines) == expected


def test_reliability_classes_and_the_arm_rule():
    assert decision.reliability_class(0.7, 0.5) == "good"
    assert decision.reliability_class(0.7, 0.49) == "moderate"
    assert decision.reliability_class(0.29, -0.2) == "low"
    assert decision.reliability_class(math.nan, math.nan) == decision.UNDEFINED
    r, n = decision.REPRODUCES, decision.NULL
    assert decision.arm_reproduces([r, r, n, n]) and not decision.arm_reproduces([r, n, n, n])
    assert decision.arm_reproduces([r, n]) and not decision.arm_reproduces([n, n]) and not decision.arm_reproduces([])


def _arm(final: str, fit: str = "does not reproduce", good: int = 0, low: int = 0, primary: int = 4, tau=(0.0, 0.0)):
    return {
        "status": "complete",
        "final": final,
        "fit": fit,
        "primary": primary,
        "good_reliability": good,
        "low_reliability": low,
        "tau_init_c1": tau[0],
        "tau_init_c2": tau[1],
    }


def _rows(verdicts: dict[str, tuple[list[str], list[str]]], rel: str = "moderate") -> pd.DataFrame:
    rows = []
    for arm, (final, fit) in verdicts.items():
        names = decision.ARMS[arm]
        for point, these in (("final", final), ("fit", fit)):
            rows += [
                {"arm": arm, "point": point, "measure": m, "verdict": v, "reliability_class": rel}
                for m, v in zip(names, these, strict=True)
            ]
    return pd.DataFrame(rows)


R, N = decision.REPRODUCES, decision.NULL
NO = "does not reproduce"


def _null_everywhere() -> dict:
    return {a: ([N] * len(m), [N] * len(m)) for a, m in decision.ARMS.items()}


def test_pattern_1_the_measurement_point_names_the_stopping_rule_when_the_clean_rule_study_was_null():
    verdicts = _null_everywhere() | {"digits-hier": ([R, R, N, N], [N, N, N, N])}
    arms = {a: _arm(NO) for a in decision.ARMS} | {"digits-hier": _arm(R)}
    earlier = pd.DataFrame({"lo": [-0.1] * 4, "hi": [0.1] * 4}, index=["c1", "c2", "c3", "c4"])
    found = decision.patterns(arms, _rows(verdicts), 0.0, earlier)
    assert [p["matches"] for p in found] == ["yes", "no", "no", "no", "no"]
    assert "stopping rule" in found[0]["cause"]
    cause, pattern = decision.cause(pd.DataFrame(found))
    assert pattern.startswith("1.") and cause.startswith("the measurement point")
    # the same measures reproducing at fit too: not the measurement point
    verdicts["digits-hier"] = ([R, R, N, N], [R, N, N, N])
    assert decision.patterns(arms, _rows(verdicts), 0.0, None)[0]["matches"] == "no"


def test_pattern_2_clusters_at_initialisation_needs_the_init_final_agreement_on_mnist1d_only():
    verdicts = _null_everywhere() | {"fashion-mnist-hier": ([R] * 4, [R] * 4), "fashion-mnist": ([R, R], [R, R])}
    arms = {a: _arm(NO) for a in decision.ARMS}
    arms |= {"fashion-mnist-hier": _arm(R, R, tau=(0.1, 0.2)), "fashion-mnist": _arm(R, R, primary=2)}
    arms["mnist1d-hier"] = _arm(NO, tau=(0.8, 0.7))
    assert [p["matches"] for p in decision.patterns(arms, _rows(verdicts), 0.0, None)][:2] == ["no", "yes"]
    arms["mnist1d-hier"] = _arm(NO, tau=(0.8, 0.4))
    assert decision.patterns(arms, _rows(verdicts), 0.0, None)[1]["matches"] == "no"


def test_pattern_3_the_claim_needs_good_reliability_on_three_arms():
    arms = {a: _arm(NO, good=len(m), primary=len(m)) for a, m in decision.ARMS.items()}
    arms["digits-hier"]["good_reliability"] = 3
    found = decision.patterns(arms, _rows(_null_everywhere(), "good"), 0.0, None)
    assert [p["matches"] for p in found] == ["no", "no", "yes", "no", "no"]
    arms["fashion-mnist"]["good_reliability"] = 1
    found = decision.patterns(arms, _rows(_null_everywhere(), "good"), 0.0, None)
    assert found[2]["matches"] == "no" and found[4]["matches"] == "yes"


def test_pattern_4_the_scale_needs_the_ladder_and_names_it_only_when_it_rises():
    arms = {a: _arm(NO) for a in decision.ARMS}
    low = _rows(_null_everywhere(), "low")
    rising = decision.patterns(arms, low, 0.25, None)
    assert rising[3]["matches"] == "yes" and rising[3]["cause"] == "the scale"
    flat = decision.patterns(arms, low, 0.05, None)
    assert flat[3]["matches"] == "yes" and flat[3]["cause"].startswith("inconclusive")
    waiting = decision.patterns(arms, low, math.nan, None)
    assert [p["matches"] for p in waiting][3:] == ["pending", "pending"]
    assert decision.cause(pd.DataFrame(waiting)) == ("", "")


def test_every_pattern_waits_for_a_missing_arm():
    arms = {a: _arm(NO) for a in decision.ARMS} | {"fashion-mnist": {"status": "pending"}}
    found = decision.patterns(arms, _rows(_null_everywhere()), 0.3, None)
    assert {p["matches"] for p in found} == {"pending"} and "fashion-mnist" in found[0]["evidence"]


def _write_arm(root: Path, arm: str, planted: bool, init_same: bool, level: float = decision.LEVEL) -> None:
    """A report of 12 configurations x 2 seeds: test accuracy from the configuration plus seed
    noise; c1-c4 are the accuracy plus small noise when ``planted``, else pure noise; the
    baselines are noise; at initialisation c1-c4 equal their final values (``init_same``)
    or are fresh noise."""
    rng = np.random.default_rng(len(arm))
    configs = list(itertools.product([0.01, 0.032, 0.1], [32, 96], [0.0, 0.2]))
    rows = []
    for (lr, bs, drop), seed in itertools.product(configs, [0, 1]):
        acc = 0.9 + lr - drop / 4 + bs / 1e4 + rng.normal(0, 0.003)
        rows.append({"run_id": f"r{len(rows)}", "lr": lr, "batch_size": bs, "dropout": drop, "seed": seed,
                     "test_acc": acc, "target": acc, "fit_acc": 1.0 - drop / 10})  # fmt: skip
    models = pd.DataFrame(rows)
    for name in MEASURES:
        noise = rng.normal(0, 1, len(models))
        signal = planted and name in ("c1", "c2", "c3", "c4")
        models[name] = models["target"] + 0.0005 * noise if signal else noise
    init = models.copy()
    if not init_same:
        for name in ("c1", "c2"):
            init[name] = rng.normal(0, 1, len(models))
    hp = models[[*AXES, "seed"]].to_dict("records")
    totals, kendall = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for name in MEASURES:
            psi = stats.granulated_kendall(models[name], models["target"], hp, axes=AXES)
            lo, hi = stats.granulated_kendall_ci(models[name], models["target"], hp, 2000, level, axes=AXES)["total"]
            total = stats.total_score(psi)
            kendall[name] = {**psi, "total": total}
            totals[name] = {"total": total, "lo": lo, "hi": hi, "half_width": (hi - lo) / 2,
                            "models": len(models), "level": level}  # fmt: skip
    seeds = replicate_statistics(models, AXES, ["seed"], MEASURES)
    report = root / arm / "report"
    report.mkdir(parents=True)
    models.to_csv(report / "models.csv", index=False)
    pd.DataFrame(totals).T.to_csv(report / "totals.csv", index_label="measure")
    pd.DataFrame(kendall).T.to_csv(report / "granulated_kendall.csv", index_label="measure")
    seeds.reliability.to_csv(report / "reliability.csv", index_label="quantity")
    seeds.agreement.to_csv(report / "agreement.csv", index_label="axis")
    (root / arm / "report-init").mkdir()
    init.to_csv(root / arm / "report-init" / "models.csv", index=False)
    fit = pd.DataFrame(totals).T.assign(level=0.95)
    (root / arm / "report-fit").mkdir()
    fit.to_csv(root / arm / "report-fit" / "totals.csv", index_label="measure")


def test_the_decision_on_planted_arms(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Fashion arms carry the signal, MNIST-1D and digits do not and MNIST-1D's c1-c2 keep their
    initial order: pattern 2 names the cause; the numbers match independent computations."""
    root = tmp_path / "decided"
    for arm in decision.ARMS:
        _write_arm(root, arm, planted=arm.startswith("fashion"), init_same=arm == "mnist1d-hier")
    for n, name in decision.LADDER.items():  # the ladder: reliability rises with the size
        report = root / name / "report"
        report.mkdir(parents=True)
        pd.DataFrame({"measure": MEASURES, "total": 0.1, "lo": -0.1, "hi": 0.3}).to_csv(
            report / "totals.csv", index=False
        )
        pd.DataFrame({"quantity": MEASURES, "value": n / 40000, "lo": 0.0, "hi": 1.0}).to_csv(
            report / "reliability.csv", index=False
        )
    assert main(["study", "decide", str(root), "--earlier", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "cause: MNIST-1D's clusters are already present at initialisation (pattern 2." in out
    folder = root / "decision"
    arms = decision.read(folder / "arms.csv", index_col="arm")
    assert list(arms["final"]) == [NO, NO, R, R]
    assert arms.loc["mnist1d-hier", "tau_init_c1"] == pytest.approx(1.0)
    assert abs(arms.loc["fashion-mnist-hier", "tau_init_c1"]) < 0.5
    measures = decision.read(folder / "measures.csv")
    assert len(measures) == 2 * decision.N_PRIMARY  # final and fit
    row = measures[
        (measures["arm"] == "fashion-mnist") & (measures["measure"] == "c3") & (measures["point"] == "final")
    ]
    models = pd.read_csv(root / "fashion-mnist" / "report" / "models.csv")
    hp = models[[*AXES, "seed"]].to_dict("records")
    lo, hi = stats.granulated_kendall_ci(models["c3"], models["target"], hp, 1000, 0.95, axes=AXES)["total"]
    assert row["half_width_95"].item() == pytest.approx((hi - lo) / 2)
    assert row["verdict"].item() == R and row["lo"].item() > 0
    assert pd.read_csv(folder / "ladder.csv")["n_train"].nunique() == 3
    assert decision.ladder_rise(pd.read_csv(folder / "ladder.csv")) == pytest.approx(18000 / 40000)
    assert (folder / "ladder.png").stat().st_size > 5000
    text = readme.render("<!-- results: decided/decision -->\n<!-- end results: decided/decision -->", tmp_path)
    assert "**The cause the results point to: MNIST-1D's clusters are already present at initialisation**" in text
    assert "| fashion-mnist | c3 | 1.00 [" in text and "| mnist1d-hier | c1 | -0.33 [" in text
    assert "](results/decided/decision/ladder.png)" in text
    assert (measures["verdict"] == decision.NULL).sum() == 16  # 8 at final, 8 at fit


def test_the_secondary_analysis_is_read_by_the_same_rule_outside_the_patterns(tmp_path: Path):
    """Fashion arms without signal, whose BatchNorm-re-estimated re-measure carries it: the
    secondary verdicts reproduce, the primary ones and the patterns do not move; an arm whose
    re-measure is unfinished waits."""
    root = tmp_path / "decided"
    for arm in decision.ARMS:
        _write_arm(root, arm, planted=False, init_same=False)
    _write_arm(root / "fashion-mnist-hier", decision.SECONDARY, planted=True, init_same=False)
    before = decision.read(decision.decide(root, tmp_path / "none") / "patterns.csv")
    partial = root / "fashion-mnist" / decision.SECONDARY
    partial.mkdir()
    shutil.copy(ROOT / "examples" / "chapter2-decided" / "fashion-mnist.toml", partial / "study.toml")  # 192 planned
    folder = decision.decide(root, tmp_path / "none")
    pd.testing.assert_frame_equal(decision.read(folder / "patterns.csv"), before)
    assert set(decision.read(folder / "measures.csv")["verdict"]) <= {NO, decision.NULL, decision.POSITIVE,
                                                                      decision.CONTRADICTS}  # fmt: skip
    arms = decision.read(folder / "secondary_arms.csv", index_col="arm")
    assert arms.loc["fashion-mnist-hier", "final"] == R and arms.loc["fashion-mnist-hier", "fitted"] == 12
    assert arms.loc["fashion-mnist", "status"] == "pending"
    secondary = decision.read(folder / "secondary.csv")
    assert list(secondary["measure"]) == ["c1", "c2", "c3", "c4"] and (secondary["verdict"] == R).all()
    text = decision.block(folder, "decided/decision")
    assert "**Secondary analysis, outside the patterns**" in text and "reproduces the stored values is missing" in text
    check = pd.DataFrame({"measure": ["c1", "test_acc"], "runs": 6, "values": 6, "max_abs_difference": [3.2e-6, 0.0]})
    check.to_csv(root / "fashion-mnist-hier" / "remeasure_check.csv", index=False)
    text = decision.block(decision.decide(root, tmp_path / "none"), "decided/decision")
    assert "6 runs of fashion-mnist-hier reproduce their stored final values within 3e-06." in text
    assert "| fashion-mnist-hier | 24 | 4 of 4: **reproduces** | 12 | " in text
    assert "| fashion-mnist | 0 of 192 re-measured | pending | | |" in text
    shutil.rmtree(root / "fashion-mnist-hier" / decision.SECONDARY)
    shutil.rmtree(partial)
    assert not (decision.decide(root, tmp_path / "none") / "secondary.csv").exists()  # a stale file goes


def test_a_report_at_another_level_or_a_partial_arm_is_refused_or_waits(tmp_path: Path):
    _write_arm(tmp_path, "mnist1d-hier", planted=False, init_same=False, level=0.95)
    with pytest.raises(UserError, match="not the pre-registered"):
        decision.read_arm(tmp_path, "mnist1d-hier")
    row, rows = decision.read_arm(tmp_path, "digits-hier")
    assert row["status"] == "pending" and rows == []


def test_the_committed_decision_is_the_rule_s(tmp_path: Path):
    """results/chapter2-decided/decision/ is what the rule makes of the committed reports."""
    root = ROOT / "results"
    committed = root / "chapter2-decided"
    if not (committed / "decision").is_dir():
        pytest.skip("no decision committed yet")
    copy = tmp_path / "chapter2-decided"
    shutil.copytree(committed, copy, ignore=shutil.ignore_patterns("study.db*", "decision", "*.png", "*.html"))
    fresh = decision.decide(copy, root / "chapter2")
    names = ["arms.csv", "measures.csv", "patterns.csv", "ladder.csv"]
    names += [n for n in ("secondary_arms.csv", "secondary.csv") if (committed / "decision" / n).is_file()]
    assert sorted(p.name for p in fresh.glob("*.csv")) == sorted(names)
    for name in names:
        pd.testing.assert_frame_equal(decision.read(fresh / name), decision.read(committed / "decision" / name))
