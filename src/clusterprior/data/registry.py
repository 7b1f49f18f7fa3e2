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
    """Names accepted by :func:`load` (besides a path to an ``.npz`` file).

    Returns
    -------
    list[str]
        The registered data set names, sorted.
    """
    return sorted(LOADERS)


def options_of(name: str) -> dict[str, Any]:
    """The options of data set ``name`` with their defaults.

    Parameters
    ----------
    name
        A registered data set name (an unknown one raises the registry's
        :class:`~clusterprior.errors.UserError`).

    Returns
    -------
    dict[str, Any]
        Each keyword of the data set's loader mapped to its default value
        (``inspect.Parameter.empty`` for one without a default).
    """
    params = inspect.signature(LOADERS[name]).parameters
    return {p.name: p.default for p in params.values()}


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@functools.lru_cache(maxsize=4)
def _generate(name: str, frozen: tuple[tuple[str, Any], ...]) -> Raw:
    return LOADERS[name](**dict(frozen))


def load(name: str, split: str = "train", *, normalize: str | None = None, **options: Any) -> Split:
    """Load one split of a registered data set, or of a user ``.npz`` file.

    Generated sets are cached, so the train and test splits of one call pattern
    share the work; loaders registered with ``cache=False`` (those that read files)
    run on every call.

    Parameters
    ----------
    name
        A registered data set name, or the path to an ``.npz`` file (a name that is not
        registered and ends in ``.npz`` or names an existing file).
    split
        "train" or "test".
    normalize
        "global" (one scalar mean/std), "channel" (per channel, or per feature for
        vectors) or "none"; the statistics always come from the training split.
        None uses the data set's documented default.
    **options
        The data set's own options (see :func:`options_of`).

    Returns
    -------
    Split
        The requested split, normalised, as torch tensors.

    Raises
    ------
    UserError
        When ``split`` is neither "train" nor "test", or an option is not one of the
        data set's.
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
