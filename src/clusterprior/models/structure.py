"""Structure queries that every other layer asks of a model: its kernels, its activation
modules and their widths, its device, and a context that evaluates it in eval mode.

Kernels are the weights of Conv and Linear layers (biases and BatchNorm parameters
excluded): what Layca rotates, what layer rotation measures and what the norm-based
baselines read. Activation modules are the ``nn.ReLU`` modules and the
:class:`~clusterprior.models.layers.NoActivation` of a linear hidden layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from clusterprior.models.layers import NoActivation

KERNEL_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
ACTIVATION_TYPES = (nn.ReLU, NoActivation)

CONFIG_ATTR = "clusterprior_config"  # the attribute where build() keeps a model's arguments (checkpoints rebuild it)


def kernels(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{"<module>.weight": weight}`` of every Conv/Linear layer, in registration order.

    Parameters
    ----------
    model
        The model to read.

    Returns
    -------
    dict[str, torch.Tensor]
        The kernels themselves (the live parameters, not copies), by state-dict key.
    """
    found: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, KERNEL_TYPES):
            found[f"{name}.weight" if name else "weight"] = module.weight
    return found


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the kernels (e.g. the initial ones: what the rotation probes compare).

    Parameters
    ----------
    model
        The model whose :func:`kernels` are copied.

    Returns
    -------
    dict[str, torch.Tensor]
        Detached clones of the kernels, keyed as :func:`kernels` keys them.
    """
    return {k: w.detach().clone() for k, w in kernels(model).items()}


def initial_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter, by name: taken before training, the ``initial`` that
    the measures reading the initialisation need (distance from initialisation over all
    parameters, layer rotation over the kernels).

    Parameters
    ----------
    model
        The model whose parameters are copied (buffers are not).

    Returns
    -------
    dict[str, torch.Tensor]
        Detached clones of ``model.named_parameters()``.
    """
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def cosine_distance(u: torch.Tensor, v: torch.Tensor) -> float:
    """``1 - <u, v> / (|u| |v|)`` of the flattened tensors (float64, on ``u``'s device: an
    initial snapshot kept on the CPU compares with a model trained on a GPU)."""
    u, v = u.detach().double().flatten(), v.detach().to(u.device).double().flatten()
    return float(1.0 - (u @ v) / (u.norm() * v.norm()))


def step_tangent(previous: torch.Tensor, current: torch.Tensor) -> float:
    """``tan(theta)`` of the angle between two consecutive iterates of a kernel
    (``sqrt(1/(1-d)^2 - 1)`` with d their cosine distance; inf at or past 90 degrees).

    Parameters
    ----------
    previous
        The kernel at the earlier step.
    current
        The same kernel at the later step.

    Returns
    -------
    float
        ``tan(theta)``, 0 for parallel iterates (a negative distance from rounding counts as
        0), ``math.inf`` when the cosine is 0 or below.
    """
    cos = 1.0 - max(cosine_distance(previous, current), 0.0)
    return math.sqrt(max(1.0 / (cos * cos) - 1.0, 0.0)) if cos > 0 else math.inf


def kernel_rotation(initial: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Cosine distance of each kernel in ``initial`` to the same kernel in ``current``: the
    layer rotation of thesis Eq. 4.1.

    Parameters
    ----------
    initial
        The reference tensors by name (a state dict, or a :func:`snapshot`); entries with
        fewer than 2 dimensions (biases, BatchNorm) are skipped.
    current
        The tensors to compare, holding every key of ``initial`` that is kept.

    Returns
    -------
    dict[str, float]
        ``1 - cos`` of each kept entry, by name.
    """
    return {k: cosine_distance(w0, current[k]) for k, w0 in initial.items() if w0.ndim >= 2}


def activation_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every activation module (``nn.ReLU``, or the ``NoActivation``
    of a linear hidden layer) in registration order.

    Parameters
    ----------
    model
        The model to search.

    Returns
    -------
    list[tuple[str, torch.nn.Module]]
        The qualified module name and the module, in registration order.
    """
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ACTIVATION_TYPES)]


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and give every submodule its own mode back
    afterwards, even when the block raises.

    Parameters
    ----------
    model
        The model to evaluate.

    Yields
    ------
    torch.nn.Module
        ``model`` itself, in eval mode.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@torch.no_grad()
def neuron_counts(model: nn.Module, input_shape: tuple[int, ...] | list[int]) -> dict[str, int]:
    """Neurons (channels for conv maps, units for dense layers) of each activation layer,
    in forward order, found with one forward pass of a dummy batch in eval mode.

    The pass runs without gradients on a zero batch of 2 on the model's device; the
    modules' training modes are restored afterwards (see :func:`evaluating`).

    Parameters
    ----------
    model
        The model to probe.
    input_shape
        The shape of one input, without the batch axis.

    Returns
    -------
    dict[str, int]
        Axis 1 of each activation module's input (its first call), by module name; a
        module the forward pass does not reach is absent.
    """
    seen: dict[str, int] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            seen.setdefault(name, int(inputs[0].shape[1]))

        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in activation_modules(model)]
    try:
        with evaluating(model):
            model(torch.zeros(2, *input_shape, device=device_of(model)))
    finally:
        for h in hooks:
            h.remove()
    return seen
