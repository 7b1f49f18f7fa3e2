"""AdaptCopy (thesis Fig. 4.9): do adaptive methods act through layer rotation?

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

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from clusterprior.errors import UserError
from clusterprior.experiments.claims import claim
from clusterprior.experiments.layer_rotation import (
    TASK_FIELDS,
    Trained,
    load_splits,
    settings_of,
    sgd_decay,
    task_from,
    task_of,
    train_one,
)
from clusterprior.models.structure import kernels
from clusterprior.registry import Registry
from clusterprior.study.experiment import JsonFile
from clusterprior.train.layca import Layca

# method: the base optimizer of its copy
METHODS: Registry[str] = Registry(  # adaptive method -> the copy's base optimizer
    "adaptive method", {"adam": "sgd-amom", "rmsprop": "sgd", "adagrad": "sgd"}
)
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


HPARAMS = ("method", "seed")  # the grid keys of an AdaptCopy study (method: default the task's first)
OPTIONS = ("task", "epochs", "data_options", "model_options")
RECORDED = ("train_acc", "test_acc", "train_loss", "rotation_mean", "rotation_min", "classifier_norm", "finished")


def configure(hparams: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """One run's config (the engine's contract, :mod:`clusterprior.study.experiment`): the
    task's deciding fields (:func:`~clusterprior.experiments.layer_rotation.task_of`), the
    adaptive method with its settings, the copy's base optimizer, the SGD + weight decay
    reference and the seed."""
    task, settings = task_of(options, OPTIONS), settings_of(options)
    adaptive = settings.adaptive
    method = hparams.get("method") or (next(iter(adaptive)) if adaptive else None)
    if method is None:
        raise UserError("the thesis runs no adaptive method on this task (thesis Table 4.1)")
    METHODS.check([method])
    if method not in adaptive:
        raise UserError(f"the task runs no {method} (thesis Table 4.1); its adaptive methods: {', '.join(adaptive)}")
    decay = {"weight_decay": settings.adaptive_weight_decay} if settings.adaptive_weight_decay else {}
    reference = sgd_decay(settings)
    return {
        "task": {name: getattr(task, name) for name in TASK_FIELDS},
        "method": method,
        "adaptive": {"optimizer": method, "lr": adaptive[method], **decay},
        "reference": {"label": reference.label, "train": reference.train},
        "seed": int(hparams.get("seed", 0)),
    }


def names(config: dict[str, Any]) -> tuple[str, str, str]:
    """The three runs' names: the adaptive method, its copy, the reference."""
    return config["method"], f"AdaptCopy ({METHODS[config['method']]} + Layca)", config["reference"]["label"]


def run(config: dict[str, Any], device: str, local: dict[str, Any]) -> dict[str, Any]:
    """The adaptive run, its AdaptCopy and the SGD + weight decay reference from one
    initialisation (the engine's contract): returns the adaptive run's history, each run's
    numbers (rows whose layer is the run's name: :data:`RECORDED`, ``finished`` 1 for a run
    that did not diverge) and the three runs' curves (``curves.json``: history and rotation)."""
    task = task_from(config["task"])
    splits = load_splits(task, {"root": local["data_dir"]} if local.get("data_dir") else None)
    seed, copy_base = int(config["seed"]), METHODS[config["method"]]
    adaptive = train_one(task, splits, config["adaptive"], seed, device, ("rates",))
    rates = adaptive.recorders["rates"].rates
    copy = train_one(
        task,
        splits,
        {"optimizer": f"{copy_base}-layca", "lr": COPY_LR, "milestones": ()},  # the record holds the schedule
        seed,
        device,
        optimizer=lambda m: Layca(m, copy_base, COPY_LR, schedule=replay(rates, COPY_LR)),
    )
    baseline = train_one(task, splits, config["reference"]["train"], seed, device)
    runs = dict(zip(names(config), (adaptive, copy, baseline), strict=True))
    rows = []
    for name, trained in runs.items():
        result, final = trained.result, list(trained.rotation.final.values())
        values = {
            "train_acc": result.final.get("train_acc", math.nan),
            "test_acc": result.final.get("test_acc", math.nan),
            "train_loss": result.final.get("train_loss", math.nan),
            "rotation_mean": sum(final) / len(final),
            "rotation_min": min(final),
            "classifier_norm": classifier_norm(trained),
            "finished": float(result.status == "done"),
        }
        rows += [{"epoch": len(result.history), "measure": k, "layer": name, "k": None, "value": float(v)}
                 for k, v in values.items()]  # fmt: skip
    curves = {name: {"history": r.result.history, "rotation": r.rotation.history} for name, r in runs.items()}
    return {
        "status": "done" if all(r.result.status == "done" for r in runs.values()) else "diverged",
        "stop_reason": adaptive.result.stop_reason,
        "history": adaptive.result.history,
        "measures": rows,
        "files": {"curves.json": JsonFile(curves)},
    }


def results_table(values: pd.DataFrame, config: dict[str, Any]) -> pd.DataFrame:
    """``results.csv``: one row per run of an AdaptCopy study's run (the adaptive method, its
    copy, the reference): run, status, accuracies, training loss, mean and minimum final
    rotation, classifier norm. ``values``: the run's stored measures (layer = run name)."""
    wide = values.pivot_table(index="layer", columns="measure", values="value")
    rows = []
    for name in names(config):
        got = wide.loc[name]
        status = "done" if got["finished"] == 1 else "diverged"
        rows.append({"run": name, "status": status, **{k: got[k] for k in RECORDED if k != "finished"}})
    return pd.DataFrame(rows)


def verdicts(table: pd.DataFrame, curves: dict[str, dict]) -> pd.DataFrame:
    """Each claim of :data:`CLAIMS` with the numbers it reads and "agrees" / "disagrees",
    computed from the results table (:func:`results_table`) and the three runs' curves."""
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
