"""One model from names to files: :func:`prepare` (data and model) and :func:`save` (the
checkpoint, ``history.csv`` and ``result.json``); ``clusterprior train`` runs these around
:func:`clusterprior.train.fit`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clusterprior import data, models
from clusterprior.data import Split
from clusterprior.errors import UserError
from clusterprior.files import write_csv, write_text
from clusterprior.models.structure import CONFIG_ATTR
from clusterprior.train import checkpoint
from clusterprior.train.config import TrainConfig
from clusterprior.train.loop import TrainResult

FORMATS = ("safetensors", "pt")


def check_format(checkpoint_format: str) -> None:
    """A :class:`UserError` unless ``checkpoint_format`` is one of :data:`FORMATS`."""
    if checkpoint_format not in FORMATS:
        raise UserError(f"--checkpoint-format must be {' or '.join(FORMATS)}, got {checkpoint_format!r}")


def prepare(
    data_name: str, data_options: dict[str, Any], model_name: str, model_kwargs: dict[str, Any], seed: int
) -> tuple[Split, Split, nn.Module]:
    """The train and test splits of data set ``data_name`` and model ``model_name`` built
    for them, its initialisation seeded with ``seed``."""
    train_split = data.load(data_name, "train", **data_options)
    test_split = data.load(data_name, "test", **data_options)
    torch.manual_seed(seed)
    return (
        train_split,
        test_split,
        models.build(model_name, train_split.input_shape, train_split.n_classes, **model_kwargs),
    )


def save(
    out: Path,
    model: nn.Module,
    result: TrainResult,
    config: TrainConfig,
    data_name: str,
    data_options: dict[str, Any],
    checkpoint_format: str = "safetensors",
) -> dict[str, Path]:
    """Write ``out/model.<format>`` (with the data set and the training config in its
    header), ``out/history.csv`` and ``out/result.json`` (status, final metrics, neurons per
    activation layer); returns their paths."""
    check_format(checkpoint_format)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "checkpoint": out / f"model.{checkpoint_format}",
        "history": out / "history.csv",
        "result": out / "result.json",
    }
    checkpoint.save(
        files["checkpoint"],
        model,
        extra={"data": {"name": data_name, "options": data_options}, "train": config.to_dict()},
    )
    write_csv(files["history"], result.frame(), index=False)
    input_shape = getattr(model, CONFIG_ATTR)["input_shape"]
    summary = {
        "status": result.status,
        "stop_reason": result.stop_reason,
        "final": result.final,
        "neurons": models.neuron_counts(model, input_shape),
        "checkpoint": files["checkpoint"].name,
    }
    write_text(files["result"], json.dumps(summary, indent=2))
    return files
