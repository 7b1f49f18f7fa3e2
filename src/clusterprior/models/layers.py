"""Building blocks shared by the model zoo: every ReLU is an ``nn.ReLU`` module
preceded by a BatchNorm (when ``batchnorm``), so probes can hook it."""

from __future__ import annotations

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


def bn_relu(dims: int, channels: int, batchnorm: bool) -> list[nn.Module]:
    """``[BatchNorm, ReLU]``: the pre-activation the measures read is the BN output."""
    return [norm(dims, channels, batchnorm), nn.ReLU(inplace=True)]


def max_pool(dims: int) -> nn.Module:
    return nn.MaxPool1d(2) if dims == 1 else nn.MaxPool2d(2)


def global_avg_pool(dims: int) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1), nn.Flatten())


def spatial_dims(input_shape: tuple[int, ...], model: str) -> int:
    """1 for ``[C, L]`` signals, 2 for ``[C, H, W]`` images; anything else is refused."""
    if len(input_shape) not in (2, 3):
        from clusterprior.errors import UserError

        raise UserError(f"model {model!r} needs [C, L] signals or [C, H, W] images, got input shape {list(input_shape)}")
    return len(input_shape) - 1
