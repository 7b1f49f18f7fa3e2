"""Model zoo: ``build(name, input_shape, n_classes, ...)`` and ReLU neuron counts.

Every model puts a BatchNorm before every ReLU (unless ``batchnorm=False``) and
uses one ``nn.ReLU`` module per activation, so :mod:`clusterprior.probe` can hook
it. ``width`` and ``depth`` scale channels and layer/block counts (the thesis
uses x1 and x1.5, SPEC.md 2.5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from clusterprior.errors import UserError
from clusterprior.models.convnet import cnn, vgg
from clusterprior.models.layers import NoActivation, he_uniform_
from clusterprior.models.mlp import mlp
from clusterprior.models.wrn import wrn

BUILDERS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "cnn": cnn, "vgg": vgg, "wrn": wrn}
CONFIG_ATTR = "clusterprior_config"
__all__ = ["BUILDERS", "CONFIG_ATTR", "NoActivation", "available", "build", "he_uniform_", "neuron_counts", "relu_modules"]


def available() -> list[str]:
    return sorted(BUILDERS)


def build(
    name: str,
    input_shape: tuple[int, ...] | list[int],
    n_classes: int,
    width: float = 1.0,
    depth: float = 1.0,
    dropout: float = 0.0,
    batchnorm: bool = True,
    **options: Any,
) -> nn.Module:
    """Build model ``name`` for inputs of ``input_shape`` (without the batch axis).

    ``options`` are model-specific (``mlp``: ``hidden``, ``bias``, ``activation``, ``input_dropout``; ``cnn``/``vgg``:
    ``stages``, ``convs``; ``wrn``: ``stages``, ``blocks``). The arguments are kept
    on the model (attribute ``clusterprior_config``) so checkpoints can rebuild it.
    """
    if name not in BUILDERS:
        raise UserError(f"unknown model {name!r}; available: {', '.join(available())}")
    if n_classes < 1:
        raise UserError(f"n_classes must be >= 1, got {n_classes}")
    if width <= 0 or depth <= 0:
        raise UserError(f"width and depth factors must be > 0, got width={width}, depth={depth}")
    if not 0.0 <= dropout < 1.0:
        raise UserError(f"dropout must be in [0, 1), got {dropout}")
    shape = tuple(int(s) for s in input_shape)
    try:
        model = BUILDERS[name](shape, n_classes, width=width, depth=depth, dropout=dropout, batchnorm=batchnorm, **options)
    except TypeError as e:
        raise UserError(f"model {name!r}: {e}") from None
    config = dict(name=name, input_shape=list(shape), n_classes=n_classes, width=width, depth=depth,
                  dropout=dropout, batchnorm=batchnorm, options={k: list(v) if isinstance(v, tuple) else v for k, v in options.items()})
    setattr(model, CONFIG_ATTR, config)
    return model


def relu_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every activation module (``nn.ReLU``, or the
    :class:`~clusterprior.models.layers.NoActivation` of a linear hidden layer) in
    registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.ReLU, NoActivation))]


@torch.no_grad()
def neuron_counts(model: nn.Module, input_shape: tuple[int, ...] | list[int]) -> dict[str, int]:
    """Neurons (channels for conv maps, units for dense layers) of each ReLU layer,
    in forward order, found with one forward pass of a dummy batch in eval mode."""
    seen: dict[str, int] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            seen.setdefault(name, int(inputs[0].shape[1]))

        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in relu_modules(model)]
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        model(torch.zeros(2, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return seen
