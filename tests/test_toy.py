from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from clusterprior.errors import UserError
from clusterprior.experiments import toy

SMALL = {"depths": (0, 1, 3), "n_inits": 8, "epochs": 200, "n_per_cluster": 40, "grid": 40}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from clusterprior.cli import main

    out = tmp_path_factory.mktemp("toy")
    args = ["--depths", "0,1,3", "--inits", "8", "--epochs", "200", "--n-per-cluster", "40", "--grid", "40"]
    assert main(["experiment", "toy", *args, "--workers", "2", "--quiet", "--out", str(out)]) == 0
    table = pd.read_csv(out / "results.csv")
    return out, table, table.to_dict("records")


def test_toy_data_is_balanced_with_red_clear_of_the_blue_centres():
    x, y, sub = toy.toy_data(n_per_cluster=30, seed=3)
    assert x.shape == (120, 2) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and sub.dtype == torch.int64
    assert np.bincount(sub.numpy()).tolist() == [60, 30, 30]
    assert torch.equal(y, (sub > 0).long())
    red = x[y == 0]
    assert red.abs().max() <= toy.HALF_WIDTH
    assert torch.cdist(red, torch.tensor(toy.BLUE_CENTRES)).min() > toy.CLEARANCE
    for k, centre in enumerate(toy.BLUE_CENTRES, start=1):
        assert torch.allclose(x[sub == k].mean(dim=0), torch.tensor(centre), atol=0.25)
    again = toy.toy_data(n_per_cluster=30, seed=3)
    assert all(torch.equal(a, b) for a, b in zip((x, y, sub), again, strict=True))
    assert not torch.equal(x, toy.toy_data(n_per_cluster=30, seed=4)[0])


def test_run_writes_loadable_results_and_reports_each_depth(small_run):
    out, table, reported = small_run
    assert [r["depth"] for r in reported] == list(SMALL["depths"])
    assert pd.read_csv(out / "results.csv")["depth"].tolist() == list(SMALL["depths"])
    assert (table["n_inits"] == 8).all()
    with np.load(out / "toy_heatmaps.npz", allow_pickle=False) as saved:
        assert saved["mean_pred"].shape == (3, 40, 40)
        assert saved["depths"].tolist() == list(SMALL["depths"])
        assert saved["grid_x"][0] == -toy.HALF_WIDTH and saved["grid_x"][-1] == toy.HALF_WIDTH
        assert saved["train_x"].shape == (160, 2) and saved["train_y"].shape == (160,)
        assert ((saved["mean_pred"] >= 0) & (saved["mean_pred"] <= 1)).all()
    assert (out / "toy_heatmaps.png").read_bytes()[:4] == b"\x89PNG"


def test_a_linear_model_cannot_separate_the_layout_deeper_nets_can(small_run):
    _, table, _ = small_run
    acc = table.set_index("depth")
    assert acc.loc[0, "train_acc_max"] < 0.8  # no line does better than cutting off one blue cluster
    assert acc.loc[1, "train_acc_mean"] > acc.loc[0, "train_acc_max"] + 0.3
    assert acc.loc[3, "train_acc_min"] >= 0.98


def test_deeper_nets_envelop_each_cluster_where_one_hidden_layer_bridges_them(small_run):
    _, table, _ = small_run
    rows = table.set_index("depth")
    assert rows.loc[3, "centre_pred"] > 0.95 and rows.loc[3, "gap_pred"] < 0.1
    assert rows.loc[1, "gap_pred"] > 0.5
    assert rows.loc[3, "envelope_iou"] > rows.loc[1, "envelope_iou"] > rows.loc[0, "envelope_iou"]


def test_enveloping_of_a_map_that_is_exactly_the_discs():
    axis = toy.grid_axes(101)
    gx, gy = np.meshgrid(axis, axis, indexing="xy")
    discs = np.zeros_like(gx, dtype=bool)
    for cx, cy in toy.BLUE_CENTRES:
        discs |= np.hypot(gx - cx, gy - cy) <= toy.CLEARANCE
    assert toy.enveloping(discs.astype(float), axis, 1.0, 0.0)["envelope_iou"] == 1.0
    assert toy.enveloping(np.ones_like(gx), axis, 1.0, 1.0)["envelope_iou"] == pytest.approx(discs.mean())


def test_batched_training_equals_training_each_network_alone():
    x, y, _ = toy.toy_data(n_per_cluster=20, seed=1)
    init = toy.init_params(2, 8, 4, torch.Generator().manual_seed(5))
    trained = toy.train_batched(init, x, y, epochs=60, lr=0.01)
    points = torch.from_numpy(np.stack(np.meshgrid(toy.grid_axes(15), toy.grid_axes(15)), axis=-1).reshape(-1, 2))
    batched = toy.predict(trained, points)
    for k in (0, 3):
        layers = [nn.Linear(w.shape[1], w.shape[2]) for w, _ in init]
        with torch.no_grad():
            for layer, (w, b) in zip(layers, init, strict=True):
                layer.weight.copy_(w[k].T)
                layer.bias.copy_(b[k, 0])
        net = nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2])
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        for _ in range(60):
            opt.zero_grad()
            nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), y.float()).backward()
            opt.step()
        with torch.no_grad():
            alone = torch.sigmoid(net(points).squeeze(1))
        assert torch.allclose(batched[k], alone, atol=1e-5)
    assert not torch.allclose(batched[0], batched[3], atol=1e-2)  # the initialisations do differ


def test_runs_are_deterministic():
    config = toy.configure({"depth": 2, "seed": 0}, {"n_inits": 4, "epochs": 30, "n_per_cluster": 20, "grid": 12})
    first, second = toy.run(config, "cpu", {}), toy.run(config, "cpu", {})
    assert first["measures"] == second["measures"]
    a, b = (r["files"]["heatmap.npz"].arrays["mean_pred"] for r in (first, second))
    assert a.shape == (12, 12) and np.array_equal(a, b)
    with pytest.raises(UserError, match="unknown toy option 'depths'"):
        toy.configure({"depth": 2}, {"depths": [1]})
