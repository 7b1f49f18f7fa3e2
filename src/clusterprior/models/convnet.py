"""Plain convolutional networks (``cnn`` and ``vgg``), 1-D or 2-D by input shape.

Stages of ``convs`` x ``[Conv3 -> BN -> ReLU]``, 2x max pooling between stages
(none after the last), dropout after every stage, global average pooling and a
linear classifier. ``vgg`` at width and depth 1 has 2 x (32 + 64 + 128 + 256) =
960 ReLU channels, the thesis's base VGG (thesis Fig. 2.5's neuron counts); x1.5 width or depth
gives 1440.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from clusterprior.models.layers import bn_relu, conv, global_avg_pool, max_pool, scaled, spatial_dims

CNN_STAGES = (16, 32, 64)
VGG_STAGES = (32, 64, 128, 256)


def convnet(
    input_shape: tuple[int, ...],
    n_classes: int,
    width: float = 1.0,
    depth: float = 1.0,
    dropout: float = 0.0,
    batchnorm: bool = True,
    stages: Sequence[int] = CNN_STAGES,
    convs: int = 2,
    name: str = "cnn",
) -> nn.Sequential:
    dims = spatial_dims(input_shape, name)
    n_convs = scaled(convs, depth)
    layers: list[nn.Module] = []
    c_in = input_shape[0]
    for i, base in enumerate(stages):
        c_out = scaled(base, width)
        for _ in range(n_convs):
            layers += [conv(dims, c_in, c_out, bias=not batchnorm), *bn_relu(dims, c_out, batchnorm)]
            c_in = c_out
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        if i < len(stages) - 1:
            layers.append(max_pool(dims))
    layers += [global_avg_pool(dims), nn.Linear(c_in, n_classes)]
    return nn.Sequential(*layers)


def cnn(input_shape: tuple[int, ...], n_classes: int, **kw) -> nn.Sequential:
    """Small CNN: stages (16, 32, 64) x 2 convs (224 ReLU channels at width 1)."""
    return convnet(input_shape, n_classes, **{"stages": CNN_STAGES, **kw}, name="cnn")


def vgg(input_shape: tuple[int, ...], n_classes: int, **kw) -> nn.Sequential:
    """VGG-style: stages (32, 64, 128, 256) x 2 convs (960 ReLU channels at width 1)."""
    return convnet(input_shape, n_classes, **{"stages": VGG_STAGES, **kw}, name="vgg")
