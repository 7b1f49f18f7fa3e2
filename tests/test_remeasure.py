"""Re-measuring a finished study from its checkpoints (``clusterprior study remeasure``), and
re-estimating BatchNorm statistics without dropout (``train.recalibrate_batchnorm``)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from clusterprior import UserError, data, report, study, train
from clusterprior.cli import main
from clusterprior.study.remeasure import SETTINGS, remeasure
from clusterprior.study.store import snapshot

STUDY = """
name = "bn"
[data]
name = "mnist1d-hier"
options = { n_train = 300, n_test = 200 }
[model]
name = "cnn"
width = 0.25
[train]
epochs = 4
lr = 0.1
batch_size = 50
[measures]
names = ["c1", "c3", "c4", "distance_from_init", "param_norm"]
samples = 200
at = ["init", "fit", "final"]
fit_loss = 2.0
[grid.axes]
dropout = [0.0, 0.5]
seed = [0, 1]
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished study of 4 small CNNs, 2 with dropout before BatchNorm, measured at init, fit, final."""
    folder = tmp_path_factory.mktemp("remeasure") / "study"
    counts = study.run_study(study.parse(STUDY), folder, workers=1, quiet=True)
    assert counts.get("done") == 4
    return folder


def _db(folder: Path, sql: str) -> pd.DataFrame:
    with sqlite3.connect(folder / "study.db") as db:
        return pd.read_sql_query(sql, db)


def _measures(folder: Path) -> pd.DataFrame:
    return _db(folder, "SELECT run_id, epoch, measure, layer, k, value FROM measures ORDER BY 1, 2, 3, 4, 5")


def _runs(folder: Path) -> pd.DataFrame:
    return _db(
        folder, "SELECT id, status, epochs, fit_epoch, test_acc, test_loss, fit_acc, fit_loss FROM runs ORDER BY id"
    )


# ---- recalibrate_batchnorm -------------------------------------------------------------------


def test_recalibrated_statistics_are_those_of_the_eval_mode_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    model.train()
    x = torch.randn(400, 5) * 3 + 1
    for _ in range(5):  # running statistics taken with dropout on
        model(x[:100])
    weights = {k: v.clone() for k, v in model.named_parameters()}
    norm = model[2]
    assert train.recalibrate_batchnorm(model, x, batch_size=100) == 1
    inputs = model[0](x).detach()  # what the BatchNorm sees in eval mode: dropout is the identity
    batch_vars = torch.stack([inputs[i : i + 100].var(0) for i in range(0, 400, 100)])
    torch.testing.assert_close(norm.running_mean, inputs.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(norm.running_var, batch_vars.mean(0), rtol=1e-5, atol=1e-5)  # mean of unbiased vars
    assert all(torch.equal(weights[k], v) for k, v in model.named_parameters())
    assert model.training and all(m.training for m in model.modules())  # modes given back
    assert norm.momentum == 0.1


def test_recalibration_leaves_a_model_without_batchnorm_alone_and_refuses_no_inputs():
    model = nn.Sequential(nn.Linear(3, 2))
    assert train.recalibrate_batchnorm(model, torch.randn(10, 3)) == 0
    with pytest.raises(UserError, match="no inputs"):
        train.recalibrate_batchnorm(nn.Sequential(nn.BatchNorm1d(3)), torch.empty(0, 3))


# ---- remeasure -------------------------------------------------------------------------------


def test_remeasuring_reproduces_the_stored_values(trained: Path, tmp_path: Path):
    out = tmp_path / "again"
    lines: list[str] = []
    counts = remeasure(trained, out, log=lines.append)
    assert counts == {"remeasured": 4, "done": 4, "missing": 0}
    assert len(lines) == 5 and lines[0].startswith("[1/4] ")
    before, after = _measures(trained), _measures(out)
    merged = before.merge(after, on=["run_id", "epoch", "measure", "layer", "k"], how="outer", suffixes=("", "_new"))
    assert merged["value"].notna().all() and merged["value_new"].notna().all()  # the same rows: init, fit, final
    assert set(merged["epoch"]) > {0}
    np.testing.assert_allclose(merged["value_new"], merged["value"], rtol=1e-5, atol=1e-5)
    runs, again = _runs(trained), _runs(out)
    assert (again["status"] == "done").all()
    assert again["fit_epoch"].equals(runs["fit_epoch"])
    for column in ("test_acc", "test_loss"):
        np.testing.assert_allclose(again[column], runs[column], rtol=1e-5, atol=1e-6)
    # without a stopping rule no run recorded its eval-mode training loss: now each has it
    assert runs[["fit_acc", "fit_loss"]].isna().all().all() and again[["fit_acc", "fit_loss"]].notna().all().all()
    assert json.loads((out / SETTINGS).read_text())["recalibrate_bn"] is False
    assert main(["study", "snapshot", str(out), "--to", str(tmp_path / "saved")]) == 0
    assert (tmp_path / "saved" / SETTINGS).read_text() == (out / SETTINGS).read_text()
    assert report.build(out).folder.is_dir()  # a study like any other


def test_recalibrated_runs_are_evaluated_and_measured_on_the_recalibrated_network(trained: Path, tmp_path: Path):
    out = tmp_path / "bn"
    remeasure(trained, out, recalibrate_bn=True, log=lambda line: None)
    runs = _runs(out).set_index("id")
    assert runs["fit_epoch"].isna().all() and (runs["status"] == "done").all()
    values = _measures(out)
    epochs = values["run_id"].map(runs["epochs"])
    assert (
        set(values["epoch"]) == {0} | set(runs["epochs"])
        and ((values["epoch"] == 0) | (values["epoch"] == epochs)).all()
    )
    init = values[values["epoch"] == 0].reset_index(drop=True)
    assert init.equals(_measures(trained).query("epoch == 0").reset_index(drop=True))  # kept as measured
    # independently: each checkpoint, recalibrated by hand, scores the stored test accuracy
    spec = study.load_spec(trained / "study.toml")
    test = data.load("mnist1d-hier", "test", **spec.data.options)
    trainset = data.load("mnist1d-hier", "train", **spec.data.options)
    for run_id, row in runs.iterrows():
        model, _ = train.checkpoint.load(trained / "runs" / run_id / "model.safetensors")
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.reset_running_stats()
                m.momentum = None
        model.train()
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.eval()
        with torch.no_grad():
            for i in range(0, len(trainset), 500):
                model(trainset.x[i : i + 500])
        assert train.evaluate(model, test.x, test.y)[1] == pytest.approx(row["test_acc"], abs=1e-9)
    # the final values of the dropout models moved, their parameters did not
    final = values[values["epoch"] == epochs].set_index(["run_id", "measure", "layer"])["value"]
    stored = _measures(trained)
    stored = stored[stored["epoch"] == stored["run_id"].map(runs["epochs"])].set_index(["run_id", "measure", "layer"])
    moved = (final - stored["value"]).abs().groupby(level="measure").max()
    assert moved["param_norm"] == pytest.approx(0, abs=1e-6) and moved["distance_from_init"] == pytest.approx(
        0, abs=1e-6
    )
    assert moved["c1"] > 1e-4


def test_a_remeasure_cut_off_resumes_to_the_same_values(trained: Path, tmp_path: Path, capsys):
    out = tmp_path / "cut"

    def crash_after_two(line: str) -> None:
        if line.startswith("[2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        remeasure(trained, out, recalibrate_bn=True, log=crash_after_two)
    assert (_runs(out)["status"] == "done").sum() == 2
    capsys.readouterr()
    assert main(["study", "status", str(out)]) == 0
    said = capsys.readouterr().out
    assert "4 runs: 2 done, 0 diverged, 0 failed, 0 running, 2 queued" in said
    assert (
        f"re-measured from {trained.resolve()} (4 runs, BatchNorm re-estimated); the queued ones resume with " in said
    )
    assert f"'clusterprior study remeasure {trained.resolve()} --out {out} --recalibrate-bn'" in said
    counts = remeasure(trained, out, recalibrate_bn=True, limit=1, log=lambda line: None)
    assert counts == {"remeasured": 1, "done": 3, "missing": 0}
    counts = remeasure(trained, out, recalibrate_bn=True, log=lambda line: None)
    assert counts == {"remeasured": 1, "done": 4, "missing": 0}
    whole = tmp_path / "whole"
    remeasure(trained, whole, recalibrate_bn=True, log=lambda line: None)
    pd.testing.assert_frame_equal(_measures(out), _measures(whole))
    pd.testing.assert_frame_equal(_runs(out), _runs(whole))


def test_remeasure_refuses_what_it_cannot_do(trained: Path, tmp_path: Path):
    with pytest.raises(UserError, match="limit must be at least 1"):
        remeasure(trained, tmp_path / "none", limit=0)
    with pytest.raises(UserError, match="another folder"):
        remeasure(trained, trained)
    with pytest.raises(UserError, match="not a study"):
        remeasure(tmp_path, tmp_path / "out")
    out = tmp_path / "plain"
    remeasure(trained, out, log=lambda line: None)
    with pytest.raises(UserError, match="recalibrate_bn=False, not from .* recalibrate_bn=True"):
        remeasure(trained, out, recalibrate_bn=True)
    with pytest.raises(UserError, match="not re-measured"):
        remeasure(trained, _copy_study(trained, tmp_path / "other"))


def _copy_study(source: Path, to: Path) -> Path:
    snapshot(source, to)
    return to


def test_runs_without_a_checkpoint_stay_queued_and_the_command_says_so(trained: Path, tmp_path: Path, capsys):
    source = tmp_path / "partial"
    _copy_study(trained, source)
    ids = _runs(trained)["id"].tolist()
    for run_id in ids[:3]:  # one run's checkpoint stayed on another machine
        (source / "runs" / run_id).mkdir(parents=True)
        (source / "runs" / run_id / "model.safetensors").write_bytes(
            (trained / "runs" / run_id / "model.safetensors").read_bytes()
        )
    code = main(["study", "remeasure", str(source), "--out", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert f"1 runs have no checkpoint in {source.resolve()} and stay queued: {ids[3]}" in err
    runs = _runs(tmp_path / "out").set_index("id")
    assert runs.loc[ids[3], "status"] == "queued" and (runs.loc[ids[:3], "status"] == "done").all()


def test_checkpoints_are_read_from_a_remote_storage(trained: Path, tmp_path: Path):
    import fsspec

    source = _copy_study(trained, tmp_path / "remote")
    text = (source / "study.toml").read_text()
    assert "storage" not in text
    (source / "study.toml").write_text('storage = "memory://remeasure-test"\n' + text)
    memory = fsspec.filesystem("memory")
    for run_id in _runs(trained)["id"]:
        memory.pipe(
            f"/remeasure-test/runs/{run_id}/model.safetensors",
            (trained / "runs" / run_id / "model.safetensors").read_bytes(),
        )
    remeasure(source, tmp_path / "out", log=lambda line: None)
    remeasure(trained, tmp_path / "local", log=lambda line: None)
    pd.testing.assert_frame_equal(_measures(tmp_path / "out"), _measures(tmp_path / "local"))
