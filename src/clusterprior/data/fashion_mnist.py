"""``fashion-mnist-hier``: Fashion-MNIST's real garment classes grouped into superclasses;
``fashion-mnist``: the same images with the 10 garment classes as the target and no
subclasses (the flat counterpart, for c3 and c4, as thesis Table 2.3's CIFAR-10).

Read from the four standard idx files (the same format and reader as MNIST,
:mod:`clusterprior.data.mnist`). Debian ships them: ``apt-get install
dataset-fashion-mnist`` puts them in ``/usr/share/datasets/fashion-mnist/``, where
they are found by default; ``root=`` (CLI ``--data-dir``) or ``CLUSTERPRIOR_DATA_DIR``
point elsewhere (searched as ``<base>``, ``<base>/FashionMNIST/raw``, ``<base>/fashion-mnist``).

The subclass is the garment class (its standard label 0..9, named as in the data set's
documentation); the target is its superclass, grouped by what the garment is:

- ``tops`` = {T-shirt/top, Pullover, Coat, Shirt}: upper-body garments with sleeves or
  straps, the classes Fashion-MNIST classifiers confuse with each other most;
- ``bottoms & dresses`` = {Trouser, Dress}: long garments that cover the legs;
- ``footwear`` = {Sandal, Sneaker, Ankle boot};
- ``bags`` = {Bag}: a superclass of one subclass, so c0-c2 leave it out (as documented
  for every set; c3 and c4 use it as a class).

Options: ``n_train`` / ``n_test`` take a fixed random subset (``seed``) of each split, for
studies sized to a CPU. Images ``[1, 28, 28]`` scaled to [0, 1]; default normalisation:
global scalar; default augmentation: random crop with 2-pixel padding and horizontal flip
(a mirrored garment is the same garment).
"""

from __future__ import annotations

import numpy as np

from clusterprior.data.base import Meta, Part, Raw
from clusterprior.data.mnist import locate, read_split
from clusterprior.data.registry import register
from clusterprior.errors import UserError

DEBIAN_FOLDER = "/usr/share/datasets/fashion-mnist"
SUBFOLDERS = (".", "FashionMNIST/raw", "fashion-mnist")
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SUPERCLASS_NAMES = ("tops", "bottoms & dresses", "footwear", "bags")
SUPERCLASS_OF = (0, 1, 0, 1, 0, 2, 0, 2, 3, 2)  # of each class in CLASS_NAMES order
HINT = (
    f"install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist, files in "
    f"{DEBIAN_FOLDER}), or give the folder of the four idx files with --data-dir (root=...)"
)


def subset(part: Part, n: int | None, seed: int, name: str) -> Part:
    """A fixed random subset of ``n`` samples of ``part`` (all of it when ``n`` is None)."""
    if n is None:
        return part
    if not 10 <= n <= len(part.y):
        raise UserError(f"{name}: a subset must hold between 10 and {len(part.y)} samples, got {n}")
    idx = np.sort(np.random.default_rng(seed).permutation(len(part.y))[:n])
    return Part(part.x[idx], part.y[idx], None if part.sub is None else part.sub[idx])


def _load(name: str, flat: bool, root: str | None, n_train: int | None, n_test: int | None, seed: int) -> Raw:
    """Both splits: target = the garment's superclass and sub = the garment (``flat``: target
    = the garment, no subclasses); the same subsets either way."""
    files = locate(root, name, SUBFOLDERS, DEBIAN_FOLDER, HINT)
    parts = []
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = read_split(files, split, name)
        labels = labels.astype(np.int64)
        x = (images.astype(np.float32) / 255.0)[:, None]
        part = Part(x, labels, None) if flat else Part(x, np.asarray(SUPERCLASS_OF, np.int64)[labels], labels)
        parts.append(subset(part, n, seed, name))
    augment = {"shift": 2, "hflip": True}
    meta = (
        Meta(name, "image", CLASS_NAMES, augment=augment)
        if flat
        else Meta(
            name, "image", SUPERCLASS_NAMES, subclass_names=CLASS_NAMES, superclass_of=SUPERCLASS_OF, augment=augment
        )
    )
    return Raw(parts[0], parts[1], meta, normalize="global")


@register("fashion-mnist-hier", cache=False)
def fashion_mnist_hier(
    root: str | None = None, n_train: int | None = None, n_test: int | None = None, seed: int = 0
) -> Raw:
    return _load("fashion-mnist-hier", False, root, n_train, n_test, seed)


@register("fashion-mnist", cache=False)
def fashion_mnist(root: str | None = None, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Raw:
    return _load("fashion-mnist", True, root, n_train, n_test, seed)
