from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clusterprior.cli import main
from clusterprior.cli.common import parse_options

SMALL = ["-o", "n_train=400", "-o", "n_test=100"]


def test_train_writes_checkpoint_history_and_result(tmp_path: Path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--data",
            "mnist1d-hier",
            "--model",
            "mlp",
            "--epochs",
            "3",
            "--out",
            str(out),
            "--quiet",
            "--milestones",
            "2",
            "--device",
            "cpu",
            *SMALL,
        ]
    )
    assert rc == 0
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "done" and sum(result["neurons"].values()) == 512
    assert (out / "model.safetensors").is_file()
    assert list(pd.read_csv(out / "history.csv")["epoch"]) == [1, 2, 3]


def test_train_twice_with_one_seed_gives_identical_histories(tmp_path: Path):
    frames = []
    for name in ("a", "b"):
        assert (
            main(
                [
                    "train",
                    "--epochs",
                    "2",
                    "--augment",
                    "--dropout",
                    "0.2",
                    "--seed",
                    "5",
                    "--quiet",
                    "--device",
                    "cpu",
                    "--checkpoint-format",
                    "pt",
                    "--out",
                    str(tmp_path / name),
                    *SMALL,
                ]
            )
            == 0
        )
        frames.append(pd.read_csv(tmp_path / name / "history.csv").drop(columns="seconds"))
    pd.testing.assert_frame_equal(frames[0], frames[1])


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--lr", "-1"], "lr must be"),
        (["train", "--data", "nope"], "unknown data set"),
        (["train", "--model", "nope"], "unknown model"),
        (["train", "--epochs", "abc"], "--epochs"),
        (["train", "--bogus"], "--bogus"),
        (["train", "--optimizer", "lbfgs"], "optimizer"),
        (["train", "--milestones", "ten"], "--milestones"),
        (["train", "-o", "foo"], "KEY=VALUE"),
        (["train", "-o", "foo=1"], "no option 'foo'"),
        (["train", "--data", "cifar10", "--data-dir", "/nonexistent/cifar"], "data_batch_1"),
        (["train", "--checkpoint-format", "h5"], "checkpoint-format"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], fragment: str, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("clusterprior: error: ") and fragment in err


def test_parse_options():
    assert parse_options(["n=3", "x=0.5", "t=coarse", "flag=true"]) == {"n": 3, "x": 0.5, "t": "coarse", "flag": True}


@pytest.mark.slow
def test_entry_point_and_help():
    done = subprocess.run([sys.executable, "-m", "clusterprior", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "train" in done.stdout and "demo" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "clusterprior", "train", "--lr", "0"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "clusterprior: error: lr must be a positive number"


def test_measure_a_checkpoint_from_train(tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert (
        main(["train", "--model", "cnn", "--epochs", "2", "--out", str(out), "--quiet", "--device", "cpu", *SMALL]) == 0
    )
    capsys.readouterr()
    ckpt = str(out / "model.safetensors")
    assert main(["measure", ckpt, "--format", "json", "--device", "cpu"]) == 0
    records = json.loads(capsys.readouterr().out)
    whole = {r["measure"]: r["value"] for r in records if r["layer"] == "all"}
    assert set(whole) == {"c0", "c1", "c2", "c3", "c4"}
    assert len([r for r in records if r["measure"] == "c3" and r["layer"] != "all"]) == 6
    assert main(["measure", ckpt, "--format", "json", "--device", "cpu", "--stream", "--batch-size", "64"]) == 0
    streamed = json.loads(capsys.readouterr().out)
    assert [r["layer"] for r in streamed] == [r["layer"] for r in records]
    assert np.allclose([r["value"] for r in streamed], [r["value"] for r in records], rtol=1e-9, atol=1e-12)
    assert main(["measure", ckpt, "--measures", "c3,c4", "--format", "csv", "--split", "test"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "measure,layer,k,value"
    assert main(["measure", ckpt]) == 0
    assert "intraclass clustering" in capsys.readouterr().out
    assert main(["measure", ckpt, "--measures", "c9"]) == 2
    assert (
        main(
            [
                "measure",
                ckpt,
                "--measures",
                "c3,param_norm,output_margin,nc1,sigma_prime",
                "--format",
                "json",
                "--sharpness-budget",
                "0.1",
            ]
        )
        == 0
    )
    values = {r["measure"]: r["value"] for r in json.loads(capsys.readouterr().out) if r["layer"] == "all"}
    assert (
        set(values) == {"c3", "param_norm", "output_margin", "nc1", "sigma_prime"} and 0 <= values["sigma_prime"] <= 2
    )
    assert main(["measure", ckpt, "--measures", "distance_from_init"]) == 2, "a checkpoint has no initial weights"
    assert main(["measure", ckpt, "--format", "xml"]) == 2
    assert main(["measure", str(tmp_path / "absent.pt")]) == 2


def test_truncated_or_foreign_files_exit_2_with_one_line(tmp_path: Path, capsys):
    from clusterprior import models
    from clusterprior.train import checkpoint

    whole = checkpoint.save(tmp_path / "model.safetensors", models.build("mlp", (4,), 2, width=0.05)).read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "foreign.safetensors").write_bytes(b"not a checkpoint at all, just some bytes")
    (tmp_path / "truncated.pt").write_bytes(b"PK\x03\x04 a zip that stops here")
    broken = tmp_path / "study"
    broken.mkdir()
    (broken / "study.db").write_text("this is not an SQLite database, whatever its name says\n" * 4)
    spec = tmp_path / "spec.toml"
    spec.write_text("[train]\nepochs = 1\n")
    for args, fragment in (
        (["measure", str(tmp_path / "truncated.safetensors"), "--data", "digits-hier"], "unreadable checkpoint"),
        (["measure", str(tmp_path / "foreign.safetensors"), "--data", "digits-hier"], "unreadable checkpoint"),
        (["measure", str(tmp_path / "truncated.pt"), "--data", "digits-hier"], "unreadable checkpoint"),
        (["study", "status", str(broken)], "not a readable study database"),
        (["study", "report", str(broken)], "not a readable study database"),
        (["study", "export", str(broken), "--out", str(tmp_path / "x.csv")], "not a readable study database"),
        (["study", "run", str(spec), "--out", str(broken)], "not a readable study database"),
    ):
        capsys.readouterr()
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and fragment in err, (args, err)


def _image_folder(root: Path, classes: int = 3, subclasses: int = 2, per: int = 5, flat: bool = False) -> Path:
    """Fake RGB 16 x 16 PNGs: root/class/subclass/*.png (or root/class/*.png), each subclass its own colour."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        for s in range(subclasses):
            folder = root / f"class{c}" if flat else root / f"class{c}" / f"sub{s}"
            folder.mkdir(parents=True, exist_ok=True)
            colour = rng.integers(0, 255, size=3)
            for i in range(per):
                pixels = np.clip(colour + rng.normal(0, 30, size=(16, 16, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{s}_{i}.png")
    return root


@pytest.mark.parametrize("factory", ["resnet18_style", "bottleneck_resnet", "tiny_vit"])
def test_measure_a_model_trained_elsewhere_on_an_image_folder(tmp_path: Path, capsys, factory):
    """--model MODULE:FACTORY --weights FILE --data DIR: the same values as the library's one call."""
    from clusterprior import data, measures
    from tests import zoo

    torch.manual_seed(0)
    net = getattr(zoo, factory)(n_classes=3)
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    folder = _image_folder(tmp_path / "images")
    args = ["measure", "--model", f"tests.zoo:{factory}", "--model-kwargs", '{"n_classes": 3}']
    args += ["--weights", str(tmp_path / "weights.pt"), "--data", str(folder), "--format", "json", "--batch-size", "8"]
    assert main([*args, "--device", "cpu"]) == 0
    records = json.loads(capsys.readouterr().out)
    whole = {r["measure"]: r["value"] for r in records if r["layer"] == "all"}
    assert set(whole) == {"c0", "c1", "c2", "c3", "c4"}
    expected = measures.measure(net.eval(), data.load_image_folder(folder), settings=measures.Settings(batch_size=8))
    assert [r["layer"] for r in records] == list(expected["layer"])
    assert np.allclose([r["value"] for r in records], expected["value"], rtol=1e-9, atol=1e-12)


def test_measure_an_external_model_bad_inputs_exit_2_with_one_line(tmp_path: Path, capsys):
    from tests import zoo

    torch.save(zoo.resnet18_style(n_classes=3).state_dict(), tmp_path / "weights.pt")
    folder = _image_folder(tmp_path / "images", per=2)
    (tmp_path / "empty" / "class0").mkdir(parents=True)
    model = ["--model", "tests.zoo:resnet18_style", "--model-kwargs", '{"n_classes": 3}']
    for args, fragment in (
        ([*model, "--data", str(folder), "--layers", "nothing*"], "no module named 'nothing*'"),
        (["--model", "no_such_package.nets:resnet", "--data", str(folder)], "no_such_package"),
        (
            ["--model", "tests.zoo:resnet18_style", "--weights", str(tmp_path / "weights.pt"), "--data", str(folder)],
            "do not fit",
        ),
        ([*model, "--data", str(tmp_path / "empty")], "no images"),
        ([*model, "--data", str(folder), "--tokens", "median"], "tokens"),
        ([*model, "--data", str(folder), "--measures", "output_margin"], "needs the data in memory"),
        ([*model, "--model-kwargs", "{oops", "--data", str(folder)], "not JSON"),
        ([str(tmp_path / "weights.pt"), *model, "--data", str(folder)], "either a CHECKPOINT or --model"),
    ):
        capsys.readouterr()
        assert main(["measure", *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (args, err)


def test_version_prints_the_installed_version_and_the_citation_file_matches_it(capsys):
    from importlib.metadata import version

    import yaml

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"clusterprior {version('clusterprior')}"
    citation = yaml.safe_load((Path(__file__).resolve().parents[1] / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["version"] == version("clusterprior")
    assert citation["preferred-citation"]["identifiers"][0]["value"] == "arXiv:2203.08174"


def test_the_train_command_shows_the_steps_of_the_epoch_in_progress():
    """A bar over the steps of the current epoch, reset when the next epoch starts."""
    from types import SimpleNamespace

    from rich.console import Console

    from clusterprior.cli.common import epoch_progress, step_bar

    progress = epoch_progress(Console(quiet=True))
    advance = step_bar(progress, 5)
    for epoch, steps in ((1, 5), (2, 2)):
        for _ in range(steps):
            advance(SimpleNamespace(epoch=epoch))
        assert progress.tasks[0].completed == steps and progress.tasks[0].total == 5
