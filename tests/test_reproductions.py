"""The prose of the reproduction pages: every number it gives is recomputed from the committed
files it cites (the tables are generated blocks, checked by tests/test_results.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from clusterprior.cli import main
from tests.prose import missing, passage

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
CHAPTER2 = ROOT / "docs" / "reproductions" / "chapter2.md"
CHAPTER3 = ROOT / "docs" / "reproductions" / "chapter3.md"
TOY = RESULTS / "chapter2-toy"


def mean_of(cell: str) -> float:
    """The mean of a summary cell written "mean [min, max]"."""
    return float(cell.split()[0])


def layer_means(layers: pd.DataFrame, setting: str, column: str) -> list[float]:
    """A setting's per-layer mean over seeds of ``column``, the layers in forward order."""
    rows = layers[layers["setting"] == setting]
    return rows.groupby("layer", sort=False)[column].mean().tolist()


def test_the_chapter3_page_states_its_files():
    """Chapter 3's findings: the H100 runs (wtm_results.csv, wtm_summary.csv, wtm_layers.csv,
    gpu_check_wtm.json), the pre-training variants, the CPU runs and the CPU checks
    (scripts/wtm_checks.py), and the recorder's cost (benchmarks/gpu/gpu_check.json)."""
    gpu, cpu = RESULTS / "chapter3" / "gpu", RESULTS / "chapter3" / "cpu"
    summary = pd.read_csv(gpu / "wtm_summary.csv", index_col="setting")
    runs = pd.read_csv(gpu / "wtm_results.csv")
    layers = pd.read_csv(gpu / "wtm_layers.csv")
    text = passage(CHAPTER3, r"Results at full scale on one H100", r"## The figures")
    acc, gain, ratio = summary["test_acc"].map(mean_of), summary["spread_gain"], summary["gap_ratio"]
    thesis = summary["thesis_acc"]

    deep = runs["setting"].str.startswith("deep")
    later = runs[~deep].iloc[1:]["seconds"]  # the first run pays CUDA's warm-up
    wall = json.loads((gpu / "gpu_check_wtm.json").read_text())["wtm_seconds"]
    neurons = layers.groupby("setting")["neurons"].max()
    single = neurons.drop(["one-neuron", "deep", "deep-slow"])
    assert (single == single.iloc[0]).all() and layers.groupby("setting")["layer"].nunique()["deep"] == 5
    expected = [
        f"({later.min():.1f}–{later.max():.1f} s per 1-layer run after a first one of {runs['seconds'].iloc[0]:.0f} s",
        f"{runs[deep]['seconds'].min():.0f}–{runs[deep]['seconds'].max():.0f} s per 5-layer run, {wall:.0f} s "
        f"({wall / 60:.1f} minutes) for all",
        f"The recorded neurons are {single.iloc[0]} per run, except {neurons['one-neuron']} for one hidden neuron "
        f"and {neurons['deep']} per layer for the 5-layer nets",
    ]

    ablations = ["no-relu", "one-neuron", "noise-0.1"]
    noisy = summary.loc["noise-0.1", "noise_0.4_test_acc"]
    falls = [acc["no-relu"], acc["one-neuron"], noisy]
    assert acc["noise-0.1"] == 100
    starts = summary.loc[single.index, "gap_ratio_start"]
    expected += [
        f"The base setting reaches {acc['base']:.1f} %, {acc['base'] - float(thesis['base']):.0f} point above the "
        f"thesis's {thesis['base']} %",
        f"The three ablations fall to {min(falls):.1f}–{max(falls):.1f} %",
        f"where the noise-0.1 model scores {noisy:.1f} %",
        f"It separates the base ({gain['base']:.2f}) from the ablations ({gain[ablations].min():.2f} to "
        f"{gain[ablations].max():.2f})",
        f"the ratio starts between {starts.min():.1f} and {starts.max():.1f}",
        f"In the base it stays high at the end ({ratio['base']:.1f}); in the ablations it falls to "
        f"{ratio[ablations].min():.2f}–{ratio[ablations].max():.2f}",
        f"the spread gain barely changes ({gain['reduced-dropout']:.2f} against {gain['reduced']:.2f}), but the gap "
        f"ratio rises ({ratio['reduced-dropout']:.1f} against {ratio['reduced']:.1f})",
    ]

    fast, slow = layer_means(layers, "deep", "spread_gain"), layer_means(layers, "deep-slow", "spread_gain")
    gaps = layer_means(layers, "deep", "gap_ratio")
    order = sorted(range(5), key=lambda i: -fast[i])
    assert sorted(order[:3]) == [1, 2, 4] and order[-1] == 3, "most in layers 2, 3 and 5, least in layer 4"
    assert [g > 1 for g in gaps] == [True, True, True, False, False], "above 1 in layers 1-3, below in 4-5"
    expected += [
        f"Our first layer's spread gain ({fast[0]:.2f}) is small, though above the slow net's ({slow[0]:.2f})",
        f"(spread gain ≤ {max(slow):.2f})",
    ]

    variants = json.loads((gpu / "wtm_pretrain_variants.txt").read_text().splitlines()[-1])
    variant = {k: 100 * sum(v) / len(v) for k, v in variants.items()}
    assert max(variant.values()) < 86, "none comes near 88 %"
    expected += [
        f"It gives {acc['random-pretrain']:.1f} %, against {acc['reduced']:.1f} % without it; the thesis reports "
        f"{thesis['random-pretrain']} %",
        f"fine-tuning at rate ÷ 5 gives {variant['ft-lr/5']:.1f} %, a fresh output layer {variant['new-head']:.1f} %, "
        f"a quarter of the pre-training {variant['short-pre']:.1f} %",
    ]

    checks = pd.read_csv(cpu / "wtm_checks.csv").pivot_table(index=["setting", "seed"], columns="quantity")["value"]
    base_checks, crossover = checks.loc["base"], checks.loc["base", "crossover_step"]
    expected += [
        f"median spread of the cluster means at the start of fine-tuning is "
        f"{checks.loc['random-pretrain', 'spread_start'].mean():.2f}, against "
        f"{checks.loc['reduced', 'spread_start'].mean():.2f} at a random initialisation, and it ends at "
        f"{checks.loc['random-pretrain', 'spread_end'].mean():.2f}",
        f"overtakes the easy examples' at iteration {crossover.min():.0f}–{crossover.max():.0f}",
        f"{100 * base_checks['difficult_share'].mean():.1f} % of the training examples are difficult",
        f"the base stalls near {100 * checks.loc[('base-default-init', 0), 'test_acc']:.1f} %",
    ]

    base = pd.read_csv(cpu / "wtm_base_results.csv")
    scaled = pd.read_csv(cpu / "wtm_deep_scale0.2_results.csv").set_index("setting")
    moved = 100 * (base.set_index("seed")["test_acc"] - base_checks["test_acc"]).abs()
    assert moved[0] == 0
    h100 = acc["base"]
    expected += [
        f"a 1-layer run takes {base['seconds'].min():.0f}–{base['seconds'].max():.0f} s",
        f"gave {100 * base['test_acc'].mean():.2f} % [{100 * base['test_acc'].min():.2f}, "
        f"{100 * base['test_acc'].max():.2f}] there in {base['seconds'].sum() / 60:.0f} minutes, within "
        f"{abs(100 * base['test_acc'].mean() - h100):.2f} point of the H100 runs",
        f"took {scaled.loc['deep', 'seconds']:.0f} s and {scaled.loc['deep-slow', 'seconds']:.0f} s and gave "
        f"{100 * scaled.loc['deep', 'test_acc']:.1f} % and {100 * scaled.loc['deep-slow', 'test_acc']:.1f} %",
        f"moved seeds 1 and 2 by up to {moved.max():.2f} points",
    ]

    recorder = json.loads((ROOT / "benchmarks" / "gpu" / "gpu_check.json").read_text())["recorder"]
    expected.append(
        f"costs {recorder['ratio_with_over_without']:.2f}× the training time of the base run on the H100 "
        f"({min(recorder['without']):.2f} s → {min(recorder['with']):.2f} s"
    )
    assert recorder["test_acc_with"] == recorder["test_acc_without"], "identical accuracy"
    assert not missing(expected, text), missing(expected, text)


def test_the_toy_s_reading_is_its_table_s():
    """The Chapter 2 page's reading of the toy: the linear model predicts the same near the
    centres as in the gap (it cannot separate the clusters), one hidden layer joins the two
    clusters (blue in the gap), two and three envelop each (blue at the centres, red in the gap)."""
    results = pd.read_csv(TOY / "results.csv").set_index("depth")
    text = passage(CHAPTER2, r"<!-- end results: chapter2-toy -->", r"only the layout above\)\.")
    linear, one = results.loc[0], results.loc[1]
    assert abs(linear["centre_pred"] - linear["gap_pred"]) < 0.01 and linear["train_acc_max"] < 0.6
    assert one["gap_pred"] > 0.5 and one["centre_pred"] > 0.5
    deep = results.loc[2:]
    assert (deep["gap_pred"] < 0.5).all() and (deep["centre_pred"] > 0.5).all() and list(deep.index) == [2, 3]
    assert not missing(["One hidden layer bridges them", "Two and three layers envelop each cluster"], text)


@pytest.mark.slow
def test_the_toy_reproduces_its_committed_results(tmp_path: Path):
    """``clusterprior experiment toy`` with its defaults writes the committed table again."""
    assert main(["experiment", "toy", "--out", str(tmp_path / "toy"), "--quiet"]) == 0
    again = pd.read_csv(tmp_path / "toy" / "results.csv")
    committed = pd.read_csv(TOY / "results.csv")
    pd.testing.assert_frame_equal(again, committed, rtol=1e-5, atol=1e-6)


def test_the_chapter4_page_s_readings_are_its_files():
    """Chapter 4's prose reads its committed runs: the exploration's layers stay short of a
    cosine distance of 1 at 3^-3 and a larger rate wins; the AdaptCopy paragraph's agreements and
    disagreements are the verdicts', and the classifier's norm grows under Adam and SGD + weight
    decay but not under Layca."""
    chapter4 = RESULTS / "chapter4"
    text = passage(ROOT / "docs" / "reproductions" / "chapter4.md", r"The third verdict", r"left the loss gap")
    exploration = pd.read_csv(chapter4 / "layer-rotation-exploration" / "summary.csv")
    at_thesis_rate = exploration[exploration["log3_rho0"] == -3]
    assert at_thesis_rate["rotation_mean"].max() < 0.5, "well short of a cosine distance of about 1"
    best = exploration.loc[exploration["test_acc"].idxmax()]
    assert best["log3_rho0"] > -3, "a larger initial rate than 3^-3 wins"
    verdicts = pd.read_csv(chapter4 / "layer-rotation-exploration" / "verdicts.csv")["verdict"].tolist()
    assert verdicts[2] == "agrees", "the third verdict (the rule of thumb)"

    copy = pd.read_csv(chapter4 / "adapt-copy" / "results.csv").set_index("run")
    said = pd.read_csv(chapter4 / "adapt-copy" / "verdicts.csv")["verdict"].tolist()
    assert said == ["agrees", "disagrees", "agrees", "disagrees"], "accuracy, loss, training accuracy, speed"
    adam, layca, decay = copy.iloc[0], copy.iloc[1], copy.iloc[2]
    assert layca["train_loss"] > max(adam["train_loss"], decay["train_loss"]), "the copy's loss stays above both"
    assert min(adam["classifier_norm"], decay["classifier_norm"]) > 1.5 and abs(layca["classifier_norm"] - 1) < 1e-3
    assert not missing(["generalizes like Adam", "its training *loss* stays far above Adam's"], text)
