"""``clusterprior train``: one model. Defaults and help come from :class:`TrainConfig`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from clusterprior.cli.common import data_options, epoch_bar, epoch_progress, parse_milestones, step_bar
from clusterprior.train.config import HELP, TrainConfig

DEFAULT = TrainConfig()


def _history_table(history: list[dict[str, float]]) -> Table:
    table = Table(title="training history")
    cols = [
        c
        for c in (
            "epoch",
            "lr",
            "train_loss",
            "penalty",
            "train_acc",
            "fit_loss",
            "fit_acc",
            "test_loss",
            "test_acc",
            "seconds",
        )
        if any(c in row for row in history)
    ]
    for c in cols:
        table.add_column(c, justify="right")
    for row in history:
        table.add_row(*(str(row[c]) if c == "epoch" else (f"{row[c]:.4g}" if c in row else "") for c in cols))
    return table


def _neuron_table(counts: dict[str, int]) -> Table:
    table = Table(title="activation layers")
    table.add_column("layer")
    table.add_column("neurons", justify="right")
    for name, n in counts.items():
        table.add_row(name, str(n))
    return table


def train(
    data: str = typer.Option("mnist1d-hier", help="Data set name or path to an .npz file."),
    model: str = typer.Option("mlp", help="mlp, cnn, vgg or wrn."),
    out: Path = typer.Option(Path("runs/train"), help="Output folder (checkpoint, history.csv, result.json)."),
    epochs: int = typer.Option(DEFAULT.epochs, help=HELP["epochs"]),
    batch_size: int = typer.Option(DEFAULT.batch_size, help=HELP["batch_size"]),
    optimizer: str = typer.Option(DEFAULT.optimizer, help=HELP["optimizer"]),
    lr: float = typer.Option(DEFAULT.lr, help=HELP["lr"]),
    momentum: float = typer.Option(DEFAULT.momentum, help=HELP["momentum"]),
    weight_decay: float = typer.Option(DEFAULT.weight_decay, help=HELP["weight_decay"]),
    milestones: str = typer.Option("", help=HELP["milestones"] + ", comma-separated, e.g. 150,230,240"),
    gamma: float = typer.Option(DEFAULT.gamma, help=HELP["gamma"]),
    warmup: int = typer.Option(DEFAULT.warmup_epochs, help=HELP["warmup_epochs"]),
    augment: bool = typer.Option(DEFAULT.augment, "--augment/--no-augment", help=HELP["augment"]),
    dropout: float = typer.Option(0.0, help="Dropout rate."),
    width: float = typer.Option(1.0, help="Width factor."),
    depth: float = typer.Option(1.0, help="Depth factor."),
    batchnorm: bool = typer.Option(True, "--batchnorm/--no-batchnorm", help="BatchNorm before every ReLU."),
    stop_loss: float | None = typer.Option(DEFAULT.stop_loss, help=HELP["stop_loss"]),
    stop_rule: str = typer.Option(DEFAULT.stop_rule, help=HELP["stop_rule"]),
    seed: int = typer.Option(DEFAULT.seed, help="Seed of initialisation, data order, augmentation and dropout."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    data_dir: str | None = typer.Option(None, help="Folder with the CIFAR archives or (Fashion-)MNIST idx files."),
    data_option: list[str] = typer.Option([], "--data-option", "-o", help="Data set option KEY=VALUE (repeatable)."),
    checkpoint_format: str = typer.Option("safetensors", help="safetensors or pt."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress or tables."),
) -> None:
    """Train one model and save its checkpoint and history."""
    from clusterprior import train as train_lib
    from clusterprior.train import run
    from clusterprior.train.loop import resolve_device, steps_per_epoch

    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        milestones=parse_milestones(milestones),
        gamma=gamma,
        warmup_epochs=warmup,
        augment=augment,
        stop_loss=stop_loss,
        stop_rule=stop_rule,
        seed=seed,
        device=str(resolve_device(device)),
    )
    run.check_format(checkpoint_format)  # before training, not after
    options = data_options(data_option, data_dir)
    console = Console(quiet=quiet)
    kwargs = {"width": width, "depth": depth, "dropout": dropout, "batchnorm": batchnorm}
    train_split, test_split, net = run.prepare(data, options, model, kwargs, seed)
    console.print(
        f"{data}: {len(train_split)} train / {len(test_split)} test, input {list(train_split.input_shape)}, "
        f"{train_split.n_classes} classes; model {model}, {sum(p.numel() for p in net.parameters())} parameters"
    )
    progress = epoch_progress(console)
    with progress:
        per_epoch = epoch_bar(progress, config.epochs, f"training {model}")
        per_step = step_bar(progress, steps_per_epoch(len(train_split), config.batch_size))
        result = train_lib.fit(net, train_split, test_split, config, callbacks=[per_epoch], step_callbacks=[per_step])
    files = run.save(out, net, result, config, data, options, checkpoint_format)
    counts = json.loads(files["result"].read_text())["neurons"]
    console.print(_history_table(result.history))
    console.print(_neuron_table(counts))
    console.print(f"{len(counts)} activation layers, {sum(counts.values())} neurons")
    console.print(
        f"status: {result.status} ({result.stop_reason}); test accuracy "
        f"{result.final.get('test_acc', float('nan')):.4f}; saved {', '.join(str(f) for f in files.values())}"
    )
