"""Model zoo: ``build(name, input_shape, n_classes, ...)``, the structure queries of
:mod:`clusterprior.models.structure` (kernels, activation modules, neuron counts, eval mode),
and models defined elsewhere (:mod:`clusterprior.models.external`: ``build_external``).

Every model puts a BatchNorm before every ReLU (unless ``batchnorm=False``) and
uses one ``nn.ReLU`` module per activation, so :mod:`clusterprior.probe` can hook
it. ``width`` and ``depth`` scale channels and layer/block counts (the thesis
uses x1 and x1.5, thesis §2.2.1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from clusterprior.errors import UserError
from clusterprior.models.convnet import cnn, vgg
from clusterprior.models.external import build_external, load_weights
from clusterprior.models.layers import NoActivation, he_uniform_
from clusterprior.models.mlp import mlp
from clusterprior.models.structure import (
    CONFIG_ATTR,
    activation_modules,
    evaluating,
    initial_weights,
    kernel_rotation,
    kernels,
    neuron_counts,
    snapshot,
    step_tangent,
)
from clusterprior.models.wrn import wrn
from clusterprior.registry import Registry

BUILDERS: Registry[Callable[..., nn.Module]] = Registry("model", {"mlp": mlp, "cnn": cnn, "vgg": vgg, "wrn": wrn})
__all__ = [
    "BUILDERS",
    "NoActivation",
    "activation_modules",
    "available",
    "build",
    "build_external",
    "evaluating",
    "from_config",
    "he_uniform_",
    "initial_weights",
    "kernel_rotation",
    "kernels",
    "load_weights",
    "neuron_counts",
    "snapshot",
    "step_tangent",
]


def from_config(config: Mapping[str, Any], input_shape: tuple[int, ...] | list[int], n_classes: int) -> nn.Module:
    """:func:`build` from a config of its arguments: a study run's model section, or the one a
    checkpoint keeps (:data:`~clusterprior.models.structure.CONFIG_ATTR`).

    Parameters
    ----------
    config
        The arguments of :func:`build`: keys ``name``, ``width``, ``depth``, ``dropout``,
        ``batchnorm`` and ``options`` (the model-specific options, a mapping); other keys
        (a checkpoint's ``input_shape`` and ``n_classes``) are ignored.
    input_shape
        The shape of one input, without the batch axis.
    n_classes
        The number of outputs.

    Returns
    -------
    torch.nn.Module
        The model :func:`build` makes of them.
    """
    options = {key: config[key] for key in ("width", "depth", "dropout", "batchnorm")}
    return build(config["name"], input_shape, n_classes, **options, **config["options"])


def available() -> list[str]:
    """The model names :func:`build` accepts.

    Returns
    -------
    list[str]
        The names registered in :data:`BUILDERS`, sorted.
    """
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

    The arguments are kept on the model (attribute ``clusterprior_config``, tuples as
    lists) so checkpoints can rebuild it (:func:`from_config`).

    Parameters
    ----------
    name
        A registered model: ``mlp``, ``cnn``, ``vgg`` or ``wrn`` (see :func:`available`).
    input_shape
        The shape of one input, without the batch axis.
    n_classes
        The number of outputs, at least 1.
    width
        Factor (> 0) on the channels or units.
    depth
        Factor (> 0) on the layer/block counts.
    dropout
        Dropout rate, in [0, 1).
    batchnorm
        Whether a BatchNorm precedes every ReLU.
    **options
        Model-specific options (``mlp``: ``hidden``, ``bias``, ``activation``,
        ``input_dropout``; ``cnn``/``vgg``: ``stages``, ``convs``; ``wrn``: ``stages``,
        ``blocks``).

    Returns
    -------
    torch.nn.Module
        The model, with its arguments under ``clusterprior_config``.

    Raises
    ------
    UserError
        When ``n_classes``, ``width``, ``depth`` or ``dropout`` is out of range, or the
        builder refuses an option (its ``TypeError``). An unknown ``name`` raises the
        registry's :class:`~clusterprior.registry.Unknown`, a :class:`UserError`.
    """
    builder = BUILDERS[name]
    if n_classes < 1:
        raise UserError(f"n_classes must be >= 1, got {n_classes}")
    if width <= 0 or depth <= 0:
        raise UserError(f"width and depth factors must be > 0, got width={width}, depth={depth}")
    if not 0.0 <= dropout < 1.0:
        raise UserError(f"dropout must be in [0, 1), got {dropout}")
    shape = tuple(int(s) for s in input_shape)
    try:
        model = builder(shape, n_classes, width=width, depth=depth, dropout=dropout, batchnorm=batchnorm, **options)
    except TypeError as e:
        raise UserError(f"model {name!r}: {e}") from None
    config = dict(
        name=name,
        input_shape=list(shape),
        n_classes=n_classes,
        width=width,
        depth=depth,
        dropout=dropout,
        batchnorm=batchnorm,
        options={k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
    )
    setattr(model, CONFIG_ATTR, config)
    return model
