"""Fig. 4.10's feature visualisation: the data it chooses, the files a short run writes, and
verdicts that follow their stated rules."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clusterprior import UserError, data
from clusterprior.cli import main
from clusterprior.data import fashion_mnist
from clusterprior.data.mnist import FILES
from clusterprior.experiments import features


def _idx(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, train_per_class: int = 30, test_per_class: int = 20) -> Path:
    """The four idx files of a 10-class 28x28 set: noise plus a bright bar at a row of its own
    for each class."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(10), n)
        rng.shuffle(labels)
        images = rng.integers(0, 80, size=(len(labels), 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 255
        images_name, labels_name = FILES[split]
        (folder / images_name).write_bytes(_idx(images, 0x803))
        (folder / labels_name).write_bytes(_idx(labels, 0x801))
    return folder


def _verdicts(folder: Path) -> pd.DataFrame:
    """The rule on a folder's results.csv and features.npz."""
    with np.load(folder / "features.npz", allow_pickle=False) as npz:
        similarity = npz["similarity"]
    return features.verdicts(pd.read_csv(folder / "results.csv"), similarity)


def test_a_short_run_writes_its_four_files(tmp_path, capsys):
    out = tmp_path / "features"
    mnist = str(write_idx_set(tmp_path / "mnist"))
    args = ["--data-dir", mnist, "--epochs", "2", "--device", "cpu", "--quiet", "--out", str(out)]
    assert main(["experiment", "features", *args]) == 0
    for name in ("results.csv", "features.npz", "features.png", "verdicts.csv", "study.db"):
        assert (out / name).is_file(), name
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 4 and capsys.readouterr().out.count("  first-layer rotation ") == 4
    assert list(results["label"]) == [r.label for r in features.RUNS]
    assert (results["epochs"] == 2).all() and (results["status"] == "done").all()
    assert (results["data"] == "MNIST, 300 train / 200 test, 28x28").all()
    with np.load(out / "features.npz", allow_pickle=False) as npz:
        assert int(npz["side"]) == 28 and list(npz["labels"]) == list(results["label"])
        assert npz["initial"].shape == (5, 784) and npz["final"].shape == (4, 5, 784)
        similarity, chosen = npz["similarity"], npz["neurons"]
        assert similarity.shape == (4, 4, 784) and np.allclose(similarity, similarity.transpose(1, 0, 2))
        # the chosen neurons' rows, recomputed from their stored weights
        for a, b in ((0, 3), (1, 2), (2, 2)):
            want = features.change_similarity(npz["initial"], npz["final"][a], npz["final"][b])
            np.testing.assert_allclose(similarity[a, b][chosen], want, rtol=1e-5, atol=1e-6)
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert list(verdicts["claim"]) == list(features.CLAIMS.values())
    assert set(verdicts["verdict"]) <= {"agrees", "disagrees"}


def test_a_shortened_run_keeps_a_decay():
    assert [r.scaled(2).milestones for r in features.RUNS] == [(1,), (1,), (1,), ()]
    assert features.RUNS[0].scaled(10).milestones == (9,) and features.RUNS[1].scaled(10).milestones == (9,)
    assert features.RUNS[0].scaled(1).milestones == () and features.RUNS[0].scaled(None) is features.RUNS[0]
    with pytest.raises(UserError):
        features.RUNS[0].scaled(0)


def test_a_folder_without_mnist_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError) as error:
        features.feature_data(str(tmp_path))
    message = str(error.value)
    assert "\n" not in message
    assert all(name in message for pair in FILES.values() for name in pair)


def test_without_mnist_it_takes_fashion_then_digits(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERPRIOR_DATA_DIR", str(tmp_path / "elsewhere"))  # never consulted
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FOLDER", str(write_idx_set(tmp_path / "fashion", 12, 3)))
    train, test, sentence = features.feature_data(None)
    assert sentence == "Fashion-MNIST (10 garments), 120 train / 30 test, 28x28"
    assert train.n_classes == 10 and train.meta.class_names == fashion_mnist.CLASS_NAMES
    assert sorted(np.unique(train.y.numpy())) == list(range(10)) and len(train) == 120 and len(test) == 30
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FOLDER", str(tmp_path / "missing"))
    train, test, sentence = features.feature_data(None)
    assert sentence.startswith("8x8 digits (no Fashion-MNIST installed), ")
    assert train.input_shape == (1, 8, 8) and train.n_classes == 10 and train.y.max() == 9


def test_the_reduction_is_class_balanced_and_fixed():
    split = data.load("digits-hier")
    classes = split.y.numpy()
    counts = np.bincount(classes)
    cap = int(counts.min()) - 5
    reduced = features.balanced_subset(split, per_class=cap)
    assert np.bincount(reduced.y.numpy()).tolist() == [cap] * len(counts)
    again = features.balanced_subset(split, per_class=cap)
    assert torch.equal(reduced.x, again.x) and torch.equal(reduced.sub, again.sub)
    assert not torch.equal(reduced.x, features.balanced_subset(split, per_class=cap, seed=1).x)
    assert len(features.balanced_subset(split, per_class=10_000)) == len(split)  # a small class keeps all of it


def _write_results(folder: Path, rotation, test_acc, finals, initial) -> None:
    lrs = [r.lr for r in features.RUNS]
    table = pd.DataFrame(
        {"label": [r.label for r in features.RUNS], "lr": lrs, "rotation_first": rotation, "test_acc": test_acc}
    )
    table.to_csv(folder / "results.csv", index=False)
    similarity = np.array([[features.change_similarity(initial, a, b) for b in finals] for a in finals])
    np.savez(folder / "features.npz", similarity=similarity)


def test_each_verdict_flips_with_the_number_it_reads(tmp_path):
    rng = np.random.default_rng(0)
    initial = rng.normal(size=(20, 16)).astype(np.float32)
    direction = rng.normal(size=(20, 16))
    final = np.stack([initial + k * direction + 0.05 * rng.normal(size=(20, 16)) for k in (4, 3, 2, 1)])
    rotation, acc = [0.9, 0.6, 0.4, 0.1], [0.97, 0.96, 0.95, 0.94]
    _write_results(tmp_path, rotation, acc, final.astype(np.float32), initial)
    fresh = _verdicts(tmp_path)
    assert list(fresh["claim"]) == list(features.CLAIMS.values())
    assert list(fresh["verdict"]) == ["agrees"] * 3
    assert fresh["value"][0] == (
        "median 1.00 over 20 neurons (lr 3^-2 vs lr 3^-4); between runs adjacent in rotation: 1.00, 1.00, 1.00"
    )
    assert list(fresh["value"][1:]) == ["tau 1.00 over 4 runs"] * 2

    flipped = final.copy()
    flipped[3] = initial - direction  # the smallest rotation learns the opposite features
    for rot, test, weights, which in (
        (rotation, acc, flipped, {0}),
        ([0.9, 0.3, 0.4, 0.1], acc, final, {1}),  # the second rate rotates less than the third
        (rotation, acc[::-1], final, {2}),  # the larger the rotation, the worse
        ([np.nan, *rotation[1:]], [np.nan, *acc[1:]], final, {1, 2}),  # the largest rate diverged
    ):
        _write_results(tmp_path, rot, test, weights.astype(np.float32), initial)
        verdicts = list(_verdicts(tmp_path)["verdict"])
        assert verdicts == ["disagrees" if i in which else "agrees" for i in range(3)], which


def test_the_committed_verdicts_are_the_rule_s():
    committed = Path(__file__).resolve().parents[1] / "results" / "chapter4" / "features"
    pd.testing.assert_frame_equal(_verdicts(committed), pd.read_csv(committed / "verdicts.csv"))


def test_the_change_similarity_of_an_unmoved_neuron_is_zero():
    initial = np.ones((2, 3))
    moved = initial + np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert features.change_similarity(initial, moved, moved).tolist() == [1.0, 0.0]


def test_the_command_runs_and_refuses_a_folder_without_mnist(tmp_path, capsys):
    from clusterprior.cli import main

    out, mnist = tmp_path / "out", write_idx_set(tmp_path / "mnist", 10, 5)
    assert main(["experiment", "features", "--data-dir", str(mnist), "--epochs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MNIST, 100 train / 50 test, 28x28" in printed and "4 runs; wrote" in printed
    assert (out / "features.png").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["experiment", "features", "--data-dir", str(empty), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "train-images-idx3-ubyte" in error
    assert main(["experiment", "features", "--neurons", "0", "--out", str(out)]) == 2
