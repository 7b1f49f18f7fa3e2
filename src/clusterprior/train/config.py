"""Training hyperparameters, validated, and the learning-rate schedule.

:class:`TrainConfig` is the one statement of every training option (its default, help and
rule): the ``train`` command, the study spec's ``[train]`` section (a subclass,
``study.spec.TrainSpec``) and the worker use it as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from pydantic import Field, ValidationInfo, field_validator

from clusterprior.options import Options
from clusterprior.train.augment import KEYS as AUGMENT_KEYS

LOSSES = ("ce", "bce")
STOP_RULES = ("clean", "running")
OPTIMIZERS = (
    "sgd",
    "adam",
    "rmsprop",
    "adagrad",
    "sgd-layca",
    "sgd-amom-layca",
    "adam-layca",
    "rmsprop-layca",
    "adagrad-layca",
)


class Rule(NamedTuple):
    """A training option's validity rule: the check of a value, and the message when it fails."""

    ok: Callable[[Any], bool]
    message: str


def option(default: Any, help: str, rule: Rule | None = None, factory: Callable[[], Any] | None = None) -> Any:
    """A :class:`TrainConfig` field: its default, its help text (the field's description) and
    its validity rule (:data:`RULES`), the one statement of each that the study spec and the
    CLI read."""
    info = Field(default_factory=factory, description=help) if factory else Field(default, description=help)
    if rule:
        info.metadata.append(rule)  # kept beside the field, read into RULES
    return info


def _at_least(low: float, why: str = "") -> Rule:
    return Rule(lambda v: v >= low, f"must be >= {low}{why}")


def _one_of(choices: tuple[str, ...]) -> Rule:
    return Rule(lambda v: v in choices, f"must be one of {', '.join(choices)}")


POSITIVE = Rule(lambda v: math.isfinite(v) and v > 0, "must be a positive number")


class TrainConfig(Options):
    """Everything that decides a training run besides the model and the data.

    The learning rate at a step of epoch ``e`` (1-based) is
    ``lr * gamma ** #{m in milestones: m < e} * warm``, where ``warm`` rises
    linearly from ``warmup_start`` to 1 over the first ``warmup_epochs`` epochs
    (per step). ``stop_loss`` ends training once the loss that ``stop_rule`` names,
    checked after each epoch, falls below it:

    - ``clean``: the loss of the whole training split in eval mode, without augmentation;
    - ``running``: the epoch's training objective as Keras logs it (``logs['loss']``, which
      the thesis author's stopping callback reads): the running mean over the epoch's batches
      of the batch loss (train mode, augmentation and dropout on) plus the weight-decay
      penalty ``(weight_decay / 2) * sum ||W||^2`` over the kernels (Conv and Linear weights).
      ``weight_decay`` is PyTorch's (the gradient gains ``weight_decay * p``), i.e. Keras's
      ``l2(lambda)`` with ``lambda = weight_decay / 2``. The thesis's Keras models regularise
      the kernels only, and so does the penalty, while the optimizers here decay every
      trainable parameter (biases and BatchNorm's scale and shift too): their decay of the
      others is left out of the objective the rule reads, as Keras would never count it (with
      BatchNorm's scales near 1 it would add about ``weight_decay / 2`` per channel).
    Each field's help and validity rule are in its declaration (:func:`option`). A config is
    frozen; a bad value is a :class:`~clusterprior.errors.UserError` naming the option.
    """

    epochs: int = option(20, "maximum epochs", _at_least(1))
    batch_size: int = option(128, "batch size", _at_least(2, " (BatchNorm needs two samples)"))
    optimizer: str = option(
        "sgd", "sgd, adam, rmsprop, adagrad, or a Layca optimizer (<base>-layca)", _one_of(OPTIMIZERS)
    )
    lr: float = option(0.05, "learning rate (Layca: the rotation rate rho)", POSITIVE)
    momentum: float = option(0.9, "SGD momentum", Rule(lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"))
    nesterov: bool = option(False, "Nesterov momentum (SGD)")
    weight_decay: float = option(0.0, "weight decay", _at_least(0))
    milestones: tuple[int, ...] = option(
        (),
        "epochs after which the rate is multiplied by gamma",
        Rule(lambda v: all(m >= 1 for m in v), "must be epochs >= 1"),
    )
    gamma: float = option(0.2, "learning-rate factor at each milestone", POSITIVE)
    warmup_epochs: int = option(0, "linear warm-up epochs", _at_least(0))
    warmup_start: float = option(
        0.1, "warm-up starts at this fraction of lr", Rule(lambda v: 0.0 < v <= 1.0, "must be in (0, 1]")
    )
    augment: bool = option(False, "data augmentation (the data set's defaults)")
    augment_options: dict[str, Any] = option(
        None,
        "augmentation parameters over the data set's defaults",
        Rule(lambda v: set(v) <= set(AUGMENT_KEYS), f"keys must be among {', '.join(AUGMENT_KEYS)}"),
        factory=dict,
    )
    stop_loss: float | None = option(
        None,
        "train until the loss that stop_rule names is below this, or for `epochs` at most",
        Rule(lambda v: v is None or v > 0, "must be > 0"),
    )
    stop_rule: str = option(
        "clean",
        "the loss stop_loss reads: clean (the whole training split, eval mode, no augmentation) or running "
        "(the epoch's running training objective with the weight-decay penalty, as Keras logs it: the thesis's rule)",
        _one_of(STOP_RULES),
    )
    seed: int = option(0, "seed of data order, augmentation and dropout (seed the initialisation before building)")
    device: str = option("cpu", "cpu or cuda")
    layca_alpha: float = option(
        0.0,
        "Layca optimizers: layer-wise rate profile (Eq. 4.2); 0 = uniform",
        Rule(lambda v: -1.0 < v < 1.0, "must be in (-1, 1)"),
    )
    channels_last: bool = option(True, "channels_last memory format for images")
    amp: bool = option(True, "bf16 autocast of forward passes on CUDA (ignored on CPU)")
    eval_batch_size: int = option(1024, "batch size of evaluation passes", _at_least(1))
    test_every: int = option(
        1, "evaluate the test split every N epochs and at the last; 0 = at the last only", _at_least(0)
    )
    loss: str = option(
        "ce", "ce: softmax cross-entropy; bce: one sigmoid output, binary cross-entropy", _one_of(LOSSES)
    )

    @field_validator("*")
    @classmethod
    def _rule(cls, value: Any, info: ValidationInfo) -> Any:
        """The field's rule (:data:`RULES`), if it has one."""
        name = str(info.field_name)
        if name in RULES and not RULES[name][0](value):
            raise ValueError(f"{name} {RULES[name][1]}")
        return value

    def to_dict(self) -> dict[str, Any]:
        """Every option as plain data (``milestones`` a list).

        Returns
        -------
        dict[str, Any]
            ``model_dump()`` of the config, with ``milestones`` as a list.
        """
        return {**self.model_dump(), "milestones": list(self.milestones)}


RULES: dict[str, Rule] = {
    name: rule for name, f in TrainConfig.model_fields.items() for rule in f.metadata if isinstance(rule, Rule)
}
HELP: dict[str, str] = {name: str(f.description) for name, f in TrainConfig.model_fields.items()}


def lr_at(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Learning rate for ``step`` (0-based) of ``epoch`` (1-based); see :class:`TrainConfig`.

    Parameters
    ----------
    config
        The run's ``lr``, ``gamma``, ``milestones``, ``warmup_epochs`` and ``warmup_start``.
    epoch
        The epoch, from 1.
    step
        The step within the epoch, from 0.
    steps_per_epoch
        The optimisation steps of one epoch (the warm-up rises per step over
        ``warmup_epochs * steps_per_epoch`` steps).

    Returns
    -------
    float
        ``lr * gamma ** #{m in milestones: m < epoch} * warm``.
    """
    decay = config.gamma ** sum(1 for m in config.milestones if m < epoch)
    warm = 1.0
    if config.warmup_epochs > 0:
        progress = ((epoch - 1) * steps_per_epoch + step) / (config.warmup_epochs * steps_per_epoch)
        warm = config.warmup_start + (1.0 - config.warmup_start) * min(1.0, progress)
    return config.lr * decay * warm
