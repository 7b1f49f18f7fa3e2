"""The winner-take-most experiment at a tiny scale: outputs, resume, settings and the CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from clusterprior import UserError, data, study
from clusterprior.cli import main
from clusterprior.experiments import winner_take_most as wtm
from clusterprior.measures.dynamics import wtm_index, wtm_summary
from clusterprior.probe.dynamics import Dynamics
from tests.test_mnist import write_mnist

SCALE = 0.02  # 20 hidden units (5-layer: 20 each), 8 epochs (deep: 20)


def _cli(out, *args: str) -> int:
    return main(["experiment", "winner-take-most", "--scale", str(SCALE), "--device", "cpu", "--out", str(out), *args])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("wtm")
    assert _cli(out, "--setting", "base,noise-0.1,random-pretrain", "--seeds", "2", "--workers", "2", "--quiet") == 0
    return out, pd.read_csv(out / "results.csv"), pd.read_csv(out / "summary.csv")


def _recording(out, setting: str, seed: int) -> Dynamics:
    runs = study.load(out).runs()
    (run_id,) = runs[(runs["setting"] == setting) & (runs["seed"] == seed)]["id"]
    return Dynamics.load(out / "runs" / run_id / "dynamics.npz")


@pytest.mark.slow
def test_run_writes_results_figures_and_recordings(small):
    out, table, summary = small
    assert table[["setting", "seed"]].values.tolist() == [
        [n, s] for n in ("base", "noise-0.1", "random-pretrain") for s in (0, 1)
    ]
    assert (table["status"] == "done").all() and (table["scale"] == SCALE).all()
    assert table["test_acc"].between(0.5, 1.0).all()
    for name in ("base", "noise-0.1", "random-pretrain"):
        for file in ("dynamics.png", "loss_shares.png"):
            assert (out / name / "seed0" / file).is_file()
    dyn = _recording(out, "base", 1)
    assert len(dyn.epoch) == 8  # full batch: one step per epoch
    assert set(np.unique(dyn.group)) == {0, 1}  # easy and difficult examples
    # the first layer's index, as the recording gives it
    first = wtm_summary(wtm_index(dyn)).iloc[0]
    row = table[(table["setting"] == "base") & (table["seed"] == 1)].iloc[0]
    assert row["spread_gain"] == pytest.approx(float(first["spread_gain"]), abs=1e-6)
    assert row["gap_ratio"] == pytest.approx(float(first["gap_ratio"]), abs=1e-6)
    # every layer's index is in the store
    layers = study.load(out).measures()
    assert {"spread_gain", "gap_ratio_start", "gap_ratio", "share_gap_above_1", "neurons"} <= set(layers["measure"])
    assert not layers.duplicated(["run_id", "epoch", "measure", "layer", "k"]).any()
    # the noise ablation is also tested on a standard noise-0.4 test set; the others are not
    noise = table[table["setting"] == "noise-0.1"]
    assert (
        noise["standard_test_acc"].notna().all() and table[table["setting"] == "base"]["standard_test_acc"].isna().all()
    )
    # at a reduced scale the thesis's numbers are not shown beside ours
    assert summary["thesis_acc"].isna().all()


def test_finished_runs_are_reused(small, monkeypatch, capsys):
    out, table, _ = small
    assert _cli(out, "--setting", "base,noise-0.1,random-pretrain", "--seeds", "2") == 0
    assert "6 already finished, 0 to run" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), table)
    # a changed label is not a changed experiment
    monkeypatch.setitem(wtm.SETTINGS, "base", dataclasses.replace(wtm.SETTINGS["base"], note="renamed", thesis=1.0))
    assert _cli(out, "--setting", "base", "--seeds", "2") == 0
    assert "2 already finished, 0 to run" in capsys.readouterr().out


def test_a_changed_setting_is_a_new_run_and_the_config_rebuilds_the_setting(tmp_path, monkeypatch, capsys):
    assert _cli(tmp_path, "--setting", "one-neuron", "--seeds", "1", "--workers", "1", "--quiet") == 0
    monkeypatch.setitem(wtm.SETTINGS, "one-neuron", dataclasses.replace(wtm.SETTINGS["one-neuron"], lr=0.01))
    assert _cli(tmp_path, "--setting", "one-neuron", "--seeds", "1", "--workers", "1", "--quiet") == 0
    assert len(study.load(tmp_path).runs()) == 2
    config = wtm.configure({"setting": "one-neuron", "seed": 3}, {"scale": SCALE})
    assert wtm.setting_of(config) == wtm.scale_setting(wtm.SETTINGS["one-neuron"], SCALE)
    assert config["lr"] == 0.01 and config["seed"] == 3
    with pytest.raises(UserError, match="unknown winner-take-most option 'width'"):
        wtm.configure({"setting": "base"}, {"width": 2})


def test_settings_data_helpers():
    split = data.load("synthclust", n_train_per_cluster=30, n_test_per_cluster=5)
    reduced = wtm.per_cluster_subset(split, 4)
    assert np.bincount(reduced.sub.numpy()).tolist() == [4] * 30
    relabelled = wtm.relabelled(split, 0)
    class_of = {}
    for s, c in zip(split.sub.tolist(), relabelled.y.tolist(), strict=True):
        assert class_of.setdefault(s, c) == c  # one class per cluster
    assert sorted(np.bincount(list(class_of.values()))) == [15, 15]
    assert class_of != dict(enumerate(split.meta.superclass_of))
    small_base = wtm.scale_setting(wtm.SETTINGS["base"], 0.1)
    assert small_base.hidden == (100,) and small_base.epochs == 40 and small_base.milestones == (38,)
    with pytest.raises(UserError, match="scale"):
        wtm.scale_setting(wtm.SETTINGS["base"], 1.5)


def test_base_model_is_the_thesis_architecture():
    split = data.load("synthclust", n_train_per_cluster=2, n_test_per_cluster=1)
    model = wtm.build_model(wtm.SETTINGS["base"], split, 0)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(1000, 500), (1, 1000)]
    assert linears[0].bias is None and linears[1].bias is not None
    bound = (6 / 500) ** 0.5  # He-uniform
    assert linears[0].weight.abs().max() <= bound and linears[0].weight.abs().max() > 0.95 * bound
    config = wtm.train_config(wtm.SETTINGS["base"], 15000, 0, "cpu")
    assert (config.batch_size, config.optimizer, config.loss, config.milestones, config.gamma) == (
        15000,
        "sgd-layca",
        "bce",
        (375,),
        0.2,
    )
    assert config.lr == pytest.approx(3**-3)


def test_heavy_settings_need_a_gpu_or_an_explicit_scale(tmp_path):
    assert main(["experiment", "winner-take-most", "--setting", "deep", "--device", "cpu", "--out", str(tmp_path)]) == 2
    assert (
        main(["experiment", "winner-take-most", "--setting", "deep-slow", "--device", "cpu", "--out", str(tmp_path)])
        == 2
    )


def test_cli_bad_setting_and_missing_mnist(tmp_path, monkeypatch, capsys):
    assert main(["experiment", "winner-take-most", "--setting", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown setting 'nope'" in capsys.readouterr().err
    assert main(["experiment", "winner-take-most", "--setting", ",", "--out", str(tmp_path)]) == 2
    assert "names no setting" in capsys.readouterr().err
    monkeypatch.delenv("CLUSTERPRIOR_DATA_DIR", raising=False)
    assert (
        main(
            [
                "experiment",
                "winner-take-most",
                "--setting",
                "mnist",
                "--scale",
                "0.01",
                "--out",
                str(tmp_path),
                "--data-dir",
                str(tmp_path / "empty"),
            ]
        )
        == 2
    )
    assert "train-images-idx3-ubyte" in capsys.readouterr().err


def test_cli_runs_the_mnist_variant_on_idx_files(tmp_path, capsys):
    write_mnist(tmp_path / "mnist")
    code = main(
        [
            "experiment",
            "winner-take-most",
            "--setting",
            "mnist",
            "--seeds",
            "1",
            "--scale",
            "0.02",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
            "--data-dir",
            str(tmp_path / "mnist"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "mnist seed 0: test acc" in printed and "scale 0.02: widths and epochs reduced" in printed
    assert pd.read_csv(tmp_path / "out" / "summary.csv")["thesis_acc"].isna().all()  # no thesis number at scale
    dyn = _recording(tmp_path / "out", "mnist", 0)
    assert dyn.cluster_means[dyn.layers[0]].shape[2] == 10  # the 10 digits are the clusters


def test_cli_toy(tmp_path, capsys):
    code = main(["experiment", "toy", "--inits", "3", "--epochs", "30", "--max-depth", "1", "--out", str(tmp_path)])
    assert code == 0
    assert "1 hidden layer: train acc" in capsys.readouterr().out
    assert (tmp_path / "toy_heatmaps.png").is_file()
    assert main(["experiment", "toy", "--inits", "0", "--out", str(tmp_path)]) == 2


def test_cli_plots_a_saved_recording_later(small, tmp_path, capsys):
    out = small[0]
    runs = study.load(out).runs()
    (run_id,) = runs[(runs["setting"] == "base") & (runs["seed"] == 1)]["id"]
    recording = out / "runs" / run_id / "dynamics.npz"
    assert main(["experiment", "plot-dynamics", str(recording), "--out", str(tmp_path), "--neurons", "3"]) == 0
    assert (tmp_path / "dynamics.png").is_file() and (tmp_path / "loss_shares.png").is_file()
    assert "spread_gain" in capsys.readouterr().out
    for name, payload in (("bad.npz", b"x"), ("empty.npz", b"")):
        (tmp_path / name).write_bytes(payload)
        assert main(["experiment", "plot-dynamics", str(tmp_path / name)]) == 2
    assert main(["experiment", "plot-dynamics", str(tmp_path / "missing.npz")]) == 2
