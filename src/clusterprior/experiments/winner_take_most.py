"""Winner-take-most on SynthClust (thesis Chapter 3).

A one-hidden-layer MLP without biases, ``sigmoid(W2 ReLU(W1 x) + b2)`` with binary
cross-entropy, trained full batch by SGD + Layca (rho(0) = 3^-3, divided by 5 at epoch 375
of 400) on SynthClust (2 classes x 15 clusters, noise 0.4). Kernels start He-uniform: Layca
keeps every kernel at its initial norm, and PyTorch's default initialisation (norms ~2.4x
smaller) caps the logits and stalls near 90%. A :class:`~clusterprior.probe.dynamics.DynamicsRecorder`
follows 50 hidden neurons (10 per layer in the 5-layer nets) through every step.

Settings (:data:`SETTINGS`): the base run, the ablations of Fig. 3.4 (no ReLU, one hidden
neuron, noise 0.1), and the links to standard practice of thesis Ch. 3 (reduced data, reduced
data with input dropout, random-label pre-training, 5 hidden layers with BN, the same with the
learning rate divided by 27), plus the 2-class MNIST variant on the user's idx files (not in
``all``). Reduced data = the first 50 training examples of each cluster (1,500). The noise-0.1
ablation is also tested on a standard noise-0.4 test set: with noise 0.1 on both splits the
test set is separable by a linear classifier.

``scale`` < 1 shrinks every hidden width and the number of epochs (milestones with them): a
different, smaller experiment, whose accuracies are never shown beside the thesis's numbers.
The experiment runs as a study (the engine's contract, :mod:`clusterprior.study.experiment`):
grid keys ``setting`` and ``seed``, option ``scale``; each run returns its history, its index
per layer and its recording, which the study stores, so an interrupted experiment keeps every
finished run, on any executor.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from clusterprior import data, models, train
from clusterprior.data import Split
from clusterprior.errors import UserError
from clusterprior.measures.dynamics import wtm_index, wtm_summary
from clusterprior.models.layers import he_uniform_, scaled
from clusterprior.presets.winner_take_most import SETTINGS, Setting
from clusterprior.probe import dynamics as recording_lib
from clusterprior.train.loop import resolve_device, steps_per_epoch


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
        device=str(resolve_device(device)),
        amp=False,
        eval_batch_size=8192,
    )


HPARAMS = ("setting", "seed")  # the grid keys of a winner-take-most study
OPTIONS = ("scale",)
LABELS = ("thesis", "note", "heavy")  # a setting's fields that do not decide its result
RECORDED = ("spread_gain", "gap_ratio_start", "gap_ratio", "share_gap_above_1")  # per layer, and the first's


def configure(hparams: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """One run's config (the engine's contract, :mod:`clusterprior.study.experiment`): the
    setting's name, the fields that decide its result at ``options["scale"]`` (1 by default;
    :func:`scale_setting`) and the seed."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise UserError(f"unknown winner-take-most option {unknown[0]!r}; allowed: {', '.join(OPTIONS)}")
    name = str(hparams.get("setting"))
    scale = float(options.get("scale", 1.0))
    setting = scale_setting(SETTINGS[name], scale)
    deciding = {k: v for k, v in dataclasses.asdict(setting).items() if k not in LABELS}
    return {"setting": name, "scale": scale, "seed": int(hparams.get("seed", 0)), **deciding}


def setting_of(config: dict[str, Any]) -> Setting:
    """The :class:`Setting` a run's config (:func:`configure`) describes, labels from :data:`SETTINGS`."""
    fields = {f.name for f in dataclasses.fields(Setting)} - set(LABELS)
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in fields}
    labels = SETTINGS[config["setting"]]
    return Setting(thesis=labels.thesis, note=labels.note, heavy=labels.heavy, **values)


def run(config: dict[str, Any], device: str, local: dict[str, Any]) -> dict[str, Any]:
    """Train one seed of a setting with the recorder on (the engine's contract): returns its
    history, its winner-take-most index per layer (rows at the last epoch; layer "all": the
    first hidden layer's, and the accuracy on the standard noise-0.4 test set where the
    setting has one) and the recording (``dynamics.npz``). ``local["data_dir"]``: the MNIST
    idx files (setting mnist)."""
    setting, seed = setting_of(config), int(config["seed"])
    splits = load_splits(setting, seed, local.get("data_dir"))
    train_split = splits["train"]
    if setting.reduced is not None:
        train_split = per_cluster_subset(train_split, setting.reduced)
    model = build_model(setting, train_split, seed)
    if setting.random_pretrain:
        pretrain = relabelled(splits["train"], seed)
        train.fit(model, pretrain, None, train_config(setting, len(pretrain), seed, device))
    config_train = train_config(setting, len(train_split), seed, device)
    group = None
    meta = train_split.meta
    if "centroids" in meta.extra:
        group = (
            recording_lib.difficulty(
                train_split.x, train_split.y.numpy(), meta.extra["centroids"], meta.extra["class_of_cluster"]
            )
            > 0
        ).astype(int)
    steps = config_train.epochs * steps_per_epoch(len(train_split), config_train.batch_size)
    model.to(config_train.device)  # the recorder's buffers live where the model trains
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
        result = train.fit(model, train_split, splits["test"], config_train, step_callbacks=[recorder.on_step])
    recording = recorder.result()
    layers = wtm_summary(wtm_index(recording))
    epoch = len(result.history)

    def row(measure: str, layer: str, value: float) -> dict[str, Any]:
        return {"epoch": epoch, "measure": measure, "layer": layer, "k": None, "value": float(value)}

    rows = [row(m, str(r["layer"]), r[m]) for _, r in layers.iterrows() for m in ("neurons", *RECORDED)]
    rows += [row(m, "all", layers.iloc[0][m]) for m in RECORDED]
    if "standard_test" in splits:
        st = splits["standard_test"]
        acc = train.evaluate(model, st.x.to(config_train.device), st.y.to(config_train.device), loss="bce", amp=False)
        rows.append(row("standard_test_acc", "all", acc[1]))
    return {
        "status": result.status,
        "stop_reason": result.stop_reason,
        "history": result.history,
        "measures": rows,
        "files": {"dynamics.npz": recording},
    }


def figures(recording: recording_lib.Dynamics, title: str, n_plot: int = 10) -> dict[str, Any]:
    """Figs. 3.2-3.4 (``dynamics.png``: the ``n_plot`` strongest recorded neurons, spread over
    the layers) and Fig. 3.5 (``loss_shares.png``) of a recording, by file name."""
    from clusterprior.report import figures as draw

    per_layer = max(1, n_plot // len(recording.layers))
    plot = {layer: recording.strongest(layer)[:per_layer].tolist() for layer in recording.layers}
    return {
        "dynamics.png": draw.neuron_dynamics(recording, plot, f"{title} (blue = class 0, red = class 1)"),
        "loss_shares.png": draw.loss_shares(recording, f"{title}: loss shares of easy and difficult examples"),
    }


def results_table(runs: pd.DataFrame, values: pd.DataFrame, scale: float) -> pd.DataFrame:
    """One row per finished run of a winner-take-most study at ``scale``: setting, scale,
    seed, status, accuracies, the first hidden layer's index and the seconds it took.
    ``runs``: the store's runs (with the ``setting`` and ``seed`` columns), ``values``: its
    model-level values (run_id, measure, value)."""
    wide = values.pivot_table(index="run_id", columns="measure", values="value")
    done = runs[runs["status"].isin(("done", "diverged"))].set_index("id")
    table = done[["setting", "seed", "status", "train_acc", "test_acc", "seconds"]].join(wide, how="left")
    columns = ["setting", "scale", "seed", "status", "train_acc", "test_acc", "standard_test_acc", *RECORDED, "seconds"]
    return table.assign(scale=scale).reindex(columns=columns).reset_index(drop=True)


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
