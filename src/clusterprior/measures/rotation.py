"""Layer rotation (thesis Chapter 4, SPEC.md 4.1): how far each layer's kernel has turned.

The rotation of a layer is the cosine distance ``1 - <w0, w> / (|w0| |w|)`` between its
flattened kernel now and at initialisation; kernels are the weights of Conv and Linear
layers (biases and BatchNorm parameters excluded). 1 means orthogonal to the initialisation,
the thesis's target. The rotation of one step is ``tan(theta)`` between consecutive kernels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

KERNEL_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def kernels(model: nn.Module) -> dict[str, nn.Parameter]:
    """``{"<module>.weight": weight}`` of every Conv/Linear layer, in registration order."""
    return {f"{name}.weight" if name else "weight": m.weight for name, m in model.named_modules()
            if isinstance(m, KERNEL_TYPES)}


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the kernels (e.g. the initial ones)."""
    return {k: w.detach().clone() for k, w in kernels(model).items()}


def cosine_distance(u: torch.Tensor, v: torch.Tensor) -> float:
    """``1 - <u, v> / (|u| |v|)`` of the flattened tensors (float64, on ``u``'s device: an
    initial snapshot kept on the CPU compares with a model trained on a GPU)."""
    u, v = u.detach().double().flatten(), v.detach().to(u.device).double().flatten()
    return float(1.0 - (u @ v) / (u.norm() * v.norm()))


def layer_rotation(initial: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Cosine distance of each kernel in ``initial`` to the same kernel in ``current``
    (two state dicts, or :func:`snapshot` s); keys of ``initial`` with fewer than 2
    dimensions (biases, BatchNorm) are skipped."""
    return {k: cosine_distance(w0, current[k]) for k, w0 in initial.items() if w0.ndim >= 2}


def step_tangent(previous: torch.Tensor, current: torch.Tensor) -> float:
    """``tan(theta)`` of the angle between two consecutive iterates of a kernel
    (``sqrt(1/(1-d)^2 - 1)`` with d their cosine distance; inf at or past 90 degrees)."""
    cos = 1.0 - max(cosine_distance(previous, current), 0.0)
    return math.sqrt(max(1.0 / (cos * cos) - 1.0, 0.0)) if cos > 0 else math.inf


class RotationMonitor:
    """Training callback recording each kernel's rotation from initialisation after every
    epoch (``every_steps=None``) or every N optimisation steps; rows in ``history``."""

    def __init__(self, model: nn.Module, every_steps: int | None = None):
        self.initial = snapshot(model)
        self.every_steps = every_steps
        self.steps = 0
        self.history: list[dict[str, float]] = [{"epoch": 0, "step": 0, **{k: 0.0 for k in self.initial}}]

    def _record(self, model: nn.Module, epoch: int) -> None:
        self.history.append({"epoch": epoch, "step": self.steps, **layer_rotation(self.initial, snapshot(model))})

    def __call__(self, state) -> None:
        """Epoch callback for :func:`clusterprior.train.fit`."""
        if self.every_steps is None:
            self._record(state.model, state.epoch)

    def on_step(self, state) -> None:
        """Step callback for :func:`clusterprior.train.fit` (``step_callbacks``); counts steps."""
        self.steps = state.step
        if self.every_steps and state.step % self.every_steps == 0:
            self._record(state.model, state.epoch)
