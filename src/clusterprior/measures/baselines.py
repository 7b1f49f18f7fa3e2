"""Baseline generalization measures, for the same tables as c0-c4.

Each has an orientation: the sign that makes "higher oriented value" predict better
generalization, so that a positive correlation always means a correct prediction
(SPEC.md 2.6). So far: distance from initialisation, and the mean layer rotation
(:mod:`clusterprior.measures.rotation`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

ORIENTATION: dict[str, int] = {
    # Jiang et al. 2020: a model that moved less from its initialisation should generalize better
    "distance_from_init": -1,
    # thesis Chapter 4: the larger (up to 1) the layer rotation, the better the generalization
    "layer_rotation": 1,
}


@torch.no_grad()
def distance_from_init(model: nn.Module, initial: Mapping[str, torch.Tensor]) -> float:
    """||w - w_0||_2 over all trainable parameters, flattened together (Jiang et al. 2020).

    ``initial``: the parameters at initialisation, e.g. ``{n: p.detach().clone() for n, p in
    model.named_parameters()}`` taken before training."""
    total = torch.zeros((), dtype=torch.float64)
    for name, p in model.named_parameters():
        if p.requires_grad:
            total += (p.detach().double().cpu() - initial[name].double().cpu()).pow(2).sum()
    return float(total.sqrt())
