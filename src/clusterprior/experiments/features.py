"""What layer rotation does to the features (thesis Fig. 4.10, SPEC.md 4.5 "Interpretation").

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
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clusterprior import data
from clusterprior.data import Split
from clusterprior.data import fashion_mnist as fashion
from clusterprior.data.mnist import locate
from clusterprior.errors import UserError
from clusterprior.experiments.claims import claim
from clusterprior.experiments.layer_rotation import Progress, Task, log3_of, train_one
from clusterprior.files import atomic_path, save_figure, write_csv
from clusterprior.models.structure import kernels

PER_CLASS = 1000  # the thesis's "reduced MNIST": 1,000 training samples per class
SUBSET_SEED = 0  # the reduced training split is the same whatever the run's seed
HIDDEN = 784
# the model and training of every run: Dense(784) -> BN -> ReLU -> Dense, He-uniform kernels (SPEC.md 3.1:
# Layca keeps their norm), SGD + Layca (over plain SGD, as the layer-rotation exploration) at batch 2048,
# the rate divided by 5 at each milestone; the test split once, at the end. Its data come from feature_data.
TASK = Task(
    "mnist",
    "mlp",
    100,
    (),
    gamma=0.2,
    batch_size=2048,
    model_options={"hidden": (HIDDEN,), "batchnorm": True},
    init="he_uniform",
)
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


def run(
    out: str | Path,
    data_dir: str | None = None,
    epochs: int | None = None,
    neurons: int = 5,
    seed: int = 0,
    device: str = "cpu",
    on_result: Callable[[dict], None] | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The four runs of :data:`RUNS` (``epochs``: each shortened as :meth:`Run.scaled` says)
    from one initialisation (``seed``), on :func:`feature_data`'s data, with the model of
    :data:`TASK`. Writes to ``out``: ``results.csv`` (one row per run), ``features.npz`` (see
    below), ``features.png`` (the initial and final first-layer weights of ``neurons`` random
    neurons as images) and ``verdicts.csv`` (:func:`verdicts`); calls ``on_result(row)`` after
    each run; ``progress`` as in :func:`~clusterprior.experiments.layer_rotation.train_configs`.

    ``features.npz`` (loads with ``allow_pickle=False``): ``side`` (image side), ``neurons``
    (their indices), ``labels`` and ``lr`` of the runs (the order of ``results.csv``),
    ``initial`` [neurons, side^2] and ``final`` [runs, neurons, side^2] (float32), and
    ``similarity`` [runs, runs, 784]: :func:`change_similarity` of every pair of runs over the
    whole first layer (what :func:`verdicts` reads; the kernels themselves would take 12 MB)."""
    from clusterprior.report import figures

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = feature_data(data_dir)
    sentence, side = splits[2], splits[0].input_shape[-1]
    chosen = np.sort(np.random.default_rng(seed).choice(HIDDEN, size=min(neurons, HIDDEN), replace=False))
    rows, finals, runs = [], [], [r.scaled(epochs) for r in RUNS]
    initial = np.empty(0)
    for r in runs:
        settings = {**LAYCA, "lr": r.lr, "epochs": r.epochs, "milestones": r.milestones}
        trained = train_one(
            TASK, splits[:2], settings, seed, device, callbacks=progress(r.label, r.epochs) if progress else ()
        )
        first = next(iter(trained.rotation.initial))
        initial = trained.rotation.initial[first].numpy()
        finals.append(kernels(trained.model)[first].detach().cpu().numpy())
        rotation = list(trained.rotation.final.values())
        row = {
            "label": r.label,
            "lr": r.lr,
            "log3_lr": log3_of(r.lr),
            "epochs": r.epochs,
            "status": trained.result.status,
            "train_acc": trained.result.final.get("train_acc"),
            "test_acc": trained.result.final.get("test_acc"),
            "rotation_first": rotation[0],
            "rotation_mean": sum(rotation) / len(rotation),
            "data": sentence,
        }
        rows.append(row)
        if on_result:
            on_result(row)
    table = pd.DataFrame(rows)
    write_csv(out / "results.csv", table, index=False)
    full = np.stack(finals)
    similarity = np.stack([np.stack([change_similarity(initial, a, b) for b in full]) for a in full])
    with atomic_path(out / "features.npz") as tmp, open(tmp, "wb") as file:
        np.savez(
            file,
            side=np.int64(side),
            neurons=chosen,
            labels=np.array([r.label for r in runs]),
            lr=table["lr"].to_numpy(),
            initial=initial[chosen],
            final=full[:, chosen],
            similarity=similarity.astype(np.float32),
        )
    labels = [f"{r.label}\nrotation {row['rotation_first']:.2f}" for r, row in zip(runs, rows, strict=True)]
    fig = figures.feature_images(
        initial[chosen],
        list(full[:, chosen]),
        labels,
        side,
        [int(n) for n in chosen],
        "First-layer features before and after SGD + Layca (thesis Fig. 4.10)\n" + textwrap.fill(sentence, 80),
    )
    save_figure(out / "features.png", fig, dpi=80)
    write_csv(out / "verdicts.csv", verdicts(out), index=False)
    return table


def change_similarity(initial: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per neuron (row), the cosine similarity of its weight changes ``a - initial`` and
    ``b - initial`` (float64); 0 for a neuron that one of the two runs left unchanged."""
    w0 = initial.astype(np.float64)
    da, db = a.astype(np.float64) - w0, b.astype(np.float64) - w0
    norms = np.linalg.norm(da, axis=1) * np.linalg.norm(db, axis=1)
    return np.where(norms > 0, (da * db).sum(1) / np.where(norms > 0, norms, 1.0), 0.0)


def verdicts(folder: str | Path) -> pd.DataFrame:
    """Each claim of :data:`CLAIMS` with the numbers it reads and "agrees" / "disagrees",
    computed from ``results.csv`` and ``features.npz`` of a run of :func:`run` (a NaN
    rotation or Kendall tau disagrees)."""
    from scipy.stats import kendalltau

    folder = Path(folder)
    table = pd.read_csv(folder / "results.csv")
    with np.load(folder / "features.npz", allow_pickle=False) as npz:
        similarity = npz["similarity"]
    if len(similarity) != len(table):
        raise UserError(f"{folder}: features.npz holds {len(similarity)} runs, results.csv {len(table)}")
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
