"""Building blocks shared by the model zoo: every ReLU is an ``nn.ReLU`` module
preceded by a BatchNorm (when ``batchnorm``), so probes can hook it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def scaled(base: int, factor: float) -> int:
    """``base * factor`` rounded half up, at least 1 (width and depth factors)."""
    return max(1, int(base * factor + 0.5))


def conv(dims: int, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, bias: bool = False) -> nn.Module:
    cls = nn.Conv1d if dims == 1 else nn.Conv2d
    return cls(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=bias)


def norm(dims: int, channels: int, batchnorm: bool) -> nn.Module:
    """BatchNorm over ``channels`` (dims 0 = dense features), or an identity."""
    if not batchnorm:
        return nn.Identity()
    return nn.BatchNorm1d(channels) if dims in (0, 1) else nn.BatchNorm2d(channels)


class NoActivation(nn.Identity):
    """The identity where a ReLU would be (a linear hidden layer), kept as a module of its
    own type so that probes and recorders find the layer like a ReLU."""


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": lambda: nn.ReLU(inplace=True), "linear": NoActivation}


def bn_relu(dims: int, channels: int, batchnorm: bool, activation: str = "relu") -> list[nn.Module]:
    """``[BatchNorm, ReLU]`` (or the ``activation`` named in :data:`ACTIVATIONS`): the
    pre-activation the measures read is the BN output."""
    if activation not in ACTIVATIONS:
        from clusterprior.errors import UserError

        raise UserError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    return [norm(dims, channels, batchnorm), ACTIVATIONS[activation]()]


@torch.no_grad()
def he_uniform_(model: nn.Module) -> nn.Module:
    """He-uniform kernels (``U(-b, b)``, ``b = sqrt(6 / fan_in)``, Keras's ``he_uniform``) and
    zero biases for every Linear and Conv layer, in place. Under Layca, which keeps
    every kernel at its initial norm, this sets the scale of the logits for the whole run.

    Parameters
    ----------
    model
        The model to initialise; its ``nn.Linear`` and convolution modules (1-D, 2-D, 3-D,
        transposed) are reset, other parameters are left as they are.

    Returns
    -------
    torch.nn.Module
        ``model`` itself.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            nn.init.kaiming_uniform_(module.weight, a=0.0, nonlinearity="relu")
            if module.bias is not None:
                module.bias.zero_()
    return model


def max_pool(dims: int) -> nn.Module:
    return nn.MaxPool1d(2) if dims == 1 else nn.MaxPool2d(2)


def global_avg_pool(dims: int) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1), nn.Flatten())


def spatial_dims(input_shape: tuple[int, ...], model: str) -> int:
    """1 for ``[C, L]`` signals, 2 for ``[C, H, W]`` images; anything else is refused."""
    if len(input_shape) not in (2, 3):
        from clusterprior.errors import UserError

        raise UserError(
            f"model {model!r} needs [C, L] signals or [C, H, W] images, got input shape {list(input_shape)}"
        )
    return len(input_shape) - 1
