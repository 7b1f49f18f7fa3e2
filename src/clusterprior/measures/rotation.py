"""Layer rotation (thesis Eq. 4.1): how far each layer's kernel has turned.

The rotation of a layer is the cosine distance ``1 - <w0, w> / (|w0| |w|)`` between its
flattened kernel now and at initialisation (:func:`clusterprior.models.kernel_rotation`);
1 means orthogonal to the initialisation, the thesis's target. The rotation of one step is
``tan(theta)`` between consecutive kernels (:func:`clusterprior.models.step_tangent`). Recording
rotation during training:
:class:`clusterprior.probe.RotationMonitor`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from clusterprior.models.structure import kernel_rotation


def layer_rotation(model: nn.Module, initial: Mapping[str, torch.Tensor]) -> tuple[float, dict[str, float]]:
    """The ``layer_rotation`` measure: the mean over kernels of their cosine distance to
    ``initial`` (parameters at initialisation, by name), and the per-layer values keyed by
    module name."""
    per = kernel_rotation(initial, dict(model.named_parameters()))
    return sum(per.values()) / len(per), {k.removesuffix(".weight"): v for k, v in per.items()}
