"""Batch augmentation in torch, vectorised over the batch (no per-sample Python).

Parameters (a data set's defaults are in ``Split.meta.augment``):

- ``shift``: random translation by up to ``shift`` positions along every spatial
  axis with zero fill, i.e. a random crop of the ``shift``-padded input (images
  ``[B, C, H, W]`` and signals ``[B, C, L]``);
- ``hflip``: mirror images along the width with probability 1/2;
- ``noise``: add ``N(0, noise^2)`` to every input component.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KEYS = ("shift", "hflip", "noise")


def random_translate(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad every spatial axis by ``shift`` and take a random window of the
    original size per sample (offsets uniform in ``0..2*shift``)."""
    batch, spatial = x.shape[0], x.ndim - 2
    out = F.pad(x, (shift, shift) * spatial)
    for axis in range(2, x.ndim):
        size = x.shape[axis]
        offset = torch.randint(0, 2 * shift + 1, (batch,), generator=generator, device=generator.device).to(x.device)
        index = offset[:, None] + torch.arange(size, device=x.device)  # [B, size]
        view = [batch] + [1] * (x.ndim - 1)
        view[axis] = size
        target = list(out.shape)
        target[axis] = size
        out = torch.gather(out, axis, index.view(view).expand(target))
    return out


def augment(
    x: torch.Tensor, generator: torch.Generator, shift: int = 0, hflip: bool = False, noise: float = 0.0
) -> torch.Tensor:
    """Apply the requested augmentations to a batch (a new tensor; ``x`` is untouched)."""
    if shift > 0 and x.ndim >= 3:
        x = random_translate(x, int(shift), generator)
    if hflip and x.ndim == 4:
        flip = torch.rand(x.shape[0], generator=generator, device=generator.device).to(x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if noise > 0:
        x = x + noise * torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    return x
