"""The engine's contract for an experiment of the thesis: what it contributes to a study.

A study spec with an ``[experiment]`` section (``name``, ``options``, ``local``) runs that
experiment's runs through the same engine as a Chapter 2 study: the grid expands into runs,
each run's id hashes its resolved config, the store keeps every finished run, the lock,
resume, executors (local pool, Ray) and progress display are the same.

An experiment is a module (named in :data:`EXPERIMENTS`; the study layer never imports the
experiments package, it resolves the name at run time) that defines:

- ``HPARAMS``: the grid keys it accepts (``seed`` among them);
- ``configure(hparams, options) -> dict``: the plain-data config of one run, everything that
  decides its result (hashed into its id);
- ``run(config, device, local) -> dict``: train and record one run; returns plain data,
  ``{status, stop_reason, history, measures, files}``: ``history`` the per-epoch rows,
  ``measures`` the long rows ``(epoch, measure, layer, k, value)`` the store keeps, ``files``
  a mapping of file name to an object with ``save(path)`` (a recording, first-layer
  weights), put in the study's storage beside the run's checkpoint. ``local`` holds the
  machine's own options (a data folder), never part of the id.

The summary and the claims stay with the experiment, as functions of the stored runs.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from clusterprior.files import atomic_path, write_text
from clusterprior.registry import Registry

EXPERIMENTS: Registry[str] = Registry(  # experiment name -> its module's name
    "experiment",
    {
        "winner-take-most": "clusterprior.experiments.winner_take_most",
        "layer-rotation": "clusterprior.experiments.layer_rotation",
        "adapt-copy": "clusterprior.experiments.adapt_copy",
        "features": "clusterprior.experiments.features",
        "toy": "clusterprior.experiments.toy",
    },
)


def module(name: str) -> ModuleType:
    """The module of experiment ``name`` (:data:`EXPERIMENTS`), else a
    :class:`~clusterprior.registry.Unknown` error listing the known ones."""
    return importlib.import_module(EXPERIMENTS[name])


@dataclass
class JsonFile:
    """A run's record to keep as a JSON file in the study's storage (curves, say): what an
    experiment's ``run`` returns among its ``files``."""

    value: Any

    def save(self, path: str | Path) -> None:
        write_text(path, json.dumps(self.value))


@dataclass
class ArraysFile:
    """A run's arrays to keep as one ``.npz`` file (no pickles) in the study's storage
    (first-layer weights, say): what an experiment's ``run`` returns among its ``files``."""

    arrays: dict[str, Any]

    def save(self, path: str | Path) -> None:
        import numpy as np

        with atomic_path(path) as tmp, open(tmp, "wb") as file:  # a file: numpy adds no suffix
            np.savez(file, **self.arrays)


def load_arrays(payload: bytes) -> dict[str, Any]:
    """The arrays of an :class:`ArraysFile` read back (never runs code from the file)."""
    import io

    import numpy as np

    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}
