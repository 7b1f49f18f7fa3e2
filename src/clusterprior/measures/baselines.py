"""Baseline generalization measures, for the same tables as c0-c4 (Jiang et al. 2020; PGDL).

Each has an orientation in the catalogue (:mod:`clusterprior.measures.catalogue`): the sign
that makes "higher oriented value" predict better generalization, so that a positive
correlation always means a correct prediction (thesis §2.2.2): minus for the norm-based
complexities, NC1 and Davies-Bouldin; plus for the margin, layer rotation (thesis Ch. 4) and
the sharpness measures (flatter minima generalize better). The cheap ones cost at most one
forward pass over the probe data; sharpness (:mod:`clusterprior.measures.sharpness`) is separate.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from clusterprior.errors import UserError
from clusterprior.models.structure import device_of, evaluating, kernels


@torch.no_grad()
def distance_from_init(model: nn.Module, initial: Mapping[str, torch.Tensor]) -> float:
    """||w - w_0||_2 over all trainable parameters, flattened together (Jiang et al. 2020).

    ``initial``: the parameters at initialisation, :func:`clusterprior.models.initial_weights`
    taken before training."""
    return math.sqrt(sum(v * v for v in distance_from_init_layers(model, initial).values()))


@torch.no_grad()
def distance_from_init_layers(model: nn.Module, initial: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """||w - w_0||_2 of each trainable parameter tensor, by name."""
    missing = [name for name, p in model.named_parameters() if p.requires_grad and name not in initial]
    if missing:
        raise UserError(
            f"the initial weights lack {missing[0]!r}: distance from initialisation needs every parameter "
            "(models.initial_weights(model)), not a snapshot of the kernels"
        )
    return {
        name: float((p.detach().double().cpu() - initial[name].double().cpu()).norm())
        for name, p in model.named_parameters()
        if p.requires_grad
    }


@torch.no_grad()
def param_norm(model: nn.Module) -> float:
    """Frobenius norm of all trainable parameters together, sqrt(sum_w ||w||_F^2)."""
    return math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in model.parameters() if p.requires_grad))


@torch.no_grad()
def log_spectral_product(model: nn.Module) -> float:
    """log of the product over Conv/Linear kernels of their spectral norms (largest singular
    value; a conv kernel reshaped to [out, in x kernel], the usual approximation)."""
    return float(
        sum(torch.linalg.matrix_norm(w.detach().double().flatten(1), ord=2).log() for w in kernels(model).values())
    )


@torch.no_grad()
def path_norm(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Path norm (Neyshabur et al. 2015, as in Jiang et al.): sqrt of the summed output of a
    copy of the network whose parameters are squared, on an all-ones input, in eval mode
    (BatchNorm with its running statistics, an approximation for BN networks)."""
    twin = copy.deepcopy(model).eval().double()
    for p in twin.parameters():
        p.pow_(2)
    out = twin(torch.ones(1, *input_shape, dtype=torch.float64, device=device_of(twin)))
    return math.sqrt(max(float(out.sum()), 0.0))


def margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """logit of the true class minus the largest other logit, per sample."""
    true = logits.gather(1, y.view(-1, 1)).squeeze(1)
    other = logits.scatter(1, y.view(-1, 1), float("-inf")).max(dim=1).values
    return true - other


@torch.no_grad()
def output_margin(model: nn.Module, x: torch.Tensor, y: torch.Tensor, q: float = 10.0, batch_size: int = 1024) -> float:
    """The ``q``-th percentile (default 10th, Jiang et al.) of the output margins on (x, y)."""
    device = device_of(model)
    with evaluating(model):
        logits = torch.cat(
            [model(x[i : i + batch_size].to(device)).double().cpu() for i in range(0, len(x), batch_size)]
        )
    return float(np.percentile(margins(logits, torch.as_tensor(y).cpu()).numpy(), q))


def nc1(features: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Neural collapse NC1 (Papyan et al. 2020): tr(Sigma_W Sigma_B^+) / C, with Sigma_W the
    within-class and Sigma_B the between-class covariance of the features (population);
    0 when every class has collapsed onto its mean."""
    h = torch.as_tensor(features).double()
    labels = torch.as_tensor(y).long()
    classes = torch.unique(labels)
    mu = h.mean(0)
    means = torch.stack([h[labels == c].mean(0) for c in classes])
    centred = h - means[torch.searchsorted(classes, labels)]
    sigma_w = centred.T @ centred / len(h)
    between = means - mu
    sigma_b = between.T @ between / len(classes)
    return float(torch.trace(sigma_w @ torch.linalg.pinv(sigma_b)) / len(classes))


def davies_bouldin(features: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Davies-Bouldin index of the class clusters (scikit-learn's implementation): the mean
    over classes of the worst (s_i + s_j) / d_ij; lower means tighter, better separated."""
    from sklearn.metrics import davies_bouldin_score

    labels = np.asarray(torch.as_tensor(y).cpu())
    if len(np.unique(labels)) < 2:
        raise UserError("the Davies-Bouldin index needs at least 2 classes")
    return float(davies_bouldin_score(np.asarray(torch.as_tensor(features).double().cpu()), labels))
