"""Multi-layer perceptron: ``Flatten -> [Linear -> BN -> ReLU -> Dropout] x L -> Linear``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

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
) -> nn.Sequential:
    """``len(hidden) * depth`` hidden layers (extra ones repeat the last width), each
    ``hidden[i] * width`` units. ``bias=False`` drops the hidden layers' biases."""
    widths = [scaled(h, width) for h in hidden]
    n_layers = scaled(len(widths), depth)
    widths = (widths + [widths[-1]] * n_layers)[:n_layers]
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(input_shape)
    for w in widths:
        layers += [nn.Linear(fan_in, w, bias=bias), *bn_relu(0, w, batchnorm)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        fan_in = w
    layers.append(nn.Linear(fan_in, n_classes))
    return nn.Sequential(*layers)
