"""AdaptCopy (thesis Fig. 4.9, SPEC.md 4.5): do adaptive methods act through layer rotation?

1. Train with an adaptive method (Adam, RMSprop or Adagrad) and record every kernel's
   rotation rate ``tan(theta)`` at every step (:class:`clusterprior.probe.StepRates`).
2. From the same initialisation, train with Layca replaying those rates step by step and
   layer by layer, over SGD with Adam's momentum for Adam (SGD-AMom + Layca) and over plain
   SGD otherwise: the copy turns each kernel exactly as the adaptive run did, with SGD's
   directions.
3. The reference: SGD + weight decay, the task's (:func:`~clusterprior.experiments.layer_rotation.sgd_decay`).

The thesis: the copy's training curves are nearly indistinguishable from the adaptive
method's and faster than SGD + L2's, so the adaptive methods' effect on speed and
generalization runs through layer rotation. :data:`CLAIMS` states the rules that turn the
results into verdicts.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from clusterprior.errors import UserError
from clusterprior.experiments.claims import claim
from clusterprior.experiments.layer_rotation import (
    Progress,
    Task,
    Trained,
    load_splits,
    sgd_decay,
    train_one,
)
from clusterprior.files import save_figure, write_csv, write_text
from clusterprior.models.structure import kernels
from clusterprior.train.layca import Layca

# method: the base optimizer of its copy
METHODS = {"adam": "sgd-amom", "rmsprop": "sgd", "adagrad": "sgd"}
COPY_LR = 3.0**-3  # the group rate of the copy's non-kernel parameters (BatchNorm); the kernels follow the record
CLAIMS = {
    "generalization": "the copy's test accuracy is within 1 point of the adaptive method's",
    "speed": "the copy's training loss stays within a factor 2 of the adaptive method's (median over epochs)",
    "accuracy": "the copy's training accuracy follows the adaptive method's: the median gap over epochs is "
    "within 1 point and smaller than SGD + weight decay's",
    "faster": "the copy trains faster than SGD + weight decay: its training loss is lower (median log ratio over "
    "epochs below 0)",
}


def replay(recorded: Sequence[Sequence[float]], group_lr: float) -> Callable[[int], list[float]]:
    """Layca's per-step layer multipliers that turn each kernel by the recorded ``tan(theta)``
    (Layca's rate is the group's ``group_lr`` x multiplier); past the record, its last step."""
    if not recorded:
        raise UserError("nothing recorded to replay")
    return lambda step: [r / group_lr for r in recorded[min(step, len(recorded) - 1)]]


def run(
    task: Task,
    out: str | Path,
    method: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    data_options: dict[str, Any] | None = None,
    on_result: Callable[[dict], None] | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The adaptive run (``method``, default the task's first), its AdaptCopy and the SGD +
    weight decay reference on ``task``; writes ``results.csv``, ``curves.json``,
    ``adapt_copy.png`` and ``verdicts.csv`` (:func:`verdicts`) to ``out``; ``progress`` as
    in :func:`~clusterprior.experiments.layer_rotation.train_configs`."""
    from clusterprior.report import figures

    if method is None:
        if not task.adaptive:
            raise UserError("the thesis runs no adaptive method on this task (SPEC.md 4.4)")
        method = next(iter(task.adaptive))
    if method not in METHODS:
        raise UserError(f"unknown adaptive method {method!r}; available: {', '.join(METHODS)}")
    if method not in task.adaptive:
        raise UserError(f"the task runs no {method} (SPEC.md 4.4); its adaptive methods: {', '.join(task.adaptive)}")
    copy_base = METHODS[method]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = load_splits(task, data_options)
    decay = {"weight_decay": task.adaptive_weight_decay} if task.adaptive_weight_decay else {}
    reference = sgd_decay(task)
    names = (method, f"AdaptCopy ({copy_base} + Layca)", reference.label)

    def bars(i: int) -> Any:
        return progress(names[i], task.epochs) if progress else ()

    settings = {"optimizer": method, "lr": task.adaptive[method], **decay}
    adaptive = train_one(task, splits, settings, seed, device, ("rates",), callbacks=bars(0))
    rates = adaptive.recorders["rates"].rates
    copy = train_one(
        task,
        splits,
        {"optimizer": f"{copy_base}-layca", "lr": COPY_LR, "milestones": ()},  # the record holds the schedule
        seed,
        device,
        optimizer=lambda m: Layca(m, copy_base, COPY_LR, schedule=replay(rates, COPY_LR)),
        callbacks=bars(1),
    )
    baseline = train_one(task, splits, reference.train, seed, device, callbacks=bars(2))
    runs = {names[0]: adaptive, names[1]: copy, names[2]: baseline}
    rows = []
    for name, run in runs.items():
        result, final = run.result, list(run.rotation.final.values())
        row = {
            "run": name,
            "status": result.status,
            "train_acc": result.final.get("train_acc"),
            "test_acc": result.final.get("test_acc"),
            "train_loss": result.final.get("train_loss"),
            "rotation_mean": sum(final) / len(final),
            "rotation_min": min(final),
            "classifier_norm": classifier_norm(run),
        }
        rows.append(row)
        if on_result:
            on_result(row)
    table = pd.DataFrame(rows)
    write_csv(out / "results.csv", table, index=False)
    curves = {name: {"history": r.result.history, "rotation": r.rotation.history} for name, r in runs.items()}
    write_text(out / "curves.json", json.dumps(curves))
    save_figure(out / "adapt_copy.png", figures.adapt_copy(curves, f"AdaptCopy of {method} (thesis Fig. 4.9)"), dpi=80)
    write_csv(out / "verdicts.csv", verdicts(out), index=False)
    return table


def verdicts(folder: str | Path) -> pd.DataFrame:
    """Each claim of :data:`CLAIMS` with the numbers it reads and "agrees" / "disagrees",
    computed from ``results.csv`` and ``curves.json`` of a run of :func:`run`."""
    folder = Path(folder)
    table = pd.read_csv(folder / "results.csv")
    curves = json.loads((folder / "curves.json").read_text())
    adaptive, copy, reference = (table.iloc[i] for i in range(3))
    gap = abs(copy["test_acc"] - adaptive["test_acc"])

    def pairs(key: str, other: pd.Series, base: pd.Series = adaptive) -> list[tuple[float, float]]:
        """(``base``, ``other``) of ``key`` at every epoch both ran."""
        a, b = ([r[key] for r in curves[name]["history"]] for name in (base["run"], other["run"]))
        return list(zip(a, b, strict=False))

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else math.nan

    loss_factor = math.exp(median([abs(math.log(b / a)) for a, b in pairs("train_loss", copy) if a > 0 and b > 0]))
    acc_gap = median([abs(b - a) for a, b in pairs("train_acc", copy)])
    reference_gap = median([abs(b - a) for a, b in pairs("train_acc", reference)])
    faster = median([math.log(c / r) for r, c in pairs("train_loss", copy, reference) if c > 0 and r > 0])
    return pd.DataFrame(
        [
            claim(CLAIMS["generalization"], f"{100 * gap:.2f} points", gap <= 0.01),
            claim(CLAIMS["speed"], f"factor {loss_factor:.2f}", loss_factor <= 2.0),
            claim(
                CLAIMS["accuracy"],
                f"{100 * acc_gap:.2f} points; SGD + weight decay {100 * reference_gap:.2f}",
                acc_gap <= 0.01 and acc_gap < reference_gap,
            ),
            claim(CLAIMS["faster"], f"median log ratio {faster:.2f}", faster < 0),
        ]
    )


def classifier_norm(run: Trained) -> float:
    """The last kernel's norm at the end of ``run`` over its initial norm: Layca keeps it at 1,
    an adaptive method lets it grow, and with it the logits' scale (a lower loss at the same
    accuracy)."""
    name = list(run.rotation.initial)[-1]
    return float(kernels(run.model)[name].detach().norm() / run.rotation.initial[name].norm())
