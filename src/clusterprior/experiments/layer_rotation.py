"""The layer-rotation exploration of the thesis's Fig. 4.1 (SPEC.md 4.3-4.5).

Every configuration trains the same initialisation with SGD + Layca; they differ in the
layer-wise rotation-rate profile alpha (Eq. 4.2) and the initial rate rho(0). The thesis's
rule of thumb: the larger and the more uniform the rotations (all layers near a cosine
distance of 1), the better the generalization; its best configuration on all five tasks is
alpha = 0, rho(0) = 3^-3.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from clusterprior import data, models, train
from clusterprior.errors import UserError
from clusterprior.probe.rotation import RotationMonitor

# (alpha, rho(0)): the alpha sweep at rho(0) = 3^-3 and the rho(0) sweep at alpha = 0
EXPLORATION = [(a, 3.0**-3) for a in (-0.6, -0.3, 0.0, 0.3, 0.6)] + [(0.0, 3.0**-k) for k in (2, 4, 5)]


@dataclass(frozen=True)
class Task:
    """A data set, a model and the Layca training schedule of one exploration."""

    data: str
    model: str
    epochs: int
    milestones: tuple[int, ...]
    gamma: float = 0.2
    augment: bool = False
    batch_size: int = 128
    data_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    note: str = ""


TASKS: dict[str, Task] = {
    "cpu": Task("mnist1d-hier", "cnn", 30, (20, 27), note="2 CPU cores, minutes: a small 1-D CNN on MNIST-1D"),
    # SPEC.md 4.4, for a GPU with the CIFAR archives; our zoo's closest architectures:
    "C10-CNN1": Task(
        "cifar10",
        "vgg",
        100,
        (80, 90, 97),
        model_options={"stages": [32, 64, 128, 256], "convs": 6},
        note="25-layer VGG-style CNN (ours: BN before ReLU; the thesis: Conv-ReLU-BN)",
    ),
    "C100-resnet": Task(
        "cifar100",
        "wrn",
        100,
        (70, 90, 97),
        gamma=0.1,
        model_options={"stages": [16, 32, 64], "blocks": 5},
        note="ResNet-32 (ours: pre-activation blocks)",
    ),
    "C10-CNN2": Task(
        "cifar10",
        "vgg",
        250,
        (100, 170, 220),
        augment=True,
        model_options={"stages": [64, 128, 256, 512, 512], "convs": 3},
        note="VGG-16-like torch-blog CNN without dropout (ours: 3 convs in every stage, no dense head)",
    ),
    "C100-WRN": Task(
        "cifar100",
        "wrn",
        250,
        (100, 170, 220),
        augment=True,
        model_options={"stages": [160, 320, 640], "blocks": 4},
        note="WRN-28-10 (the thesis adds dropout 0.3)",
    ),
}


@dataclass(frozen=True)
class Config:
    """One training configuration of a layer-rotation experiment: ``train``, the
    :class:`~clusterprior.train.TrainConfig` fields it sets (over the task's schedule);
    ``columns``, what its row of ``results.csv`` says besides the results."""

    label: str
    train: dict[str, Any]
    columns: dict[str, Any] = field(default_factory=dict)


def exploration() -> list[Config]:
    """Fig. 4.1: SGD + Layca at each (alpha, rho(0)) of :data:`EXPLORATION`."""
    configs = []
    for alpha, rho in EXPLORATION:
        log3 = round(math.log(rho, 3), 2)
        configs.append(
            Config(
                f"alpha={alpha:g}, rho0=3^{log3:g}",
                {"optimizer": "sgd-layca", "lr": rho, "layca_alpha": alpha},
                {"alpha": alpha, "rho0": rho, "log3_rho0": log3},
            )
        )
    return configs


def train_configs(
    task: Task,
    out: str | Path,
    configs: list[Config],
    seed: int = 0,
    device: str = "cpu",
    data_options: dict[str, Any] | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """Train one model per configuration from one shared initialisation, record layer
    rotation every epoch, and write ``results.csv`` (one row per configuration: its columns,
    status, accuracies, first and last training loss, mean and minimum final rotation,
    ``delta_eta`` = test accuracy minus the best), ``curves.json``, ``rotation_curves.png``
    and ``loss_curves.png`` to ``out``."""
    from clusterprior.report import figures

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = {**task.data_options, **(data_options or {})}
    train_split, test_split = data.load(task.data, "train", **options), data.load(task.data, "test", **options)
    rows, curves = [], {}
    for c in configs:
        torch.manual_seed(seed)  # the same initialisation for every configuration
        model = models.build(task.model, train_split.input_shape, train_split.n_classes, **task.model_options)
        monitor = RotationMonitor(model)
        schedule = {"milestones": task.milestones, "gamma": task.gamma, "augment": task.augment}
        config = train.TrainConfig(
            epochs=task.epochs, batch_size=task.batch_size, seed=seed, device=device, **{**schedule, **c.train}
        )
        result = train.fit(model, train_split, test_split, config, callbacks=[monitor])
        final = monitor.history[-1]
        rotation = [v for k, v in final.items() if k not in ("epoch", "step")]
        row = {
            "config": c.label,
            **c.columns,
            "status": result.status,
            "train_acc": result.final.get("train_acc"),
            "test_acc": result.final.get("test_acc"),
            "first_loss": result.history[0]["train_loss"],
            "last_loss": result.history[-1]["train_loss"],
            "rotation_mean": sum(rotation) / len(rotation),
            "rotation_min": min(rotation),
        }
        rows.append(row)
        curves[c.label] = {"rotation": monitor.history, "history": result.history}
        if on_result:
            on_result(row)
    table = pd.DataFrame(rows)
    table["delta_eta"] = table["test_acc"] - table["test_acc"].max()
    table.to_csv(out / "results.csv", index=False)
    (out / "curves.json").write_text(json.dumps(curves))
    _save_figures(curves, out, figures)
    return table


def _save_figures(curves: dict[str, dict], out: Path, figures: Any) -> None:
    fig, flat = figures.panels(len(curves), columns=4, size=(4.0, 3.2))
    for ax, (label, curve) in zip(flat, curves.items(), strict=True):
        figures.rotation_curves(curve["rotation"], label, ax=ax)
    fig.suptitle("Layer rotation curves (thesis Fig. 4.1)")
    fig.tight_layout()
    fig.savefig(out / "rotation_curves.png", dpi=80)
    fig = figures.loss_curves(
        {k: c["history"] for k, c in curves.items()}, "Training loss across configurations (Fig. 4.2)"
    )
    fig.savefig(out / "loss_curves.png", dpi=80)


# ---- the thesis's studies (SPEC.md 4.5, Figs. 4.3-4.8) on a task's schedule ------------------------

SGD = {"optimizer": "sgd", "momentum": 0.0}  # "vanilla SGD": no momentum
WEIGHT_DECAY = 2e-3  # PyTorch's weight_decay = 2 x Keras's l2(1e-3) (SPEC.md 4.4)
LAYCA = Config("SGD + Layca (3^-3)", {"optimizer": "sgd-layca", "lr": 3.0**-3})
ADAPTIVE = {"adam": (1e-3, 3.0**-5), "rmsprop": (1e-3, 3.0**-3), "adagrad": (1e-2, 3.0**-3)}  # lr alone, with Layca

STUDIES: dict[str, list[Config]] = {
    "lr": [Config(f"SGD lr 3^{k}", {**SGD, "lr": 3.0**k}, {"log3_lr": k}) for k in (-4, -3, -2, -1, 0)] + [LAYCA],
    "weight-decay": [
        Config("SGD", {**SGD, "lr": 3.0**-1}),
        Config("SGD + weight decay", {**SGD, "lr": 3.0**-1, "weight_decay": WEIGHT_DECAY}),
        LAYCA,
    ],
    "warmup": [
        Config(
            f"SGD + weight decay, lr 3^1, warm-up {w}",
            {**SGD, "lr": 3.0, "weight_decay": WEIGHT_DECAY, "warmup_epochs": w, "warmup_start": 0.1},
            {"warmup_epochs": w},
        )
        for w in (0, 2, 5)
    ]
    + [LAYCA],
    "adaptive": [Config(m, {"optimizer": m, "lr": lr}) for m, (lr, _) in ADAPTIVE.items()]
    + [Config(f"{m} + Layca", {"optimizer": f"{m}-layca", "lr": rate}) for m, (_, rate) in ADAPTIVE.items()]
    + [Config("SGD + weight decay", {**SGD, "lr": 3.0**-1, "weight_decay": WEIGHT_DECAY})],
}


def _row(table: pd.DataFrame, label: str) -> pd.Series:
    return table[table["config"] == label].iloc[0]


def _claim(claim: str, value: str, ok: bool) -> dict[str, str]:
    return {"claim": claim, "value": value, "verdict": "agrees" if ok else "disagrees"}


def verdicts(study: str, table: pd.DataFrame) -> pd.DataFrame:
    """The thesis's claims of ``study`` (SPEC.md 4.5), each with the numbers it reads and
    its verdict by the rule stated in the claim, from ``results.csv``'s ``table``."""
    from scipy.stats import kendalltau

    table = table.fillna({"test_acc": 0.0})  # a diverged run: no better than nothing
    rows = []
    if study == "lr":
        sgd = table[table["config"].str.startswith("SGD lr") & (table["last_loss"] < table["first_loss"] / 2)]
        tau = float(kendalltau(sgd["rotation_mean"], sgd["test_acc"]).statistic) if len(sgd) > 1 else math.nan
        rows.append(
            _claim(
                "larger rotation is better, provided the loss improves: Kendall tau of final mean rotation and "
                "test accuracy over the SGD rates whose loss at least halved is positive",
                f"tau {tau:.2f} over {len(sgd)} rates",
                tau > 0,
            )
        )
    elif study == "weight-decay":
        plain, decay, layca = (_row(table, c.label) for c in STUDIES["weight-decay"])
        rows.append(
            _claim(
                "weight decay acts through rotation: with it, SGD's layers rotate further and it generalizes better",
                f"rotation {plain['rotation_mean']:.2f} -> {decay['rotation_mean']:.2f}, "
                f"test acc {plain['test_acc']:.4f} -> {decay['test_acc']:.4f}",
                decay["rotation_mean"] > plain["rotation_mean"] and decay["test_acc"] > plain["test_acc"],
            )
        )
        rows.append(
            _claim(
                "so Layca can replace it: SGD + Layca within 1 point of SGD + weight decay",
                f"{100 * abs(layca['test_acc'] - decay['test_acc']):.2f} points",
                abs(layca["test_acc"] - decay["test_acc"]) <= 0.01,
            )
        )
    elif study == "warmup":
        runs = table[table["config"].str.contains("warm-up")]
        cold = runs[runs["warmup_epochs"] == 0].iloc[0]
        warm = runs[runs["warmup_epochs"] > 0]["test_acc"].max()
        layca = _row(table, LAYCA.label)
        rows.append(
            _claim(
                "warm-up tames a large rate: the best warm-up beats none",
                f"test acc {cold['test_acc']:.4f} without, {warm:.4f} with",
                warm > cold["test_acc"],
            )
        )
        rows.append(
            _claim(
                "Layca needs no warm-up: SGD + Layca without it beats SGD without it",
                f"test acc {layca['test_acc']:.4f} against {cold['test_acc']:.4f}",
                layca["test_acc"] > cold["test_acc"],
            )
        )
    elif study == "adaptive":
        sgd = _row(table, "SGD + weight decay")
        less = [m for m in ADAPTIVE if _row(table, m)["rotation_mean"] < sgd["rotation_mean"]]
        better = [m for m in ADAPTIVE if _row(table, f"{m} + Layca")["test_acc"] > _row(table, m)["test_acc"]]
        rows.append(
            _claim(
                "adaptive methods rotate less than SGD + weight decay (final mean rotation, each method)",
                f"{len(less)} of {len(ADAPTIVE)} ({', '.join(less) or 'none'})",
                len(less) == len(ADAPTIVE),
            )
        )
        rows.append(
            _claim(
                "Layca on top of an adaptive method improves its test accuracy (each method)",
                f"{len(better)} of {len(ADAPTIVE)} ({', '.join(better) or 'none'})",
                len(better) == len(ADAPTIVE),
            )
        )
    else:
        raise UserError(f"unknown study {study!r}; available: {', '.join(STUDIES)}")
    return pd.DataFrame(rows)


def run_study(
    study: str,
    task: Task,
    out: str | Path,
    seed: int = 0,
    device: str = "cpu",
    data_options: dict[str, Any] | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """One of :data:`STUDIES` with :func:`train_configs`, and its ``verdicts.csv``."""
    if study not in STUDIES:
        raise UserError(f"unknown study {study!r}; available: {', '.join(STUDIES)}")
    table = train_configs(task, out, STUDIES[study], seed, device, data_options, on_result)
    result = verdicts(study, table)
    result.to_csv(Path(out) / "verdicts.csv", index=False)
    return result
