"""``clusterprior measure``: the catalogue's measures of one trained model."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from clusterprior.cli.common import data_options
from clusterprior.errors import UserError
from clusterprior.measures.catalogue import CATALOGUE, INTRACLASS
from clusterprior.measures.inputs import Settings
from clusterprior.probe import DEFAULT_KINDS

DEFAULT = Settings()
FORMATS = ("table", "json", "csv")


def measure(
    checkpoint: Path | None = typer.Argument(
        None, help="A checkpoint written by 'clusterprior train' (or use --model)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="A model defined elsewhere: MODULE:FACTORY or FILE.py:FACTORY, e.g. mypkg.nets:resnet18."
    ),
    model_kwargs: str | None = typer.Option(
        None, help="--model's factory arguments as JSON, e.g. '{\"num_classes\": 10}'."
    ),
    weights: Path | None = typer.Option(None, help="--model's weights: .pt/.pth (read weights-only) or .safetensors."),
    data: str | None = typer.Option(
        None,
        help="A data set name, an .npz file, or an image folder DIR/class/[subclass/]*.png (streamed). "
        "Default: the one the checkpoint was trained on.",
    ),
    split: str = typer.Option("train", help="train or test (the thesis measures the training set)."),
    measures: str | None = typer.Option(
        None,
        help=f"Comma-separated measures (default: {', '.join(INTRACLASS)}, "
        f"those the data supports); the catalogue: {', '.join(CATALOGUE)}.",
    ),
    format: str = typer.Option("table", "--format", help=", ".join(FORMATS) + "."),
    k_neuron: int = typer.Option(DEFAULT.k_neuron, help="Top-k neurons for c1 and c3."),
    k_layer: int = typer.Option(DEFAULT.k_layer, help="Top-k layers for c2 and c4 (thesis: 1 for VGG, 5 for ResNets)."),
    max_samples: int | None = typer.Option(DEFAULT.max_samples, help="c4: samples for the whole-set spread."),
    sharpness_budget: float = typer.Option(
        DEFAULT.sharpness_budget, help="Sharpness baselines: fraction (0, 1] of the thesis's draws/steps."
    ),
    batch_size: int = typer.Option(DEFAULT.batch_size, help="Samples per forward pass."),
    layers: str | None = typer.Option(
        None,
        help="Comma-separated patterns of the call sites to probe (e.g. 'layer*.relu*'); default: every activation.",
    ),
    activations: str | None = typer.Option(
        None, help=f"Comma-separated activation kinds to probe (default: {', '.join(DEFAULT_KINDS)})."
    ),
    tokens: str = typer.Option(
        "max", help="How a [batch, tokens, channels] activation is reduced: max, mean or first."
    ),
    stream: bool = typer.Option(
        False, "--stream", help="Stream a data set held in memory too (an image folder always streams)."
    ),
    data_dir: str | None = typer.Option(None, help="Folder with the CIFAR archives or (Fashion-)MNIST idx files."),
    data_option: list[str] = typer.Option([], "--data-option", "-o", help="Data set option KEY=VALUE (repeatable)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Compute the intraclass clustering measures c0-c4 (and baselines) of one trained model."""
    from clusterprior import measures as measures_lib
    from clusterprior.train.loop import resolve_device

    if format not in FORMATS:
        raise UserError(f"--format must be {', '.join(FORMATS)}, got {format!r}")
    settings = Settings(
        k_neuron=k_neuron,
        k_layer=k_layer,
        max_samples=max_samples,
        sharpness_budget=sharpness_budget,
        batch_size=batch_size,
    )
    target = resolve_device(device)
    net, trained_on, label = _model(checkpoint, model, model_kwargs, weights, str(target))
    source, description = _data(data, trained_on, split, data_option, data_dir)
    keys = _list(measures)
    probing = measures_lib.Probing(_list(layers), _list(activations), tokens)
    console = Console(stderr=True, quiet=quiet or format != "table" and not sys.stderr.isatty())
    with pass_progress(console, -(-len(source) // batch_size)) as progress:
        frame = measures_lib.measure(
            net, source, keys, settings=settings, probing=probing, stream=stream or None, progress=progress
        )
    if format == "json":
        print(frame.to_json(orient="records", indent=2))
    elif format == "csv":
        print(frame.to_csv(index=False), end="")
    else:
        _print_tables(frame, f"intraclass clustering of {label} on {description}", settings)


def _list(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _model(
    checkpoint: Path | None, spec: str | None, kwargs: str | None, weights: Path | None, device: str
) -> tuple[torch.nn.Module, dict[str, Any], str]:
    """The model, the data set it was trained on (a checkpoint's header, else empty), its label."""
    from clusterprior import models
    from clusterprior.train import checkpoint as ckpt

    if (checkpoint is None) == (spec is None):
        raise UserError("give either a CHECKPOINT or --model MODULE:FACTORY (with --weights)")
    if spec is None:
        if weights is not None or kwargs is not None:
            raise UserError("--weights and --model-kwargs go with --model")
        assert checkpoint is not None
        net, header = ckpt.load(checkpoint, device=device)
        return net, header.get("data") or {}, checkpoint.name
    try:
        arguments = json.loads(kwargs) if kwargs else {}
    except json.JSONDecodeError as e:
        raise UserError(f"--model-kwargs is not JSON: {e}") from None
    if not isinstance(arguments, dict):
        raise UserError("--model-kwargs must be a JSON object")
    net = models.build_external(spec, weights, arguments).to(device)
    return net, {}, spec


def _data(
    name: str | None, trained_on: dict[str, Any], split: str, pairs: list[str], data_dir: str | None
) -> tuple[Any, str]:
    """The data to measure on: a Split, or an image folder (streamed), and its description."""
    from clusterprior import data as data_lib

    name = name or trained_on.get("name")
    if not name:
        raise UserError("which data? pass --data (a data set name, an .npz file or an image folder)")
    if Path(name).is_dir():
        folder = data_lib.ImageFolder(name)
        return folder, f"{name} ({len(folder)} images)"
    options = {
        **(trained_on.get("options", {}) if name == trained_on.get("name") else {}),
        **data_options(pairs, data_dir),
    }
    loaded = data_lib.load(name, split, **options)
    return loaded, f"{name} ({split}, {len(loaded)} samples)"


@contextmanager
def pass_progress(console: Console, batches: int) -> Iterator[Callable[[str], None]]:
    """A progress bar over the streamed passes of ``batches`` batches each (a bar per pass)."""
    with Progress(
        TextColumn("measuring: {task.description}"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    ) as progress:
        bars: dict[str, Any] = {}

        def advance(label: str) -> None:
            if label not in bars:
                bars[label] = progress.add_task(label, total=batches)
            progress.update(bars[label], advance=1)

        yield advance


def _print_tables(frame: pd.DataFrame, title: str, settings: Settings) -> None:
    """The model-level values with their descriptions, then the per-layer values."""
    console = Console()
    whole = frame[frame["layer"] == "all"]
    table = Table(title=title)
    for col in ("measure", "value", "k", "description"):
        table.add_column(col, justify="right" if col in ("value", "k") else "left")
    for row in whole.itertuples():
        table.add_row(
            row.measure, f"{row.value:.4f}", "" if pd.isna(row.k) else str(row.k), CATALOGUE[row.measure].description
        )
    console.print(table)
    layers = frame[frame["layer"] != "all"].pivot_table(index="layer", columns="measure", values="value", sort=False)
    if not layers.empty:
        per_layer = Table(title=f"per layer (c1, c3: top-{settings.layerwise_k} neurons of the layer)")
        per_layer.add_column("layer")
        for col in layers.columns:
            per_layer.add_column(col, justify="right")
        for layer_name, values in layers.iterrows():
            per_layer.add_row(str(layer_name), *("" if v != v else f"{v:.4f}" for v in values))
        console.print(per_layer)
