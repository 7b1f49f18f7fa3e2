"""Pre-activation wide ResNet (Zagoruyko & Komodakis 2016), 1-D or 2-D.

Stem ``Conv3(16)``, three stages of ``blocks`` residual blocks with widths
``(68, 136, 272) x width`` and strides 1, 2, 2, then ``BN -> ReLU -> global
average pool -> Linear``. A block is ``BN -> ReLU -> Conv3 -> BN -> ReLU ->
Dropout -> Conv3`` plus a shortcut (a 1x1 convolution of the pre-activated input
where the shape changes).

ReLU channels: ``16 + 14 * w * N`` for stage-1 width ``w`` and ``N`` blocks per
stage, so the base model (``w = 68``, ``N = 2``, a WRN-16-4.25) has exactly 1920,
the thesis's base ResNet (thesis Fig. 2.5's neuron counts); x1.5 width (``w = 102``) or x1.5 depth
(``N = 3``) gives 2872, the thesis's "about 2880".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from clusterprior.models.layers import bn_relu, conv, global_avg_pool, scaled, spatial_dims

STEM = 16
STAGES = (68, 136, 272)
BLOCKS = 2


class Block(nn.Module):
    def __init__(self, dims: int, c_in: int, c_out: int, stride: int, dropout: float, batchnorm: bool):
        super().__init__()
        self.pre = nn.Sequential(*bn_relu(dims, c_in, batchnorm))
        self.conv1 = conv(dims, c_in, c_out, stride=stride)
        self.mid = nn.Sequential(
            *bn_relu(dims, c_out, batchnorm), nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        )
        self.conv2 = conv(dims, c_out, c_out)
        self.shortcut = conv(dims, c_in, c_out, kernel=1, stride=stride) if (stride != 1 or c_in != c_out) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.pre(x)
        skip = x if self.shortcut is None else self.shortcut(a)
        return self.conv2(self.mid(self.conv1(a))) + skip


def wrn(
    input_shape: tuple[int, ...],
    n_classes: int,
    width: float = 1.0,
    depth: float = 1.0,
    dropout: float = 0.0,
    batchnorm: bool = True,
    stages: Sequence[int] = STAGES,
    blocks: int = BLOCKS,
) -> nn.Sequential:
    dims = spatial_dims(input_shape, "wrn")
    n_blocks = scaled(blocks, depth)
    layers: list[nn.Module] = [conv(dims, input_shape[0], STEM)]
    c_in = STEM
    for i, base in enumerate(stages):
        c_out = scaled(base, width)
        for j in range(n_blocks):
            stride = 2 if (i > 0 and j == 0) else 1
            layers.append(Block(dims, c_in, c_out, stride, dropout, batchnorm))
            c_in = c_out
    layers += [*bn_relu(dims, c_in, batchnorm), global_avg_pool(dims), nn.Linear(c_in, n_classes)]
    return nn.Sequential(*layers)
