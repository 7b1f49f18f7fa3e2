"""Image folders read with Pillow: both layouts, labels and ids, pixels, modes, every error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clusterprior import UserError, data

SIZE = (5, 4)  # height, width


def write(path: Path, pixels: np.ndarray, mode: str | None = None) -> np.ndarray:
    """Save ``pixels`` (uint8 [H, W] or [H, W, 3]) as an image at ``path``; returns them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    (image if mode is None else image.convert(mode)).save(path)
    return pixels


def gray(seed: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8)


def rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*SIZE, 3), dtype=np.uint8)


@pytest.fixture
def hierarchical(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Grayscale ``vehicle/{car,truck}`` and ``animal/{cat,dog}``, written out of name order."""
    root = tmp_path / "hier"
    names = ["vehicle/truck/0.png", "vehicle/car/1.PNG", "vehicle/car/0.png", "animal/dog/a.png", "animal/cat/b.png"]
    pixels = {name: write(root / name, gray(i)) for i, name in enumerate(names)}
    (root / "animal" / "cat" / "notes.txt").write_text("not an image")
    write(root / "animal" / "cat" / ".hidden.png", gray(9))
    return root, pixels


@pytest.fixture
def flat(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """RGB ``b/{0,1}.png`` and ``a/0.png``."""
    root = tmp_path / "flat"
    pixels = {name: write(root / name, rgb(i)) for i, name in enumerate(["b/1.png", "b/0.png", "a/0.png"])}
    return root, pixels


def test_hierarchical_layout_labels_ids_and_pixels(hierarchical):
    root, pixels = hierarchical
    folder = data.ImageFolder(root)
    order = ["animal/cat/b.png", "animal/dog/a.png", "vehicle/car/0.png", "vehicle/car/1.PNG", "vehicle/truck/0.png"]
    assert [f.relative_to(root).as_posix() for f in folder.files] == order
    assert len(folder) == 5 and folder.input_shape == (1, *SIZE)
    assert folder.y.tolist() == [0, 0, 1, 1, 1] and folder.sub.tolist() == [0, 1, 2, 2, 3]
    assert folder.y.dtype == folder.sub.dtype == torch.int64
    meta = folder.meta
    assert meta.name == "hier" and meta.kind == "image" and meta.class_names == ("animal", "vehicle")
    assert meta.subclass_names == ("animal/cat", "animal/dog", "vehicle/car", "vehicle/truck")
    assert meta.superclass_of == (0, 0, 1, 1)
    for i, name in enumerate(order):
        x, y, sub = folder[i]
        assert x.dtype == torch.float32 and x.shape == (1, *SIZE)
        assert torch.equal(x, torch.from_numpy(pixels[name].astype(np.float32) / 255)[None])
        assert (y, sub) == (folder.y[i], folder.sub[i]) and y.dtype == sub.dtype == torch.int64


def test_flat_layout_has_no_subclasses_and_reads_rgb(flat):
    root, pixels = flat
    folder = data.ImageFolder(root)
    assert [f.relative_to(root).as_posix() for f in folder.files] == ["a/0.png", "b/0.png", "b/1.png"]
    assert folder.y.tolist() == [0, 1, 1] and folder.sub is None and folder.input_shape == (3, *SIZE)
    assert folder.meta.class_names == ("a", "b") and folder.meta.subclass_names is None
    assert folder.meta.superclass_of is None
    x, y, sub = folder[2]
    assert torch.equal(x, torch.from_numpy(pixels["b/1.png"].transpose(2, 0, 1).astype(np.float32) / 255))
    assert int(y) == 1 and int(sub) == -1 and sub.dtype == torch.int64


def test_a_data_loader_batches_the_items(hierarchical):
    folder = data.ImageFolder(hierarchical[0])
    x, y, sub = next(iter(torch.utils.data.DataLoader(folder, batch_size=4)))
    assert x.shape == (4, 1, *SIZE) and y.tolist() == [0, 0, 1, 1] and sub.tolist() == [0, 1, 2, 2]


def test_opening_reads_only_the_first_image_header(hierarchical, monkeypatch):
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda path: opened.append(path) or real_open(path))
    monkeypatch.setattr(Image.Image, "convert", lambda *a, **k: pytest.fail("decoded at construction"))
    folder = data.ImageFolder(hierarchical[0])
    assert opened == [folder.files[0]]


@pytest.mark.parametrize(
    ("first_mode", "mode", "channels"),
    [("L", None, 1), ("1", None, 1), ("LA", None, 1), ("RGB", None, 3), ("RGBA", None, 3), ("P", None, 3)]
    + [("L", "RGB", 3), ("RGB", "L", 1), ("RGB", "RGBA", 4)],
)
def test_mode_default_and_conversion(tmp_path, first_mode, mode, channels):
    pixels = write(tmp_path / "c" / "0.png", rgb(0), first_mode)
    folder = data.ImageFolder(tmp_path, mode)
    x = folder[0][0]
    assert folder.input_shape == x.shape == (channels, *SIZE)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    if (first_mode, mode) == ("L", "RGB"):
        assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    if (first_mode, mode) == ("RGB", "RGBA"):
        assert torch.equal(x[:3], torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32) / 255))
        assert torch.all(x[3] == 1)


def test_other_suffixes_are_read(tmp_path):
    for i, suffix in enumerate(["jpg", "jpeg", "bmp", "gif", "webp"]):
        write(tmp_path / "c" / f"{i}.{suffix}", gray(i))
    folder = data.ImageFolder(tmp_path)
    assert len(folder) == 5 and all(folder[i][0].shape == (1, *SIZE) for i in range(5))
    assert torch.equal(folder[2][0][0], torch.from_numpy(gray(2).astype(np.float32) / 255)), "bmp is lossless"


def test_load_image_folder_reads_everything_into_a_split(hierarchical, flat):
    for root, _ in (hierarchical, flat):
        folder, split = data.ImageFolder(root), data.load_image_folder(root)
        assert isinstance(split, data.Split) and split.x.dtype == torch.float32
        assert torch.equal(split.x, torch.stack([folder[i][0] for i in range(len(folder))]))
        assert torch.equal(split.y, folder.y) and split.input_shape == folder.input_shape
        assert (split.sub is None) == (folder.sub is None)
        if split.sub is not None:
            assert torch.equal(split.sub, folder.sub)
            assert torch.equal(torch.tensor(split.superclass_of)[split.sub], split.y)
        assert split.meta.normalization["mode"] == "none" and split.meta.class_names == folder.meta.class_names
    assert data.load_image_folder(flat[0], mode="L").x.shape == (3, 1, *SIZE)


def test_an_image_of_another_size_fails_when_read(hierarchical):
    root, _ = hierarchical
    odd = root / "vehicle" / "truck" / "1.png"
    write(odd, gray(0, size=(6, 7)))
    folder = data.ImageFolder(root)
    folder[0]
    with pytest.raises(UserError, match=r"truck/1\.png: image is 7x6 .* first one .* is 4x5") as e:
        folder[len(folder) - 1]
    assert "\n" not in str(e.value)


def test_an_unreadable_file_fails_naming_it(hierarchical):
    root, _ = hierarchical
    (root / "vehicle" / "truck" / "9.png").write_bytes(b"not a png")
    folder = data.ImageFolder(root)
    with pytest.raises(UserError, match=r"truck/9\.png: not an image Pillow can read"):
        folder[len(folder) - 1]
    (root / "animal" / "cat" / "a.png").write_bytes(b"not a png")  # now the first image
    with pytest.raises(UserError, match=r"cat/a\.png: not an image Pillow can read"):
        data.ImageFolder(root)


def test_a_truncated_image_fails_naming_it(tmp_path):
    write(tmp_path / "c" / "0.png", gray(0, size=(64, 64)))
    content = (tmp_path / "c" / "0.png").read_bytes()
    (tmp_path / "c" / "0.png").write_bytes(content[: len(content) // 2])
    with pytest.raises(UserError, match=r"0\.png: not an image Pillow can read"):
        data.ImageFolder(tmp_path)[0]


def tree(root: Path, files: list[str]) -> Path:
    """Make ``root`` with ``files`` (".png" files are images; a trailing "/" makes a folder)."""
    root.mkdir()
    for name in files:
        if name.endswith("/"):
            (root / name).mkdir(parents=True)
        elif name.endswith(".png"):
            write(root / name, gray(0))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("text")
    return root


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([], r"root: no class folder"),
        (["0.png", "notes.txt"], r"root: no class folder"),
        (["a/notes.txt", "b/s/notes.txt", "c/"], r"no images under .*root \(looked for \*\.png, \*\.jpg, .*\*\.webp"),
        (["a/0.png", "b/notes.txt"], r"root/b: class folder without images"),
        (["a/s/0.png", "b/"], r"root/b: class folder without images"),
        (["a/s/0.png", "a/t/notes.txt"], r"root/a/t: subclass folder without images"),
        (["a/0.png", "b/s/0.png"], r"root/b: class folder holds subclass folders but a holds images; mixed layouts"),
        (["a/s/0.png", "b/0.png"], r"root/b: class folder holds images directly but a holds subclass folders"),
        (["a/0.png", "a/s/0.png"], r"root/a: class folder holds both images and subfolders"),
    ],
)
def test_folder_errors(tmp_path, files, message):
    root = tree(tmp_path / "root", files)
    with pytest.raises(UserError, match=message) as e:
        data.ImageFolder(root)
    assert "\n" not in str(e.value)


def test_root_errors_and_bad_mode(tmp_path):
    with pytest.raises(UserError, match=r"missing: no such directory"):
        data.ImageFolder(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(UserError, match=r"file\.png: no such directory"):
        data.load_image_folder(tmp_path / "file.png")
    with pytest.raises(UserError, match=r"image mode must be one of L, RGB, RGBA, got 'CMYK'"):
        data.ImageFolder(tmp_path, mode="CMYK")
