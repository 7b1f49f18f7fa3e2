"""MNIST from small fake idx files in the real on-disk format (plain and gzipped)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import clusterprior.data.mnist  # noqa: F401  (registration)
from clusterprior import UserError, data
from clusterprior.data.mnist import ENV_VAR, FILES

TRAIN_DIGITS = np.arange(20) % 10
TEST_DIGITS = (np.arange(10) * 3) % 10


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """The idx encoding of a uint8 array: magic, big-endian dims, raw data."""
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist(folder: Path) -> dict[str, np.ndarray]:
    """20 train and 10 test images; the train files gzipped, the test files plain."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, digits, suffix in (("train", TRAIN_DIGITS, ".gz"), ("test", TEST_DIGITS, "")):
        images_name, labels_name = FILES[split]
        images = rng.integers(0, 256, size=(len(digits), 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        write(folder / f"{images_name}{suffix}", idx_bytes(images, 0x803))
        write(folder / f"{labels_name}{suffix}", idx_bytes(digits, 0x801))
        arrays[split] = images
    return arrays


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    write_mnist(tmp_path / "MNIST" / "raw")
    return tmp_path


def test_digit_target_reads_plain_and_gzipped_files(tmp_path: Path):
    arrays = write_mnist(tmp_path)
    train = data.load("mnist", root=str(tmp_path), normalize="none")
    test = data.load("mnist", "test", root=str(tmp_path), normalize="none")
    assert train.x.shape == (20, 1, 28, 28) and test.x.shape == (10, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
    assert torch.allclose(test.x[:, 0], torch.from_numpy(arrays["test"] / np.float32(255)))
    assert train.y.tolist() == TRAIN_DIGITS.tolist() and test.y.tolist() == TEST_DIGITS.tolist()
    assert train.sub is None and train.n_classes == 10 and train.meta.kind == "image"
    assert train.meta.class_names == tuple("0123456789") and train.meta.augment == {}


def test_binary_target_groups_digits_0_4_and_5_9(mnist_root: Path):
    train = data.load("mnist", root=str(mnist_root), target="binary")
    assert train.n_classes == 2 and train.meta.subclass_names == tuple("0123456789")
    assert train.meta.superclass_of == (0, 0, 0, 0, 0, 1, 1, 1, 1, 1)
    assert train.sub.tolist() == TRAIN_DIGITS.tolist()
    assert train.y.tolist() == (TRAIN_DIGITS >= 5).astype(int).tolist()
    assert torch.equal(torch.tensor(train.meta.superclass_of)[train.sub], train.y)
    assert train.meta.normalization["mode"] == "global" and abs(float(train.x.mean())) < 1e-5
    with pytest.raises(UserError, match="target"):
        data.load("mnist", root=str(mnist_root), target="parity")


def test_folder_from_the_environment_and_subfolder_layouts(mnist_root: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(mnist_root))
    assert len(data.load("mnist", "test")) == 10
    assert len(data.load("mnist", "test", root=str(mnist_root / "MNIST" / "raw"))) == 10
    write_mnist(tmp_path / "other" / "mnist")
    assert len(data.load("mnist", root=str(tmp_path / "other"))) == 20


def test_missing_file_says_which_where_and_how(mnist_root: Path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    (mnist_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError) as err:
        data.load("mnist", root=str(mnist_root))
    message = str(err.value)
    assert "\n" not in message
    assert "t10k-labels-idx1-ubyte not found in " + str(mnist_root / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "--data-dir" in message and ENV_VAR in message
    with pytest.raises(UserError, match="no data folder given"):
        data.load("mnist")


@pytest.mark.parametrize(
    "name, payload, message",
    [
        ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((10, 28, 28)), 0x801), "magic 0x00000801"),
        ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((10, 28, 28)), 0x803)[:-5], "file holds 7835"),
        ("t10k-labels-idx1-ubyte", b"\x00\x00", "truncated"),
        ("t10k-labels-idx1-ubyte", idx_bytes(np.full(10, 10), 0x801), "0..9"),
        ("t10k-labels-idx1-ubyte", idx_bytes(np.zeros(9), 0x801), "10 images but"),
        ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((10, 28, 27)), 0x803), "28x28"),
    ],
)
def test_bad_idx_files_are_refused_naming_the_file(mnist_root: Path, name: str, payload: bytes, message: str):
    write(mnist_root / "MNIST" / "raw" / name, payload)
    with pytest.raises(UserError, match=message) as err:
        data.load("mnist", "test", root=str(mnist_root))
    assert "t10k-" in str(err.value) and "\n" not in str(err.value)


def test_corrupt_gzip_is_refused_naming_the_file(mnist_root: Path):
    path = mnist_root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(UserError, match="train-labels-idx1-ubyte.gz"):
        data.load("mnist", root=str(mnist_root))


# --- fashion-mnist-hier: the same idx format, real garment names, superclasses -----------------

from clusterprior.data import fashion_mnist  # noqa: E402


def test_fashion_mnist_hier_names_and_groups_the_garments(tmp_path: Path):
    arrays = write_mnist(tmp_path / "FashionMNIST" / "raw")
    train = data.load("fashion-mnist-hier", root=str(tmp_path), normalize="none")
    meta = train.meta
    assert meta.subclass_names[0] == "T-shirt/top" and meta.subclass_names[9] == "Ankle boot"
    assert meta.class_names == ("tops", "bottoms & dresses", "footwear", "bags")
    names = {meta.subclass_names[s]: meta.class_names[c] for s, c in enumerate(meta.superclass_of)}
    assert [k for k, v in names.items() if v == "footwear"] == ["Sandal", "Sneaker", "Ankle boot"]
    assert [k for k, v in names.items() if v == "tops"] == ["T-shirt/top", "Pullover", "Coat", "Shirt"]
    assert train.sub.tolist() == TRAIN_DIGITS.tolist()  # the subclass is the garment label
    assert train.y.tolist() == [meta.superclass_of[d] for d in TRAIN_DIGITS]
    assert torch.equal(train.x[:, 0], torch.from_numpy(arrays["train"].astype(np.float32) / 255))
    assert train.meta.augment == {"shift": 2, "hflip": True}


def test_flat_fashion_mnist_has_the_ten_garments_as_classes_and_no_subclasses(tmp_path: Path):
    write_mnist(tmp_path)
    flat = data.load("fashion-mnist", root=str(tmp_path), n_train=12, seed=3)
    hier = data.load("fashion-mnist-hier", root=str(tmp_path), n_train=12, seed=3)
    assert flat.sub is None and flat.meta.class_names == fashion_mnist.CLASS_NAMES and flat.n_classes == 10
    assert torch.equal(flat.y, hier.sub) and torch.equal(flat.x, hier.x), "the same images, the garment as target"
    assert flat.meta.augment == hier.meta.augment
    from clusterprior import measures

    assert measures.catalogue.select(None, has_subclasses=False) == ["c3", "c4"], "c3 and c4 on the flat set"


def test_fashion_mnist_hier_subsets_are_fixed_and_sized(tmp_path: Path):
    write_mnist(tmp_path)
    a = data.load("fashion-mnist-hier", root=str(tmp_path), n_train=12, seed=3)
    b = data.load("fashion-mnist-hier", root=str(tmp_path), n_train=12, seed=3)
    c = data.load("fashion-mnist-hier", root=str(tmp_path), n_train=12, seed=4)
    assert len(a) == 12 and torch.equal(a.x, b.x) and not torch.equal(a.sub, c.sub)
    assert len(data.load("fashion-mnist-hier", "test", root=str(tmp_path), n_test=10)) == 10
    with pytest.raises(UserError, match="between 10 and 20"):
        data.load("fashion-mnist-hier", root=str(tmp_path), n_train=21)


def test_fashion_mnist_hier_found_in_the_debian_folder_by_default(tmp_path: Path, monkeypatch):
    write_mnist(tmp_path / "debian")
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FOLDER", str(tmp_path / "debian"))
    assert len(data.load("fashion-mnist-hier")) == 20


def test_fashion_mnist_hier_missing_files_name_the_package(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FOLDER", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match=r"fashion-mnist-hier: .*not found.*dataset-fashion-mnist"):
        data.load("fashion-mnist-hier")
    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        data.load("fashion-mnist-hier", root=str(tmp_path))


def test_fashion_mnist_hier_cli_exit_2_names_the_package(tmp_path: Path, capsys):
    from clusterprior.cli import main

    assert (
        main(["train", "--data", "fashion-mnist-hier", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset-fashion-mnist" in err[0]
