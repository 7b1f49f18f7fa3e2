"""Winner-take-most on SynthClust (thesis Chapter 3, SPEC.md 3.1-3.4).

A one-hidden-layer MLP without biases, ``sigmoid(W2 ReLU(W1 x) + b2)`` with binary
cross-entropy, trained full batch by SGD + Layca (rho(0) = 3^-3, divided by 5 at epoch 375
of 400) on SynthClust (2 classes x 15 clusters, noise 0.4). Kernels start He-uniform: Layca
keeps every kernel at its initial norm, and PyTorch's default initialisation (norms ~2.4x
smaller) caps the logits and stalls near 90%. A :class:`~clusterprior.probe.dynamics.DynamicsRecorder`
follows 50 hidden neurons (10 per layer in the 5-layer nets) through every step.

Settings (:data:`SETTINGS`): the base run, the ablations of Fig. 3.4 (no ReLU, one hidden
neuron, noise 0.1), and the links to standard practice of SPEC.md 3.3 (reduced data, reduced
data with input dropout, random-label pre-training, 5 hidden layers with BN, the same with the
learning rate divided by 27), plus the 2-class MNIST variant on the user's idx files (not in
``all``). Reduced data = the first 50 training examples of each cluster (1,500). The noise-0.1
ablation is also tested on a standard noise-0.4 test set: with noise 0.1 on both splits the
test set is separable by a linear classifier.

``scale`` < 1 shrinks every hidden width and the number of epochs (milestones with them): a
different, smaller experiment, whose accuracies are never shown beside the thesis's numbers.
Each finished (setting, seed) is written at once to ``<out>/<setting>/seed<k>/`` (its
``result.json`` last, atomically), so an interrupted experiment keeps every finished run and
retrains only the one it was in.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from clusterprior import data, models, train
from clusterprior.data import Split
from clusterprior.errors import UserError
from clusterprior.files import atomic_path, fingerprint, write_csv, write_text
from clusterprior.measures.dynamics import wtm_index, wtm_summary
from clusterprior.models.layers import he_uniform_, scaled
from clusterprior.probe import dynamics as recording_lib


@dataclass(frozen=True)
class Setting:
    """One experiment of SPEC.md 3.1-3.3; ``thesis`` is its test accuracy (%) in the thesis,
    a (low, high) range for the ablations."""

    thesis: float | tuple[float, float]
    note: str
    data: str = "synthclust"
    data_options: dict[str, Any] = field(default_factory=dict)
    hidden: tuple[int, ...] = (1000,)
    activation: str = "relu"
    batchnorm: bool = False
    input_dropout: float = 0.0
    epochs: int = 400
    milestones: tuple[int, ...] = (375,)
    lr: float = 3.0**-3
    batch_size: int | None = None  # None: full batch
    reduced: int | None = None  # training examples kept per cluster
    random_pretrain: bool = False  # pre-train on the full inputs with random cluster -> class labels
    standard_test_noise: float | None = None  # also test on this noise level
    neurons_per_layer: int = 50
    heavy: bool = False  # hours on 2 CPU cores at full scale


ABLATION = (80.0, 84.0)
DEEP: dict[str, Any] = dict(
    hidden=(1000,) * 5, batchnorm=True, epochs=1000, milestones=(950,), neurons_per_layer=10, heavy=True
)
SETTINGS: dict[str, Setting] = {
    "base": Setting(96.1, "1 hidden layer of 1000 ReLUs, full SynthClust"),
    "no-relu": Setting(ABLATION, "ablation: linear hidden layer", activation="linear"),
    "one-neuron": Setting(ABLATION, "ablation: a single hidden neuron", hidden=(1,), neurons_per_layer=1),
    "noise-0.1": Setting(
        ABLATION, "ablation: noise std 0.1 on both splits", data_options={"noise": 0.1}, standard_test_noise=0.4
    ),
    "reduced": Setting(80.98, "1,500 training examples (50 per cluster)", reduced=50),
    "reduced-dropout": Setting(88.57, "reduced data + input dropout 0.5", reduced=50, input_dropout=0.5),
    "random-pretrain": Setting(
        88.13,
        "pre-trained on the 15,000 inputs with random cluster labels, then reduced",
        reduced=50,
        random_pretrain=True,
    ),
    "deep": Setting(97.68, "5 hidden layers x 1000 with BN, 1000 epochs", **DEEP),
    "deep-slow": Setting(84.07, "5 hidden layers, learning rate / 27", lr=3.0**-3 / 27, **DEEP),
    "mnist": Setting(
        98.0,
        "2-class MNIST (0-4 vs 5-9) from the user's idx files, BN, batch 20,000",
        data="mnist",
        data_options={"target": "binary"},
        batchnorm=True,
        epochs=100,
        milestones=(85,),
        batch_size=20_000,
    ),
}
IN_ALL = [name for name in SETTINGS if name != "mnist"]


def scale_setting(setting: Setting, scale: float) -> Setting:
    """Hidden widths and epochs (and milestones) times ``scale``, each at least 1."""
    if scale == 1.0:
        return setting
    if not 0.0 < scale <= 1.0:
        raise UserError(f"--scale must be in (0, 1], got {scale}")
    epochs = scaled(setting.epochs, scale)
    return replace(
        setting,
        hidden=tuple(scaled(h, scale) for h in setting.hidden),
        epochs=epochs,
        milestones=tuple(m for m in (scaled(m, scale) for m in setting.milestones) if m < epochs),
    )


def per_cluster_subset(split: Split, n: int) -> Split:
    """The first ``n`` examples of each cluster (``split.sub``), in the split's order."""
    sub = split.subclasses
    keep = np.sort(np.concatenate([np.flatnonzero(sub.numpy() == c)[:n] for c in np.unique(sub.numpy())]))
    index = torch.as_tensor(keep)
    return replace(split, x=split.x[index], y=split.y[index], sub=sub[index])


def relabelled(split: Split, seed: int) -> Split:
    """``split`` with a random balanced cluster -> class assignment (the random-label pre-training)."""
    n_clusters, n_classes = len(split.superclass_of), split.n_classes
    rng = np.random.default_rng(seed + 10_000)
    class_of = torch.as_tensor(rng.permutation(np.repeat(np.arange(n_classes), n_clusters // n_classes)))
    return replace(split, y=class_of[split.subclasses])


def load_splits(setting: Setting, seed: int, data_dir: str | None) -> dict[str, Split]:
    """``train``, ``test`` and, where the setting asks for it, ``standard_test`` (noise 0.4)."""
    options = dict(setting.data_options)
    if setting.data == "synthclust":
        options["seed"] = seed
    elif data_dir:
        options["root"] = data_dir
    splits = {"train": data.load(setting.data, "train", **options), "test": data.load(setting.data, "test", **options)}
    if setting.standard_test_noise is not None:
        splits["standard_test"] = data.load(
            setting.data, "test", **{**options, "test_noise": setting.standard_test_noise}
        )
    return splits


def build_model(setting: Setting, split: Split, seed: int) -> torch.nn.Module:
    """The setting's MLP with one output logit, He-uniform kernels, seeded."""
    torch.manual_seed(seed)
    model = models.build(
        "mlp",
        split.input_shape,
        1,
        batchnorm=setting.batchnorm,
        hidden=list(setting.hidden),
        bias=False,
        activation=setting.activation,
        input_dropout=setting.input_dropout,
    )
    return he_uniform_(model)


def train_config(setting: Setting, n_train: int, seed: int, device: str) -> train.TrainConfig:
    """SGD + Layca, binary cross-entropy, full batch unless the setting says otherwise, float32."""
    return train.TrainConfig(
        epochs=setting.epochs,
        batch_size=setting.batch_size or n_train,
        optimizer="sgd-layca",
        lr=setting.lr,
        milestones=setting.milestones,
        gamma=0.2,
        loss="bce",
        seed=seed,
        device=str(train.resolve_device(device)),
        amp=False,
        eval_batch_size=8192,
    )


CallbacksFor = Callable[[str, int], Sequence[train.Callback]]  # (label, epochs) -> epoch callbacks of a training


def no_callbacks(label: str, epochs: int) -> Sequence[train.Callback]:
    """The default :data:`CallbacksFor`: no epoch callbacks."""
    return ()


def run_one(
    setting: Setting,
    seed: int,
    folder: Path,
    device: str = "cpu",
    data_dir: str | None = None,
    callbacks_for: CallbacksFor = no_callbacks,
) -> dict:
    """Train one seed of ``setting`` with the recorder on; write ``dynamics.npz``, ``history.csv``,
    ``wtm.csv`` (index per neuron), ``wtm_layers.csv`` (per layer) and ``result.json`` to ``folder``
    and return the result row. ``callbacks_for(phase, epochs)`` gives each training phase's epoch
    callbacks (progress)."""
    start = time.perf_counter()
    splits = load_splits(setting, seed, data_dir)
    train_split = splits["train"]
    if setting.reduced is not None:
        train_split = per_cluster_subset(train_split, setting.reduced)
    model = build_model(setting, train_split, seed)
    if setting.random_pretrain:
        pretrain = relabelled(splits["train"], seed)
        train.fit(
            model,
            pretrain,
            None,
            train_config(setting, len(pretrain), seed, device),
            callbacks=callbacks_for("pre-training", setting.epochs),
        )
    config = train_config(setting, len(train_split), seed, device)
    group = None
    meta = train_split.meta
    if "centroids" in meta.extra:
        group = (
            recording_lib.difficulty(
                train_split.x, train_split.y.numpy(), meta.extra["centroids"], meta.extra["class_of_cluster"]
            )
            > 0
        ).astype(int)
    steps = config.epochs * train.steps_per_epoch(len(train_split), config.batch_size)
    model.to(config.device)  # the recorder's buffers live where the model trains
    recorder = recording_lib.DynamicsRecorder(
        model,
        train_split.subclasses,
        train_split.y,
        train_split.superclass_of,
        neurons=setting.neurons_per_layer,
        group=group,
        n_steps=steps,
    )
    with recorder:
        result = train.fit(
            model,
            train_split,
            splits["test"],
            config,
            step_callbacks=[recorder.on_step],
            callbacks=callbacks_for("training", setting.epochs),
        )
    recording = recorder.result()
    folder.mkdir(parents=True, exist_ok=True)
    recording.save(folder / "dynamics.npz")
    write_csv(folder / "history.csv", result.frame(), index=False)
    index = wtm_index(recording)
    write_csv(folder / "wtm.csv", index, index=False)
    layers = wtm_summary(index)
    write_csv(folder / "wtm_layers.csv", layers, index=False)
    first_layer = layers.iloc[0]
    row = {
        "seed": seed,
        "status": result.status,
        "train_acc": result.final.get("train_acc"),
        "test_acc": result.final.get("test_acc"),
        "standard_test_acc": math.nan,
        "spread_gain": float(first_layer["spread_gain"]),
        "gap_ratio_start": float(first_layer["gap_ratio_start"]),
        "gap_ratio": float(first_layer["gap_ratio"]),
        "share_gap_above_1": float(first_layer["share_gap_above_1"]),
        "seconds": time.perf_counter() - start,
    }
    if "standard_test" in splits:
        st = splits["standard_test"]
        row["standard_test_acc"] = train.evaluate(
            model, st.x.to(config.device), st.y.to(config.device), loss="bce", amp=False
        )[1]
    write_text(folder / "result.json", json.dumps({"config": _fingerprint(setting), "row": row}))
    return row


def _prefixed(callbacks_for: CallbacksFor, prefix: str) -> CallbacksFor:
    """``callbacks_for`` with ``prefix`` before each label."""
    return lambda label, epochs: callbacks_for(f"{prefix} {label}", epochs)


def _fingerprint(setting: Setting) -> str:
    """What decides a run's result: the setting without its labels (``thesis``, ``note``)."""
    return fingerprint({k: v for k, v in dataclasses.asdict(setting).items() if k not in ("thesis", "note")})


def _finished(setting: Setting, folder: Path) -> dict | None:
    path = folder / "result.json"
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if (
        not isinstance(saved, dict)
        or saved.get("config") != _fingerprint(setting)
        or not isinstance(saved.get("row"), dict)
    ):
        return None
    return saved["row"]


def plot_recording(path: str | Path, out: str | Path, title: str, n_plot: int = 10) -> pd.DataFrame:
    """``dynamics.png`` (Figs. 3.2-3.4; the ``n_plot`` strongest recorded neurons, spread over the
    layers) and ``loss_shares.png`` (Fig. 3.5) of the recording at ``path``, written to ``out``;
    returns the recording's per-layer winner-take-most summary."""
    from clusterprior.report import figures

    recording = recording_lib.Dynamics.load(path)
    per_layer = max(1, n_plot // len(recording.layers))
    plot = {layer: recording.strongest(layer)[:per_layer].tolist() for layer in recording.layers}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for fig, file in (
        (figures.neuron_dynamics(recording, plot, f"{title} (blue = class 0, red = class 1)"), "dynamics.png"),
        (figures.loss_shares(recording, f"{title}: loss shares of easy and difficult examples"), "loss_shares.png"),
    ):
        with atomic_path(out / file) as tmp:  # a kill while drawing never leaves half a figure
            fig.savefig(tmp, dpi=70, format="png")
    return wtm_summary(wtm_index(recording))


def thesis_label(setting: Setting) -> str:
    t = setting.thesis
    return f"{t[0]:g}-{t[1]:g}" if isinstance(t, tuple) else f"{t:g}"


def summarize(rows: pd.DataFrame, scale: float) -> pd.DataFrame:
    """One line per setting: test accuracy (%) mean [min, max] over seeds beside the thesis's
    number (left blank at ``scale`` < 1: not the thesis's experiment), and the median
    winner-take-most index of the first hidden layer."""
    out = []
    for name, group in rows.groupby("setting", sort=False):
        acc = 100 * group["test_acc"]
        line = {
            "setting": name,
            "seeds": len(group),
            "thesis_acc": thesis_label(SETTINGS[name]) if scale == 1.0 else "",
            "test_acc": f"{acc.mean():.2f} [{acc.min():.2f}, {acc.max():.2f}]",
            "spread_gain": group["spread_gain"].mean(),
            "gap_ratio_start": group["gap_ratio_start"].mean(),
            "gap_ratio": group["gap_ratio"].mean(),
            "share_gap_above_1": group["share_gap_above_1"].mean(),
        }
        standard = 100 * group["standard_test_acc"]
        line["noise_0.4_test_acc"] = f"{standard.mean():.2f}" if standard.notna().any() else ""
        out.append(line)
    return pd.DataFrame(out)


def run(
    names: list[str],
    out: str | Path,
    seeds: int = 3,
    scale: float | None = None,
    device: str = "cpu",
    data_dir: str | None = None,
    on_result: Callable[[str, dict], None] | None = None,
    callbacks_for: CallbacksFor = no_callbacks,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run ``seeds`` seeds of every setting in ``names`` (skipping finished ones), plot seed 0,
    and write ``results.csv`` (one row per run) and ``summary.csv`` to ``out``. Without a
    ``scale``, the heavy settings (5 hidden layers) need a CUDA device. ``callbacks_for(label, epochs)``
    gives the epoch callbacks of each run trained (for progress)."""
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise UserError(f"unknown setting {unknown[0]!r}; available: {', '.join(SETTINGS)}, all")
    if seeds < 1:
        raise UserError("--seeds must be >= 1")
    heavy = [n for n in names if SETTINGS[n].heavy]
    if scale is None and heavy and not str(device).startswith("cuda"):
        raise UserError(
            f"setting {heavy[0]!r} takes over an hour per run on CPU at the thesis's scale; "
            "use --device cuda, or an explicit --scale (e.g. 0.2, a smaller experiment)"
        )
    scale = 1.0 if scale is None else scale
    out = Path(out)
    rows = []
    for name in names:
        setting = scale_setting(SETTINGS[name], scale)
        fresh = False
        for seed in range(seeds):
            folder = out / name / f"seed{seed}"
            row = _finished(setting, folder)
            if row is None:
                row = run_one(setting, seed, folder, device, data_dir, _prefixed(callbacks_for, f"{name} seed {seed}"))
                fresh = True
            row = {"setting": name, "scale": scale, **row}
            rows.append(row)
            if on_result:
                on_result(name, row)
        if fresh or not all((out / name / "seed0" / f).is_file() for f in ("dynamics.png", "loss_shares.png")):
            folder = out / name / "seed0"
            plot_recording(folder / "dynamics.npz", folder, f"{name}: {setting.note}")
    table = pd.DataFrame(rows)
    summary = summarize(table, scale)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "results.csv", table, index=False)
    write_csv(out / "summary.csv", summary, index=False)
    return table, summary
