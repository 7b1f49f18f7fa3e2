"""AdaptCopy (thesis Fig. 4.9): the replay turns every kernel by the recorded rate, the
command writes its files, and the verdicts follow the results by their stated rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from clusterprior import data, models, train
from clusterprior.cli import main
from clusterprior.experiments import adapt_copy
from clusterprior.presets.tasks import STUDY_SETTINGS
from clusterprior.probe import StepRates
from clusterprior.report.readme import experiment_block
from clusterprior.train.layca import Layca

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "chapter4" / "adapt-copy"


def _rates(split, config, build=None):
    """Every step's tan(theta) per kernel of a 2-epoch run from the same initialisation."""
    torch.manual_seed(0)
    model = models.build("mlp", split.input_shape, split.n_classes, width=0.1)
    rates = StepRates(model)
    options = train.TrainConfig(epochs=2, batch_size=64, seed=0, **config)
    train.fit(model, split, None, options, step_callbacks=[rates], optimizer=build(model) if build else None)
    return rates.rates


@pytest.mark.parametrize("method", ["adam", "rmsprop", "adagrad"])
def test_the_copy_turns_each_kernel_by_the_recorded_rate(method):
    split = data.load("mnist1d-hier", n_train=300, n_test=50)
    recorded = _rates(split, {"optimizer": method, "lr": STUDY_SETTINGS["cpu"].adaptive[method]})
    assert len(recorded) == 10 and all(r > 0 for r in recorded[0])
    base, lr = adapt_copy.METHODS[method], adapt_copy.COPY_LR
    copied = _rates(
        split,
        {"optimizer": f"{base}-layca", "lr": lr},
        build=lambda m: Layca(m, base, lr, schedule=adapt_copy.replay(recorded, lr)),
    )
    for want, got in zip(recorded, copied, strict=True):
        assert got == pytest.approx(want, rel=1e-3, abs=1e-6)


def test_the_command_writes_its_files_and_refuses_bad_values(tmp_path, capsys):
    out = tmp_path / "ac"
    assert main(["experiment", "adapt-copy", "--epochs", "1", "--out", str(out), "--device", "cpu"]) == 0
    for name in ("results.csv", "curves.json", "adapt_copy.png", "verdicts.csv"):
        assert (out / name).is_file(), name
    results = pd.read_csv(out / "results.csv")
    assert list(results["run"]) == ["adam", "AdaptCopy (sgd-amom + Layca)", "SGD + weight decay"]
    assert results["classifier_norm"][1] == pytest.approx(1.0, abs=1e-5), "Layca keeps the norm"
    assert results["classifier_norm"][0] != pytest.approx(1.0, abs=1e-3)
    capsys.readouterr()
    for args, fragment in (
        (["--method", "sgd"], "unknown adaptive method 'sgd'"),
        (["--task", "nope"], "unknown task 'nope'"),
        (["--task", "C10-CNN1", "--method", "adam"], "the task runs no adam"),
    ):
        assert main(["experiment", "adapt-copy", *args, "--out", str(out)]) == 2
        assert fragment in capsys.readouterr().err


def _verdicts(folder: Path) -> pd.DataFrame:
    """The rule on a folder's results.csv and curves.json."""
    curves = json.loads((folder / "curves.json").read_text())
    return adapt_copy.verdicts(pd.read_csv(folder / "results.csv"), curves)


def test_the_verdicts_follow_the_results(tmp_path):
    """The committed verdicts are the rule's on the committed results, and changing a result
    flips its verdict (and the README block that shows it)."""
    committed = pd.read_csv(COMMITTED / "verdicts.csv")
    pd.testing.assert_frame_equal(_verdicts(COMMITTED), committed)
    folder = tmp_path / "adapt-copy"
    shutil.copytree(COMMITTED, folder)
    results = pd.read_csv(folder / "results.csv")
    adaptive_acc = results.loc[0, "test_acc"]
    for shift, verdict in ((0.0, "agrees"), (0.05, "disagrees")):
        results.loc[1, "test_acc"] = adaptive_acc + shift
        results.to_csv(folder / "results.csv", index=False)
        fresh = _verdicts(folder)
        assert fresh.loc[0, "verdict"] == verdict
        fresh.to_csv(folder / "verdicts.csv", index=False)
        assert f"**{verdict}**: {adapt_copy.CLAIMS['generalization']}" in experiment_block(folder, "x")
    curves = json.loads((folder / "curves.json").read_text())
    assert _verdicts(folder).loc[2, "verdict"] == "agrees"
    for row in curves[results.loc[1, "run"]]["history"]:
        row["train_acc"] -= 0.02  # the copy two points behind at every epoch
    (folder / "curves.json").write_text(json.dumps(curves))
    assert _verdicts(folder).loc[2, "verdict"] == "disagrees"
    faster = _verdicts(folder).loc[3, "verdict"]
    for row in curves[results.loc[1, "run"]]["history"]:
        row["train_loss"] /= 100.0  # the copy now far faster than SGD + weight decay
    (folder / "curves.json").write_text(json.dumps(curves))
    assert (faster, _verdicts(folder).loc[3, "verdict"]) == ("disagrees", "agrees")
