"""Named entries of one kind: the one idiom of every registry of the package (data sets,
models, measures, experiments, and each experiment's settings and tasks).

A :class:`Registry` is a mapping of name to entry, filled when its module is imported
(``Registry(kind, entries)``, ``add`` or the ``register`` decorator, which refuse a name
already bound: two modules registering one name is a bug); ``registry[name] = entry``
rebinds a name on purpose (a test, a plug-in). Looking up a
name it does not hold raises :class:`Unknown`, a :class:`~clusterprior.errors.UserError` (so
the CLI prints one line and exits with code 2) that is also a ``KeyError``, and that lists
the names it holds: ``unknown model 'x'; available: cnn, mlp, vgg, wrn``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import TypeVar

from clusterprior.errors import UserError

T = TypeVar("T")


class Unknown(UserError, KeyError):
    """A name that a :class:`Registry` does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(MutableMapping[str, T]):
    """The entries of one ``kind`` by name, in the order they were added.

    ``also``: what the lookup accepts besides the names (said in the error, e.g. ", or a
    path to an .npz file")."""

    def __init__(self, kind: str, entries: Mapping[str, T] | None = None, also: str = "") -> None:
        self.kind = kind
        self.also = also
        self._entries: dict[str, T] = {}
        for name, entry in (entries or {}).items():
            self.add(name, entry)

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a name registered twice is a programming error."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that registers what it decorates under ``name``."""
        return lambda entry: self.add(name, entry)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise Unknown(self.unknown(name)) from None

    def __setitem__(self, name: str, entry: T) -> None:
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def unknown(self, name: object) -> str:
        """The line that says ``name`` is none of the entries, and lists them."""
        return f"unknown {self.kind} {name!r}; available: {', '.join(self._entries)}{self.also}"

    def check(self, names: Iterable[str]) -> list[str]:
        """``names`` as a list if each is an entry, else :class:`Unknown` for the first that is not."""
        names = list(names)
        for name in names:
            self[name]
        return names
