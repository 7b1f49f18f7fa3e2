from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from clusterprior import UserError, data
from clusterprior.data.cifar import CIFAR10_HIER, ENV_VAR
from tests.conftest import write_archive


def check_split(split: data.Split) -> None:
    assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
    assert len(split.x) == len(split.y)
    assert 0 <= int(split.y.min()) and int(split.y.max()) < split.n_classes
    if split.sub is not None:
        assert split.sub.dtype == torch.int64 and split.sub.shape == split.y.shape
        owner = torch.tensor(split.meta.superclass_of)
        assert torch.equal(owner[split.sub], split.y), "every subclass lies inside its class"


def test_mnist1d_hier_defaults():
    train, test = data.load("mnist1d-hier"), data.load("mnist1d-hier", "test")
    assert train.x.shape == (4000, 1, 40) and test.x.shape == (1000, 1, 40)
    for s in (train, test):
        check_split(s)
        assert torch.equal(s.y, s.sub // 2)
    assert set(train.sub.tolist()) == set(range(10))
    assert abs(float(train.x.mean())) < 1e-4 and abs(float(train.x.std()) - 1) < 1e-3
    assert train.meta.normalization["mode"] == "global"
    assert train.meta.class_names == ("0-1", "2-3", "4-5", "6-7", "8-9")


def test_mnist1d_hier_options_determinism_and_global_rng():
    state = np.random.get_state()
    a = data.load("mnist1d-hier", n_train=300, n_test=105, seed=3)
    assert np.array_equal(np.random.get_state()[1], state[1]), "numpy's global RNG is left as it was"
    b = data.load("mnist1d-hier", n_train=300, n_test=105, seed=3)
    c = data.load("mnist1d-hier", n_train=300, n_test=105, seed=4)
    assert (
        a.x.shape == (300, 1, 40)
        and data.load("mnist1d-hier", "test", n_train=300, n_test=105, seed=3).x.shape[0] == 105
    )
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)


def test_digits_hier_stratified_split():
    train, test = data.load("digits-hier"), data.load("digits-hier", "test")
    assert train.x.shape[1:] == (1, 8, 8) and len(train) + len(test) == 1797
    for s in (train, test):
        check_split(s)
    share = torch.bincount(test.sub, minlength=10) / torch.bincount(train.sub + 0, minlength=10).add(
        torch.bincount(test.sub, minlength=10)
    )
    assert torch.allclose(share, torch.full((10,), 0.25), atol=0.02)
    assert train.meta.augment == {"shift": 1, "hflip": False}


def test_synthclust_matches_the_thesis_generator():
    train, test = data.load("synthclust"), data.load("synthclust", "test")
    assert train.x.shape == (15000, 500) and test.x.shape == (6000, 500)
    check_split(train)
    centroids = torch.from_numpy(train.meta.extra["centroids"])
    assert centroids.shape == (30, 500)
    assert torch.all(centroids.sum(1) == 5) and torch.all(centroids.sum(0) <= 1), "5-hot, non-overlapping"
    assert torch.bincount(torch.tensor(train.meta.superclass_of)).tolist() == [15, 15]
    assert torch.bincount(train.sub).tolist() == [500] * 30 and torch.bincount(test.sub).tolist() == [200] * 30
    noise = train.x - centroids[train.sub]
    assert abs(float(noise.mean())) < 0.01 and abs(float(noise.std()) - 0.4) < 0.01
    assert train.meta.normalization["mode"] == "none"


def test_synthclust_options():
    split = data.load(
        "synthclust",
        "test",
        n_clusters=6,
        n_classes=3,
        dim=40,
        hot=4,
        n_train_per_cluster=10,
        n_test_per_cluster=50,
        noise=0.4,
        test_noise=0.1,
        seed=1,
    )
    centroids = torch.from_numpy(split.meta.extra["centroids"])
    assert split.x.shape == (300, 40) and split.n_classes == 3
    assert abs(float((split.x - centroids[split.sub]).std()) - 0.1) < 0.01
    with pytest.raises(UserError, match="do not fit"):
        data.load("synthclust", n_clusters=30, hot=5, dim=100)
    with pytest.raises(UserError, match="multiple"):
        data.load("synthclust", n_clusters=7)


def test_normalisation_uses_training_statistics_only():
    train = data.load("digits-hier", normalize="channel")
    test = data.load("digits-hier", "test", normalize="channel")
    raw_test = data.load("digits-hier", "test", normalize="none")
    mean, std = train.meta.normalization["mean"][0], train.meta.normalization["std"][0]
    assert torch.allclose(test.x, (raw_test.x - mean) / std, atol=1e-5)
    assert abs(float(train.x.mean())) < 1e-5 and abs(float(test.x.mean())) > 1e-4
    with pytest.raises(UserError, match="normalize"):
        data.load("digits-hier", normalize="bogus")


def test_registry_errors():
    with pytest.raises(UserError, match="unknown data set 'nope'"):
        data.load("nope")
    with pytest.raises(UserError, match="no option 'bogus'"):
        data.load("mnist1d-hier", bogus=1)
    with pytest.raises(UserError, match="split"):
        data.load("mnist1d-hier", "validation")
    assert {"mnist1d-hier", "digits-hier", "synthclust", "cifar10", "cifar10-hier", "cifar100"} <= set(data.available())


# ---- CIFAR, from fake archives in the real format ---------------------------------------------


def test_cifar10_reads_the_python_archives(cifar10_root: Path):
    train = data.load("cifar10", root=str(cifar10_root))
    test = data.load("cifar10", "test", root=str(cifar10_root))
    raw = data.load("cifar10", root=str(cifar10_root / "cifar-10-batches-py"), normalize="none")
    assert train.x.shape == (30, 3, 32, 32) and test.x.shape == (10, 3, 32, 32)
    check_split(train)
    assert train.sub is None and train.meta.class_names[0] == "airplane"
    assert train.y[:6].tolist() == [1, 2, 3, 4, 5, 6]
    with open(cifar10_root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")[b"data"][0]
    assert torch.equal(raw.x[0].flatten(), torch.from_numpy(first.astype(np.float32)))
    per_channel = train.x.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-5)


def test_cifar10_hier_grouping(cifar10_root: Path):
    train = data.load("cifar10-hier", root=str(cifar10_root))
    check_split(train)
    assert train.meta.class_names == tuple(CIFAR10_HIER)
    for s, members in enumerate(CIFAR10_HIER.values()):
        assert all(train.meta.superclass_of[m] == s for m in members)
    assert train.meta.subclass_names[8] == "ship"


def test_cifar100_fine_and_coarse(cifar100_root: Path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(cifar100_root))
    fine = data.load("cifar100")
    coarse = data.load("cifar100", "test", target="coarse")
    assert fine.n_classes == 100 and fine.sub is None and len(fine) == 200
    check_split(coarse)
    assert coarse.n_classes == 20 and torch.equal(coarse.sub % 20, coarse.y)
    assert coarse.meta.subclass_names[3] == "fine3" and coarse.meta.class_names[3] == "coarse3"
    with pytest.raises(UserError, match="target"):
        data.load("cifar100", target="medium")


def test_malicious_pickle_is_refused_without_running_it(cifar10_root: Path, tmp_path: Path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    write_archive(cifar10_root / "cifar-10-batches-py" / "data_batch_3", {b"data": Payload(), b"labels": [0]})
    with pytest.raises(UserError, match="refused"):
        data.load("cifar10", root=str(cifar10_root))
    assert not marker.exists(), "the payload must never run"


def test_missing_cifar_folder_says_what_is_expected_where(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(UserError) as err:
        data.load("cifar10", root=str(tmp_path / "nowhere"))
    message = str(err.value)
    assert "\n" not in message
    assert (
        "data_batch_1" in message
        and "test_batch" in message
        and str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    )
    with pytest.raises(UserError, match=ENV_VAR):
        data.load("cifar100")


def test_corrupt_cifar_archive(cifar10_root: Path):
    (cifar10_root / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="test_batch"):
        data.load("cifar10", root=str(cifar10_root))


# ---- user .npz -------------------------------------------------------------------------------


def test_npz_with_subclasses(tmp_path: Path):
    rng = np.random.default_rng(0)
    sub = np.repeat(np.arange(6), 20)
    path = tmp_path / "mine.npz"
    np.savez(path, x=rng.normal(size=(120, 7)).astype(np.float64), y=sub // 3, sub=sub)
    train = data.load(str(path))
    test = data.load(str(path), "test", test_fraction=0.25)
    check_split(train)
    assert train.x.shape == (96, 7) and len(test) == 30 and train.meta.kind == "vector"
    assert train.meta.superclass_of == (0, 0, 0, 1, 1, 1)


def test_npz_with_explicit_test_split(tmp_path: Path):
    path = tmp_path / "sig.npz"
    x = np.zeros((10, 2, 16), np.float32)
    np.savez(path, x=x, y=np.arange(10) % 2, x_test=x[:4], y_test=np.array([0, 1, 1, 0]))
    test = data.load("npz", "test", path=str(path))
    assert test.x.shape == (4, 2, 16) and test.meta.kind == "signal"


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.array([object(), object()], dtype=object), "y": np.array([0, 1])}, "Python objects"),
        ({"x": np.zeros((4, 3))}, "needs arrays"),
        ({"x": np.zeros((4, 3)), "y": np.array([0.5, 1, 0, 1])}, "integers"),
        ({"x": np.zeros((4, 3)), "y": np.array([0, 0, 1, 1]), "sub": np.array([0, 1, 1, 2])}, "subclass 1"),
        ({"x": np.full((4, 3), np.nan), "y": np.array([0, 0, 1, 1])}, "NaN"),
    ],
)
def test_npz_bad_files(tmp_path: Path, arrays: dict, message: str):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(UserError, match=message):
        data.load(str(path), test_fraction=0.5)


def test_npz_missing_or_not_a_zip(tmp_path: Path):
    with pytest.raises(UserError, match="no such file"):
        data.load("npz", path=str(tmp_path / "absent.npz"))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"junk")
    with pytest.raises(UserError, match="not a readable"):
        data.load(str(junk))


@pytest.mark.parametrize("name", ["mnist1d-hier", "digits-hier"])
def test_halves_grouping_puts_five_digits_in_each_of_two_classes(name):
    opts = {"n_train": 200, "n_test": 50} if name == "mnist1d-hier" else {}
    split = data.load(name, grouping="halves", **opts)
    assert split.meta.class_names == ("0-4", "5-9") and split.meta.superclass_of == (0,) * 5 + (1,) * 5
    assert torch.equal(split.y, split.sub // 5)
    assert torch.equal(data.load(name, **opts).y, split.sub // 2)  # the default stays pairs
    with pytest.raises(UserError, match="grouping must be one of pairs, halves"):
        data.load(name, grouping="thirds", **opts)
