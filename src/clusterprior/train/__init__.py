"""Training: ``fit(model, train, test, TrainConfig(...), callbacks)``, checkpoints,
augmentation and the learning-rate schedule."""

from clusterprior.train import checkpoint
from clusterprior.train.config import TrainConfig, lr_at
from clusterprior.train.layca import Layca, alpha_multipliers
from clusterprior.train.loop import (
    Callback,
    EpochState,
    StepState,
    TrainResult,
    evaluate,
    fit,
    predict,
    recalibrate_batchnorm,
)

__all__ = [
    "Callback",
    "EpochState",
    "Layca",
    "TrainConfig",
    "alpha_multipliers",
    "TrainResult",
    "checkpoint",
    "evaluate",
    "fit",
    "lr_at",
    "predict",
    "recalibrate_batchnorm",
    "StepState",
]
