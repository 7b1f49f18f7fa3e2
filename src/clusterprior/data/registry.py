"""Registry of named data sets and the public :func:`load`."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any

from clusterprior.data.base import Raw, Split, finish
from clusterprior.errors import UserError
from clusterprior.registry import Registry

Loader = Callable[..., Raw]
LOADERS: Registry[Loader] = Registry("data set", also=", or a path to an .npz file")
_UNCACHED: set[str] = set()


def register(name: str, cache: bool = True) -> Callable[[Loader], Loader]:
    """Register ``loader(**options) -> Raw`` under ``name`` (in :data:`LOADERS`).

    ``cache=False`` for loaders that read files (their result depends on more than
    the options); they may cache their own reads.
    """

    def deco(loader: Loader) -> Loader:
        if not cache:
            _UNCACHED.add(name)
        return LOADERS.add(name, loader)

    return deco


def available() -> list[str]:
    """Names accepted by :func:`load` (besides a path to an ``.npz`` file)."""
    return sorted(LOADERS)


def options_of(name: str) -> dict[str, Any]:
    """The options of data set ``name`` with their defaults."""
    params = inspect.signature(LOADERS[name]).parameters
    return {p.name: p.default for p in params.values()}


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@functools.lru_cache(maxsize=4)
def _generate(name: str, frozen: tuple[tuple[str, Any], ...]) -> Raw:
    return LOADERS[name](**dict(frozen))


def load(name: str, split: str = "train", *, normalize: str | None = None, **options: Any) -> Split:
    """Load one split of a registered data set, or of a user ``.npz`` file.

    ``normalize`` is "global" (one scalar mean/std), "channel" (per channel, or per
    feature for vectors) or "none"; the statistics always come from the training
    split, and each data set has its documented default. Other keyword options
    are the data set's own (see :func:`options_of`). Generated sets are cached, so
    the train and test splits of one call pattern share the work.
    """
    if split not in ("train", "test"):
        raise UserError(f"split must be 'train' or 'test', got {split!r}")
    if name not in LOADERS and (name.endswith(".npz") or os.path.isfile(name)):
        options = {"path": name, **options}
        name = "npz"
    allowed = options_of(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UserError(f"data set {name!r} has no option {unknown[0]!r}; allowed: {', '.join(allowed) or 'none'}")
    if name in _UNCACHED:
        return finish(LOADERS[name](**options), split, normalize)
    frozen = tuple(sorted((k, _hashable(v)) for k, v in options.items()))
    return finish(_generate(name, frozen), split, normalize)
