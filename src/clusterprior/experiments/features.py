"""What layer rotation does to the features (thesis Fig. 4.10).

A 1-hidden-layer MLP (784 hidden units, Dense -> BN -> ReLU -> Dense) on reduced MNIST (at most
1,000 training samples per class) is trained four times from one initialisation with SGD +
Layca at four rotation rates (:data:`RUNS`), batch 2048. The first-layer weights of a few
random neurons, drawn as images before and after each run, show that layer rotation "does not
seem to affect *which* features are learned, but rather *to what extent* they are learned";
near a cosine distance of 1 the remnants of the initialisation are gone. :data:`CLAIMS` states
the rules that turn the results into verdicts.

Data (:func:`feature_data`): MNIST from ``data_dir``; without it, Fashion-MNIST's 10 garment
classes from Debian's folder, else scikit-learn's 8x8 digits; what was used goes into every
row of ``results.csv``.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from clusterprior import data
from clusterprior.data import Split
from clusterprior.data import fashion_mnist as fashion
from clusterprior.data.mnist import locate
from clusterprior.errors import UserError
from clusterprior.experiments.claims import claim
from clusterprior.experiments.layer_rotation import log3_of, train_one
from clusterprior.models.structure import kernels
from clusterprior.presets.tasks import FEATURES_HIDDEN, FEATURES_TASK
from clusterprior.study.experiment import ArraysFile

PER_CLASS = 1000  # the thesis's "reduced MNIST": 1,000 training samples per class
SUBSET_SEED = 0  # the reduced training split is the same whatever the run's seed
LAYCA = {"optimizer": "sgd-layca", "test_every": 0}


@dataclass(frozen=True)
class Run:
    """One SGD + Layca run of Fig. 4.10: rotation rate ``lr`` for ``epochs`` epochs, divided
    by 5 after each epoch of ``milestones``."""

    label: str
    lr: float
    epochs: int
    milestones: tuple[int, ...]

    def scaled(self, epochs: int | None) -> Run:
        """The run shortened (or lengthened) to ``epochs``: each milestone m becomes
        ``round(m * epochs / self.epochs)`` clamped to 1..epochs-1, so a short run still
        decays before its end; one epoch keeps no milestone. ``None``: the run as it is."""
        if epochs is None:
            return self
        if epochs < 1:
            raise UserError(f"epochs must be >= 1, got {epochs}")
        stones = (
            ()
            if epochs < 2
            else tuple(min(epochs - 1, max(1, round(m * epochs / self.epochs))) for m in self.milestones)
        )
        return replace(self, epochs=epochs, milestones=stones)


RUNS = [
    Run("lr 3^-2", 3.0**-2, 100, (90,)),
    Run("lr 3^-2.5", 3.0**-2.5, 100, (95,)),
    Run("lr 3^-3", 3.0**-3, 100, (95,)),
    Run("lr 3^-4", 3.0**-4, 100, ()),
]
CLAIMS = {
    "features": "rotation changes how much, not which features are learned: the median over the first layer's "
    "neurons of the cosine similarity of their weight change w - w0 between the largest- and the "
    "smallest-rotation run is above 0.5",
    "rate": "larger rates rotate the first layer further: the Kendall tau of learning rate and first-layer "
    "rotation is 1",
    "generalization": "larger rotation generalizes better (thesis: 96.75, 96.6, 96.54, 95.81% test): the Kendall "
    "tau of first-layer rotation and test accuracy is positive (a diverged run leaves no rotation: it disagrees)",
}


def balanced_subset(split: Split, per_class: int = PER_CLASS, seed: int = SUBSET_SEED) -> Split:
    """At most ``per_class`` samples of each class of ``split``, drawn at random (``seed``)
    within the class; a class with fewer keeps all of them. Samples keep their order."""
    if per_class < 1:
        raise UserError(f"per_class must be >= 1, got {per_class}")
    rng = np.random.default_rng(seed)
    y = split.y.numpy()
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]))
    index = torch.from_numpy(keep)
    return replace(split, x=split.x[index], y=split.y[index], sub=None if split.sub is None else split.sub[index])


def _subclasses_as_target(split: Split) -> Split:
    """``split`` trained on its subclasses (Fashion's garments, the digits) instead of its classes."""
    meta = replace(split.meta, class_names=split.meta.subclass_names or (), subclass_names=None, superclass_of=None)
    return replace(split, y=split.subclasses, sub=None, meta=meta)


def feature_data(data_dir: str | None) -> tuple[Split, Split, str]:
    """The training split reduced by :func:`balanced_subset`, the whole test split (both
    normalised as the loader does by default: one scalar mean/std of the full training split),
    and a sentence naming what was used.

    ``data_dir``: MNIST's four idx files there (a :class:`UserError` naming the missing files
    otherwise). ``None``: Fashion-MNIST's 10 garment classes from
    ``fashion_mnist.DEBIAN_FOLDER`` when it holds the files, else ``digits-hier``'s 10 digits."""
    if data_dir is not None:
        name, options, what = "mnist", {"root": data_dir}, "MNIST"
    else:
        folder = fashion.DEBIAN_FOLDER
        try:
            locate(folder, "fashion-mnist-hier", fashion.SUBFOLDERS, hint=fashion.HINT)
            name, options, what = "fashion-mnist-hier", {"root": folder}, "Fashion-MNIST (10 garments)"
        except UserError:
            name, options, what = "digits-hier", {}, "8x8 digits (no Fashion-MNIST installed)"
    train_split, test_split = (data.load(name, split, **options) for split in ("train", "test"))
    if name != "mnist":
        train_split, test_split = _subclasses_as_target(train_split), _subclasses_as_target(test_split)
    train_split = balanced_subset(train_split)
    side = train_split.input_shape[-1]
    sentence = f"{what}, {len(train_split)} train / {len(test_split)} test, {side}x{side}"
    return train_split, test_split, sentence


HPARAMS = ("run", "seed")  # the grid keys of a Fig. 4.10 study: a run's label (RUNS) and the seed
OPTIONS = ("epochs",)


def configure(hparams: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """One run's config (the engine's contract, :mod:`clusterprior.study.experiment`): the
    run of :data:`RUNS` that ``hparams["run"]`` names, shortened to ``options["epochs"]``
    (:meth:`Run.scaled`), its SGD + Layca settings over :data:`FEATURES_TASK` and the seed."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise UserError(f"unknown features option {unknown[0]!r}; allowed: {', '.join(OPTIONS)}")
    runs = {r.label: r for r in RUNS}
    label = hparams.get("run")
    if label not in runs:
        raise UserError(f"unknown run {label!r}; available: {', '.join(runs)}")
    chosen = runs[label].scaled(options.get("epochs"))
    return {
        "label": label,
        "train": {**LAYCA, "lr": chosen.lr, "epochs": chosen.epochs, "milestones": list(chosen.milestones)},
        "seed": int(hparams.get("seed", 0)),
    }


def run(config: dict[str, Any], device: str, local: dict[str, Any]) -> dict[str, Any]:
    """Train one run of Fig. 4.10 from the seed's initialisation on :func:`feature_data`'s data
    (``local["data_dir"]``: MNIST's idx files) (the engine's contract): returns its history,
    its first-layer and mean rotation and its first layer's initial and final kernel
    (``first_layer.npz``: ``initial``, ``final``)."""
    splits = feature_data(local.get("data_dir"))
    trained = train_one(FEATURES_TASK, splits[:2], config["train"], int(config["seed"]), device)
    first = next(iter(trained.rotation.initial))
    rotation = list(trained.rotation.final.values())
    epoch = len(trained.result.history)
    values = {"rotation_first": rotation[0], "rotation_mean": sum(rotation) / len(rotation)}
    arrays = {
        "initial": trained.rotation.initial[first].numpy(),
        "final": kernels(trained.model)[first].detach().cpu().numpy(),
    }
    return {
        "status": trained.result.status,
        "stop_reason": trained.result.stop_reason,
        "history": trained.result.history,
        "measures": [
            {"epoch": epoch, "measure": k, "layer": "all", "k": None, "value": float(v)} for k, v in values.items()
        ],
        "files": {"first_layer.npz": ArraysFile(arrays)},
    }


def results_table(runs: pd.DataFrame, values: pd.DataFrame, epochs: int | None, sentence: str) -> pd.DataFrame:
    """``results.csv``: one row per run of :data:`RUNS` (their order): label, rate, epochs,
    status, accuracies, first-layer and mean rotation, and the data used (``sentence``).
    ``runs``: the store's runs of one seed (``run`` column), ``values``: their model-level values."""
    wide = values.pivot_table(index="run_id", columns="measure", values="value")
    by_label = runs.set_index("run")
    rows = []
    for r in (r.scaled(epochs) for r in RUNS):
        got = by_label.loc[r.label]
        numbers = wide.loc[got["id"]] if got["id"] in wide.index else pd.Series(dtype=float)
        rows.append(
            {
                "label": r.label,
                "lr": r.lr,
                "log3_lr": log3_of(r.lr),
                "epochs": r.epochs,
                "status": got["status"],
                "train_acc": got["train_acc"],
                "test_acc": got["test_acc"],
                "rotation_first": numbers.get("rotation_first", math.nan),
                "rotation_mean": numbers.get("rotation_mean", math.nan),
                "data": sentence,
            }
        )
    return pd.DataFrame(rows)


def features_arrays(
    table: pd.DataFrame, kernels_of: list[dict[str, np.ndarray]], side: int, neurons: int, seed: int
) -> dict[str, np.ndarray]:
    """What ``features.npz`` holds (loads with ``allow_pickle=False``): ``side`` (image side),
    ``neurons`` (``neurons`` random indices, drawn with ``seed``), ``labels`` and ``lr`` of the
    runs (the order of ``results.csv``), ``initial`` [neurons, side^2] and ``final`` [runs,
    neurons, side^2] (float32), and ``similarity`` [runs, runs, 784]: :func:`change_similarity`
    of every pair of runs over the whole first layer (what :func:`verdicts` reads; the kernels
    themselves would take 12 MB). ``kernels_of``: each run's ``first_layer.npz``."""
    chosen = np.sort(
        np.random.default_rng(seed).choice(FEATURES_HIDDEN, size=min(neurons, FEATURES_HIDDEN), replace=False)
    )
    initial = kernels_of[0]["initial"]
    full = np.stack([k["final"] for k in kernels_of])
    similarity = np.stack([np.stack([change_similarity(initial, a, b) for b in full]) for a in full])
    return {
        "side": np.int64(side),
        "neurons": chosen,
        "labels": table["label"].to_numpy().astype(str),
        "lr": table["lr"].to_numpy(),
        "initial": initial[chosen],
        "final": full[:, chosen],
        "similarity": similarity.astype(np.float32),
    }


def figure(table: pd.DataFrame, arrays: dict[str, np.ndarray], sentence: str) -> Any:
    """``features.png``: the initial and final first-layer weights of the chosen neurons as images."""
    from clusterprior.report import figures

    labels = [f"{row.label}\nrotation {row.rotation_first:.2f}" for row in table.itertuples()]
    return figures.feature_images(
        arrays["initial"],
        list(arrays["final"]),
        labels,
        int(arrays["side"]),
        [int(n) for n in arrays["neurons"]],
        "First-layer features before and after SGD + Layca (thesis Fig. 4.10)\n" + textwrap.fill(sentence, 80),
    )


def change_similarity(initial: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per neuron (row), the cosine similarity of its weight changes ``a - initial`` and
    ``b - initial`` (float64); 0 for a neuron that one of the two runs left unchanged."""
    w0 = initial.astype(np.float64)
    da, db = a.astype(np.float64) - w0, b.astype(np.float64) - w0
    norms = np.linalg.norm(da, axis=1) * np.linalg.norm(db, axis=1)
    return np.where(norms > 0, (da * db).sum(1) / np.where(norms > 0, norms, 1.0), 0.0)


def verdicts(table: pd.DataFrame, similarity: np.ndarray) -> pd.DataFrame:
    """Each claim of :data:`CLAIMS` with the numbers it reads and "agrees" / "disagrees",
    computed from ``results.csv``'s table and ``features.npz``'s ``similarity`` (a NaN
    rotation or Kendall tau disagrees)."""
    from scipy.stats import kendalltau

    if len(similarity) != len(table):
        raise UserError(f"features.npz holds {len(similarity)} runs, results.csv {len(table)}")
    rotated = table["rotation_first"].dropna().sort_values()
    rows = []
    if len(rotated) >= 2:
        order = [int(i) for i in rotated.index]
        small, big = order[0], order[-1]
        median = float(np.median(similarity[big, small]))
        neighbours = ", ".join(f"{np.median(similarity[a, b]):.2f}" for a, b in itertools.pairwise(order))
        value = (
            f"median {median:.2f} over {similarity.shape[-1]} neurons ({table['label'][big]} vs "
            f"{table['label'][small]}); between runs adjacent in rotation: {neighbours}"
        )
    else:
        median, value = math.nan, "fewer than 2 runs with a rotation"
    rows.append(claim(CLAIMS["features"], value, median > 0.5))
    for key, x, y in (("rate", "lr", "rotation_first"), ("generalization", "rotation_first", "test_acc")):
        tau = float(kendalltau(table[x], table[y]).statistic) if len(table) > 1 else math.nan
        ok = tau >= 1.0 - 1e-12 if key == "rate" else tau > 0
        rows.append(claim(CLAIMS[key], f"tau {tau:.2f} over {len(table)} runs", ok))
    return pd.DataFrame(rows)
