"""``clusterprior measure``: the catalogue's measures of one trained model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from clusterprior.cli.common import data_options
from clusterprior.errors import UserError
from clusterprior.measures.catalogue import CATALOGUE, INTRACLASS, Settings

DEFAULT = Settings()
FORMATS = ("table", "json", "csv")


def measure(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by 'clusterprior train'."),
    data: str | None = typer.Option(None, help="Data set (default: the one the checkpoint was trained on)."),
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
    data_dir: str | None = typer.Option(None, help="Folder with the CIFAR archives or (Fashion-)MNIST idx files."),
    data_option: list[str] = typer.Option([], "--data-option", "-o", help="Data set option KEY=VALUE (repeatable)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Compute the intraclass clustering measures c0-c4 (and baselines) of one trained model."""
    from clusterprior import data as data_lib
    from clusterprior.measures import measure_model
    from clusterprior.train import checkpoint as ckpt
    from clusterprior.train import resolve_device

    if format not in FORMATS:
        raise UserError(f"--format must be {', '.join(FORMATS)}, got {format!r}")
    settings = Settings(k_neuron=k_neuron, k_layer=k_layer, max_samples=max_samples, sharpness_budget=sharpness_budget)
    model, header = ckpt.load(checkpoint, device=resolve_device(device))
    trained_on = header.get("data") or {}
    name = data or trained_on.get("name")
    if not name:
        raise UserError(f"{checkpoint}: the checkpoint does not name its data set; pass --data")
    options = {
        **(trained_on.get("options", {}) if name == trained_on.get("name") else {}),
        **data_options(data_option, data_dir),
    }
    split_data = data_lib.load(name, split, **options)
    keys = [m.strip() for m in measures.split(",") if m.strip()] if measures else None
    frame = measure_model(model, split_data, keys, settings=settings)
    if format == "json":
        print(frame.to_json(orient="records", indent=2))
    elif format == "csv":
        print(frame.to_csv(index=False), end="")
    else:
        _print_tables(
            frame,
            f"intraclass clustering of {checkpoint.name} on {name} ({split}, {len(split_data)} samples)",
            settings,
        )


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
