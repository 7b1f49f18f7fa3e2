"""The layer-rotation exploration of the thesis's Fig. 4.1 (thesis Eq. 4.2, Figs. 4.1-4.2).

Every configuration trains the same initialisation with SGD + Layca; they differ in the
layer-wise rotation-rate profile alpha (Eq. 4.2) and the initial rate rho(0). The thesis's
rule of thumb: the larger and the more uniform the rotations (all layers near a cosine
distance of 1), the better the generalization; its best configuration on all five tasks is
alpha = 0, rho(0) = 3^-3.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from clusterprior import data, models, train
from clusterprior.errors import UserError
from clusterprior.experiments.claims import claim
from clusterprior.presets.tasks import EXPLORATION, LAYCA_RATES, STUDY_SETTINGS, TASKS, StudySettings, Task
from clusterprior.probe.rotation import IterationRotation, RotationMonitor, SecondMoments, StepRates
from clusterprior.registry import Registry
from clusterprior.study.experiment import JsonFile


def log3_of(rate: float) -> float:
    """log_3 of a rate, to 2 decimals (the thesis writes its rates as powers of 3)."""
    return round(math.log(rate, 3), 2)


@dataclass(frozen=True)
class Config:
    """One training configuration of a layer-rotation experiment: ``train``, the
    :class:`~clusterprior.train.TrainConfig` fields it sets (over the task's schedule);
    ``columns``, what its row of ``results.csv`` says besides the results; ``record``, the
    :data:`RECORDERS` that watch its training besides the epoch-wise rotation."""

    label: str
    train: dict[str, Any]
    columns: dict[str, Any] = field(default_factory=dict)
    record: tuple[str, ...] = ()


def exploration() -> list[Config]:
    """Fig. 4.1: SGD + Layca at each (alpha, rho(0)) of :data:`EXPLORATION`."""
    configs = []
    for alpha, rho in EXPLORATION:
        log3 = log3_of(rho)
        configs.append(
            Config(
                f"alpha={alpha:g}, rho0=3^{log3:g}",
                {"optimizer": "sgd-layca", "lr": rho, "layca_alpha": alpha},
                {"alpha": alpha, "rho0": rho, "log3_rho0": log3},
            )
        )
    return configs


def moment_epochs(epochs: int) -> tuple[int, ...]:
    """The epochs at whose end Fig. 4.7 reads the second moments: 1, 10, 50 and the last."""
    return tuple(sorted({e for e in (1, 10, 50) if e <= epochs} | {epochs}))


Progress = Callable[[str, int], Sequence[train.Callback]]  # (run label, epochs) -> that run's epoch callbacks

# name: (the recorder built on the model and the task, whether it is a step callback)
RECORDERS: Registry[tuple[Callable[[nn.Module, Task], Any], bool]] = Registry(
    "recorder",
    {
        "rates": (lambda model, task: StepRates(model), True),  # every step's tan(theta): AdaptCopy
        "iterations": (lambda model, task: IterationRotation(model), True),  # the first epoch: Fig. 4.4
        "second_moments": (lambda model, task: SecondMoments(model, moment_epochs(task.epochs)), False),  # Fig. 4.7
    },
)


@dataclass
class Trained:
    """One finished run: its model, result, epoch-wise rotation and :data:`RECORDERS`."""

    model: nn.Module
    result: train.TrainResult
    rotation: RotationMonitor
    recorders: dict[str, Any]


def load_splits(task: Task, data_options: dict[str, Any] | None = None) -> tuple[data.Split, data.Split]:
    """The task's training and test splits (``data_options`` over the task's own)."""
    options = {**task.data_options, **(data_options or {})}
    return data.load(task.data, "train", **options), data.load(task.data, "test", **options)


def train_one(
    task: Task,
    splits: tuple[data.Split, data.Split],
    settings: dict[str, Any],
    seed: int = 0,
    device: str = "cpu",
    record: tuple[str, ...] = (),
    optimizer: Callable[[nn.Module], Any] | None = None,
    callbacks: Sequence[train.Callback] = (),
) -> Trained:
    """Train the task's model from the shared initialisation (``seed``) with the task's
    schedule and ``settings`` over it (any :class:`~clusterprior.train.TrainConfig` field),
    recording every kernel's rotation each epoch and what ``record`` names; ``optimizer``
    builds one for the model instead of ``settings``'; ``callbacks`` (e.g. a progress bar)
    see every epoch."""
    RECORDERS.check(record)
    train_split, test_split = splits
    torch.manual_seed(seed)  # the same initialisation for every configuration
    model = models.build(task.model, train_split.input_shape, train_split.n_classes, **task.model_options)
    if task.init == "he_uniform":
        models.he_uniform_(model)
    monitor = RotationMonitor(model)
    recorders = {name: RECORDERS[name][0](model, task) for name in record}
    schedule = {
        "epochs": task.epochs,
        "batch_size": task.batch_size,
        "milestones": task.milestones,
        "gamma": task.gamma,
        "augment": task.augment,
    }
    config = train.TrainConfig(seed=seed, device=device, **{**schedule, **settings})
    result = train.fit(
        model,
        train_split,
        test_split,
        config,
        callbacks=[monitor, *(r for n, r in recorders.items() if not RECORDERS[n][1]), *callbacks],
        step_callbacks=[r for n, r in recorders.items() if RECORDERS[n][1]],
        optimizer=optimizer(model) if optimizer else None,
    )
    return Trained(model, result, monitor, recorders)


def moment_spread(history: dict[int, dict[str, list[float]]]) -> tuple[float, float]:
    """(across, within), in decades, at the last epoch of a :class:`SecondMoments` history:
    across = log10(P90 / P10) over layers of each layer's median second moment; within = the
    median over layers of log10(p90 / p10) over the layer's own entries (thesis Fig. 4.7: the
    estimates vary much more across layers than within one)."""
    last = history[max(history)]
    if not last:
        raise UserError("no second moments recorded (the optimizer keeps none)")
    p10, p50, p90 = (
        np.log10(np.maximum(np.asarray(v), np.finfo(float).tiny)) for v in zip(*last.values(), strict=True)
    )
    lo, hi = np.percentile(p50, (10, 90))
    return float(hi - lo), float(np.median(p90 - p10))


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration of a ``results.csv`` (in its order): the mean over seeds of
    every number (a diverged run's test accuracy counted as 0), ``test_acc_sd`` (the standard
    deviation over seeds), ``seeds``, ``diverged`` (runs that did not finish) and ``delta_eta``
    = mean test accuracy minus the best mean. What the verdicts and the README read."""
    numbers = [c for c in table.columns if c not in ("config", "status", "seed", "delta_eta")]
    table = table.assign(**{c: pd.to_numeric(table[c], errors="coerce") for c in numbers})  # all-None: NaN
    table["test_acc"] = table["test_acc"].fillna(0.0)
    groups = table.groupby("config", sort=False)
    summary = groups[numbers].mean()
    summary["test_acc_sd"] = groups["test_acc"].std(ddof=1).fillna(0.0)  # one seed: 0
    summary["seeds"] = groups.size()
    summary["diverged"] = groups["status"].apply(lambda s: int((s != "done").sum()))
    summary["delta_eta"] = summary["test_acc"] - summary["test_acc"].max()
    return summary.reset_index()


HPARAMS = ("config", "seed")  # the grid keys of a layer-rotation study: a configuration's label and the seed
OPTIONS = ("study", "task", "epochs", "data_options", "model_options")
# what a run's result depends on in its task (the rest are the studies' settings)
TASK_FIELDS = tuple(f.name for f in fields(Task) if f.compare)  # all but its note
RECORDED = ("first_loss", "last_loss", "rotation_mean", "rotation_min", "moments_across", "moments_within")


def task_of(options: dict[str, Any], allowed: tuple[str, ...] = OPTIONS) -> Task:
    """The task a study's ``options`` name (``task``, default ``cpu``), trained for
    ``epochs`` when given (:meth:`Task.with_epochs`), with ``data_options`` and
    ``model_options`` over its own (a smaller experiment, say); an option outside
    ``allowed`` is refused."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UserError(f"unknown option {unknown[0]!r}; allowed: {', '.join(allowed)}")
    task = TASKS[options.get("task", "cpu")]
    if options.get("epochs") is not None:
        task = task.with_epochs(int(options["epochs"]))
    return replace(
        task,
        data_options={**task.data_options, **options.get("data_options", {})},
        model_options={**task.model_options, **options.get("model_options", {})},
    )


def settings_of(options: dict[str, Any]) -> StudySettings:
    """The settings of the thesis's studies on the task ``options`` name (``task``, default
    ``cpu``; :data:`~clusterprior.presets.tasks.STUDY_SETTINGS`), for its ``epochs`` when given."""
    settings = STUDY_SETTINGS[options.get("task", "cpu")]
    return settings if options.get("epochs") is None else settings.with_epochs(int(options["epochs"]))


def task_from(fields: dict[str, Any]) -> Task:
    """The task of a run's config (its :data:`TASK_FIELDS`, as JSON gives them back)."""
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return Task(**values)


def configure(hparams: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """One run's config (the engine's contract, :mod:`clusterprior.study.experiment`): the
    task's fields that decide the result, the configuration (label, training settings,
    recorders) of ``options["study"]`` (default ``exploration``) that ``hparams["config"]``
    names, and the seed of the shared initialisation."""
    task = task_of(options)
    study = options.get("study", "exploration")
    configs = {c.label: c for c in study_configs(study, settings_of(options))}
    label = hparams.get("config")
    if label not in configs:
        raise UserError(f"unknown configuration {label!r} of the {study} study; available: {', '.join(configs)}")
    chosen = configs[label]
    return {
        "task": {name: getattr(task, name) for name in TASK_FIELDS},
        "label": label,
        "train": chosen.train,
        "record": list(chosen.record),
        "seed": int(hparams.get("seed", 0)),
    }


def run(config: dict[str, Any], device: str, local: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration from its seed's initialisation (the engine's contract): returns
    its history, its numbers at the last epoch (first and last training loss, mean and minimum
    final rotation, and :func:`moment_spread` when second moments were recorded) and its curves
    (``curves.json``: the epoch-wise rotation and history, and what its recorders saw).
    ``local["data_dir"]``: the CIFAR archives (thesis tasks)."""
    task = task_from(config["task"])
    root = {"root": local["data_dir"]} if local.get("data_dir") else None
    trained = train_one(task, load_splits(task, root), config["train"], int(config["seed"]), device,
                        tuple(config["record"]))  # fmt: skip
    result, rotation = trained.result, list(trained.rotation.final.values())
    values = {
        "first_loss": result.history[0]["train_loss"],
        "last_loss": result.history[-1]["train_loss"],
        "rotation_mean": sum(rotation) / len(rotation),
        "rotation_min": min(rotation),
    }
    curves: dict[str, Any] = {"rotation": trained.rotation.history, "history": result.history}
    if "iterations" in trained.recorders:
        curves["iterations"] = trained.recorders["iterations"].rows
    moments = trained.recorders["second_moments"].history if "second_moments" in trained.recorders else {}
    if any(moments.values()):
        curves["second_moments"] = moments
        values["moments_across"], values["moments_within"] = moment_spread(moments)
    epoch = len(result.history)
    return {
        "status": result.status,
        "stop_reason": result.stop_reason,
        "history": result.history,
        "measures": [
            {"epoch": epoch, "measure": name, "layer": "all", "k": None, "value": float(value)}
            for name, value in values.items()
        ],
        "files": {"curves.json": JsonFile(curves)},
    }


def results_table(runs: pd.DataFrame, values: pd.DataFrame, configs: list[Config]) -> pd.DataFrame:
    """``results.csv``: one row per finished run of ``configs`` (by seed, then in ``configs``'
    order): seed, the configuration's columns, status, accuracies, first and last training
    loss, mean and minimum final rotation (and ``moments_across``, ``moments_within`` where
    second moments were recorded), ``delta_eta`` = test accuracy minus the best of its seed
    (a diverged run counts as 0). ``runs``: the store's runs (``config`` and ``seed``
    columns), ``values``: its model-level values."""
    order = {c.label: i for i, c in enumerate(configs)}
    columns = {c.label: c.columns for c in configs}
    wide = values.pivot_table(index="run_id", columns="measure", values="value")
    rows = []
    for run_ in runs[runs["status"].isin(("done", "diverged")) & runs["config"].isin(order)].itertuples():
        got = wide.loc[run_.id] if run_.id in wide.index else pd.Series(dtype=float)
        rows.append(
            {
                "seed": int(run_.seed),
                "config": run_.config,
                **columns[run_.config],
                "status": run_.status,
                "train_acc": run_.train_acc,
                "test_acc": run_.test_acc,
                **{name: got[name] for name in RECORDED if name in got.index and got[name] == got[name]},
            }
        )
    table = pd.DataFrame(sorted(rows, key=lambda r: (r["seed"], order[r["config"]])))
    accuracy = pd.to_numeric(table["test_acc"]).fillna(0.0)  # a diverged run: no better than nothing
    table["delta_eta"] = accuracy - accuracy.groupby(table["seed"]).transform("max")
    return table


def figures(curves: dict[str, dict]) -> dict[str, Any]:
    """The figures of one seed's curves (configuration label -> its ``curves.json``), by file
    name: ``rotation_curves.png`` (Fig. 4.1's panels, one per configuration),
    ``loss_curves.png`` (Fig. 4.2) and, where recorded, ``first_epoch.png`` (Fig. 4.4) and
    ``second_moments.png`` (Fig. 4.7; numbered when several configurations recorded them)."""
    from clusterprior.report import figures as draw

    drawn = {}
    fig, flat = draw.panels(len(curves), columns=4, size=(4.0, 3.2))
    for ax, (label, curve) in zip(flat, curves.items(), strict=True):
        draw.rotation_curves(curve["rotation"], label, ax=ax)
    fig.suptitle("Layer rotation curves (thesis Fig. 4.1)")
    fig.tight_layout()
    drawn["rotation_curves.png"] = fig
    drawn["loss_curves.png"] = draw.loss_curves(
        {k: c["history"] for k, c in curves.items()}, "Training loss across configurations (Fig. 4.2)"
    )
    iterations = {k: c["iterations"] for k, c in curves.items() if "iterations" in c}
    if iterations:
        title = "Layer rotation and batch accuracy, every step of epoch 1 (Fig. 4.4)"
        drawn["first_epoch.png"] = draw.first_epoch(iterations, title)
    recorded = [label for label, curve in curves.items() if "second_moments" in curve]
    for i, label in enumerate(recorded):
        title = f"{label}: second-moment estimates per layer, 10th/50th/90th percentiles (Fig. 4.7)"
        name = "second_moments.png" if len(recorded) == 1 else f"second_moments_{i + 1}.png"
        drawn[name] = draw.second_moments(curves[label]["second_moments"], title)
    return drawn


# ---- the thesis's studies (thesis Ch. 4, Figs. 4.3-4.8) on a task's schedule ------------------------

LAYCA = Config("SGD + Layca (3^-3)", {"optimizer": "sgd-layca", "lr": LAYCA_RATES["sgd"]})
PLAIN, DECAYED = "SGD", "SGD + weight decay"


def sgd_decay(settings: StudySettings) -> Config:
    """SGD + weight decay on a task: its vanilla SGD, weight decay and ``decay_schedule``."""
    return Config(DECAYED, {**settings.sgd, "weight_decay": settings.weight_decay, **settings.decay_schedule})


def _lr_configs(settings: StudySettings) -> list[Config]:
    """``lr`` (Figs. 4.3-4.4): the task's vanilla SGD at 3^-4 ... 3^0, each recording its first
    epoch step by step, and SGD + Layca."""
    rates = [
        Config(f"SGD lr 3^{k}", {**settings.sgd, "lr": 3.0**k}, {"log3_lr": k}, record=("iterations",))
        for k in (-4, -3, -2, -1, 0)
    ]
    return [*rates, LAYCA]


def _weight_decay_configs(settings: StudySettings) -> list[Config]:
    """``weight-decay`` (Fig. 4.5): the task's SGD without and with weight decay (with the task's
    ``decay_schedule``), SGD + Layca."""
    return [Config(PLAIN, settings.sgd), sgd_decay(settings), LAYCA]


def _warmup_configs(settings: StudySettings) -> list[Config]:
    """``warmup`` (Fig. 4.6): SGD + weight decay at the task's warm-up rate, warmed up linearly
    from a 10x smaller rate over each of the task's warm-up lengths, and SGD + Layca without
    warm-up."""
    warm = {**settings.sgd, "lr": settings.warmup_lr, "weight_decay": settings.weight_decay, "warmup_start": 0.1}
    runs = [
        Config(
            f"SGD + weight decay, lr 3^{log3_of(settings.warmup_lr):g}, warm-up {w}",
            {**warm, "warmup_epochs": w},
            {"warmup_epochs": w},
        )
        for w in settings.warmup_epochs
    ]
    return [*runs, LAYCA]


def _adaptive_configs(settings: StudySettings) -> list[Config]:
    """``adaptive`` (Figs. 4.7-4.8): each of the task's adaptive methods alone (with the task's
    adaptive weight decay; the first recording its second moments) and with Layca at the
    thesis's default rate (without weight decay: Layca keeps every kernel's norm), and SGD +
    weight decay."""
    if not settings.adaptive:
        raise UserError("the thesis runs no adaptive method on this task; the adaptive study needs one")
    decay = {"weight_decay": settings.adaptive_weight_decay} if settings.adaptive_weight_decay else {}
    alone = [
        Config(m, {"optimizer": m, "lr": lr, **decay}, record=("second_moments",) if i == 0 else ())
        for i, (m, lr) in enumerate(settings.adaptive.items())
    ]
    layca = [Config(f"{m} + Layca", {"optimizer": f"{m}-layca", "lr": LAYCA_RATES[m]}) for m in settings.adaptive]
    return [*alone, *layca, sgd_decay(settings)]


def _row(table: pd.DataFrame, label: str) -> pd.Series:
    return table[table["config"] == label].iloc[0]


def _tau(x: pd.Series, y: pd.Series) -> float:
    """Kendall's tau of ``x`` and ``y`` (nan for fewer than two pairs)."""
    from scipy.stats import kendalltau

    return float(kendalltau(x, y).statistic) if len(x) > 1 else math.nan


def _exploration_claims(table: pd.DataFrame) -> list[dict[str, str]]:
    """Fig. 4.1-4.2. Uniform rates are best: alpha = 0 has the highest test accuracy among the
    profiles at rho(0) = 3^-3 (ties count). The best initial rate is 3^-3: it has the highest
    test accuracy among the rates at alpha = 0 (ties count). Larger rotations generalize
    better: Kendall's tau of the final mean rotation and the test accuracy over every
    configuration is positive."""
    at_3 = table["log3_rho0"] == -3
    uniform = table["alpha"] == 0
    reference = float(table[at_3 & uniform]["test_acc"].iloc[0])  # alpha = 0, rho(0) = 3^-3
    other_alpha = table[at_3 & ~uniform].loc[lambda t: t["test_acc"].idxmax()]
    other_rate = table[uniform & ~at_3].loc[lambda t: t["test_acc"].idxmax()]
    tau = _tau(table["rotation_mean"], table["test_acc"])
    return [
        claim(
            "uniform rotation rates are best: among the alpha profiles at rho(0) = 3^-3, alpha = 0 has the "
            "highest test accuracy (ties count)",
            f"alpha = 0 {reference:.4f}; the best other, alpha {other_alpha['alpha']:g}, {other_alpha['test_acc']:.4f}",
            reference >= other_alpha["test_acc"],
        ),
        claim(
            "the best initial rate is rho(0) = 3^-3, as on all five of the thesis's tasks: it has the highest "
            "test accuracy among the rates at alpha = 0 (ties count)",
            f"3^-3 {reference:.4f}; the best other, 3^{other_rate['log3_rho0']:g}, {other_rate['test_acc']:.4f}",
            reference >= other_rate["test_acc"],
        ),
        claim(
            "the larger the layer rotations, the better the generalization: Kendall tau of final mean rotation "
            "and test accuracy over all configurations is positive",
            f"tau {tau:.2f} over {len(table)} configurations",
            tau > 0,
        ),
    ]


def _lr_claims(table: pd.DataFrame) -> list[dict[str, str]]:
    """Fig. 4.3. Larger rotation is better, provided the loss improves: Kendall's tau of the
    final mean rotation and the test accuracy over the SGD rates whose last loss is at most
    half their first is positive."""
    sgd = table[table["config"].str.startswith("SGD lr") & (table["last_loss"] < table["first_loss"] / 2)]
    tau = _tau(sgd["rotation_mean"], sgd["test_acc"])
    return [
        claim(
            "larger rotation is better, provided the loss improves: Kendall tau of final mean rotation and "
            "test accuracy over the SGD rates whose loss at least halved is positive",
            f"tau {tau:.2f} over {len(sgd)} rates",
            tau > 0,
        )
    ]


def _weight_decay_claims(table: pd.DataFrame) -> list[dict[str, str]]:
    """Fig. 4.5. Weight decay acts through rotation: with it, SGD's final mean rotation and
    test accuracy are both higher. Layca can replace it: SGD + Layca's test accuracy is within
    1 point of SGD + weight decay's."""
    plain, decay, layca = (_row(table, label) for label in (PLAIN, DECAYED, LAYCA.label))
    return [
        claim(
            "weight decay acts through rotation: with it, SGD's layers rotate further and it generalizes better",
            f"rotation {plain['rotation_mean']:.2f} -> {decay['rotation_mean']:.2f}, "
            f"test acc {plain['test_acc']:.4f} -> {decay['test_acc']:.4f}",
            decay["rotation_mean"] > plain["rotation_mean"] and decay["test_acc"] > plain["test_acc"],
        ),
        claim(
            "so Layca can replace it: SGD + Layca within 1 point of SGD + weight decay",
            f"{100 * abs(layca['test_acc'] - decay['test_acc']):.2f} points",
            abs(layca["test_acc"] - decay["test_acc"]) <= 0.01,
        ),
    ]


def _warmup_claims(table: pd.DataFrame) -> list[dict[str, str]]:
    """Fig. 4.6. Warm-up tames a large rate: the best warm-up's test accuracy beats the run
    without. Layca needs none: SGD + Layca without warm-up beats SGD without it."""
    runs = table[table["config"].str.contains("warm-up")]
    cold = runs[runs["warmup_epochs"] == 0].iloc[0]
    warm = runs[runs["warmup_epochs"] > 0]["test_acc"].max()
    layca = _row(table, LAYCA.label)
    return [
        claim(
            "warm-up tames a large rate: the best warm-up beats none",
            f"test acc {cold['test_acc']:.4f} without, {warm:.4f} with",
            warm > cold["test_acc"],
        ),
        claim(
            "Layca needs no warm-up: SGD + Layca without it beats SGD without it",
            f"test acc {layca['test_acc']:.4f} against {cold['test_acc']:.4f}",
            layca["test_acc"] > cold["test_acc"],
        ),
    ]


def _adaptive_claims(table: pd.DataFrame) -> list[dict[str, str]]:
    """Figs. 4.7-4.8. Each adaptive method's final mean rotation is below SGD + weight decay's.
    Under Layca each reaches SGD + weight decay's test accuracy, within 1 point. When the
    first method recorded its second moments: their spread across layers (log10 P90/P10 of
    the layers' medians) is at least twice the median spread within a layer."""
    sgd = _row(table, DECAYED)
    methods = [m for m in table["config"] if f"{m} + Layca" in set(table["config"])]
    if not methods:
        raise UserError("the table holds no adaptive method with its Layca run")
    less = [m for m in methods if _row(table, m)["rotation_mean"] < sgd["rotation_mean"]]
    recovered = [m for m in methods if _row(table, f"{m} + Layca")["test_acc"] >= sgd["test_acc"] - 0.01]
    rows = [
        claim(
            "adaptive methods rotate less than SGD + weight decay (final mean rotation, each method)",
            f"{len(less)} of {len(methods)} ({', '.join(less) or 'none'})",
            len(less) == len(methods),
        ),
        claim(
            "Layca recovers SGD's generalization: each adaptive method under Layca reaches SGD + weight "
            "decay's test accuracy, within 1 point",
            f"{len(recovered)} of {len(methods)} ({', '.join(recovered) or 'none'}); SGD + weight decay "
            f"{sgd['test_acc']:.4f}",
            len(recovered) == len(methods),
        ),
    ]
    first = _row(table, methods[0])
    if "moments_across" in table and pd.notna(first["moments_across"]):
        rows.append(
            claim(
                f"{methods[0]}'s second-moment estimates vary much more across layers than within one (Fig. 4.7): "
                "at the last epoch, the spread log10(P90 / P10) over layers of the layers' medians is at least "
                "twice the median over layers of the spread log10(p90 / p10) within a layer",
                f"{first['moments_across']:.2f} across, {first['moments_within']:.2f} within (decades)",
                first["moments_across"] >= 2 * first["moments_within"],
            )
        )
    return rows


@dataclass(frozen=True)
class Study:
    """One study of thesis Ch. 4 on a task's schedule: the configurations it trains (from the
    settings the thesis gives the studies on the task, :data:`~clusterprior.presets.tasks.STUDY_SETTINGS`),
    and its claims (verdict rows) read from its summary table (the means over seeds, one row
    per configuration; each function states its rules)."""

    configs: Callable[[StudySettings], list[Config]]
    claims: Callable[[pd.DataFrame], list[dict[str, str]]]


STUDIES: Registry[Study] = Registry(
    "study",
    {
        "exploration": Study(lambda settings: exploration(), _exploration_claims),
        "lr": Study(_lr_configs, _lr_claims),
        "weight-decay": Study(_weight_decay_configs, _weight_decay_claims),
        "warmup": Study(_warmup_configs, _warmup_claims),
        "adaptive": Study(_adaptive_configs, _adaptive_claims),
    },
)


def study_configs(study: str, settings: StudySettings) -> list[Config]:
    """The configurations of ``study`` (:data:`STUDIES`) on a task, from the studies'
    ``settings`` on it."""
    return STUDIES[study].configs(settings)


def verdicts(study: str, table: pd.DataFrame) -> pd.DataFrame:
    """The thesis's claims of ``study`` (thesis Ch. 4), each with the numbers it reads and its
    verdict by its rule, from ``table``: one row per configuration (``summary.csv``: the means
    over seeds); a diverged run's missing test accuracy counts as 0 (no better than nothing)."""
    return pd.DataFrame(STUDIES[study].claims(table.fillna({"test_acc": 0.0})))
