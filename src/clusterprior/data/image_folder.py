"""User images in a folder tree, read with Pillow.

Two layouts: ``root/<class>/<subclass>/<image>`` (hierarchical: subclass labels) and
``root/<class>/<image>`` (flat: no subclass labels). Classes and subclasses are sorted by
folder name; subclass ids are global (``0..S-1`` over all classes, in class order, then
subclass name), as in every other data set. Hidden files and folders (a leading ``.``)
and files without an image suffix are skipped.

:class:`ImageFolder` lists the files when it is made and decodes an image only when it is
read, so a large folder is cheap to open and streams through a ``DataLoader``;
:func:`load_image_folder` reads a small folder into one in-memory :class:`Split`.
Pixels are scaled to [0, 1], with no other normalisation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageMode

from clusterprior.data.base import Meta, Part, Raw, Split, finish
from clusterprior.data.npz import AUGMENT
from clusterprior.errors import UserError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
MODES = ("L", "RGB", "RGBA")  # 8 bits per band, so that x = pixel / 255 lies in [0, 1]
LAYOUT = "<root>/<class>/[<subclass>/]<image>"
Listing = tuple[list[Path], list[Path]]  # the image files and the subfolders of a folder
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class _Scan:
    """What the folder tree says: one entry per image, and the names of its labels."""

    files: list[Path]
    y: list[int]
    sub: list[int] | None
    class_names: tuple[str, ...]
    subclass_names: tuple[str, ...] | None
    superclass_of: tuple[int, ...] | None


def _list(folder: Path) -> Listing:
    """The image files and the subfolders of ``folder``, sorted by name (one directory read)."""
    with os.scandir(folder) as entries:
        visible = sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)
    images = [Path(e.path) for e in visible if e.name.lower().endswith(SUFFIXES) and e.is_file()]
    return images, [Path(e.path) for e in visible if e.is_dir()]


def _listings(root: Path) -> tuple[dict[Path, Listing], dict[Path, list[Path]]]:
    """The listing of each class folder, and the images of each folder inside a class folder."""
    if not root.is_dir():
        raise UserError(f"{root}: no such directory (an image folder is {LAYOUT})")
    classes = _list(root)[1]
    if not classes:
        raise UserError(f"{root}: no class folder (an image folder is {LAYOUT})")
    listings = {folder: _list(folder) for folder in classes}
    nested = {sub: _list(sub)[0] for _, subfolders in listings.values() for sub in subfolders}
    if not any(images for images, _ in listings.values()) and not any(nested.values()):
        looked_for = ", ".join(f"*{s}" for s in SUFFIXES)
        raise UserError(f"no images under {root} (looked for {looked_for} in <class>/ and <class>/<subclass>/)")
    return listings, nested


def _is_flat(folder: Path, images: list[Path], subfolders: list[Path]) -> bool:
    """Whether a class folder holds its images directly (else in subclass folders)."""
    if images and subfolders:
        raise UserError(f"{folder}: class folder holds both images and subfolders; use one layout throughout")
    if not images and not subfolders:
        raise UserError(f"{folder}: class folder without images")
    return bool(images)


def _one_layout(listings: dict[Path, Listing]) -> bool:
    """Whether every class folder holds its images directly (flat); a :class:`UserError` when they differ."""
    layouts = {folder: _is_flat(folder, *listing) for folder, listing in listings.items()}
    first, *others = layouts
    for folder in others:
        if layouts[folder] != layouts[first]:
            this, that = ("images directly", "subclass folders") if layouts[folder] else ("subclass folders", "images")
            raise UserError(f"{folder}: class folder holds {this} but {first.name} holds {that}; mixed layouts")
    return layouts[first]


def _scan(root: Path) -> _Scan:
    """List every image of the tree with its class and (global) subclass id."""
    listings, nested = _listings(root)
    class_names = tuple(folder.name for folder in listings)
    if _one_layout(listings):
        files = [path for images, _ in listings.values() for path in images]
        y = [c for c, (images, _) in enumerate(listings.values()) for _ in images]
        return _Scan(files, y, None, class_names, None, None)
    for sub, images in nested.items():
        if not images:
            raise UserError(f"{sub}: subclass folder without images")
    subfolders = [(c, sub) for c, (_, subs) in enumerate(listings.values()) for sub in subs]
    return _Scan(
        files=[path for _, sub in subfolders for path in nested[sub]],
        y=[c for c, sub in subfolders for _ in nested[sub]],
        sub=[s for s, (_, sub) in enumerate(subfolders) for _ in nested[sub]],
        class_names=class_names,
        subclass_names=tuple(f"{sub.parent.name}/{sub.name}" for _, sub in subfolders),
        superclass_of=tuple(c for c, _ in subfolders),
    )


def _open(path: Path) -> Image.Image:
    """Open ``path`` (reading its header only); a :class:`UserError` when Pillow cannot."""
    try:
        return Image.open(path)
    except UNREADABLE as e:
        raise UserError(f"{path}: not an image Pillow can read ({e})") from None


def _default_mode(first: Image.Image) -> str:
    """The mode to convert to: "L" for grayscale-like modes ("1", "L", "LA", "I", "F"...), else "RGB"."""
    return "L" if ImageMode.getmode(first.mode).basemode == "L" else "RGB"


class ImageFolder(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """An image folder as a map-style data set of ``(x, y, sub)``.

    ``x`` is a float32 ``[C, H, W]`` tensor in [0, 1] (the image converted to ``mode``),
    ``y`` the class index and ``sub`` the global subclass id (-1 in a flat layout), both
    int64. ``mode`` is one of "L", "RGB", "RGBA"; by default "L" when the first image is
    grayscale-like, else "RGB". Every image must have the size of the first one.

    Attributes: ``files``, ``y`` and ``sub`` (int64 tensors of all labels; ``sub`` is None
    in a flat layout), ``meta`` and ``input_shape`` (from the first image).

    Parameters
    ----------
    root
        The folder tree, ``<root>/<class>/[<subclass>/]<image>``; it is listed (not
        decoded) when the data set is made.
    mode
        The Pillow mode every image is converted to: "L", "RGB" or "RGBA"; None picks
        "L" when the first image is grayscale-like, else "RGB".

    Raises
    ------
    UserError
        When ``mode`` is not one of "L", "RGB", "RGBA". (A malformed tree or an
        unreadable first image is reported as a :class:`UserError` by the scan.)
    """

    def __init__(self, root: str | Path, mode: str | None = None) -> None:
        self.root = Path(root)
        if mode is not None and mode not in MODES:
            raise UserError(f"image mode must be one of {', '.join(MODES)}, got {mode!r}")
        scan = _scan(self.root)
        self.files = scan.files
        self.y = torch.tensor(scan.y, dtype=torch.int64)
        self.sub = None if scan.sub is None else torch.tensor(scan.sub, dtype=torch.int64)
        with _open(self.files[0]) as first:
            self.mode = mode or _default_mode(first)
            self.size = first.size
        width, height = self.size
        self.input_shape = (len(ImageMode.getmode(self.mode).bands), height, width)
        self.meta = Meta(
            name=self.root.name,
            kind="image",
            class_names=scan.class_names,
            subclass_names=scan.subclass_names,
            superclass_of=scan.superclass_of,
            augment=AUGMENT["image"],
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sub = torch.tensor(-1) if self.sub is None else self.sub[i]
        return self.read(self.files[i]), self.y[i], sub

    def read(self, path: Path) -> torch.Tensor:
        """The image at ``path`` as a float32 ``[C, H, W]`` tensor in [0, 1].

        Parameters
        ----------
        path
            An image file, converted to the folder's ``mode``.

        Returns
        -------
        torch.Tensor
            float32 ``[C, H, W]``, the 8-bit pixels divided by 255.

        Raises
        ------
        UserError
            When the image's size differs from the first image's, or Pillow cannot
            decode it.
        """
        with _open(path) as image:
            if image.size != self.size:
                raise UserError(
                    f"{path}: image is {_pixels(image.size)} but the first one ({self.files[0]}) is "
                    f"{_pixels(self.size)}; every image must have the same size"
                )
            try:
                pixels = np.asarray(image.convert(self.mode), dtype=np.uint8)
            except UNREADABLE as e:
                raise UserError(f"{path}: not an image Pillow can read ({e})") from None
        hwc = pixels.reshape(pixels.shape[0], pixels.shape[1], -1)
        return torch.from_numpy(hwc.transpose(2, 0, 1).astype(np.float32) / 255)


def _pixels(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]} (width x height)"


def load_image_folder(root: str | Path, mode: str | None = None) -> Split:
    """Read every image under ``root`` into one :class:`Split` (x in [0, 1], not normalised).

    For folders that fit in memory; stream a large one through :class:`ImageFolder`,
    which this builds and reads image by image.

    Parameters
    ----------
    root
        The folder tree, ``<root>/<class>/[<subclass>/]<image>``.
    mode
        The Pillow mode to convert to ("L", "RGB", "RGBA"); None picks it from the first
        image, as :class:`ImageFolder` does.

    Returns
    -------
    Split
        The whole folder as a "train" split, with normalisation mode "none" recorded
        in ``meta.normalization`` (the folder is a single split).
    """
    folder = ImageFolder(root, mode)
    x = torch.stack([folder.read(path) for path in folder.files]).numpy()
    sub = None if folder.sub is None else folder.sub.numpy()
    part = Part(x, folder.y.numpy(), sub)
    # the folder is a single split: it stands for both, and "none" records x as it was read
    return finish(Raw(part, part, folder.meta, normalize="none"), "train", None)
