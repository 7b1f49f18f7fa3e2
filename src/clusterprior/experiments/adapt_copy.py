"""AdaptCopy (thesis Fig. 4.9, SPEC.md 4.5): do adaptive methods act through layer rotation?

1. Train with an adaptive method (Adam, RMSprop or Adagrad) and record every kernel's
   rotation rate ``tan(theta)`` at every step (:class:`clusterprior.probe.StepRates`).
2. From the same initialisation, train with Layca replaying those rates step by step and
   layer by layer, over SGD with Adam's momentum for Adam (SGD-AMom + Layca) and over plain
   SGD otherwise: the copy turns each kernel exactly as the adaptive run did, with SGD's
   directions.
3. The reference: SGD + Layca at its default uniform rate 3^-3 with the task's schedule.

The thesis: the copy's training curves are nearly indistinguishable from the adaptive
method's, so the adaptive methods' effect on speed and generalization runs through layer
rotation. :data:`CLAIMS` states the rules that turn the results into verdicts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from clusterprior import data, models, train
from clusterprior.errors import UserError
from clusterprior.experiments.layer_rotation import Task
from clusterprior.probe.rotation import RotationMonitor, StepRates
from clusterprior.train.layca import Layca

# method: (its learning rate on the CPU task, the base optimizer of its copy)
METHODS = {"adam": (1e-3, "sgd-amom"), "rmsprop": (1e-3, "sgd"), "adagrad": (1e-2, "sgd")}
COPY_LR = 3.0**-3  # the group rate of the copy's non-kernel parameters (BatchNorm); the kernels follow the record
CLAIMS = {
    "generalization": "the copy's test accuracy is within 1 point of the adaptive method's",
    "speed": "the copy's training loss stays within a factor 2 of the adaptive method's (median over epochs)",
}


def _fit(
    task: Task,
    splits: tuple[data.Split, data.Split],
    seed: int,
    device: str,
    config: dict[str, Any],
    optimizer: Callable[[torch.nn.Module], Any] | None = None,
    rates: bool = False,
) -> tuple[train.TrainResult, RotationMonitor, StepRates | None]:
    """One run from the shared initialisation, with its rotation recorded every epoch (and
    every step's rates when ``rates``)."""
    train_split, test_split = splits
    torch.manual_seed(seed)
    model = models.build(task.model, train_split.input_shape, train_split.n_classes, **task.model_options)
    monitor = RotationMonitor(model)
    steps = StepRates(model) if rates else None
    options = {"epochs": task.epochs, "batch_size": task.batch_size, "seed": seed, "device": device, **config}
    result = train.fit(
        model,
        train_split,
        test_split,
        train.TrainConfig(**options),
        callbacks=[monitor],
        step_callbacks=[steps] if steps else [],
        optimizer=optimizer(model) if optimizer else None,
    )
    return result, monitor, steps


def replay(recorded: Sequence[Sequence[float]], group_lr: float) -> Callable[[int], list[float]]:
    """Layca's per-step layer multipliers that turn each kernel by the recorded ``tan(theta)``
    (Layca's rate is the group's ``group_lr`` x multiplier); past the record, its last step."""
    if not recorded:
        raise UserError("nothing recorded to replay")
    return lambda step: [r / group_lr for r in recorded[min(step, len(recorded) - 1)]]


def run(
    task: Task,
    out: str | Path,
    method: str = "adam",
    seed: int = 0,
    device: str = "cpu",
    data_options: dict[str, Any] | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """The adaptive run, its AdaptCopy and the SGD + Layca reference on ``task``; writes
    ``results.csv``, ``curves.json``, ``adapt_copy.png`` and ``verdicts.csv`` (:func:`verdicts`) to ``out``."""
    from clusterprior.report import figures

    if method not in METHODS:
        raise UserError(f"unknown adaptive method {method!r}; available: {', '.join(METHODS)}")
    lr, copy_base = METHODS[method]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = {**task.data_options, **(data_options or {})}
    splits = (data.load(task.data, "train", **options), data.load(task.data, "test", **options))
    schedule = {"milestones": task.milestones, "gamma": task.gamma, "augment": task.augment}
    runs: dict[str, tuple[train.TrainResult, RotationMonitor]] = {}
    adaptive, monitor, steps = _fit(task, splits, seed, device, {"optimizer": method, "lr": lr, **schedule}, rates=True)
    assert steps is not None
    runs[method] = (adaptive, monitor)
    copy_config = {"optimizer": f"{copy_base}-layca", "lr": COPY_LR, "augment": task.augment}
    runs[f"AdaptCopy ({copy_base} + Layca)"] = _fit(
        task,
        splits,
        seed,
        device,
        copy_config,
        optimizer=lambda m: Layca(m, copy_base, COPY_LR, schedule=replay(steps.rates, COPY_LR)),
    )[:2]
    runs["sgd + Layca"] = _fit(task, splits, seed, device, {"optimizer": "sgd-layca", "lr": 3.0**-3, **schedule})[:2]
    rows = []
    for name, (result, rotation) in runs.items():
        final = [v for k, v in rotation.history[-1].items() if k not in ("epoch", "step")]
        row = {
            "run": name,
            "status": result.status,
            "train_acc": result.final.get("train_acc"),
            "test_acc": result.final.get("test_acc"),
            "train_loss": result.final.get("train_loss"),
            "rotation_mean": sum(final) / len(final),
            "rotation_min": min(final),
        }
        rows.append(row)
        if on_result:
            on_result(row)
    table = pd.DataFrame(rows)
    table.to_csv(out / "results.csv", index=False)
    curves = {name: {"history": r.history, "rotation": m.history} for name, (r, m) in runs.items()}
    (out / "curves.json").write_text(json.dumps(curves))
    figures.adapt_copy(curves, f"AdaptCopy of {method} (thesis Fig. 4.9)").savefig(out / "adapt_copy.png", dpi=80)
    verdicts(out).to_csv(out / "verdicts.csv", index=False)
    return table


def verdicts(folder: str | Path) -> pd.DataFrame:
    """Each claim of :data:`CLAIMS` with the numbers it reads and "agrees" / "disagrees",
    computed from ``results.csv`` and ``curves.json`` of a run of :func:`run`."""
    folder = Path(folder)
    table = pd.read_csv(folder / "results.csv")
    curves = json.loads((folder / "curves.json").read_text())
    adaptive, copy = table.iloc[0], table.iloc[1]
    gap = abs(copy["test_acc"] - adaptive["test_acc"])
    losses = [[r["train_loss"] for r in curves[name]["history"]] for name in (adaptive["run"], copy["run"])]
    ratios = sorted(abs(math.log(b / a)) for a, b in zip(*losses, strict=False) if a > 0 and b > 0)
    median = math.exp(ratios[len(ratios) // 2]) if ratios else math.inf
    return pd.DataFrame(
        [
            {"claim": CLAIMS["generalization"], "value": f"{100 * gap:.2f} points", "verdict": _agrees(gap <= 0.01)},
            {"claim": CLAIMS["speed"], "value": f"factor {median:.2f}", "verdict": _agrees(median <= 2.0)},
        ]
    )


def _agrees(ok: bool) -> str:
    return "agrees" if ok else "disagrees"
