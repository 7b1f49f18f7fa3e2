"""Training: ``fit(model, train, test, TrainConfig(...), callbacks)``, checkpoints,
augmentation and the learning-rate schedule."""

from clusterprior.train import checkpoint
from clusterprior.train.augment import augment
from clusterprior.train.config import TrainConfig, lr_at
from clusterprior.train.layca import Layca, alpha_multipliers
from clusterprior.train.loop import (
    Callback,
    EpochState,
    StepState,
    TrainResult,
    evaluate,
    fit,
    make_optimizer,
    per_example_loss,
    predict,
    resolve_device,
    steps_per_epoch,
)

__all__ = [
    "Callback",
    "EpochState",
    "Layca",
    "TrainConfig",
    "alpha_multipliers",
    "TrainResult",
    "augment",
    "checkpoint",
    "evaluate",
    "fit",
    "lr_at",
    "make_optimizer",
    "per_example_loss",
    "predict",
    "resolve_device",
    "StepState",
    "steps_per_epoch",
]
