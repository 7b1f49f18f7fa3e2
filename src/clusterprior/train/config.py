"""Training hyperparameters, validated, and the learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from clusterprior.errors import UserError
from clusterprior.train.augment import KEYS as AUGMENT_KEYS

LOSSES = ("ce", "bce")
OPTIMIZERS = ("sgd", "adam", "sgd-layca", "sgd-amom-layca", "adam-layca", "rmsprop-layca", "adagrad-layca")


@dataclass
class TrainConfig:
    """Everything that decides a training run besides the model and the data.

    The learning rate at a step of epoch ``e`` (1-based) is
    ``lr * gamma ** #{m in milestones: m < e} * warm``, where ``warm`` rises
    linearly from ``warmup_start`` to 1 over the first ``warmup_epochs`` epochs
    (per step). ``stop_loss`` ends training once the loss of the whole training
    split (eval mode, no augmentation, checked after each epoch) falls below it. ``augment_options`` override the data set's defaults.
    """

    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.2
    warmup_epochs: int = 0
    warmup_start: float = 0.1
    augment: bool = False
    augment_options: dict[str, Any] = field(default_factory=dict)
    stop_loss: float | None = None
    seed: int = 0
    device: str = "cpu"
    layca_alpha: float = 0.0  # Layca optimizers: layer-wise rate profile (SPEC.md Eq. 4.2); 0 = uniform
    channels_last: bool = True
    amp: bool = True  # bf16 autocast of forward passes on CUDA (ignored on CPU)
    eval_batch_size: int = 1024
    test_every: int = 1  # evaluate the test split every N epochs (and always at the last); 0 = at the last only
    loss: str = "ce"  # "ce": softmax cross-entropy; "bce": one sigmoid output, binary cross-entropy

    def __post_init__(self) -> None:
        self.milestones = tuple(int(m) for m in self.milestones)
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 2, "batch_size must be >= 2 (BatchNorm needs two samples)"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (math.isfinite(self.lr) and self.lr > 0, "lr must be a positive number"),
            (0.0 <= self.momentum < 1.0, "momentum must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (all(m >= 1 for m in self.milestones), "milestones must be epochs >= 1"),
            (self.gamma > 0, "gamma must be > 0"),
            (self.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
            (0.0 < self.warmup_start <= 1.0, "warmup_start must be in (0, 1]"),
            (self.stop_loss is None or self.stop_loss > 0, "stop_loss must be > 0"),
            (set(self.augment_options) <= set(AUGMENT_KEYS), f"augment options are {', '.join(AUGMENT_KEYS)}"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (self.test_every >= 0, "test_every must be >= 0"),
            (-1.0 < self.layca_alpha < 1.0, "layca_alpha must be in (-1, 1)"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "milestones": list(self.milestones)}


def lr_at(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Learning rate for ``step`` (0-based) of ``epoch`` (1-based); see :class:`TrainConfig`."""
    decay = config.gamma ** sum(1 for m in config.milestones if m < epoch)
    warm = 1.0
    if config.warmup_epochs > 0:
        progress = ((epoch - 1) * steps_per_epoch + step) / (config.warmup_epochs * steps_per_epoch)
        warm = config.warmup_start + (1.0 - config.warmup_start) * min(1.0, progress)
    return config.lr * decay * warm
