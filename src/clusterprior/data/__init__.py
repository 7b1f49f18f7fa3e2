"""Hierarchical data sets: ``load(name, split, **options) -> Split``.

Registered: ``mnist1d-hier`` (default), ``digits-hier``, ``synthclust``,
``cifar10``, ``cifar10-hier``, ``cifar100``, ``mnist`` (idx files), ``fashion-mnist-hier``
and the flat ``fashion-mnist`` (Debian's dataset-fashion-mnist idx files), and any ``.npz``
file path. Image folders (not registered):
:class:`ImageFolder` (streamed) and :func:`load_image_folder` (in memory).
"""

from clusterprior.data import cifar, digits_hier, fashion_mnist, mnist, mnist1d_hier, npz, synthclust  # noqa: F401 (registration)
from clusterprior.data.base import Meta, Split
from clusterprior.data.image_folder import ImageFolder, load_image_folder
from clusterprior.data.registry import available, load, options_of

__all__ = ["ImageFolder", "Meta", "Split", "available", "load", "load_image_folder", "options_of"]
