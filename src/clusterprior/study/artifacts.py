"""A study's files besides the database: each run's checkpoint and its saved
pre-activations, under ``DIR/runs/<run id>/``. This module alone knows their paths and the
layout of ``preactivations.npz``: the worker writes through it, the report reads through it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clusterprior.data import Split
from clusterprior.files import atomic_path

CHECKPOINT = "model.safetensors"
PREACTIVATIONS = "preactivations.npz"


def run_dir(folder: str | Path, run_id: str) -> Path:
    """Where run ``run_id`` of the study in ``folder`` keeps its files."""
    return Path(folder) / "runs" / run_id


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
    """Write ``snapshots`` ({epoch: the probe's Representations of ``split``}) to ``path``,
    atomically (float16, compressed)."""
    epochs = sorted(snapshots)
    first = snapshots[epochs[0]]
    pre = np.stack([torch.cat(snapshots[e].pre, dim=1).cpu().numpy().astype(np.float16) for e in epochs])
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            epochs=np.array(epochs),
            pre=pre,
            layer_names=np.array(first.names),
            layer_sizes=np.array([p.shape[1] for p in first.pre]),
            y=split.y.numpy(),
            sub=(split.sub if split.sub is not None else split.y).numpy(),
            class_names=np.array(split.meta.class_names),
            subclass_names=np.array(split.meta.subclass_names or split.meta.class_names),
        )


def load_preactivations(path: str | Path) -> Preactivations:
    """Read a file written by :func:`save_preactivations` (no pickles). Files written before
    the names were saved get numbers as names."""
    with np.load(path, allow_pickle=False) as f:
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
