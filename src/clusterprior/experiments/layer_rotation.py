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


def run(
    task: Task,
    out: str | Path,
    configs: list[tuple[float, float]] = EXPLORATION,
    seed: int = 0,
    device: str = "cpu",
    data_options: dict[str, Any] | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """Train one model per (alpha, rho(0)), record layer rotation every epoch, and write
    ``results.csv``, ``curves.json``, ``rotation_curves.png`` and ``loss_curves.png`` to ``out``."""
    from clusterprior.report import figures

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = {**task.data_options, **(data_options or {})}
    train_split, test_split = data.load(task.data, "train", **options), data.load(task.data, "test", **options)
    rows, curves = [], {}
    for alpha, rho in configs:
        torch.manual_seed(seed)  # the same initialisation for every configuration
        model = models.build(task.model, train_split.input_shape, train_split.n_classes, **task.model_options)
        monitor = RotationMonitor(model)
        config = train.TrainConfig(
            epochs=task.epochs,
            batch_size=task.batch_size,
            optimizer="sgd-layca",
            lr=rho,
            layca_alpha=alpha,
            milestones=task.milestones,
            gamma=task.gamma,
            augment=task.augment,
            seed=seed,
            device=device,
        )
        result = train.fit(model, train_split, test_split, config, callbacks=[monitor])
        final = monitor.history[-1]
        rotation = [v for k, v in final.items() if k not in ("epoch", "step")]
        row = {
            "alpha": alpha,
            "rho0": rho,
            "log3_rho0": round(math.log(rho, 3), 2),
            "status": result.status,
            "train_acc": result.final.get("train_acc"),
            "test_acc": result.final.get("test_acc"),
            "rotation_mean": sum(rotation) / len(rotation),
            "rotation_min": min(rotation),
        }
        rows.append(row)
        curves[f"alpha={alpha:g}, rho0=3^{row['log3_rho0']:g}"] = {
            "rotation": monitor.history,
            "history": result.history,
        }
        if on_result:
            on_result(row)
    table = pd.DataFrame(rows)
    best = table["test_acc"].max()
    table["delta_eta"] = table["test_acc"] - best
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
