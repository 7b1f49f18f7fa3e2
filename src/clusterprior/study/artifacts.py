"""A study's files besides the database: each run's checkpoint and its saved
pre-activations, under ``<storage>/runs/<run id>/``. This module alone knows their paths and
the layout of ``preactivations.npz``: the worker writes through it, the report reads through it.

The storage is the study directory by default, or any local path or URI that fsspec
understands (``s3://bucket/study``, ``gs://...``, a network file system's mount point): the
convention of Ray Train's ``storage_path``. On a cluster it must be a place every node
reaches; the SQLite store stays with the driver, the only process that writes it.
"""

from __future__ import annotations

import io
import shutil
import socket
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import torch

from clusterprior.data import Split
from clusterprior.errors import UserError
from clusterprior.files import atomic_path

CHECKPOINT = "model.safetensors"
PREACTIVATIONS = "preactivations.npz"


def resolve(storage: str | Path) -> str:
    """A storage as every process reads it: a URI unchanged, a local path made absolute."""
    text = str(storage)
    return text if "://" in text else str(Path(text).expanduser().resolve())


class Storage:
    """A study's artifact storage (see the module docstring). Every failure to reach it is
    a :class:`UserError` naming this node and the path."""

    def __init__(self, uri: str | Path):
        self.uri = resolve(uri)
        self.fs, self.root = fsspec.core.url_to_fs(self.uri)
        self.local = isinstance(self.fs, fsspec.implementations.local.LocalFileSystem)

    def path(self, run_id: str, name: str = "") -> str:
        return "/".join(p for p in (self.root.rstrip("/"), "runs", run_id, name) if p)

    def _unreachable(self, what: str, error: Exception) -> UserError:
        return UserError(f"node {socket.gethostname()}: cannot {what} the storage {self.uri} ({error})")

    def check(self) -> None:
        """Fail now, with one line, when this node cannot write to the storage."""
        try:
            self.fs.makedirs(f"{self.root.rstrip('/')}/runs", exist_ok=True)
        except Exception as e:  # any backend's error: the message names it
            raise self._unreachable("write to", e) from None

    def put(self, local: Path, run_id: str, name: str) -> None:
        """Copy ``local`` to ``runs/<run_id>/<name>`` under a temporary name, then move it in
        place: a reader never sees half a file."""
        final = self.path(run_id, name)
        try:
            self.fs.makedirs(self.path(run_id), exist_ok=True)
            if self.local:  # a unique temporary name, fsync'd before and after the rename
                with atomic_path(final) as tmp:
                    shutil.copyfile(local, tmp)
            else:  # an object store: its put is whole, under a name no other writer takes
                scratch = f"{final}.{uuid.uuid4().hex}.tmp"
                self.fs.put_file(str(local), scratch)
                self.fs.mv(scratch, final)
        except Exception as e:
            raise self._unreachable("write to", e) from None

    def exists(self, run_id: str, name: str) -> bool:
        try:
            return bool(self.fs.exists(self.path(run_id, name)))
        except Exception as e:
            raise self._unreachable("read", e) from None

    def read(self, run_id: str, name: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self.path(run_id, name)))
        except Exception as e:
            raise self._unreachable("read", e) from None


@dataclass
class Preactivations:
    """The probe's pre-activations of one run at each measured epoch: ``pre[e, n, j]``
    (float32, read from float16) for epoch ``epochs[e]``, sample n and neuron j (layers
    concatenated in forward order, ``layer_names`` with ``layer_sizes`` neurons each); the
    samples' class ``y`` and subclass ``sub`` (the class when the data has no subclasses), and
    the data set's ``class_names`` and ``subclass_names``."""

    epochs: np.ndarray
    pre: np.ndarray
    layer_names: list[str]
    layer_sizes: list[int]
    y: np.ndarray
    sub: np.ndarray
    class_names: list[str]
    subclass_names: list[str]


def save_preactivations(path: str | Path, snapshots: dict[int, Any], split: Split) -> None:
    """Write ``snapshots`` ({epoch: the probe's Representations of ``split``}) to the local
    file ``path`` (float16, compressed)."""
    epochs = sorted(snapshots)
    first = snapshots[epochs[0]]
    pre = np.stack([torch.cat(snapshots[e].pre, dim=1).cpu().numpy().astype(np.float16) for e in epochs])
    np.savez_compressed(
        path,
        epochs=np.array(epochs),
        pre=pre,
        layer_names=np.array(first.names),
        layer_sizes=np.array([p.shape[1] for p in first.pre]),
        y=split.y.numpy(),
        sub=(split.sub if split.sub is not None else split.y).numpy(),
        class_names=np.array(split.meta.class_names),
        subclass_names=np.array(split.meta.subclass_names or split.meta.class_names),
    )


def save_run(storage: Storage, run_id: str, write: dict[str, Any]) -> None:
    """Write a run's files: ``write`` maps each file name to a function that writes it to a
    local path; each is written in a scratch folder of this node, then put in the storage."""
    with tempfile.TemporaryDirectory(prefix="clusterprior-") as scratch:
        for name, writer in write.items():
            local = Path(scratch) / name
            writer(local)
            storage.put(local, run_id, name)


def load_preactivations(storage: Storage, run_id: str) -> Preactivations:
    """Read run ``run_id``'s file written by :func:`save_preactivations` (no pickles). Files
    written before the names were saved get numbers as names."""
    with np.load(io.BytesIO(storage.read(run_id, PREACTIVATIONS)), allow_pickle=False) as f:
        y, sub = f["y"], f["sub"]
        names = {key: [str(n) for n in f[key]] for key in ("class_names", "subclass_names") if key in f}
        return Preactivations(
            epochs=f["epochs"],
            pre=f["pre"].astype(np.float32),
            layer_names=[str(n) for n in f["layer_names"]],
            layer_sizes=[int(s) for s in f["layer_sizes"]],
            y=y,
            sub=sub,
            class_names=names.get("class_names", [str(c) for c in range(int(y.max()) + 1)]),
            subclass_names=names.get("subclass_names", [str(s) for s in range(int(sub.max()) + 1)]),
        )
