"""Small models written here for the probe tests, in the layouts of well-known architectures
(no torchvision, no download): torchvision-style ResNets whose blocks call one ``self.relu``
several times, a small ViT with a functional GELU, a functional MLP, and two models that
``torch.fx`` cannot trace."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def _downsample(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: one in-place ``self.relu`` called twice."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv3(c_in, planes, stride), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv3(planes, planes), nn.BatchNorm2d(planes)
        self.downsample = _downsample(c_in, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck: 1x1, 3x3, 1x1 (x4 channels), one ``self.relu`` called three times."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(c_in, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet layout for small images: conv-bn-relu stem, stages ``layer1`` ...,
    adaptive average pooling, ``fc``."""

    def __init__(self, block: type[BasicBlock | Bottleneck], blocks: tuple[int, ...], n_classes: int, width: int):
        super().__init__()
        self.conv1, self.bn1 = _conv3(3, width), nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        c_in = width
        for i, n in enumerate(blocks):
            planes = width * 2**i
            stage = []
            for j in range(n):
                stage.append(block(c_in, planes, stride=2 if i > 0 and j == 0 else 1))
                c_in = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.n_stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18_style(n_classes: int = 10, width: int = 8) -> ResNet:
    """ResNet-18's layout (4 stages x 2 BasicBlocks) at a small width, for 3 x 16 x 16 inputs."""
    return ResNet(BasicBlock, (2, 2, 2, 2), n_classes, width)


def bottleneck_resnet(n_classes: int = 10, width: int = 4, blocks: tuple[int, ...] = (2, 1)) -> ResNet:
    """A ResNet of Bottleneck blocks (2 stages by default), for 3 x 16 x 16 inputs."""
    return ResNet(Bottleneck, blocks, n_classes, width)


class Attention(nn.Module):
    """Multi-head self-attention written out: q/k/v projections, softmax of scaled dot products."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(b, t, self.heads, c // self.heads).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        attention = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return self.proj((attention @ v).transpose(1, 2).reshape(b, t, c))


class Mlp(nn.Module):
    """The transformer MLP, with a functional GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """Patch embedding conv, class token, positional embedding, transformer blocks, head on the class token."""

    def __init__(self, image: int, patch: int, dim: int, depth: int, heads: int, hidden: int, n_classes: int):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads, hidden) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def tiny_vit(n_classes: int = 10, image: int = 16, patch: int = 4, dim: int = 16, depth: int = 2) -> TinyViT:
    """A small ViT for 3 x ``image`` x ``image`` inputs: 2 heads, MLP hidden 2 x ``dim``."""
    return TinyViT(image, patch, dim, depth, heads=2, hidden=2 * dim, n_classes=n_classes)


class FunctionalMLP(nn.Module):
    """An MLP whose activations are ``F.relu`` and ``x.relu()`` calls, no activation modules."""

    def __init__(self, d_in: int = 10, hidden: int = 12, n_classes: int = 3) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(d_in, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.fc2(F.relu(self.fc1(x))).relu())


def functional_mlp() -> FunctionalMLP:
    return FunctionalMLP()


class DataDependent(nn.Module):
    """``torch.fx`` cannot trace this forward (a branch on the data); ``functional`` uses
    ``F.relu`` instead of its ``nn.ReLU`` modules."""

    def __init__(self, functional: bool = False) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 2)
        self.relu = None if functional else nn.ReLU()

    def act(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) if self.relu is None else self.relu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))
        if x.sum() > 0:
            h = self.act(h - 0.1)
        return self.fc2(h)
