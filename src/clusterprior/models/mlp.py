"""Multi-layer perceptron: ``Flatten -> [Dropout] -> [Linear -> BN -> ReLU -> Dropout] x L -> Linear``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from clusterprior.errors import UserError
from clusterprior.models.layers import bn_relu, scaled

BASE_HIDDEN = (256, 256)


def mlp(
    input_shape: tuple[int, ...],
    n_classes: int,
    width: float = 1.0,
    depth: float = 1.0,
    dropout: float = 0.0,
    batchnorm: bool = True,
    hidden: Sequence[int] = BASE_HIDDEN,
    bias: bool = True,
    activation: str = "relu",
    input_dropout: float = 0.0,
) -> nn.Sequential:
    """``len(hidden) * depth`` hidden layers (extra ones repeat the last width), each
    ``hidden[i] * width`` units. ``bias=False`` drops the hidden layers' biases;
    ``activation="linear"`` replaces the ReLUs by identities; ``input_dropout`` drops
    input features (the thesis's data augmentation, thesis §3.4)."""
    widths = [scaled(h, width) for h in hidden]
    n_layers = scaled(len(widths), depth)
    widths = (widths + [widths[-1]] * n_layers)[:n_layers]
    if not 0.0 <= input_dropout < 1.0:
        raise UserError(f"input_dropout must be in [0, 1), got {input_dropout}")
    layers: list[nn.Module] = [nn.Flatten()] + ([nn.Dropout(input_dropout)] if input_dropout > 0 else [])
    fan_in = math.prod(input_shape)
    for w in widths:
        layers += [nn.Linear(fan_in, w, bias=bias), *bn_relu(0, w, batchnorm, activation)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        fan_in = w
    layers.append(nn.Linear(fan_in, n_classes))
    return nn.Sequential(*layers)
